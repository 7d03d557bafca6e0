//! The loopback over WebRTC: two [`CallSession`]s in one process, connected over real UDP
//! sockets on 127.0.0.1 (optionally through the seeded impairment layer), their signals passed
//! in memory. Source -> encoder -> session A -> network -> session B -> jitter buffers ->
//! decoders -> sinks, measured as the in-process loopback is (stamps for video latency, signal
//! alignment for audio), plus the transport's and the receive buffers' figures.

mod receive;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use receive::{align_audio, lock, AudioRecord, RecordingAudioSink};

use super::rss_mb;
use super::{
    AudioReport, LoopbackConfig, LoopbackReport, MemoryReport, NetworkReport, VideoReport,
};
use crate::adapt::AdaptConfig;
use crate::call::pump::{self, AudioPlan, Live, LocalAudio, LocalVideo, SendCounters, Window};
use crate::call::record::{RecordingVideoSink, VideoRecord};
use crate::call::{
    AudioCallStats, CallConfig, CallEvent, CallEvents, CallSession, CallSinks, CallStats,
    EndReason, TransportStats,
};
use crate::error::Error;
use crate::stage::join;
use crate::transport::impair::{ImpairConfig, ImpairedRuntime};

/// How long the two sessions may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the receiving side is given to play out what is still in flight at the end.
const DRAIN: Duration = Duration::from_millis(300);

/// How the WebRTC loopback is set up.
#[derive(Debug, Clone)]
pub struct WebrtcOptions {
    /// Address both sessions bind (port chosen by the system).
    pub bind: IpAddr,
    /// The impairment both sessions' sockets apply to what they send, if any.
    pub impair: Option<ImpairConfig>,
    /// Where to send the call's figures once a second while it runs, if anywhere.
    pub live: Option<Sender<LiveFigures>>,
    /// Offer Opus in RED on both sides ([`CallConfig::audio_red`]).
    pub audio_red: bool,
}

impl Default for WebrtcOptions {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            impair: None,
            live: None,
            audio_red: true,
        }
    }
}

/// The figures of a running WebRTC loopback, as [`WebrtcOptions::live`] receives them once a
/// second: both sessions' stats, cumulative since the call began.
#[derive(Debug, Clone)]
pub struct LiveFigures {
    /// The sending session: what it sent, the RTT and loss its peer reports, bitrate
    /// adaptation, the path.
    pub sender: CallStats,
    /// The receiving session: its jitter buffers and decoders.
    pub receiver: CallStats,
    /// What the senders have handed to the sending session.
    pub sent: SendCounters,
    /// Glass-to-glass latency of the last 30 pictures shown, ms (median), from their stamps.
    pub video_latency_ms: Option<f64>,
}

/// Runs the loopback over WebRTC for `config.duration` after the call is connected, and reports.
pub fn run(config: LoopbackConfig, options: WebrtcOptions) -> Result<LoopbackReport, Error> {
    let LoopbackConfig {
        start: _,
        duration,
        audio,
        video,
    } = config;
    if audio.is_none() && video.is_none() {
        return Err(Error::Config(
            "nothing to run: no audio and no video".into(),
        ));
    }
    let runtime = crate::call::runtime("duet-call", 2)
        .map_err(|e| Error::Call(format!("cannot start the async runtime: {e}")))?;
    let rss_start = rss_mb();
    let impaired = options
        .impair
        .clone()
        .map(ImpairedRuntime::new)
        .transpose()?
        // The network is impaired from the moment the call is up: the crate's DTLS server does
        // not resend its flight when the client repeats its own, so a handshake that loses that
        // flight stalls, whatever duet does above it.
        .map(|r| Arc::new(r.disarmed()));
    let counters = impaired.as_ref().map(|r| r.counters());
    let arm = impaired.clone();

    let audio_format = audio.as_ref().map(|a| a.opus.format);
    let size = video.as_ref().map(|v| v.source.size());
    let mut call = CallConfig::new(audio_format, video.is_some());
    call.bind = SocketAddr::new(options.bind, 0);
    call.audio_red = options.audio_red;
    call.runtime = impaired.map(|r| r as Arc<dyn webrtc::runtime::Runtime>);
    let audio_bps = audio.as_ref().map_or(0, |a| a.opus.bitrate_bps);
    let video_bps = video.as_ref().map_or(0, |v| v.h264.bitrate_bps);
    let total = audio_bps + video_bps;
    call.bitrate_bps = (100_000.min(total), total, total.max(100_000) * 2);
    let mut sender_config = call.clone();
    if audio_bps > 0 {
        sender_config.adapt = Some(AdaptConfig {
            min_video_bps: 100_000.min(video_bps).max(1000),
            start_bps: total,
            max_bps: total.max(audio_bps + 1000),
            max_size: size.unwrap_or((640, 480)),
            audio_bps,
            audio_max_bps: audio_bps * 3 / 2,
            ..AdaptConfig::default()
        });
    }

    // The receiving side's sinks note what reaches them.
    let audio_record = Arc::new(Mutex::new(AudioRecord::default()));
    let expected_frames = (duration.as_secs_f64() * 60.0) as usize + 1;
    let video_record = Arc::new(Mutex::new(VideoRecord::new(expected_frames)));
    let (audio_parts, audio_sink) = match audio {
        Some(a) => (
            Some((a.source, a.opus)),
            Some(Box::new(RecordingAudioSink {
                inner: a.sink,
                record: audio_record.clone(),
            }) as Box<dyn crate::audio::AudioSink>),
        ),
        None => (None, None),
    };
    let (video_parts, video_sink, stamped) = match video {
        Some(v) => {
            let epoch = v.source.stamp_epoch();
            (
                Some((v.source, v.h264)),
                Some(
                    Box::new(RecordingVideoSink::new(v.sink, epoch, video_record.clone()))
                        as Box<dyn crate::video::VideoSink>,
                ),
                epoch.is_some(),
            )
        }
        None => (None, None, false),
    };

    let connecting = Instant::now();
    let (a, b, ended) = runtime.block_on(async {
        let (a, a_events) = CallSession::new(sender_config, CallSinks::default()).await?;
        let sinks = CallSinks {
            audio: audio_sink,
            video: video_sink,
        };
        let (b, b_events) = CallSession::new(call, sinks).await?;
        let (a, b) = (Arc::new(a), Arc::new(b));
        let (tx, rx) = channel();
        tokio::spawn(relay(a_events, Arc::downgrade(&b), tx.clone(), "sender"));
        tokio::spawn(relay(b_events, Arc::downgrade(&a), tx, "receiver"));
        a.start().await?;
        Ok::<_, Error>((a, b, rx))
    })?;
    wait_connected(&ended, connecting + CONNECT_TIMEOUT)?;
    let connect_ms = connecting.elapsed().as_secs_f64() * 1000.0;
    if let Some(runtime) = &arm {
        runtime.arm();
    }

    let from = Instant::now();
    let until = from + duration;
    let window = Window {
        from,
        until: Some(until),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let live: Arc<Live> = Arc::default();
    let sender = a.sender();
    let audio_thread = audio_parts
        .map(|(source, opus)| {
            let record = audio_record.clone();
            let plan = AudioPlan {
                keep_reference: true,
                first_sent: Some(Box::new(move |at| lock(&record).from = Some(at))),
            };
            let audio = LocalAudio { source, opus };
            pump::spawn_audio(
                audio,
                sender.clone(),
                window,
                stop.clone(),
                Arc::clone(&live),
                plan,
            )
        })
        .transpose()?;
    let video_thread = video_parts
        .map(|(source, h264)| {
            let video = LocalVideo { source, h264 };
            pump::spawn_video(
                video,
                sender.clone(),
                window,
                stop.clone(),
                Arc::clone(&live),
            )
        })
        .transpose()?;

    let ten = from + Duration::from_secs(10);
    let mut rss_10s = None;
    let mut end_reason = None;
    let mut report_due = from + Duration::from_secs(1);
    loop {
        let now = Instant::now();
        if rss_10s.is_none() && now >= ten {
            rss_10s = Some(rss_mb());
        }
        if let Some(to) = options.live.as_ref().filter(|_| now >= report_due) {
            report_due += Duration::from_secs(1);
            let video_latency_ms = {
                let recent = lock(&video_record).latency_ms.recent(30);
                crate::stats::Percentiles::measured(&recent).map(|p| p.p50)
            };
            // What was sent, then the stack's counts: every frame counted is in the packets.
            let sent = live.counters();
            let (sender, receiver) =
                runtime.block_on(async { (a.refresh_stats().await, b.refresh_stats().await) });
            // Nobody listening is no reason to stop the call.
            let _ = to.send(LiveFigures {
                sender,
                receiver,
                sent,
                video_latency_ms,
            });
        }
        if let Ok(Outcome::Ended(side, reason)) = ended.try_recv() {
            end_reason = Some(format!("the {side} ended the call early: {reason}"));
            break;
        }
        let done = audio_thread.as_ref().is_none_or(|t| t.is_finished())
            && video_thread.as_ref().is_none_or(|t| t.is_finished());
        if now >= until || done {
            break;
        }
        thread::sleep(Duration::from_millis(20).min(until.saturating_duration_since(now)));
    }
    // The audio figures as the senders stop: after that the receiver conceals the silence.
    let audio_stats = audio_thread.is_some().then(|| b.stats().audio);
    let rss_end = rss_mb();
    stop.store(true, Ordering::Relaxed);
    let seconds = from.elapsed().as_secs_f64();
    let audio_sent = audio_thread.map(|t| join(t, "audio sender")).transpose()?;
    let video_sent = video_thread.map(|t| join(t, "video sender")).transpose()?;
    thread::sleep(DRAIN);
    let (sender_stats, receiver_stats) =
        runtime.block_on(async { (a.refresh_stats().await, b.refresh_stats().await) });

    a.hang_up("loopback done");
    runtime.block_on(async {
        close(a).await?;
        close(b).await
    })?;
    if let Some(reason) = end_reason {
        return Err(Error::Call(reason));
    }

    let transport = TransportStats {
        packets_lost: receiver_stats.transport.packets_lost,
        packets_received: receiver_stats.transport.packets_received,
        nack_count: receiver_stats.transport.nack_count,
        pli_count: receiver_stats.transport.pli_count,
        retransmitted_received: receiver_stats.transport.retransmitted_received,
        ..sender_stats.transport
    };
    let audio_report = audio_sent.map(|sent| {
        let record = lock(&audio_record);
        let per_frame = audio_format.map_or(960, |f| f.frame.samples_per_channel());
        let aligned = align_audio(&sent, &record, per_frame);
        let frame_ms = audio_format.map_or(20, |f| f.frame.millis());
        AudioReport {
            frames: aligned.periods * 10 / u64::from(frame_ms.max(1)),
            frames_captured: sent.frames,
            frame_ms,
            encode_us: sent.encode_us.measured(),
            decode_us: receiver_stats.audio.decode_us,
            latency_ms: aligned.latency_ms,
            latency_from_signal: aligned.from_signal,
            estimated_latency_ms: None,
            signal_delay_ms: aligned.signal_delay_ms,
            lookahead_ms: sent.lookahead.as_secs_f64() * 1000.0,
            snr_db: aligned.snr_db,
            kbps: sent.bytes as f64 * 8.0 / seconds.max(f64::EPSILON) / 1000.0,
            decode_errors: receiver_stats.audio.decode_errors,
            frames_dropped: sent.not_sent,
            // Set by the caller that runs a processing stage on the source.
            echo_return_loss_db: None,
            echo_return_loss_enhancement_db: None,
        }
    });
    let video_report = video_sent.as_ref().map(|sent| {
        let record = lock(&video_record);
        let received = &receiver_stats.video;
        VideoReport {
            frames_captured: sent.captured,
            frames_sent: sent.sent,
            frames_shown: record.shown,
            frames_dropped: sent.skipped + sent.not_sent + received.frames_dropped,
            width: record.size.0,
            height: record.size.1,
            encode_ms: sent.encode_ms.measured(),
            decode_ms: received.decode_ms,
            latency_ms: record.latency_ms.measured(),
            psnr_db: None,
            stamp_errors: record.stamp_errors,
            stamped,
            kbps: sent.bytes as f64 * 8.0 / seconds.max(f64::EPSILON) / 1000.0,
            keyframes: sent.keyframes,
            decode_errors: received.decode_errors,
        }
    });
    Ok(LoopbackReport {
        seconds,
        audio: audio_report,
        video: video_report,
        memory: MemoryReport {
            rss_start_mb: rss_start,
            rss_10s_mb: rss_10s,
            rss_end_mb: rss_end,
        },
        network: Some(NetworkReport {
            connect_ms,
            transport,
            audio: audio_stats.map(|stats| AudioCallStats {
                playout_us: receiver_stats.audio.playout_us,
                ..stats
            }),
            video: video_sent.is_some().then(|| receiver_stats.video.clone()),
            impairment: counters.map(|c| c.snapshot()),
            bitrate_changes: video_sent.map_or(0, |s| s.bitrate_changes),
            receiver_rtt_ms: receiver_stats.transport.rtt_ms,
            audio_sent: sender_stats.audio_sent,
        }),
    })
}

/// What the relays tell the loopback.
enum Outcome {
    Connected,
    Ended(&'static str, EndReason),
}

/// Carries one session's signals to the other; reports its connection and its end.
async fn relay(
    mut events: CallEvents,
    to: Weak<CallSession>,
    outcomes: Sender<Outcome>,
    side: &'static str,
) {
    while let Some(event) = events.recv().await {
        match event {
            CallEvent::Signal(signal) => {
                let Some(to) = to.upgrade() else { break };
                if let Err(e) = to.handle_signal(signal).await {
                    tracing::warn!("the {side}'s signal was refused: {e}");
                }
            }
            CallEvent::Connected => {
                let _ = outcomes.send(Outcome::Connected);
            }
            CallEvent::Ended(reason) => {
                let _ = outcomes.send(Outcome::Ended(side, reason));
            }
        }
    }
}

/// Waits until both sides are connected.
fn wait_connected(outcomes: &Receiver<Outcome>, deadline: Instant) -> Result<(), Error> {
    let mut connected = 0;
    while connected < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        match outcomes.recv_timeout(left) {
            Ok(Outcome::Connected) => connected += 1,
            Ok(Outcome::Ended(side, reason)) => {
                return Err(Error::Call(format!("the {side} ended the call: {reason}")));
            }
            Err(_) => {
                return Err(Error::Call(format!(
                    "the two sessions did not connect within {CONNECT_TIMEOUT:?}"
                )));
            }
        }
    }
    Ok(())
}

/// Closes a session once the relays have let go of it.
async fn close(session: Arc<CallSession>) -> Result<(), Error> {
    for _ in 0..50 {
        if Arc::strong_count(&session) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    match Arc::try_unwrap(session) {
        Ok(session) => session.close().await,
        // Still held: dropping it hangs up, and its threads finish on their own.
        Err(_) => Ok(()),
    }
}
