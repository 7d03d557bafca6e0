//! The render side of an audio processing stage and the figures the stage shares with any
//! thread: what [`crate::audio::process`] builds on, and what a device that hears its own
//! speaker (a simulated room) can be handed to feed the echo canceller itself.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use ringbuf::traits::{Observer, Producer};
use ringbuf::HeapProd;

use crate::audio::resample::{i16_to_f32, remix_sample};
use crate::frame::AudioFrame;

/// What the stage reports. The echo figures are AEC3's own running estimates, the ones WebRTC
/// reports as `echoReturnLoss` and `echoReturnLossEnhancement`; `None` until the echo canceller
/// has produced them, or when it is off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessingStats {
    /// Echo return loss (dB): how much quieter the echo reaching the microphone is than what
    /// the speaker played, as estimated by the echo canceller.
    pub echo_return_loss: Option<f64>,
    /// Echo return loss enhancement (dB): how much of the echo in the microphone signal the
    /// echo canceller removes, as it estimates it.
    pub echo_return_loss_enhancement: Option<f64>,
    /// The render-to-capture delay the echo canceller has found.
    pub echo_delay: Option<Duration>,
    /// 10 ms capture chunks processed.
    pub capture_chunks: u64,
    /// 10 ms render chunks handed to the echo canceller.
    pub render_chunks: u64,
    /// Render samples (all channels) dropped: the ring was full, or the capture side fell
    /// behind by more than [`MAX_RENDER_BACKLOG`](crate::audio::process::MAX_RENDER_BACKLOG).
    pub render_dropped: u64,
}

/// Lock-free figures shared by the two sides and their monitors.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// `f64` bits; NaN when not known.
    pub(crate) erl: AtomicU64,
    /// `f64` bits; NaN when not known.
    pub(crate) erle: AtomicU64,
    /// Milliseconds; negative when not known.
    pub(crate) delay_ms: AtomicI64,
    pub(crate) capture_chunks: AtomicU64,
    pub(crate) render_chunks: AtomicU64,
    pub(crate) render_dropped: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            erl: AtomicU64::new(f64::NAN.to_bits()),
            erle: AtomicU64::new(f64::NAN.to_bits()),
            delay_ms: AtomicI64::new(-1),
            capture_chunks: AtomicU64::new(0),
            render_chunks: AtomicU64::new(0),
            render_dropped: AtomicU64::new(0),
        }
    }
}

fn known(bits: u64) -> Option<f64> {
    let v = f64::from_bits(bits);
    v.is_finite().then_some(v)
}

impl Metrics {
    pub(crate) fn stats(&self) -> ProcessingStats {
        let delay = self.delay_ms.load(Relaxed);
        ProcessingStats {
            echo_return_loss: known(self.erl.load(Relaxed)),
            echo_return_loss_enhancement: known(self.erle.load(Relaxed)),
            echo_delay: u64::try_from(delay).ok().map(Duration::from_millis),
            capture_chunks: self.capture_chunks.load(Relaxed),
            render_chunks: self.render_chunks.load(Relaxed),
            render_dropped: self.render_dropped.load(Relaxed),
        }
    }
}

/// Reads a stage's figures from any thread, without locking.
#[derive(Debug, Clone)]
pub struct ProcessingMonitor(pub(crate) Arc<Metrics>);

impl ProcessingMonitor {
    /// The figures as they are now.
    pub fn stats(&self) -> ProcessingStats {
        self.0.stats()
    }
}

/// The render side of a processing stage: it is told what goes to the speaker.
///
/// Call [`EchoReference::push`] with every frame handed to the speaker, at the moment it is
/// handed over, on whatever thread does that; or, from a device that knows when its speaker
/// plays each sample, [`EchoReference::push_mono`] with what it plays as it plays it. Either
/// copies the samples into a lock-free ring and returns; audio that does not fit is dropped
/// whole and counted.
pub struct EchoReference {
    ring: HeapProd<f32>,
    channels: usize,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for EchoReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoReference")
            .field("channels", &self.channels)
            .field("queued", &self.ring.occupied_len())
            .finish_non_exhaustive()
    }
}

impl EchoReference {
    pub(crate) fn new(ring: HeapProd<f32>, channels: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            ring,
            channels,
            metrics,
        }
    }

    /// Queues a 48 kHz frame on its way to the speaker. Its channels are mixed to the stage's.
    pub fn push(&mut self, frame: &AudioFrame) {
        let from = frame.format.channels.count();
        let to = self.channels;
        let frames = frame.samples.len() / from.max(1);
        if self.ring.vacant_len() < frames * to {
            self.metrics
                .render_dropped
                .fetch_add((frames * to) as u64, Relaxed);
            return;
        }
        if from == to {
            self.ring
                .push_iter(frame.samples.iter().map(|&s| i16_to_f32(s)));
        } else {
            let mut one = [0.0f32; 2];
            for f in frame.samples.chunks_exact(from) {
                for (o, &s) in one.iter_mut().zip(f) {
                    *o = i16_to_f32(s);
                }
                let src = one.get(..from).unwrap_or_default();
                for j in 0..to {
                    let _ = self.ring.try_push(remix_sample(src, j, to));
                }
            }
        }
    }

    /// Queues interleaved samples (full scale ±1.0) at the stage's channel count.
    pub fn push_f32(&mut self, samples: &[f32]) {
        let whole = samples.len() / self.channels * self.channels;
        if self.ring.vacant_len() < whole {
            self.metrics.render_dropped.fetch_add(whole as u64, Relaxed);
            return;
        }
        self.ring
            .push_slice(samples.get(..whole).unwrap_or_default());
    }

    /// Queues mono samples (full scale ±1.0), spread to the stage's channels.
    pub fn push_mono(&mut self, samples: &[f32]) {
        let needed = samples.len() * self.channels;
        if self.ring.vacant_len() < needed {
            self.metrics
                .render_dropped
                .fetch_add(needed as u64, Relaxed);
            return;
        }
        if self.channels == 1 {
            self.ring.push_slice(samples);
        } else {
            for &s in samples {
                for _ in 0..self.channels {
                    let _ = self.ring.try_push(s);
                }
            }
        }
    }

    /// Reads the stage's figures from any thread.
    pub fn monitor(&self) -> ProcessingMonitor {
        ProcessingMonitor(Arc::clone(&self.metrics))
    }
}
