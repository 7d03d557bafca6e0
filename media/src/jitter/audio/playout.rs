//! The receiving end of a call's audio: jitter buffer, Opus decoder and time-stretcher, pulled
//! by the playout device.

use std::time::{Duration, Instant};

use super::stretch::TimeStretcher;
use super::{
    frame_duration, samples_to_duration, AudioJitterBuffer, AudioJitterConfig, AudioJitterStats,
    Playout, Stretch,
};
use crate::codec::opus::{OpusDecoder, OpusDecoderStats};
use crate::error::Error;
use crate::frame::{AudioFormat, AudioFrame};
use crate::rtp::RtpPacket;

/// A concealed frame whose every sample is within this (-60 dBFS) is silent.
const SILENT_PEAK: i16 = 32;

/// Audio kept decoded ahead of the device, at most: two frames of 60 ms, stereo, plus room
/// for a stretch and a device period.
const QUEUE_CAPACITY: usize = 4 * 2880 * 2;

/// Turns received Opus RTP packets into PCM for the playout device.
///
/// It owns an [`AudioJitterBuffer`], an [`OpusDecoder`] and a time-stretcher. The device (or
/// its shell) calls [`pull`](Self::pull) for each period it plays, typically 10 ms; packets go
/// in through [`insert`](Self::insert) as they arrive. A frame is decoded when the audio
/// queued runs short; a lost frame is rebuilt from the next packet's FEC when it is there and
/// concealed otherwise; the delay is moved towards the buffer's target by removing or
/// repeating pitch periods, cross-faded, so the output never jumps. Once its queue has grown
/// to the largest frame, a pull allocates nothing.
#[derive(Debug)]
pub struct AudioPlayout {
    buffer: AudioJitterBuffer,
    decoder: OpusDecoder,
    stretcher: TimeStretcher,
    frame: AudioFrame,
    /// Decoded audio not played yet: `queue[head..]`, interleaved.
    queue: Vec<i16>,
    head: usize,
    channels: usize,
}

impl AudioPlayout {
    /// Creates the playout of one incoming stream; `now` is any instant before the first packet.
    pub fn new(config: AudioJitterConfig, now: Instant) -> Result<Self, Error> {
        let format = AudioFormat {
            channels: config.channels,
            frame: config.frame,
        };
        let buffer = AudioJitterBuffer::new(config, now)?;
        let decoder = OpusDecoder::new(format)?;
        let frame = AudioFrame::silent(
            AudioFormat {
                channels: config.channels,
                frame: crate::frame::FrameDuration::Ms60,
            },
            now,
        );
        Ok(Self {
            buffer,
            decoder,
            stretcher: TimeStretcher::default(),
            frame,
            queue: Vec::with_capacity(QUEUE_CAPACITY),
            head: 0,
            channels: config.channels.count(),
        })
    }

    /// Takes in a packet received at `now` (see [`AudioJitterBuffer::insert`]).
    pub fn insert(&mut self, now: Instant, packet: RtpPacket) {
        self.buffer.insert(now, packet);
    }

    /// Fills `out` (interleaved, the configured channels; a whole number of sample frames) with
    /// the next audio to play.
    ///
    /// Call once per device period (10 ms is usual; periods no longer than a frame keep the
    /// delay measure steady), with `now` the time of the call. It decodes a frame each time
    /// less than `out` remains queued. Silence until the first packets have built up the
    /// target delay.
    pub fn pull(&mut self, now: Instant, out: &mut [i16]) {
        while self.queued() < out.len() {
            self.produce(now, out.len() - self.queued());
        }
        let end = self.head + out.len();
        if let Some(src) = self.queue.get(self.head..end) {
            out.copy_from_slice(src);
        }
        self.head = end.min(self.queue.len());
    }

    /// Takes in a RED payload received at `now` (see [`AudioJitterBuffer::insert_red`]).
    pub fn insert_red(&mut self, now: Instant, packet: RtpPacket) {
        self.buffer.insert_red(now, packet);
    }

    /// The jitter buffer.
    pub fn buffer(&self) -> &AudioJitterBuffer {
        &self.buffer
    }

    /// The jitter buffer's counters, with concealment and time-stretching as they happened.
    pub fn stats(&self) -> AudioJitterStats {
        self.buffer.stats()
    }

    /// The decoder's counters.
    pub fn decoder_stats(&self) -> OpusDecoderStats {
        self.decoder.stats()
    }

    /// The delay the buffer aims at ([`AudioJitterBuffer::target_delay`]).
    pub fn target_delay(&self) -> Duration {
        self.buffer.target_delay()
    }

    /// The delay held now: the buffer's ([`AudioJitterBuffer::current_delay`]).
    pub fn current_delay(&self) -> Duration {
        self.buffer.current_delay()
    }

    /// Decoded audio waiting for the device.
    pub fn queued_duration(&self) -> Duration {
        samples_to_duration((self.queued() / self.channels) as u64)
    }

    fn queued(&self) -> usize {
        self.queue.len() - self.head
    }

    /// Appends the next frame (or two) to the queue, or, before playout starts, the `needed`
    /// samples of silence (so that playout can start at the next pull).
    fn produce(&mut self, now: Instant, needed: usize) {
        if self.head > 0 {
            self.queue.copy_within(self.head.., 0);
            self.queue.truncate(self.queue.len() - self.head);
            self.head = 0;
        }
        let start = self.queue.len();
        self.sync_decoder();
        // What is popped now plays once the audio already queued has: that is when the buffer
        // must reckon it is needed, or the queue's remainder (0 to 20 ms, set by the last
        // time-stretch) would add to every delay the buffer holds without its knowing.
        let plays_at = now + samples_to_duration((start / self.channels) as u64);
        match self.buffer.pop(plays_at) {
            Playout::Silence { samples } => {
                let frames = samples.min(needed.div_ceil(self.channels).max(1));
                self.queue.resize(start + frames * self.channels, 0);
            }
            Playout::Conceal { .. } => self.conceal(),
            Playout::Decode { packet, stretch } => {
                self.decode(&packet);
                self.stretch(start, stretch);
            }
            Playout::Recover { next } => {
                let before = self.decoder.stats().fec_recovered;
                let recovered = self.decoder.recover(&next.payload, &mut self.frame);
                if self.decoder.stats().fec_recovered == before {
                    self.buffer.report_fec_missing();
                }
                match recovered {
                    // Without FEC in `next` the decoder conceals the lost frame.
                    Ok(()) => {
                        if self.decoder.stats().fec_recovered == before {
                            self.note_silence();
                        }
                        self.queue.extend_from_slice(&self.frame.samples);
                    }
                    Err(_) => self.conceal(),
                }
                self.decode(&next);
            }
        }
    }

    fn decode(&mut self, packet: &RtpPacket) {
        match self.decoder.decode(&packet.payload, &mut self.frame) {
            Ok(()) => self.queue.extend_from_slice(&self.frame.samples),
            Err(_) => {
                self.buffer.report_concealed(self.buffer.frame_samples());
                self.conceal();
            }
        }
    }

    fn conceal(&mut self) {
        let n = self.buffer.frame_samples() * self.channels;
        if self.decoder.conceal(&mut self.frame).is_err() || self.frame.samples.len() != n {
            self.frame.samples.clear();
            self.frame.samples.resize(n, 0);
        }
        self.note_silence();
        self.queue.extend_from_slice(&self.frame.samples);
    }

    /// Counts the concealed frame in `self.frame` as silent if it is.
    fn note_silence(&mut self) {
        let silent = self
            .frame
            .samples
            .iter()
            .all(|s| s.unsigned_abs() <= SILENT_PEAK.unsigned_abs());
        if silent {
            let per_channel = self.frame.samples.len() / self.channels.max(1);
            self.buffer.report_silent_concealed(per_channel);
        }
    }

    /// Applies `stretch` to the unplayed audio from `start` on; at most half a frame changes.
    fn stretch(&mut self, start: usize, stretch: Stretch) {
        let half = self.buffer.frame_samples() / 2;
        let (ch, from) = (self.channels, self.head.min(start));
        let change = match stretch {
            Stretch::Normal => 0,
            Stretch::Accelerate => {
                -(self
                    .stretcher
                    .accelerate(&mut self.queue, from, ch, half, 1) as i64)
            }
            Stretch::FastAccelerate => {
                -(self
                    .stretcher
                    .accelerate(&mut self.queue, from, ch, half, usize::MAX)
                    as i64)
            }
            Stretch::Decelerate => {
                self.stretcher.decelerate(&mut self.queue, from, ch, half) as i64
            }
        };
        if change != 0 {
            self.buffer.report_time_stretch(change);
        }
    }

    /// Rebuilds the decoder when the frame size of the stream changes.
    fn sync_decoder(&mut self) {
        let samples = self.buffer.frame_samples();
        if self.decoder.format().frame.samples_per_channel() == samples {
            return;
        }
        if let Some(frame) = frame_duration(samples) {
            let format = AudioFormat {
                frame,
                ..self.decoder.format()
            };
            if let Ok(decoder) = OpusDecoder::new(format) {
                self.decoder = decoder;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::synth::Tone;
    use crate::audio::AudioSource;
    use crate::codec::opus::{OpusConfig, OpusEncoder};
    use crate::frame::{Channels, FrameDuration};
    use crate::jitter::audio::AudioJitterStats;

    /// 20 s of a 330 Hz tone in 20 ms Opus packets, pulled every 10 ms; packet k arrives
    /// `late(k)` ms after its time. Returns the playout's counters.
    fn play_with_lateness(late: impl Fn(u64) -> u64) -> AudioJitterStats {
        let format = AudioFormat {
            channels: Channels::Mono,
            frame: FrameDuration::Ms20,
        };
        let start = Instant::now();
        let mut tone = Tone::new(format, 330.0, 0.4, start);
        let mut encoder = OpusEncoder::new(OpusConfig::voice(format)).unwrap();
        let mut frame = AudioFrame::silent(format, start);
        let mut payload = Vec::new();
        let mut playout = AudioPlayout::new(AudioJitterConfig::new(format), start).unwrap();
        let mut out = [0i16; 480];
        let mut pending: Vec<(Duration, RtpPacket)> = Vec::new();
        for tick in 0..2000u64 {
            let now = Duration::from_millis(10 * tick);
            if tick % 2 == 0 {
                let k = tick / 2;
                tone.read(start, &mut frame).unwrap();
                encoder.encode(&frame, &mut payload).unwrap();
                let packet = RtpPacket {
                    seq: k as u16,
                    timestamp: (k * 960) as u32,
                    ssrc: 9,
                    marker: false,
                    payload_type: 111,
                    payload: payload.clone().into(),
                };
                pending.push((now + Duration::from_millis(late(k)), packet));
            }
            pending.sort_by_key(|(at, _)| *at);
            while pending.first().is_some_and(|(at, _)| *at <= now) {
                let (at, packet) = pending.remove(0);
                playout.insert(start + at, packet);
            }
            playout.pull(start + now, &mut out);
        }
        playout.stats()
    }

    #[test]
    fn a_sender_late_now_and_then_is_concealed_once_not_each_time() {
        // One packet in a hundred is 30 ms late (fewer than the 5 % the target's percentile
        // lets go, packet by packet), as a browser's capture thread on a busy machine sends:
        // after the first, the target keeps room for them.
        let s = play_with_lateness(|k| if k % 100 == 50 { 30 } else { 0 });
        assert!(s.concealment_events <= 1, "{s:?}");
        let ratio = s.concealed_samples as f64 / s.total_samples_received as f64;
        assert!(ratio < 0.002, "{ratio}: {s:?}");
        // A steady sender is never concealed.
        let s = play_with_lateness(|_| 0);
        assert_eq!(s.concealed_samples, 0, "{s:?}");
    }

    #[test]
    fn pulls_stop_allocating_once_warmed_up() {
        let format = AudioFormat {
            channels: Channels::Stereo,
            frame: FrameDuration::Ms20,
        };
        let start = Instant::now();
        let mut tone = Tone::new(format, 330.0, 0.4, start);
        let mut encoder = OpusEncoder::new(OpusConfig::voice(format)).unwrap();
        let mut frame = AudioFrame::silent(format, start);
        let mut payload = Vec::new();
        let mut playout = AudioPlayout::new(AudioJitterConfig::new(format), start).unwrap();
        let mut out = [0i16; 960];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut pending: Vec<(Duration, RtpPacket)> = Vec::new();
        let mut snapshot = None;
        // 20 s: packets every 20 ms with 0-40 ms of jitter and 3% loss, pulled every 10 ms.
        for tick in 0..2000u64 {
            let now = Duration::from_millis(10 * tick);
            if tick % 2 == 0 {
                tone.read(start, &mut frame).unwrap();
                encoder.encode(&frame, &mut payload).unwrap();
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let k = tick / 2;
                if rng % 100 >= 3 {
                    let packet = RtpPacket {
                        seq: k as u16,
                        timestamp: (k * 960) as u32,
                        ssrc: 9,
                        marker: false,
                        payload_type: 111,
                        payload: payload.clone().into(),
                    };
                    pending.push((now + Duration::from_millis(rng % 41), packet));
                }
            }
            pending.sort_by_key(|(at, _)| *at);
            while pending.first().is_some_and(|(at, _)| *at <= now) {
                let (at, packet) = pending.remove(0);
                playout.insert(start + at, packet);
            }
            playout.pull(start + now, &mut out);
            let state = (
                playout.queue.capacity(),
                playout.queue.as_ptr(),
                playout.frame.samples.as_ptr(),
                playout.stretcher.capacity(),
                playout.buffer.capacities(),
            );
            if tick == 500 {
                snapshot = Some(state);
            } else if tick > 500 {
                assert_eq!(Some(state), snapshot, "grew at {} ms", 10 * tick);
            }
        }
        let s = playout.stats();
        assert!(s.removed_samples_for_acceleration + s.inserted_samples_for_deceleration > 0);
        assert!(s.concealed_samples > 0 && s.jitter_buffer_emitted_count > 900 * 960);
        assert_eq!(playout.decoder_stats().errors, 0);
        assert!(s.silent_concealed_samples <= s.concealed_samples);
        assert!(s.jitter_buffer_minimum_delay > 0.0);
        assert!(s.jitter_buffer_minimum_delay <= s.jitter_buffer_target_delay);
    }

    #[test]
    fn concealment_of_silence_is_silent_and_of_a_tone_is_not() {
        let format = AudioFormat {
            channels: Channels::Mono,
            frame: FrameDuration::Ms20,
        };
        let start = Instant::now();
        let mut tone = Tone::new(format, 330.0, 0.4, start);
        let mut encoder = OpusEncoder::new(OpusConfig::voice(format)).unwrap();
        let mut frame = AudioFrame::silent(format, start);
        let mut payload = Vec::new();
        let mut playout = AudioPlayout::new(AudioJitterConfig::new(format), start).unwrap();
        let mut out = [0i16; 480];
        // 2 s of silence, then 2 s of tone; five frames lost in each.
        let lost = |k: u64| (50..55).contains(&k) || (150..155).contains(&k);
        let mut in_silence = None;
        for tick in 0..400u64 {
            let now = start + Duration::from_millis(10 * tick);
            if tick % 2 == 0 {
                let k = tick / 2;
                if k < 100 {
                    frame.samples.fill(0);
                } else {
                    tone.read(start, &mut frame).unwrap();
                }
                encoder.encode(&frame, &mut payload).unwrap();
                if !lost(k) {
                    playout.insert(
                        now,
                        RtpPacket {
                            seq: k as u16,
                            timestamp: (k * 960) as u32,
                            ssrc: 9,
                            marker: false,
                            payload_type: 111,
                            payload: payload.clone().into(),
                        },
                    );
                }
            }
            playout.pull(now, &mut out);
            if tick == 199 {
                in_silence = Some(playout.stats());
            }
        }
        let before = in_silence.unwrap();
        assert_eq!(before.concealed_samples, 5 * 960, "{before:?}");
        assert_eq!(before.silent_concealed_samples, 5 * 960, "{before:?}");
        let s = playout.stats();
        // The tone's lost frames (one perhaps rebuilt from FEC) are concealed, and sound.
        assert!(
            s.concealed_samples >= before.concealed_samples + 3 * 960,
            "{s:?}"
        );
        assert_eq!(
            s.silent_concealed_samples, before.silent_concealed_samples,
            "{s:?}"
        );
    }
}
