//! Synthetic audio sources: a sine tone and silence, timed by their own sample clock.
//!
//! They are not paced: every read returns the next frame at once. Frame `n` has `seq` n and
//! was "captured" at `start + n * frame duration`, whatever the time of the read.

use std::f64::consts::TAU;
use std::time::{Duration, Instant};

use crate::audio::AudioSource;
use crate::error::Error;
use crate::frame::{AudioFormat, AudioFrame, Read, SAMPLE_RATE};

/// A sine tone, the same on every channel.
#[derive(Debug, Clone)]
pub struct Tone {
    format: AudioFormat,
    freq_hz: f64,
    peak: f64,
    clock: FrameClock,
}

impl Tone {
    /// A tone of `freq_hz` (clamped to 0..=24000 Hz) at `amplitude` times full scale (clamped to
    /// 0..=1), whose first frame starts at `start`.
    pub fn new(format: AudioFormat, freq_hz: f32, amplitude: f32, start: Instant) -> Self {
        let nyquist = f64::from(SAMPLE_RATE) / 2.0;
        let freq = if freq_hz.is_finite() {
            f64::from(freq_hz).clamp(0.0, nyquist)
        } else {
            0.0
        };
        let amplitude = if amplitude.is_finite() {
            f64::from(amplitude).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            format,
            freq_hz: freq,
            peak: amplitude * f64::from(i16::MAX),
            clock: FrameClock::new(start),
        }
    }

    /// The tone's frequency in Hz.
    pub fn freq_hz(&self) -> f64 {
        self.freq_hz
    }

    /// The sample at index `k` (per channel) since the start.
    fn sample(&self, k: u64) -> i16 {
        // Split k into whole seconds and a remainder so the phase stays exact however long
        // the tone runs: whole seconds contribute a whole number of cycles times freq.
        let rate = u64::from(SAMPLE_RATE);
        let secs = (k / rate) as f64;
        let rem = (k % rate) as f64;
        let cycles = (secs * self.freq_hz).fract() + rem * self.freq_hz / f64::from(SAMPLE_RATE);
        // The product stays within i16 because peak <= i16::MAX.
        (self.peak * (TAU * cycles.fract()).sin()).round() as i16
    }
}

impl AudioSource for Tone {
    fn format(&self) -> AudioFormat {
        self.format
    }

    fn read(&mut self, _now: Instant, frame: &mut AudioFrame) -> Result<Read, Error> {
        let (seq, first) = self.clock.next(self.format, frame);
        let channels = self.format.channels.count();
        for (i, chunk) in frame.samples.chunks_exact_mut(channels).enumerate() {
            chunk.fill(self.sample(first + i as u64));
        }
        frame.seq = seq;
        Ok(Read::Frame)
    }
}

/// Digital silence.
#[derive(Debug, Clone)]
pub struct Silence {
    format: AudioFormat,
    clock: FrameClock,
}

impl Silence {
    /// Silence whose first frame starts at `start`.
    pub fn new(format: AudioFormat, start: Instant) -> Self {
        Self {
            format,
            clock: FrameClock::new(start),
        }
    }
}

impl AudioSource for Silence {
    fn format(&self) -> AudioFormat {
        self.format
    }

    fn read(&mut self, _now: Instant, frame: &mut AudioFrame) -> Result<Read, Error> {
        let (seq, _) = self.clock.next(self.format, frame);
        frame.samples.fill(0);
        frame.seq = seq;
        Ok(Read::Frame)
    }
}

/// Counts frames and stamps each with its capture time on the source's sample clock.
#[derive(Debug, Clone)]
struct FrameClock {
    start: Instant,
    next_seq: u64,
}

impl FrameClock {
    fn new(start: Instant) -> Self {
        Self { start, next_seq: 0 }
    }

    /// Shapes `frame` for `format`, stamps its capture time and returns its sequence number
    /// and the index of its first sample per channel.
    fn next(&mut self, format: AudioFormat, frame: &mut AudioFrame) -> (u64, u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let spc = format.frame.samples_per_channel() as u64;
        let first = seq * spc;
        frame.format = format;
        frame.samples.resize(format.samples_per_frame(), 0);
        frame.capture = self.start + Duration::from_millis(u64::from(format.frame.millis()) * seq);
        (seq, first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Channels, FrameDuration};

    const MONO20: AudioFormat = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };

    #[test]
    fn frames_are_numbered_and_stamped_on_the_sample_clock() {
        let start = Instant::now();
        let mut tone = Tone::new(MONO20, 440.0, 0.5, start);
        let mut frame = AudioFrame::silent(MONO20, start);
        for n in 0..5u64 {
            // The time of the read does not matter: the source's own clock does.
            let now = start + Duration::from_secs(n * 7);
            assert_eq!(tone.read(now, &mut frame).unwrap(), Read::Frame);
            assert_eq!(frame.seq, n);
            assert_eq!(frame.capture, start + Duration::from_millis(20 * n));
            assert_eq!(frame.samples.len(), 960);
        }
    }

    #[test]
    fn tone_is_phase_continuous_and_matches_the_ideal_sine() {
        let start = Instant::now();
        let format = AudioFormat {
            channels: Channels::Mono,
            frame: FrameDuration::Ms10,
        };
        let mut tone = Tone::new(format, 997.3, 0.8, start);
        let mut frame = AudioFrame::silent(format, start);
        let mut all = Vec::new();
        for _ in 0..50 {
            tone.read(start, &mut frame).unwrap();
            all.extend_from_slice(&frame.samples);
        }
        let peak = 0.8 * f64::from(i16::MAX);
        for (k, &s) in all.iter().enumerate() {
            let ideal = peak * (TAU * f64::from(997.3f32) * k as f64 / 48_000.0).sin();
            assert!(
                (f64::from(s) - ideal).abs() <= 1.0,
                "sample {k}: {s} vs {ideal}"
            );
        }
        assert_eq!(all.iter().map(|s| s.unsigned_abs()).max(), Some(26_214));
    }

    #[test]
    fn phase_stays_exact_after_hours() {
        let tone = Tone::new(MONO20, 1000.0, 1.0, Instant::now());
        // 1 kHz at 48 kHz repeats every 48 samples; five hours in it must still.
        let k = 5 * 3600 * 48_000u64;
        for i in 0..48 {
            assert_eq!(tone.sample(k + i), tone.sample(i));
        }
    }

    #[test]
    fn stereo_carries_the_same_signal_on_both_channels() {
        let start = Instant::now();
        let format = AudioFormat {
            channels: Channels::Stereo,
            frame: FrameDuration::Ms20,
        };
        let mut tone = Tone::new(format, 440.0, 0.5, start);
        let mut frame = AudioFrame::silent(MONO20, start);
        tone.read(start, &mut frame).unwrap();
        assert_eq!(frame.format, format);
        assert_eq!(frame.samples.len(), 1920);
        assert!(frame.samples.chunks_exact(2).all(|c| c[0] == c[1]));
        assert!(frame.samples.iter().any(|&s| s != 0));
    }

    #[test]
    fn silence_is_zero_and_out_of_range_settings_are_clamped() {
        let start = Instant::now();
        let mut silence = Silence::new(MONO20, start);
        let mut frame = AudioFrame::silent(MONO20, start);
        frame.samples.fill(7);
        silence.read(start, &mut frame).unwrap();
        silence.read(start, &mut frame).unwrap();
        assert_eq!(frame.seq, 1);
        assert_eq!(frame.capture, start + Duration::from_millis(20));
        assert!(frame.samples.iter().all(|&s| s == 0));

        let loud = Tone::new(MONO20, 12_000.0, 5.0, start);
        assert_eq!(loud.sample(1), i16::MAX);
        assert_eq!(Tone::new(MONO20, f32::NAN, 0.5, start).freq_hz(), 0.0);
        assert_eq!(Tone::new(MONO20, 1e9, 0.5, start).freq_hz(), 24_000.0);
    }
}
