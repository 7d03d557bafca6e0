//! Audio anchored to the wall clock: the sample that plays at wall time `t` is known from `t`.
//!
//! An [`AnchoredSignal`] is a function of the sample index on the wall clock ([`WallClock`]:
//! 48 kHz samples since 1970). An [`AnchoredSource`] plays it, so whoever receives the audio,
//! in this process or another on the same clock, can rebuild what the source played at any
//! instant and align what it hears against it: mouth-to-ear latency from the signal itself
//! (see [`MouthToEar`](crate::measure::mouth::MouthToEar)).
//!
//! Two signals are built in: the speech sample looped ([`Speech`]) and a tone that carries a
//! chirp at the start of every wall-clock second ([`MarkedTone`]); a pure tone repeats every
//! period and could not be aligned, the chirp can.
//!
//! ```
//! use std::time::Instant;
//! use duet_media::audio::anchor::{AnchoredSource, MarkedTone, WallClock};
//! use duet_media::audio::AudioSource;
//! use duet_media::frame::{AudioFormat, AudioFrame, Channels, FrameDuration};
//!
//! let format = AudioFormat { channels: Channels::Mono, frame: FrameDuration::Ms20 };
//! let start = Instant::now();
//! let mut source = AnchoredSource::new(MarkedTone::new(440, 0.5), format, start);
//! let mut frame = AudioFrame::silent(format, start);
//! source.read(start, &mut frame)?;
//! // The first sample is the signal's sample at the wall-clock index of `start`.
//! let k = WallClock::now().sample_at(start);
//! let mut expected = [0i16; 1];
//! MarkedTone::new(440, 0.5).fill(k, &mut expected);
//! use duet_media::audio::anchor::AnchoredSignal;
//! assert!((i32::from(frame.samples[0]) - i32::from(expected[0])).abs() < 2_000);
//! # Ok::<(), duet_media::Error>(())
//! ```

use std::f64::consts::TAU;
use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::audio::AudioSource;
use crate::error::Error;
use crate::frame::{AudioFormat, AudioFrame, Read, SAMPLE_RATE};

/// The built-in speech sample: about 10 s of synthetic English, 48 kHz mono, 16-bit WAV.
pub const SPEECH_WAV: &[u8] = include_bytes!("../../testdata/speech-48k-mono.wav");

/// Frequency of the marked tone duet's tone source plays, Hz.
pub const TONE_HZ: u32 = 440;

const RATE: u128 = SAMPLE_RATE as u128;

/// The link between this process's monotonic clock and the wall clock, taken once.
///
/// Every process on a machine reads the same wall clock, so two of them that each take a
/// `WallClock` agree on the index of the sample playing at any moment (to a few microseconds).
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    at: Instant,
    unix: Duration,
}

impl WallClock {
    /// Reads both clocks now.
    pub fn now() -> Self {
        Self {
            at: Instant::now(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    /// The index of the sample that plays at `t`: 48 kHz samples since 1970, rounded down.
    pub fn sample_at(&self, t: Instant) -> u64 {
        let unix = match t.checked_duration_since(self.at) {
            Some(after) => self.unix + after,
            None => self.unix.saturating_sub(self.at - t),
        };
        (unix.as_nanos() * RATE / 1_000_000_000) as u64
    }
}

/// A signal defined on the wall clock's sample index.
pub trait AnchoredSignal: Send + Sync {
    /// A short name for reports (`speech`, `tone`).
    fn name(&self) -> &'static str;

    /// Fills `out` with the samples at indices `first`, `first + 1`, ...
    fn fill(&self, first: u64, out: &mut [i16]);
}

/// A recording played in a loop: the sample at index `k` is `clip[k mod len]`.
#[derive(Debug, Clone)]
pub struct Speech {
    clip: Arc<[i16]>,
}

impl Speech {
    /// The built-in speech sample ([`SPEECH_WAV`]).
    pub fn builtin() -> Result<Self, Error> {
        let reader = hound::WavReader::new(Cursor::new(SPEECH_WAV))
            .map_err(|e| Error::Config(format!("the built-in speech sample: {e}")))?;
        let samples = reader
            .into_samples::<i16>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::Config(format!("the built-in speech sample: {e}")))?;
        Self::from_samples(samples)
    }

    /// A loop of `clip` (48 kHz mono); an empty clip is refused.
    pub fn from_samples(clip: Vec<i16>) -> Result<Self, Error> {
        if clip.is_empty() {
            return Err(Error::Config("an anchored clip needs samples".into()));
        }
        Ok(Self { clip: clip.into() })
    }

    /// Length of one pass, samples.
    pub fn len(&self) -> usize {
        self.clip.len()
    }

    /// Never true: a clip has samples.
    pub fn is_empty(&self) -> bool {
        self.clip.is_empty()
    }
}

impl AnchoredSignal for Speech {
    fn name(&self) -> &'static str {
        "speech"
    }

    fn fill(&self, first: u64, out: &mut [i16]) {
        let len = self.clip.len();
        let mut at = (first % len as u64) as usize;
        let mut done = 0;
        while done < out.len() {
            let n = (len - at).min(out.len() - done);
            out[done..done + n].copy_from_slice(&self.clip[at..at + n]);
            done += n;
            at = 0;
        }
    }
}

/// Length of the chirp that opens every wall-clock second, samples (100 ms).
pub const MARK_SAMPLES: u64 = SAMPLE_RATE as u64 / 10;
/// How far the chirp sweeps above the tone, Hz; with a 100 ms chirp the sweep adds a whole
/// number of cycles, so the tone goes on in phase after it.
const SWEEP_HZ: f64 = 2000.0;

/// A tone in whole hertz whose first 100 ms of every wall-clock second sweep up by 2 kHz and
/// back: a periodic signal that still aligns, once a second.
#[derive(Debug, Clone, Copy)]
pub struct MarkedTone {
    freq_hz: f64,
    peak: f64,
}

impl MarkedTone {
    /// A tone of `freq_hz` (at most 20 kHz) at `amplitude` times full scale (clamped to 0..=1).
    pub fn new(freq_hz: u32, amplitude: f32) -> Self {
        let amplitude = if amplitude.is_finite() {
            f64::from(amplitude).clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            freq_hz: f64::from(freq_hz.min(20_000)),
            peak: amplitude * f64::from(i16::MAX),
        }
    }

    fn sample(&self, k: u64) -> i16 {
        let rate = f64::from(SAMPLE_RATE);
        // Whole seconds hold whole cycles of a whole-hertz tone: only the offset counts.
        let n = k % u64::from(SAMPLE_RATE);
        let t = n as f64 / rate;
        let cycles = if n < MARK_SAMPLES {
            // Up then down: the frequency rises linearly to +2 kHz at mid-mark and comes back.
            let half = MARK_SAMPLES as f64 / 2.0 / rate;
            let slope = SWEEP_HZ / half;
            if t < half {
                self.freq_hz * t + slope * t * t / 2.0
            } else {
                let u = t - half;
                self.freq_hz * t + slope * half * half / 2.0 + SWEEP_HZ * u - slope * u * u / 2.0
            }
        } else {
            // The sweep added SWEEP_HZ * 0.1 s / 2 = 100 whole cycles.
            self.freq_hz * t
        };
        (self.peak * (TAU * cycles.fract()).sin()).round() as i16
    }
}

impl AnchoredSignal for MarkedTone {
    fn name(&self) -> &'static str {
        "tone"
    }

    fn fill(&self, first: u64, out: &mut [i16]) {
        for (i, s) in out.iter_mut().enumerate() {
            *s = self.sample(first + i as u64);
        }
    }
}

/// Plays an [`AnchoredSignal`]: frame `n` is captured at `start + n` frame durations and carries
/// the signal's samples at the wall-clock indices of that instant on. Not paced, like the
/// other synthetic sources.
pub struct AnchoredSource {
    signal: Arc<dyn AnchoredSignal>,
    format: AudioFormat,
    start: Instant,
    first: u64,
    next_seq: u64,
}

impl std::fmt::Debug for AnchoredSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnchoredSource")
            .field("signal", &self.signal.name())
            .field("format", &self.format)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl AnchoredSource {
    /// A source of `signal` in `format` whose first frame is captured at `start`.
    pub fn new(signal: impl AnchoredSignal + 'static, format: AudioFormat, start: Instant) -> Self {
        Self::shared(Arc::new(signal), format, start)
    }

    /// The same, for a signal shared with others (a receiver aligning against it).
    pub fn shared(signal: Arc<dyn AnchoredSignal>, format: AudioFormat, start: Instant) -> Self {
        Self {
            signal,
            format,
            start,
            first: WallClock::now().sample_at(start),
            next_seq: 0,
        }
    }
}

impl AudioSource for AnchoredSource {
    fn format(&self) -> AudioFormat {
        self.format
    }

    fn read(&mut self, _now: Instant, frame: &mut AudioFrame) -> Result<Read, Error> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let spc = self.format.frame.samples_per_channel();
        let channels = self.format.channels.count();
        frame.format = self.format;
        frame.samples.resize(self.format.samples_per_frame(), 0);
        frame.seq = seq;
        frame.capture = self.start + self.format.frame.duration() * seq as u32;
        self.signal
            .fill(self.first + seq * spc as u64, &mut frame.samples[..spc]);
        if channels > 1 {
            // Spread the mono samples out from the back, so none is overwritten before it moves.
            for i in (0..spc).rev() {
                let s = frame.samples[i];
                frame.samples[i * channels..(i + 1) * channels].fill(s);
            }
        }
        Ok(Read::Frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Channels, FrameDuration};

    #[test]
    fn two_clocks_agree_on_the_sample_index() {
        let (a, b) = (WallClock::now(), WallClock::now());
        let t = Instant::now() + Duration::from_millis(250);
        // Read a few microseconds apart: at most a sample or two between them.
        assert!(a.sample_at(t).abs_diff(b.sample_at(t)) <= 2);
        let later = a.sample_at(t + Duration::from_millis(10));
        assert_eq!(later - a.sample_at(t), 480);
    }

    #[test]
    fn the_source_plays_the_signal_at_the_wall_clock_index_of_each_capture() {
        let format = AudioFormat {
            channels: Channels::Stereo,
            frame: FrameDuration::Ms20,
        };
        let tone = MarkedTone::new(440, 0.5);
        let start = Instant::now();
        let mut source = AnchoredSource::new(tone, format, start);
        let mut frame = AudioFrame::silent(format, start);
        let clock = WallClock::now();
        for n in 0..3u64 {
            source.read(start, &mut frame).unwrap();
            assert_eq!(frame.seq, n);
            assert_eq!(frame.capture, start + Duration::from_millis(20 * n));
            let k = clock.sample_at(frame.capture);
            let mut expected = vec![0; 960];
            // The two clocks were read microseconds apart: within a sample.
            let found = (0..3).any(|d| {
                tone.fill(k + d - 1, &mut expected);
                frame
                    .samples
                    .chunks_exact(2)
                    .zip(&expected)
                    .all(|(c, &e)| c[0] == e && c[1] == e)
            });
            assert!(
                found,
                "frame {n} does not carry the signal at its capture time"
            );
        }
    }

    #[test]
    fn the_tone_is_continuous_across_the_mark_and_the_second() {
        let tone = MarkedTone::new(440, 1.0);
        let mut s = vec![0; 3 * SAMPLE_RATE as usize];
        tone.fill(7 * u64::from(SAMPLE_RATE) - 100, &mut s);
        // A 2.44 kHz sine at full scale moves at most ~10,500 per sample; a jump would be more.
        let steepest = s
            .windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap();
        assert!(steepest < 11_000, "{steepest}");
        // Outside the mark it is the plain tone.
        let mut plain = [0; 480];
        tone.fill(u64::from(SAMPLE_RATE) * 3 + 24_000, &mut plain);
        let ideal = |i: usize| {
            (f64::from(i16::MAX) * (TAU * 440.0 * (0.5 + i as f64 / 48_000.0)).sin()).round()
        };
        assert!(plain
            .iter()
            .enumerate()
            .all(|(i, &x)| (f64::from(x) - ideal(i)).abs() <= 1.0));
    }

    #[test]
    fn speech_loops_on_the_wall_clock() {
        let speech = Speech::from_samples((0..100).collect()).unwrap();
        let mut out = [0; 5];
        speech.fill(1_000_098, &mut out);
        assert_eq!(out, [98, 99, 0, 1, 2]);
        assert!(Speech::from_samples(Vec::new()).is_err());
        let builtin = Speech::builtin().unwrap();
        assert!(builtin.len() > 5 * SAMPLE_RATE as usize);
    }
}
