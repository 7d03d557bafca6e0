//! Measures mouth-to-ear latency where audio is heard: a sink wrapper hands each period to a
//! [`LatencyMeter`] thread through lock-free rings, and the thread aligns it against the
//! wall-clock-anchored signals a peer may be playing ([`MouthToEar`]).
//!
//! The wrapper's `write` only copies into the rings (no lock, no allocation), so it can sit in
//! front of a device sink; when the rings are full the period is not measured and the window
//! under way is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ringbuf::traits::{Consumer, Observer, Producer, Split};
use ringbuf::{HeapCons, HeapProd, HeapRb};

use crate::audio::anchor::{AnchoredSignal, MarkedTone, Speech, WallClock, TONE_HZ};
use crate::audio::AudioSink;
use crate::error::Error;
use crate::frame::{AudioFrame, SAMPLE_RATE};
use crate::measure::mouth::MouthToEar;
use crate::stats::{Percentiles, Samples};

/// Samples the ring holds: two seconds of mono audio.
const RING_SAMPLES: usize = 2 * SAMPLE_RATE as usize;
/// Periods the ring holds.
const RING_PERIODS: usize = 400;
/// How often the meter's thread looks at the rings.
const POLL: Duration = Duration::from_millis(50);
/// Latencies kept: an hour of half-second windows.
const KEPT: usize = 7_200;

/// The signals duet's synthetic sources play: the built-in speech and the marked tone.
pub fn known_signals() -> Result<Vec<Arc<dyn AnchoredSignal>>, Error> {
    Ok(vec![
        Arc::new(Speech::builtin()?),
        Arc::new(MarkedTone::new(TONE_HZ, 0.5)),
    ])
}

/// What a [`LatencyMeter`] found so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeardLatency {
    /// Percentiles of the latencies measured, ms; `None` when no window aligned.
    pub latency_ms: Option<Percentiles>,
    /// The most recent window's latency, ms.
    pub recent_ms: Option<f64>,
    /// Which signal the last aligned window matched (`speech`, `tone`).
    pub signal: Option<&'static str>,
    /// Half-second windows heard, and how many aligned.
    pub windows: u64,
    /// Windows that aligned.
    pub aligned: u64,
}

#[derive(Debug)]
struct Record {
    latency_ms: Samples,
    recent_ms: Option<f64>,
    signal: Option<&'static str>,
    windows: u64,
    aligned: u64,
}

struct Shared {
    stop: AtomicBool,
    /// Periods the sink could not pass on (the rings were full).
    overflows: AtomicU64,
    record: Mutex<Record>,
}

/// The measuring thread; dropping it stops the thread.
pub struct LatencyMeter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LatencyMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyMeter")
            .field("heard", &self.heard())
            .finish()
    }
}

/// Passes audio on to the sink it wraps and to the meter.
pub struct MeteredAudioSink {
    inner: Box<dyn AudioSink>,
    clock: WallClock,
    samples: HeapProd<i16>,
    periods: HeapProd<(u64, usize)>,
    shared: Arc<Shared>,
}

impl LatencyMeter {
    /// Starts a meter aligning against `signals`, and the sink to put in front of `inner`.
    pub fn start(
        inner: Box<dyn AudioSink>,
        signals: Vec<Arc<dyn AnchoredSignal>>,
    ) -> Result<(Self, MeteredAudioSink), Error> {
        let names: Vec<&'static str> = signals.iter().map(|s| s.name()).collect();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            overflows: AtomicU64::new(0),
            record: Mutex::new(Record {
                latency_ms: Samples::with_capacity(KEPT),
                recent_ms: None,
                signal: None,
                windows: 0,
                aligned: 0,
            }),
        });
        let (samples_tx, samples_rx) = HeapRb::<i16>::new(RING_SAMPLES).split();
        let (periods_tx, periods_rx) = HeapRb::<(u64, usize)>::new(RING_PERIODS).split();
        let mouth = MouthToEar::new(signals);
        let thread_shared = shared.clone();
        let thread = thread::Builder::new()
            .name("audio-latency".into())
            .spawn(move || run(thread_shared, mouth, samples_rx, periods_rx, names))
            .map_err(|e| Error::Call(format!("cannot start the audio latency meter: {e}")))?;
        let sink = MeteredAudioSink {
            inner,
            clock: WallClock::now(),
            samples: samples_tx,
            periods: periods_tx,
            shared: shared.clone(),
        };
        Ok((
            Self {
                shared,
                thread: Some(thread),
            },
            sink,
        ))
    }

    /// What was measured so far.
    pub fn heard(&self) -> HeardLatency {
        let record = lock(&self.shared.record);
        HeardLatency {
            latency_ms: (record.latency_ms.count() > 0).then(|| record.latency_ms.percentiles()),
            recent_ms: record.recent_ms,
            signal: record.signal,
            windows: record.windows,
            aligned: record.aligned,
        }
    }
}

impl Drop for LatencyMeter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    shared: Arc<Shared>,
    mut mouth: MouthToEar,
    mut samples: HeapCons<i16>,
    mut periods: HeapCons<(u64, usize)>,
    names: Vec<&'static str>,
) {
    let mut buf = vec![0i16; RING_SAMPLES];
    let mut overflows = 0;
    loop {
        let stopping = shared.stop.load(Ordering::Relaxed);
        let seen = shared.overflows.load(Ordering::Acquire);
        if seen != overflows {
            overflows = seen;
            mouth.reset();
        }
        while let Some((at, n)) = periods.try_pop() {
            let n = n.min(buf.len());
            let got = samples.pop_slice(&mut buf[..n]);
            if let Some(heard) = mouth.push(at, &buf[..got]) {
                let mut record = lock(&shared.record);
                record.latency_ms.push(heard.latency_ms);
                record.recent_ms = Some(heard.latency_ms);
                record.signal = names.get(heard.signal).copied();
            }
            let (windows, aligned) = mouth.counts();
            let mut record = lock(&shared.record);
            record.windows = windows;
            record.aligned = aligned;
        }
        if stopping {
            return;
        }
        thread::sleep(POLL);
    }
}

impl AudioSink for MeteredAudioSink {
    fn write(&mut self, now: Instant, frame: &AudioFrame) -> Result<(), Error> {
        let channels = frame.format.channels.count().max(1);
        let n = frame.samples.len() / channels;
        if self.samples.vacant_len() >= n && self.periods.vacant_len() >= 1 {
            self.samples
                .push_iter(frame.samples.iter().step_by(channels).copied());
            let _ = self.periods.try_push((self.clock.sample_at(now), n));
        } else {
            self.shared.overflows.fetch_add(1, Ordering::Release);
        }
        self.inner.write(now, frame)
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.inner.finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::NullAudioSink;
    use crate::frame::{AudioFormat, Channels, FrameDuration};

    #[test]
    fn a_sink_hearing_speech_late_reports_the_delay() {
        let (meter, mut sink) =
            LatencyMeter::start(Box::new(NullAudioSink::default()), known_signals().unwrap())
                .unwrap();
        let speech = Speech::builtin().unwrap();
        let format = AudioFormat {
            channels: Channels::Stereo,
            frame: FrameDuration::Ms10,
        };
        let clock = WallClock::now();
        let start = Instant::now();
        let mut frame = AudioFrame::silent(format, start);
        let mut mono = [0i16; 480];
        // Three seconds of periods, 40 ms late, written as fast as possible but stamped as
        // if played in real time.
        for p in 0..300u32 {
            let now = start + Duration::from_millis(10) * p;
            speech.fill(clock.sample_at(now) - 1_920, &mut mono);
            for (c, &s) in frame.samples.chunks_exact_mut(2).zip(&mono) {
                c.fill(s);
            }
            sink.write(now, &frame).unwrap();
            if p % 25 == 0 {
                // Let the meter drain the rings.
                thread::sleep(Duration::from_millis(150));
            }
        }
        // Six half-second windows were written: wait for the meter to have looked at them all
        // (it may be slow to get there on a busy machine), for at most ten seconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        while meter.heard().windows < 6 && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        let heard = meter.heard();
        let p = heard.latency_ms.expect("aligned");
        assert!((p.p50 - 40.0).abs() <= 0.1, "{heard:?}");
        assert_eq!(heard.signal, Some("speech"));
        assert!(heard.aligned >= 3, "{heard:?}");
    }
}
