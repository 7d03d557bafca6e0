//! The receiving side of the WebRTC loopback: sinks that note what reaches them and when (and
//! pass it on to the user's sinks), and the analysis that turns that into latencies: video
//! from the stamps in the pixels, audio by aligning the received signal with what was sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::audio::AudioSink;
use crate::call::pump::AudioSent;
pub(super) use crate::call::record::lock;
use crate::error::Error;
use crate::frame::{AudioFrame, SAMPLE_RATE};
use crate::measure::audio::{estimate_delay, snr_db};
use crate::stage::ms;
use crate::stats::Percentiles;

/// Length of one alignment window, samples (0.5 s).
const WINDOW: usize = SAMPLE_RATE as usize / 2;
/// Longest delay the alignment looks for, samples (400 ms: jitter buffers hold more than a
/// direct path).
const MAX_LAG: usize = SAMPLE_RATE as usize * 2 / 5;
/// A window whose correlation is below this is too quiet or too damaged to align.
const MIN_CORRELATION: f64 = 0.6;
/// A window where another lag scores within this of the best is periodic and cannot be aligned.
const AMBIGUITY_MARGIN: f64 = 0.02;

/// The audio that reached the receiving sink once the first frame had been sent.
#[derive(Default)]
pub(super) struct AudioRecord {
    /// When the first frame was sent; nothing is recorded before.
    pub from: Option<Instant>,
    /// First channel of every period recorded.
    pub output: Vec<i16>,
    /// When each period was handed to the sink.
    pub handoffs: Vec<Instant>,
    /// Samples per channel of a period.
    pub period: usize,
}

/// Records the audio a call plays, then passes it on.
pub(super) struct RecordingAudioSink {
    pub inner: Box<dyn AudioSink>,
    pub record: Arc<Mutex<AudioRecord>>,
}

impl AudioSink for RecordingAudioSink {
    fn write(&mut self, now: Instant, frame: &AudioFrame) -> Result<(), Error> {
        self.inner.write(now, frame)?;
        let mut record = lock(&self.record);
        if record.from.is_some_and(|from| now >= from) {
            let channels = frame.format.channels.count();
            record.period = frame.samples.len() / channels.max(1);
            record
                .output
                .extend(frame.samples.iter().step_by(channels.max(1)).copied());
            record.handoffs.push(now);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.inner.finish()
    }
}

/// The audio latency found by alignment.
pub(super) struct AudioAlignment {
    pub latency_ms: Option<Percentiles>,
    pub from_signal: bool,
    pub signal_delay_ms: Option<f64>,
    pub snr_db: Option<f64>,
    pub periods: u64,
}

/// Aligns what was received with what was sent, window by window, and measures from each
/// period's hand-off back to the capture of the sample it carries.
pub(super) fn align_audio(
    sent: &AudioSent,
    record: &AudioRecord,
    per_frame: usize,
) -> AudioAlignment {
    let (reference, output) = (&sent.reference, &record.output);
    let mut lags: Vec<Option<usize>> = Vec::new();
    let mut a = 0;
    while a + WINDOW <= reference.len() && a + WINDOW <= output.len() {
        let received = &output[a..(a + WINDOW + MAX_LAG).min(output.len())];
        let lag = estimate_delay(&reference[a..a + WINDOW], received, MAX_LAG)
            .filter(|al| al.correlation >= MIN_CORRELATION && !al.is_ambiguous(AMBIGUITY_MARGIN))
            .map(|al| al.lag);
        lags.push(lag);
        a += WINDOW;
    }
    let confident: Vec<f64> = lags.iter().flatten().map(|&l| l as f64).collect();
    let median = (!confident.is_empty()).then(|| Percentiles::of(&confident).p50 as usize);
    let mut latency = Vec::with_capacity(record.handoffs.len());
    let period = record.period.max(1);
    for (m, handoff) in record.handoffs.iter().enumerate() {
        let first = m * period;
        let lag = match lags.get(first / WINDOW).copied().flatten().or(median) {
            Some(lag) => lag,
            None => break,
        };
        let Some(k) = first.checked_sub(lag) else {
            continue;
        };
        let Some(capture) = sent.captures.get(k / per_frame.max(1)) else {
            continue;
        };
        let offset =
            Duration::from_secs_f64((k % per_frame.max(1)) as f64 / f64::from(SAMPLE_RATE));
        latency.push(ms(handoff.saturating_duration_since(*capture + offset)));
    }
    AudioAlignment {
        from_signal: median.is_some() && !latency.is_empty(),
        latency_ms: Percentiles::measured(&latency),
        signal_delay_ms: median.map(|l| l as f64 * 1000.0 / f64::from(SAMPLE_RATE)),
        snr_db: median
            .map(|lag| snr_db(reference, output, lag))
            .filter(|s| s.is_finite()),
        periods: record.handoffs.len() as u64,
    }
}
