//! Audio processing on the microphone path: acoustic echo cancellation, noise suppression,
//! automatic gain control and a high-pass filter, in 10 ms chunks at 48 kHz.
//!
//! The work is done by [sonora], a Rust port of WebRTC's audio processing module: AEC3 with
//! its own render-to-capture delay estimation, WebRTC's noise suppressor, AGC2's adaptive
//! digital gain. This module fits it to duet's threads:
//!
//! ```text
//!  playout thread:  frame for the speaker -> EchoReference::push -> lock-free ring -\
//!  capture thread:  microphone frame -> AudioProcessor::process (drains the ring into the
//!                   echo canceller's render side, then cleans the frame) -> encoder
//! ```
//!
//! A microphone that knows when its own speaker plays each sample (the simulated room of
//! [`crate::audio::speakerphone`]) feeds the ring itself, with what it plays as it plays it
//! ([`AudioSource::feed_echo_reference`]); [`process_path`] hands it the reference.
//!
//! Neither side allocates, locks or logs per frame: buffers are sized when the pair is made,
//! the two sides meet only through a single-producer single-consumer ring (ringbuf) and the
//! figures the stage reports ([`ProcessingStats`]) live in atomics any thread can read through
//! a [`ProcessingMonitor`].
//!
//! **Clock drift.** The speaker and the microphone rarely share a clock, so the render side
//! delivers a little more or a little less than the capture side consumes. The capture side
//! hands every whole render chunk waiting in the ring to the echo canceller before each capture
//! chunk, as WebRTC does, so nothing accumulates between the two; AEC3's delay estimator follows
//! the slowly moving echo delay that drift causes. If the capture side stops for a while (a
//! muted microphone), the ring keeps only the newest [`MAX_RENDER_BACKLOG`] and counts the rest
//! as dropped.
//!
//! ```
//! use duet_media::audio::process::{audio_processing, ProcessingConfig, CHUNK};
//! use duet_media::Channels;
//!
//! let (mut reference, mut processor) = audio_processing(ProcessingConfig::VOICE, Channels::Mono)?;
//! let far = vec![0.1f32; CHUNK];
//! let mut mic = vec![0.05f32; 2 * CHUNK];
//! reference.push_f32(&far); // what the speaker plays, on the playout thread
//! processor.process_f32(&mut mic)?; // the microphone, cleaned in place, on the capture thread
//! assert_eq!(processor.stats().capture_chunks, 2);
//! # Ok::<(), duet_media::Error>(())
//! ```
//!
//! [sonora]: https://docs.rs/sonora

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbuf::traits::{Consumer, Observer, Split};
use ringbuf::{HeapCons, HeapRb};
use sonora::config::{
    AdaptiveDigital, EchoCanceller, GainController2, HighPassFilter, NoiseSuppression,
    NoiseSuppressionLevel,
};
use sonora::{AudioProcessing, Config, StreamConfig};

pub use crate::audio::reference::{EchoReference, ProcessingMonitor, ProcessingStats};

use crate::audio::reference::Metrics;
use crate::audio::resample::{f32_to_i16, i16_to_f32};
use crate::audio::{AudioSink, AudioSource};
use crate::error::Error;
use crate::frame::{AudioFormat, AudioFrame, Channels, Read, SAMPLE_RATE};

/// Samples per channel in one processing chunk: 10 ms at 48 kHz.
pub const CHUNK: usize = (SAMPLE_RATE / 100) as usize;

/// The most render audio kept waiting for the capture side; older audio is dropped and counted.
pub const MAX_RENDER_BACKLOG: Duration = Duration::from_millis(300);

/// What the stage does. Each part can be switched on or off; the high-pass filter runs
/// whenever any part does (the echo canceller needs it, and it removes rumble and DC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessingConfig {
    /// Acoustic echo cancellation (AEC3): removes what the speaker played from the microphone.
    pub echo_cancellation: bool,
    /// Noise suppression: attenuates stationary background noise.
    pub noise_suppression: bool,
    /// Automatic gain control (AGC2 adaptive digital): brings speech to a steady level.
    pub gain_control: bool,
}

impl ProcessingConfig {
    /// Everything on: the setting for a microphone in a call.
    pub const VOICE: Self = Self {
        echo_cancellation: true,
        noise_suppression: true,
        gain_control: true,
    };

    /// Everything off: the frames pass unchanged.
    pub const OFF: Self = Self {
        echo_cancellation: false,
        noise_suppression: false,
        gain_control: false,
    };

    /// True when any part is on.
    pub fn is_active(&self) -> bool {
        self.echo_cancellation || self.noise_suppression || self.gain_control
    }

    /// The delay the stage adds to the microphone signal: 0 when it is off. Measured from the
    /// signal for each setting (a test cross-correlates the stage's output with its input):
    /// the echo canceller's band splitting and block framing cost about 9 ms, the noise
    /// suppressor's overlapping windows about 7 ms, the two together 15 ms.
    pub fn delay(&self) -> Duration {
        let samples = match (self.echo_cancellation, self.noise_suppression) {
            _ if !self.is_active() => 0,
            (true, true) => 729,
            (true, false) => 441,
            (false, true) => 345,
            // The high-pass filter and gain control alone.
            (false, false) => 45,
        };
        Duration::from_nanos(samples * 1_000_000_000 / u64::from(SAMPLE_RATE))
    }

    fn sonora(&self) -> Config {
        Config {
            high_pass_filter: Some(HighPassFilter::default()),
            echo_canceller: self.echo_cancellation.then(EchoCanceller::default),
            // 18 dB at most, the level browsers ask WebRTC for.
            noise_suppression: self.noise_suppression.then(|| NoiseSuppression {
                level: NoiseSuppressionLevel::High,
                ..NoiseSuppression::default()
            }),
            // Unity gain until the controller has heard the near end speak (WebRTC starts at
            // 15 dB): before that, all it could raise is noise and, while the echo canceller
            // is still converging, the far end's echo.
            gain_controller2: self.gain_control.then(|| GainController2 {
                adaptive_digital: Some(AdaptiveDigital {
                    initial_gain_db: 0.0,
                    ..AdaptiveDigital::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        Self::VOICE
    }
}

impl fmt::Display for ProcessingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "aec {}, ns {}, agc {}",
            on(self.echo_cancellation),
            on(self.noise_suppression),
            on(self.gain_control)
        )
    }
}

/// Makes the two sides of one processing stage for `channels`-channel 48 kHz audio: the
/// [`EchoReference`] for the thread that feeds the speaker and the [`AudioProcessor`] for the
/// thread that reads the microphone.
pub fn audio_processing(
    config: ProcessingConfig,
    channels: Channels,
) -> Result<(EchoReference, AudioProcessor), Error> {
    let n = channels.count();
    let capacity = samples_for(MAX_RENDER_BACKLOG, n) + 2 * CHUNK * n;
    let (producer, consumer) = HeapRb::<f32>::new(capacity).split();
    let metrics = Arc::new(Metrics::default());
    let apm = if config.is_active() {
        let stream = StreamConfig::new(SAMPLE_RATE, n as u16);
        Some(
            AudioProcessing::builder()
                .config(config.sonora())
                .capture_config(stream)
                .render_config(stream)
                .build(),
        )
    } else {
        None
    };
    let reference = EchoReference::new(producer, n, Arc::clone(&metrics));
    let processor = AudioProcessor {
        apm,
        config,
        ring: consumer,
        channels: n,
        max_backlog: samples_for(MAX_RENDER_BACKLOG, n),
        interleaved: vec![0.0; CHUNK * n],
        planar_in: vec![0.0; CHUNK * n],
        planar_out: vec![0.0; CHUNK * n],
        metrics,
    };
    Ok((reference, processor))
}

/// Whole chunks' worth of samples covering `d`.
fn samples_for(d: Duration, channels: usize) -> usize {
    let chunks = d.as_millis().div_ceil(10) as usize;
    chunks * CHUNK * channels
}

/// The capture side of a processing stage: it cleans microphone audio in place.
pub struct AudioProcessor {
    /// `None` when the stage is off: frames pass unchanged.
    apm: Option<AudioProcessing>,
    config: ProcessingConfig,
    ring: HeapCons<f32>,
    channels: usize,
    /// Render samples kept at most; older ones are dropped.
    max_backlog: usize,
    /// One interleaved chunk.
    interleaved: Vec<f32>,
    /// One chunk, channel after channel, in and out of sonora.
    planar_in: Vec<f32>,
    planar_out: Vec<f32>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for AudioProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioProcessor")
            .field("config", &self.config)
            .field("channels", &self.channels)
            .field("stats", &self.metrics.stats())
            .finish_non_exhaustive()
    }
}

/// Runs `f` with sonora's per-channel views of a planar buffer (mono or stereo).
fn with_channels<R>(
    input: &[f32],
    output: &mut [f32],
    channels: usize,
    f: impl FnOnce(&[&[f32]], &mut [&mut [f32]]) -> R,
) -> R {
    let (in0, in1) = input.split_at(CHUNK.min(input.len()));
    let (out0, out1) = output.split_at_mut(CHUNK.min(output.len()));
    if channels == 1 {
        f(&[in0], &mut [out0])
    } else {
        f(&[in0, in1], &mut [out0, out1])
    }
}

impl AudioProcessor {
    /// The settings the stage runs with.
    pub fn config(&self) -> ProcessingConfig {
        self.config
    }

    /// The delay the stage adds to the microphone signal.
    pub fn delay(&self) -> Duration {
        self.config.delay()
    }

    /// The stage's figures as they are now.
    pub fn stats(&self) -> ProcessingStats {
        self.metrics.stats()
    }

    /// Reads the stage's figures from any thread.
    pub fn monitor(&self) -> ProcessingMonitor {
        ProcessingMonitor(Arc::clone(&self.metrics))
    }

    /// Cleans a 48 kHz microphone frame in place. Its length must be a whole number of
    /// 10 ms chunks (every duet frame duration is) and its channel count the stage's.
    pub fn process(&mut self, frame: &mut AudioFrame) -> Result<(), Error> {
        self.check(frame.format.channels.count(), frame.samples.len())?;
        if self.apm.is_none() {
            self.drain_render();
            return Ok(());
        }
        let step = CHUNK * self.channels;
        for chunk in frame.samples.chunks_exact_mut(step) {
            for (f, &s) in self.interleaved.iter_mut().zip(chunk.iter()) {
                *f = i16_to_f32(s);
            }
            self.process_chunk()?;
            for (s, &f) in chunk.iter_mut().zip(self.interleaved.iter()) {
                *s = f32_to_i16(f);
            }
        }
        Ok(())
    }

    /// Cleans interleaved samples (full scale ±1.0) in place; the length must be a whole
    /// number of 10 ms chunks at the stage's channel count.
    pub fn process_f32(&mut self, samples: &mut [f32]) -> Result<(), Error> {
        self.check(self.channels, samples.len())?;
        if self.apm.is_none() {
            self.drain_render();
            return Ok(());
        }
        let step = CHUNK * self.channels;
        for chunk in samples.chunks_exact_mut(step) {
            self.interleaved.copy_from_slice(chunk);
            self.process_chunk()?;
            chunk.copy_from_slice(&self.interleaved);
        }
        Ok(())
    }

    fn check(&self, channels: usize, len: usize) -> Result<(), Error> {
        if channels != self.channels || !len.is_multiple_of(CHUNK * self.channels) {
            return Err(Error::Config(format!(
                "audio processing takes {}-channel audio in 10 ms chunks, got {channels} \
                 channel(s) and {len} samples",
                self.channels
            )));
        }
        Ok(())
    }

    /// Keeps the ring from filling while the stage is off.
    fn drain_render(&mut self) {
        let n = self.ring.occupied_len();
        self.ring.skip(n);
    }

    /// Feeds the echo canceller all whole render chunks waiting, then processes the capture
    /// chunk in `self.interleaved`.
    fn process_chunk(&mut self) -> Result<(), Error> {
        let Some(apm) = self.apm.as_mut() else {
            return Ok(());
        };
        let step = CHUNK * self.channels;
        let waiting = self.ring.occupied_len();
        if waiting > self.max_backlog {
            let excess = (waiting - self.max_backlog).div_ceil(step) * step;
            let dropped = self.ring.skip(excess);
            self.metrics
                .render_dropped
                .fetch_add(dropped as u64, Relaxed);
        }
        // The capture chunk waits in `interleaved`; render chunks go through `planar_out`
        // (interleaved) and `planar_in` (planar).
        while self.ring.occupied_len() >= step {
            let got = self.ring.pop_slice(&mut self.planar_out);
            if got < step {
                break;
            }
            if self.config.echo_cancellation {
                deinterleave(&self.planar_out, self.channels, &mut self.planar_in);
                let result = with_channels(
                    &self.planar_in,
                    &mut self.planar_out,
                    self.channels,
                    |src, dst| apm.process_render_f32(src, dst),
                );
                result.map_err(|e| Error::Config(format!("echo reference: {e}")))?;
                self.metrics.render_chunks.fetch_add(1, Relaxed);
            }
        }
        deinterleave(&self.interleaved, self.channels, &mut self.planar_in);
        let result = with_channels(
            &self.planar_in,
            &mut self.planar_out,
            self.channels,
            |src, dst| apm.process_capture_f32(src, dst),
        );
        result.map_err(|e| Error::Config(format!("audio processing: {e}")))?;
        interleave(&self.planar_out, self.channels, &mut self.interleaved);
        let m = &self.metrics;
        m.capture_chunks.fetch_add(1, Relaxed);
        let stats = apm.statistics();
        if let Some(erl) = stats.echo_return_loss {
            m.erl.store(erl.to_bits(), Relaxed);
        }
        if let Some(erle) = stats.echo_return_loss_enhancement {
            m.erle.store(erle.to_bits(), Relaxed);
        }
        if let Some(delay) = stats.delay_ms {
            m.delay_ms.store(i64::from(delay), Relaxed);
        }
        Ok(())
    }
}

/// A source whose frames go through the capture side of a processing stage: a microphone
/// with echo cancellation. Each frame's capture time is moved back by the stage's delay, so
/// latency measured from it includes the stage.
pub struct ProcessedSource {
    inner: Box<dyn AudioSource>,
    processor: AudioProcessor,
}

impl fmt::Debug for ProcessedSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessedSource")
            .field("processor", &self.processor)
            .finish_non_exhaustive()
    }
}

impl ProcessedSource {
    /// `inner`'s frames, cleaned by `processor` (made for `inner`'s channel count).
    pub fn new(inner: Box<dyn AudioSource>, processor: AudioProcessor) -> Self {
        Self { inner, processor }
    }

    /// Reads the stage's figures from any thread.
    pub fn monitor(&self) -> ProcessingMonitor {
        self.processor.monitor()
    }
}

impl AudioSource for ProcessedSource {
    fn format(&self) -> AudioFormat {
        self.inner.format()
    }

    fn read(&mut self, now: Instant, frame: &mut AudioFrame) -> Result<Read, Error> {
        let read = self.inner.read(now, frame)?;
        if read == Read::Frame && self.processor.config.is_active() {
            self.processor.process(frame)?;
            let delay = self.processor.delay();
            frame.capture = frame.capture.checked_sub(delay).unwrap_or(frame.capture);
        }
        Ok(read)
    }

    fn is_live(&self) -> bool {
        self.inner.is_live()
    }

    fn processing_delay(&self) -> Duration {
        if self.processor.config.is_active() {
            self.processor.delay()
        } else {
            Duration::ZERO
        }
    }
}

/// A sink that tells a processing stage's render side every frame it plays: a speaker whose
/// output the echo canceller removes from the microphone.
pub struct ReferencedSink {
    inner: Box<dyn AudioSink>,
    reference: EchoReference,
}

impl fmt::Debug for ReferencedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReferencedSink")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

impl ReferencedSink {
    /// `inner`, with every frame written also pushed to `reference`.
    pub fn new(inner: Box<dyn AudioSink>, reference: EchoReference) -> Self {
        Self { inner, reference }
    }
}

impl AudioSink for ReferencedSink {
    fn write(&mut self, now: Instant, frame: &AudioFrame) -> Result<(), Error> {
        self.reference.push(frame);
        self.inner.write(now, frame)
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.inner.finish()
    }
}

/// A call's audio path with its processing stage in place: see [`process_path`].
pub struct ProcessedPath {
    /// The source to encode from.
    pub source: Box<dyn AudioSource>,
    /// The sink to play into.
    pub sink: Box<dyn AudioSink>,
    /// The stage's figures; `None` when the stage is off.
    pub monitor: Option<ProcessingMonitor>,
}

impl fmt::Debug for ProcessedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessedPath")
            .field("monitor", &self.monitor)
            .finish_non_exhaustive()
    }
}

/// Puts a processing stage between `source` and the encoder and between the decoder and
/// `sink`, when `config` switches anything on; otherwise returns them as they are, with no
/// monitor. The echo reference is what `sink` is handed, unless `source` feeds it itself
/// ([`AudioSource::feed_echo_reference`]).
pub fn process_path(
    config: ProcessingConfig,
    source: Box<dyn AudioSource>,
    sink: Box<dyn AudioSink>,
) -> Result<ProcessedPath, Error> {
    if !config.is_active() {
        return Ok(ProcessedPath {
            source,
            sink,
            monitor: None,
        });
    }
    let mut source = source;
    let (reference, processor) = audio_processing(config, source.format().channels)?;
    // A microphone that knows when its speaker plays each sample feeds the reference itself;
    // otherwise it is fed with what is handed to the speaker.
    let sink: Box<dyn AudioSink> = match source.feed_echo_reference(reference) {
        None => sink,
        Some(reference) => Box::new(ReferencedSink::new(sink, reference)),
    };
    let source = ProcessedSource::new(source, processor);
    let monitor = source.monitor();
    Ok(ProcessedPath {
        source: Box::new(source),
        sink,
        monitor: Some(monitor),
    })
}

/// Interleaved to planar (channel after channel), one chunk.
fn deinterleave(src: &[f32], channels: usize, dst: &mut [f32]) {
    if channels == 1 {
        dst.copy_from_slice(src);
        return;
    }
    for (i, frame) in src.chunks_exact(channels).enumerate() {
        for (c, &s) in frame.iter().enumerate() {
            if let Some(d) = dst.get_mut(c * CHUNK + i) {
                *d = s;
            }
        }
    }
}

/// Planar to interleaved, one chunk.
fn interleave(src: &[f32], channels: usize, dst: &mut [f32]) {
    if channels == 1 {
        dst.copy_from_slice(src);
        return;
    }
    for (i, frame) in dst.chunks_exact_mut(channels).enumerate() {
        for (c, d) in frame.iter_mut().enumerate() {
            *d = src.get(c * CHUNK + i).copied().unwrap_or(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDuration;

    #[test]
    fn interleaving_round_trips() {
        let src: Vec<f32> = (0..2 * CHUNK).map(|i| i as f32).collect();
        let mut planar = vec![0.0; 2 * CHUNK];
        deinterleave(&src, 2, &mut planar);
        assert_eq!(planar[1], 2.0);
        assert_eq!(planar[CHUNK], 1.0);
        let mut back = vec![0.0; 2 * CHUNK];
        interleave(&planar, 2, &mut back);
        assert_eq!(back, src);
    }

    #[test]
    fn off_passes_frames_unchanged_and_drains_the_reference() {
        let (mut reference, mut processor) =
            audio_processing(ProcessingConfig::OFF, Channels::Mono).unwrap();
        let format = AudioFormat {
            channels: Channels::Mono,
            frame: FrameDuration::Ms20,
        };
        let mut frame = AudioFrame::silent(format, Instant::now());
        for (i, s) in frame.samples.iter_mut().enumerate() {
            *s = (i as i16).wrapping_mul(37);
        }
        let before = frame.clone();
        for _ in 0..100 {
            reference.push(&frame);
            processor.process(&mut frame).unwrap();
        }
        assert_eq!(frame, before);
        assert_eq!(processor.stats().render_dropped, 0);
        assert_eq!(processor.delay(), Duration::ZERO);
    }

    #[test]
    fn a_frame_that_is_not_whole_chunks_is_refused() {
        let (_reference, mut processor) =
            audio_processing(ProcessingConfig::VOICE, Channels::Mono).unwrap();
        let mut samples = vec![0.0; CHUNK + 1];
        let err = processor.process_f32(&mut samples).unwrap_err();
        assert!(err.to_string().contains("10 ms chunks"), "{err}");
        let mut stereo = AudioFrame::silent(
            AudioFormat {
                channels: Channels::Stereo,
                frame: FrameDuration::Ms10,
            },
            Instant::now(),
        );
        assert!(processor.process(&mut stereo).is_err());
    }

    #[test]
    fn a_stalled_capture_side_keeps_only_the_newest_render_audio() {
        let (mut reference, mut processor) =
            audio_processing(ProcessingConfig::VOICE, Channels::Mono).unwrap();
        let far = vec![0.1f32; CHUNK];
        // A second of render audio with no capture: the ring holds at most its capacity.
        for _ in 0..100 {
            reference.push_f32(&far);
        }
        let mut mic = vec![0.0f32; CHUNK];
        processor.process_f32(&mut mic).unwrap();
        let stats = processor.stats();
        let kept = samples_for(MAX_RENDER_BACKLOG, 1) as u64;
        assert_eq!(stats.render_dropped, 100 * CHUNK as u64 - kept);
        assert_eq!(stats.render_chunks, kept / CHUNK as u64);
        assert_eq!(stats.capture_chunks, 1);
    }

    #[test]
    fn stereo_frames_are_processed_and_mono_references_are_spread() {
        let (mut reference, mut processor) =
            audio_processing(ProcessingConfig::VOICE, Channels::Stereo).unwrap();
        let mono = AudioFrame::silent(
            AudioFormat {
                channels: Channels::Mono,
                frame: FrameDuration::Ms20,
            },
            Instant::now(),
        );
        reference.push(&mono);
        let mut stereo = AudioFrame::silent(
            AudioFormat {
                channels: Channels::Stereo,
                frame: FrameDuration::Ms20,
            },
            Instant::now(),
        );
        processor.process(&mut stereo).unwrap();
        let stats = processor.stats();
        assert_eq!(stats.render_chunks, 2);
        assert_eq!(stats.capture_chunks, 2);
    }
}
