//! The call behind a `DuetCall` handle, in safe Rust: a tokio runtime of its own, the
//! [`CallSession`], a task that follows the session's events (queueing signals for the app,
//! starting the synthetic media once connected, stopping it at the end), and the figures the
//! app reads back.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use duet_media::audio::process::{
    audio_processing, AudioProcessor, ProcessedSource, ProcessingMonitor, ProcessingStats,
    ReferencedSink,
};
use duet_media::audio::synth::Tone;
use duet_media::audio::{AudioSink, AudioSource, NullAudioSink};
use duet_media::call::pump::{LocalAudio, LocalMedia, LocalVideo, MediaPump, SendCounters};
use duet_media::call::record::{RecordingVideoSink, VideoRecord};
use duet_media::call::{
    CallEvent, CallEvents, CallSession, CallSinks, CallStats, EndReason, MediaSender, Signal,
};
use duet_media::video::pattern::TestPattern;
use duet_media::video::stamp::wall_epoch;
use duet_media::video::NullVideoSink;
use tokio::runtime::Runtime;

use crate::error::Failure;
use crate::options::{CallOptions, AUDIO_FORMAT};

/// Latencies of the most recent pictures kept for the stats.
const LATENCIES_KEPT: usize = 300;
/// Longest wait for the WebRTC stack's statistics before the last fetched ones are used.
const STATS_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for the runtime's tasks when a call is freed.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// Peak of the tone sent, as a fraction of full scale.
const TONE_AMPLITUDE: f32 = 0.3;

/// Where a call is: C's `DuetCallState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Set up, negotiating or connecting.
    Connecting,
    /// The connection is up and media flows.
    Connected,
    /// Over; see the end reason.
    Ended,
}

/// One side of a call, with everything it runs on.
pub(crate) struct Call {
    /// Runs the session's tasks; dropped last.
    runtime: Runtime,
    session: CallSession,
    /// Signals to carry to the peer, in order; disconnected once the call has ended and
    /// every signal was taken.
    signals: Mutex<Receiver<Signal>>,
    shared: Arc<Shared>,
}

/// What the event task and the app's calls share.
struct Shared {
    options: CallOptions,
    sending: Mutex<Sending>,
    video: Arc<Mutex<VideoRecord>>,
    /// The audio processing's capture side, waiting for the tone it will clean, when asked for.
    processor: Mutex<Option<AudioProcessor>>,
    /// The audio processing's figures, when it is on.
    processing: Option<ProcessingMonitor>,
}

/// The synthetic media being sent.
#[derive(Default)]
struct Sending {
    pump: Option<MediaPump>,
    /// When the pump started and (once stopped) when it stopped.
    started: Option<Instant>,
    stopped: Option<Instant>,
    /// The counters when the pump stopped.
    last: SendCounters,
    /// Why the media could not be started or failed.
    error: Option<String>,
}

/// What a call has sent, for the stats.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SentFigures {
    /// The pump's counters.
    pub counters: SendCounters,
    /// Seconds the pump has run.
    pub seconds: f64,
}

/// Refuses to go on from a thread that is running a tokio runtime: the call blocks on a
/// runtime of its own, which tokio forbids there (it would panic).
fn outside_runtime() -> Result<(), Failure> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Failure::rejected(
            "called from a thread inside a tokio runtime; call duet from a plain thread \
             (for example through tokio's spawn_blocking)",
        ));
    }
    Ok(())
}

impl Call {
    /// Sets up a call from its options: the runtime, the session (bound, not yet
    /// negotiating), and the task following its events.
    pub fn new(options: CallOptions) -> Result<Self, Failure> {
        outside_runtime()?;
        let config = options.call_config()?;
        let runtime = duet_media::call::runtime("duet-capi", 2)
            .map_err(|e| Failure::internal(format!("cannot start the call's runtime: {e}")))?;
        let video = Arc::new(Mutex::new(VideoRecord::new(LATENCIES_KEPT)));
        // With processing on, what is received is its echo reference (and then discarded).
        let processing = options.processing();
        let (processor, audio_sink) = if options.audio && processing.is_active() {
            let (reference, processor) = audio_processing(processing, AUDIO_FORMAT.channels)
                .map_err(|e| Failure::invalid(format!("call options: {e}")))?;
            let sink = ReferencedSink::new(Box::new(NullAudioSink::default()), reference);
            (Some(processor), Some(Box::new(sink) as Box<dyn AudioSink>))
        } else {
            (None, None)
        };
        let monitor = processor.as_ref().map(AudioProcessor::monitor);
        let sinks = CallSinks {
            audio: audio_sink,
            video: options.video.then(|| {
                Box::new(RecordingVideoSink::new(
                    Box::new(NullVideoSink::default()),
                    Some(wall_epoch()),
                    video.clone(),
                )) as Box<dyn duet_media::video::VideoSink>
            }),
        };
        let (session, events) = runtime
            .block_on(CallSession::new(config, sinks))
            .map_err(|e| Failure::internal(format!("cannot set up the call: {e}")))?;
        let shared = Arc::new(Shared {
            options,
            sending: Mutex::new(Sending::default()),
            video,
            processor: Mutex::new(processor),
            processing: monitor,
        });
        let (signals_tx, signals_rx) = mpsc::channel();
        runtime.spawn(follow(events, signals_tx, session.sender(), shared.clone()));
        Ok(Self {
            runtime,
            session,
            signals: Mutex::new(signals_rx),
            shared,
        })
    }

    /// Makes the offer (the caller's side).
    pub fn start(&self) -> Result<(), Failure> {
        outside_runtime()?;
        self.runtime
            .block_on(self.session.start())
            .map_err(|e| Failure::rejected(format!("cannot start the call: {e}")))
    }

    /// The next signal for the peer, waiting up to `timeout` (`None`: until one comes or the
    /// call is over).
    pub fn poll_signal(&self, timeout: Option<Duration>) -> Option<Signal> {
        let signals = lock(&self.signals);
        match timeout {
            Some(timeout) => signals.recv_timeout(timeout).ok(),
            None => signals.recv().ok(),
        }
    }

    /// Applies a signal from the peer.
    pub fn handle_signal(&self, signal: Signal) -> Result<(), Failure> {
        let kind = signal.kind();
        outside_runtime()?;
        self.runtime
            .block_on(self.session.handle_signal(signal))
            .map_err(|e| Failure::rejected(format!("the peer's {kind} signal: {e}")))
    }

    /// Where the call is.
    pub fn phase(&self) -> Phase {
        if self.session.end_reason().is_some() {
            Phase::Ended
        } else if self.session.is_connected() {
            Phase::Connected
        } else {
            Phase::Connecting
        }
    }

    /// Why the call ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.session.end_reason()
    }

    /// Hangs up; the `end` signal for the peer is then the next one polled.
    pub fn hang_up(&self, reason: &str) {
        self.session.hang_up(reason);
    }

    /// The session's figures, the WebRTC stack's freshly fetched when they come in time
    /// (as last fetched when called from inside a tokio runtime, which cannot wait here).
    pub fn stats(&self) -> CallStats {
        if outside_runtime().is_err() {
            return self.session.stats();
        }
        self.runtime.block_on(async {
            tokio::time::timeout(STATS_WAIT, self.session.refresh_stats())
                .await
                .unwrap_or_else(|_| self.session.stats())
        })
    }

    /// What has been sent so far.
    pub fn sent(&self) -> SentFigures {
        let sending = lock(&self.shared.sending);
        let counters = sending.pump.as_ref().map_or(sending.last, |p| p.counters());
        let seconds = sending.started.map_or(0.0, |from| {
            sending
                .stopped
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(from)
                .as_secs_f64()
        });
        SentFigures { counters, seconds }
    }

    /// What the video sink saw.
    pub fn video_record(&self) -> VideoRecord {
        lock(&self.shared.video).clone()
    }

    /// The audio processing's figures, when it is on.
    pub fn processing(&self) -> Option<ProcessingStats> {
        self.shared
            .processing
            .as_ref()
            .map(ProcessingMonitor::stats)
    }

    /// Why the media could not be sent, if it could not.
    pub fn media_error(&self) -> Option<String> {
        lock(&self.shared.sending).error.clone()
    }

    /// Stops the media, hangs up if the call is on, waits for the receive threads and shuts
    /// the runtime down. From a thread inside a tokio runtime, where that cannot be waited
    /// for, it is done on a thread of its own, which this waits for.
    pub fn close(self) {
        if outside_runtime().is_err() {
            let closing = std::thread::Builder::new()
                .name("duet-capi-close".into())
                .spawn(move || self.close());
            if let Ok(thread) = closing {
                let _ = thread.join();
            }
            return;
        }
        let Self {
            runtime,
            session,
            signals,
            shared,
        } = self;
        let pump = stop_media(&shared);
        if let Some(pump) = pump {
            let _ = pump.stop();
        }
        let _ = runtime.block_on(session.close());
        drop(signals);
        runtime.shutdown_timeout(SHUTDOWN_WAIT);
    }
}

/// Follows the session's events until the call ends: queues each signal for the app, starts
/// the media when the call connects and stops it when the call ends.
async fn follow(
    mut events: CallEvents,
    signals: Sender<Signal>,
    sender: MediaSender,
    shared: Arc<Shared>,
) {
    while let Some(event) = events.recv().await {
        match event {
            CallEvent::Signal(signal) => {
                let _ = signals.send(signal);
            }
            CallEvent::Connected => start_media(&shared, sender.clone()),
            CallEvent::Ended(_) => {
                if let Some(pump) = stop_media(&shared) {
                    let _ = tokio::task::spawn_blocking(move || pump.stop()).await;
                }
                break;
            }
        }
    }
}

/// Starts sending the tone and the test pattern, as the options say, from now on.
fn start_media(shared: &Shared, sender: MediaSender) {
    let now = Instant::now();
    let options = &shared.options;
    let mut sending = lock(&shared.sending);
    if sending.pump.is_some() || sending.started.is_some() {
        return;
    }
    let media = (|| {
        let audio = options.opus().map(|opus| {
            let tone: Box<dyn AudioSource> = Box::new(Tone::new(
                AUDIO_FORMAT,
                options.tone_hz,
                TONE_AMPLITUDE,
                now,
            ));
            let source = match lock(&shared.processor).take() {
                Some(processor) => Box::new(ProcessedSource::new(tone, processor)),
                None => tone,
            };
            LocalAudio { source, opus }
        });
        let video = match options.h264() {
            Some(h264) => {
                let pattern = TestPattern::new(options.width, options.height, options.fps, now)?
                    .with_epoch(wall_epoch());
                Some(LocalVideo {
                    source: Box::new(pattern),
                    h264,
                })
            }
            None => None,
        };
        MediaPump::start(sender, LocalMedia { audio, video })
    })();
    sending.started = Some(now);
    match media {
        Ok(pump) => sending.pump = Some(pump),
        Err(e) => sending.error = Some(format!("cannot send media: {e}")),
    }
}

/// Takes the pump out, noting its last counters and when it stopped.
fn stop_media(shared: &Shared) -> Option<MediaPump> {
    let mut sending = lock(&shared.sending);
    let pump = sending.pump.take()?;
    sending.last = pump.counters();
    sending.stopped = Some(Instant::now());
    Some(pump)
}

/// Locks `m`, whether or not another thread panicked holding it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
