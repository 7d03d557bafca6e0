//! Embedding duet's call engine in an application that has its own signaling channel: two
//! [`CallSession`]s in one process, their [`Signal`]s carried as JSON text over plain tokio
//! channels (any ordered channel will do: a websocket, a message queue, a chat message), no
//! server. They send each other a tone and the test pattern for a few seconds, print what each
//! side measured, and the caller hangs up.
//!
//! The contract, for any application:
//! - Create each side with [`CallSession::new`] inside a tokio runtime.
//! - One side, the caller, calls [`CallSession::start`], which emits the offer; the callee never
//!   calls it: it answers the offer it is given.
//! - Every [`CallEvent::Signal`] goes to the other side's [`CallSession::handle_signal`], in the
//!   order it was emitted (the session emits its description before its ICE candidates).
//! - Media flows once [`CallEvent::Connected`] arrives; frames sent before are dropped.
//! - [`CallSession::hang_up`] emits [`Signal::End`] for the peer, which then ends with
//!   [`EndReason::RemoteHungUp`]. Dropping a session hangs up the same way.
//!
//! ```text
//! cargo run --release --example embed
//! ```

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use duet_media::audio::synth::Tone;
use duet_media::call::pump::{LocalAudio, LocalMedia, LocalVideo, MediaPump};
use duet_media::call::record::{RecordingVideoSink, VideoRecord};
use duet_media::call::{CallConfig, CallEvent, CallEvents, CallSession, CallSinks, CallStats};
use duet_media::call::{EndReason, Signal};
use duet_media::codec::h264::H264Config;
use duet_media::codec::opus::OpusConfig;
use duet_media::video::pattern::TestPattern;
use duet_media::video::stamp::wall_epoch;
use duet_media::video::NullVideoSink;
use duet_media::{AudioFormat, Channels, FrameDuration};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::time::timeout;

const FORMAT: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};

#[tokio::main]
async fn main() -> Result<()> {
    let config = CallConfig::new(Some(FORMAT), true);
    // The callee reads the stamp of each picture it receives. Stamps count from the wall epoch,
    // which each side works out for itself, as two processes (or machines) would.
    let record = Arc::new(Mutex::new(VideoRecord::new(1024)));
    let recorder = RecordingVideoSink::new(
        Box::new(NullVideoSink::default()),
        Some(wall_epoch()),
        record.clone(),
    );
    let callee_sinks = CallSinks {
        audio: None, // received and counted, then discarded
        video: Some(Box::new(recorder)),
    };
    let (caller, caller_events) = CallSession::new(config.clone(), CallSinks::default()).await?;
    let (callee, callee_events) = CallSession::new(config, callee_sinks).await?;
    let (caller, callee) = (Arc::new(caller), Arc::new(callee));

    // The application's signaling channel: text, one direction per side.
    let (to_callee, callee_inbox) = unbounded_channel();
    let (to_caller, caller_inbox) = unbounded_channel();
    let mut caller_status = wire(&caller, caller_events, to_callee, caller_inbox);
    let mut callee_status = wire(&callee, callee_events, to_caller, callee_inbox);

    caller.start().await?; // the offer goes out; the callee answers it
    for (side, status) in [
        ("caller", &mut caller_status),
        ("callee", &mut callee_status),
    ] {
        match timeout(Duration::from_secs(10), status.recv()).await {
            Ok(Some(CallEvent::Connected)) => println!("{side}: connected"),
            Ok(Some(CallEvent::Ended(reason))) => bail!("the {side} ended the call: {reason}"),
            _ => bail!("the {side} did not connect within 10 s"),
        }
    }

    // Both sides send a tone and the moving test pattern, stamped from the wall epoch.
    let caller_pump = MediaPump::start(caller.sender(), media(640, 480, 440.0)?)?;
    let callee_pump = MediaPump::start(callee.sender(), media(320, 240, 660.0)?)?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let caller_stats = caller.refresh_stats().await;
    let callee_stats = callee.refresh_stats().await;
    print_side("caller", &caller_stats);
    print_side("callee", &callee_stats);
    let (shown, latency) = {
        let record = record.lock().unwrap_or_else(|e| e.into_inner());
        (record.shown, record.latency_ms.percentiles())
    };
    println!(
        "callee showed {shown} pictures, capture-to-display latency p50 {:.1} ms, p95 {:.1} ms",
        latency.p50, latency.p95
    );

    // Stopping a pump joins its threads, so it runs off the async workers.
    for pump in [caller_pump, callee_pump] {
        tokio::task::spawn_blocking(move || pump.stop()).await??;
    }
    caller.hang_up("bye");
    match timeout(Duration::from_secs(2), callee_status.recv()).await {
        Ok(Some(CallEvent::Ended(EndReason::RemoteHungUp(reason)))) => {
            println!("callee: the caller hung up ({reason})");
        }
        other => bail!("the callee did not see the hang-up: {other:?}"),
    }
    if shown == 0 {
        bail!("no video reached the callee");
    }
    Ok(())
}

/// Connects one session to the application's channel: its signals go out as JSON text, the
/// peer's text comes in and is applied, in order. Returns the session's other events.
fn wire(
    session: &Arc<CallSession>,
    mut events: CallEvents,
    outbox: UnboundedSender<String>,
    mut inbox: UnboundedReceiver<String>,
) -> UnboundedReceiver<CallEvent> {
    let (status_tx, status) = unbounded_channel();
    // Outgoing: each signal as JSON, in the order emitted; Connected and Ended go to the owner.
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                CallEvent::Signal(signal) => match serde_json::to_string(&signal) {
                    Ok(text) => drop(outbox.send(text)),
                    Err(e) => eprintln!("cannot serialize a {} signal: {e}", signal.kind()),
                },
                other => drop(status_tx.send(other)),
            }
        }
    });
    // Incoming: text from the peer, parsed and applied one at a time. The task holds the
    // session weakly, so that dropping it still hangs up.
    let session: Weak<CallSession> = Arc::downgrade(session);
    tokio::spawn(async move {
        while let Some(text) = inbox.recv().await {
            let Some(session) = session.upgrade() else {
                break;
            };
            match serde_json::from_str::<Signal>(&text) {
                Ok(signal) => {
                    let kind = signal.kind();
                    if let Err(e) = session.handle_signal(signal).await {
                        eprintln!("the peer's {kind} signal was refused: {e}");
                    }
                }
                Err(e) => eprintln!("not a signal ({e}): {text}"),
            }
        }
    });
    status
}

/// A 20 ms Opus tone at `hz` and the test pattern at `width` x `height`, 30 fps, 1 Mbit/s.
fn media(width: u32, height: u32, hz: f32) -> Result<LocalMedia> {
    let now = Instant::now();
    let pattern = TestPattern::new(width, height, 30, now)?.with_epoch(wall_epoch());
    let h264 = H264Config {
        width,
        height,
        bitrate_bps: 1_000_000,
        fps: 30.0,
        keyframe_interval: 0,
    };
    Ok(LocalMedia {
        audio: Some(LocalAudio {
            source: Box::new(Tone::new(FORMAT, hz, 0.3, now)),
            opus: OpusConfig::voice(FORMAT),
        }),
        video: Some(LocalVideo {
            source: Box::new(pattern),
            h264,
        }),
    })
}

fn print_side(side: &str, stats: &CallStats) {
    let (t, a, v) = (&stats.transport, &stats.audio, &stats.video);
    println!(
        "{side}: RTT {}, packets sent {} received {} lost {}, video frames decoded {}, \
         audio concealed {:.2} %, jitter buffer mean {}",
        t.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
        t.packets_sent,
        t.packets_received,
        t.packets_lost,
        v.frames_decoded,
        a.concealed_ratio * 100.0,
        a.jitter_buffer_ms
            .map_or("-".into(), |m| format!("{m:.0} ms")),
    );
}
