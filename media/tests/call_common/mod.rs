//! Helpers shared by the call tests: two sessions on 127.0.0.1 whose signals are relayed in
//! memory, sinks that keep what they get, and a sender that streams a tone and the stamped
//! test pattern through the real encoders in real time.

#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::{Duration, Instant};

use duet_media::audio::synth::Tone;
use duet_media::audio::{AudioSink, AudioSource};
use duet_media::call::{
    CallConfig, CallEvent, CallEvents, CallSession, CallSinks, EndReason, MediaSender,
};
use duet_media::codec::h264::{EncodedVideo, H264Config, H264Encoder};
use duet_media::codec::opus::{OpusConfig, OpusEncoder};
use duet_media::video::pattern::TestPattern;
use duet_media::video::stamp::{read_stamp, Stamp};
use duet_media::video::{VideoSink, VideoSource};
use duet_media::{AudioFormat, AudioFrame, Channels, Error, FrameDuration, VideoFrame};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Mono, 20 ms frames.
pub const FORMAT: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};

/// Keeps every sample it is given.
#[derive(Clone, Default)]
pub struct KeepAudio(pub Arc<Mutex<Vec<i16>>>);

impl AudioSink for KeepAudio {
    fn write(&mut self, _now: Instant, frame: &duet_media::AudioFrame) -> Result<(), Error> {
        self.0.lock().unwrap().extend_from_slice(&frame.samples);
        Ok(())
    }
}

/// Keeps the stamp of every picture it is given (`None` when unreadable).
#[derive(Clone, Default)]
pub struct KeepStamps(pub Arc<Mutex<Vec<Option<Stamp>>>>);

impl VideoSink for KeepStamps {
    fn write(&mut self, _now: Instant, frame: &VideoFrame) -> Result<(), Error> {
        self.0.lock().unwrap().push(read_stamp(frame));
        Ok(())
    }
}

/// One side of a test call: its session, what its sinks received, and its non-signal events.
pub struct Side {
    pub session: Arc<CallSession>,
    pub audio: KeepAudio,
    pub stamps: KeepStamps,
    pub events: UnboundedReceiver<CallEvent>,
    /// While true, this side's signals are not carried to the other side.
    pub cut: Arc<AtomicBool>,
}

impl Side {
    /// Waits up to `limit` for an event matching `want`; returns it.
    pub async fn wait_for(
        &mut self,
        limit: Duration,
        want: impl Fn(&CallEvent) -> bool,
    ) -> Option<CallEvent> {
        tokio::time::timeout(limit, async {
            while let Some(event) = self.events.recv().await {
                if want(&event) {
                    return Some(event);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// Waits up to `limit` for the call to end; returns why.
    pub async fn wait_ended(&mut self, limit: Duration) -> Option<EndReason> {
        match self
            .wait_for(limit, |e| matches!(e, CallEvent::Ended(_)))
            .await
        {
            Some(CallEvent::Ended(reason)) => Some(reason),
            _ => None,
        }
    }
}

/// Two sessions with `config`, each relaying its signals to the other; not started.
pub async fn pair(config: CallConfig) -> (Side, Side) {
    let (a, a_events, a_rest) = side(config.clone()).await;
    let (b, b_events, b_rest) = side(config).await;
    relay(a_events, Arc::downgrade(&b.session), a.cut.clone(), a_rest);
    relay(b_events, Arc::downgrade(&a.session), b.cut.clone(), b_rest);
    (a, b)
}

async fn side(
    config: CallConfig,
) -> (
    Side,
    CallEvents,
    tokio::sync::mpsc::UnboundedSender<CallEvent>,
) {
    let audio = KeepAudio::default();
    let stamps = KeepStamps::default();
    let sinks = CallSinks {
        audio: Some(Box::new(audio.clone())),
        video: Some(Box::new(stamps.clone())),
    };
    let (session, events) = CallSession::new(config, sinks).await.unwrap();
    let (rest_tx, rest_rx) = unbounded_channel();
    let side = Side {
        session: Arc::new(session),
        audio,
        stamps,
        events: rest_rx,
        cut: Arc::new(AtomicBool::new(false)),
    };
    (side, events, rest_tx)
}

/// Carries `events`' signals to `to` (unless `cut`), and everything else to `rest`.
fn relay(
    mut events: CallEvents,
    to: Weak<CallSession>,
    cut: Arc<AtomicBool>,
    rest: tokio::sync::mpsc::UnboundedSender<CallEvent>,
) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                CallEvent::Signal(signal) => {
                    if cut.load(Ordering::Relaxed) {
                        continue;
                    }
                    let Some(to) = to.upgrade() else { continue };
                    if let Err(e) = to.handle_signal(signal).await {
                        panic!("signal refused: {e}");
                    }
                }
                other => {
                    let _ = rest.send(other);
                }
            }
        }
    });
}

/// What a sender thread sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    pub audio_packets: u64,
    pub video_frames: u64,
    pub keyframes: u64,
}

/// Streams a tone and the stamped test pattern (`width` x `height`, 30 fps) into `sender`
/// in real time for `duration`, on a thread of its own.
pub fn stream(
    sender: MediaSender,
    width: u32,
    height: u32,
    duration: Duration,
) -> thread::JoinHandle<Sent> {
    thread::spawn(move || {
        let start = Instant::now();
        let mut tone = Tone::new(FORMAT, 440.0, 0.3, start);
        let mut opus = OpusEncoder::new(OpusConfig::voice(FORMAT)).unwrap();
        let mut pattern = TestPattern::new(width, height, 30, start).unwrap();
        let mut h264 = H264Encoder::new(H264Config {
            width,
            height,
            bitrate_bps: 600_000,
            fps: 30.0,
            keyframe_interval: 0,
        })
        .unwrap();
        let mut frame = AudioFrame::silent(FORMAT, start);
        let mut picture = VideoFrame::black(width, height, start).unwrap();
        let mut packet = Vec::new();
        let mut encoded = EncodedVideo::new();
        let mut sent = Sent::default();
        let (mut next_audio, mut next_video) = (start, start);
        while start.elapsed() < duration {
            let now = Instant::now();
            if now >= next_audio {
                tone.read(now, &mut frame).unwrap();
                opus.encode(&frame, &mut packet).unwrap();
                if sender.send_audio(&packet, 960).unwrap() {
                    sent.audio_packets += 1;
                }
                next_audio += FORMAT.frame.duration();
            }
            if now >= next_video {
                pattern.read(now, &mut picture).unwrap();
                if sender.keyframe_requested() {
                    h264.request_keyframe();
                }
                if h264.encode(&picture, &mut encoded).unwrap()
                    && sender.send_video(&encoded).unwrap()
                {
                    sent.video_frames += 1;
                    sent.keyframes += u64::from(encoded.keyframe);
                }
                next_video += Duration::from_millis(33);
            }
            let wake = next_audio.min(next_video);
            thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
        sent
    })
}

/// Root mean square of `samples`.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}
