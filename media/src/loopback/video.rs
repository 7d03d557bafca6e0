//! The video path of the loopback: the call's video sender (capture, pace, H.264 encode), then
//! H.264 decode and the sink, with latency read from the stamps in the decoded pixels and PSNR
//! against the source frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{DirectLive, VideoLoop, VideoReport};
use crate::adapt::Reconfigure;
use crate::call::pump::{self, Live, LocalVideo, VideoOutlet, VideoSent, Window};
use crate::codec::h264::{EncodedVideo, H264Decoder};
use crate::error::Error;
use crate::frame::VideoFrame;
use crate::measure::video::psnr;
use crate::stage::{self, join, ms};
use crate::stats::Samples;
use crate::video::stamp::read_stamp;

/// Frames in flight between two stages before the upstream one drops.
const QUEUE: usize = 4;

/// What travels from the sender to the decoder: an access unit and the source picture it was
/// encoded from (for PSNR).
type Unit = (EncodedVideo, VideoFrame);

/// The sender's outlet: access units go to the decoder through a short queue, dropped (and
/// counted as not sent) when the decoder is behind; a keyframe follows a decode error.
struct ToDecoder {
    units: SyncSender<Unit>,
    free_units: Receiver<EncodedVideo>,
    free_pictures: Receiver<VideoFrame>,
    keyframe_wanted: Arc<AtomicBool>,
    counters: Arc<DirectLive>,
    stop: Arc<AtomicBool>,
}

impl VideoOutlet for ToDecoder {
    fn keyframe_wanted(&mut self) -> bool {
        self.keyframe_wanted.swap(false, Ordering::Relaxed)
    }

    fn reconfigure(&mut self) -> Option<Reconfigure> {
        None
    }

    fn deliver(
        &mut self,
        encoded: &mut EncodedVideo,
        source: &mut VideoFrame,
    ) -> Result<bool, Error> {
        DirectLive::add(&self.counters.video_encoded, 1);
        DirectLive::add(&self.counters.video_keyframes, u64::from(encoded.keyframe));
        DirectLive::add(&self.counters.video_bytes, encoded.data.len() as u64);
        let mut unit = self
            .free_units
            .try_recv()
            .unwrap_or_else(|_| EncodedVideo::new());
        let mut original = match self.free_pictures.try_recv() {
            Ok(picture) => picture,
            Err(_) => VideoFrame::black(source.width, source.height, source.capture)?,
        };
        std::mem::swap(&mut unit, encoded);
        std::mem::swap(&mut original, source);
        match self.units.try_send((unit, original)) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => Ok(false),
            Err(TrySendError::Disconnected(_)) => {
                // The decoder stopped (its error is reported when it is joined).
                self.stop.store(true, Ordering::Relaxed);
                Ok(false)
            }
        }
    }
}

struct Decoded {
    decode_ms: Samples,
    errors: u64,
}

struct Shown {
    shown: u64,
    latency_ms: Samples,
    psnr_sum: f64,
    psnr_count: u64,
    stamp_errors: u64,
    width: u32,
    height: u32,
}

/// The running video path.
pub(super) struct VideoHandle {
    stamped: bool,
    seconds: f64,
    send: JoinHandle<Result<VideoSent, Error>>,
    decode: JoinHandle<Result<Decoded, Error>>,
    sink: JoinHandle<Result<Shown, Error>>,
}

/// Starts the video path: the call's sender (capture, pace, encode), a decoder and the sink,
/// each on a thread of its own.
pub(super) fn spawn(
    path: VideoLoop,
    window: Window,
    stop: Arc<AtomicBool>,
    sent: Arc<Live>,
    counters: Arc<DirectLive>,
) -> Result<VideoHandle, Error> {
    let VideoLoop {
        source,
        mut sink,
        h264,
    } = path;
    let fps = h264.fps.max(1.0);
    let seconds = window
        .until
        .map_or(60.0, |until| (until - window.from).as_secs_f64());
    let expected = (seconds * f64::from(fps)).ceil() as usize + 1;
    let epoch = source.stamp_epoch();
    let mut decoder = H264Decoder::new()?;
    let keyframe_wanted = Arc::new(AtomicBool::new(false));
    let start = window.from;

    // Access units and source pictures travel sender -> decoder -> sink and back.
    let (enc_tx, enc_rx) = sync_channel::<Unit>(QUEUE);
    let (enc_free_tx, enc_free_rx) = sync_channel::<EncodedVideo>(QUEUE * 2);
    let (raw_free_tx, raw_free_rx) = sync_channel::<VideoFrame>(QUEUE * 4);
    let (dec_tx, dec_rx) = sync_channel::<(VideoFrame, VideoFrame)>(QUEUE);
    let (dec_free_tx, dec_free_rx) = sync_channel::<VideoFrame>(QUEUE * 2);
    let decode_requeue_tx = raw_free_tx.clone();
    let (decode_live, sink_live) = (counters.clone(), counters.clone());

    let outlet = ToDecoder {
        units: enc_tx,
        free_units: enc_free_rx,
        free_pictures: raw_free_rx,
        keyframe_wanted: keyframe_wanted.clone(),
        counters,
        stop: stop.clone(),
    };
    let send = pump::spawn_video(LocalVideo { source, h264 }, outlet, window, stop, sent)?;

    let decode = stage::spawn("video-decode", move || {
        let mut out = Decoded {
            decode_ms: Samples::with_capacity(expected),
            errors: 0,
        };
        for (encoded, original) in enc_rx {
            let mut picture = match dec_free_rx.try_recv() {
                Ok(frame) => frame,
                Err(_) => VideoFrame::black(encoded.width, encoded.height, start)?,
            };
            let t0 = Instant::now();
            let result = decoder.decode(&encoded.data, &mut picture);
            let took = t0.elapsed();
            out.decode_ms.push(ms(took));
            DirectLive::add(&decode_live.video_decode_ns, took.as_nanos() as u64);
            let (seq, capture) = (encoded.seq, encoded.capture);
            let _ = enc_free_tx.try_send(encoded);
            match result {
                Ok(true) => {
                    picture.seq = seq;
                    picture.capture = capture;
                    if dec_tx.send((picture, original)).is_err() {
                        break;
                    }
                }
                Ok(false) => {
                    let _ = decode_requeue_tx.try_send(original);
                }
                Err(_) => {
                    out.errors += 1;
                    keyframe_wanted.store(true, Ordering::Relaxed);
                    let _ = decode_requeue_tx.try_send(original);
                }
            }
        }
        Ok(out)
    })?;

    let sink = stage::spawn("video-sink", move || {
        let mut out = Shown {
            shown: 0,
            latency_ms: Samples::with_capacity(expected),
            psnr_sum: 0.0,
            psnr_count: 0,
            stamp_errors: 0,
            width: 0,
            height: 0,
        };
        for (picture, original) in dec_rx {
            let now = Instant::now();
            sink.write(now, &picture)?;
            out.shown += 1;
            out.width = picture.width;
            out.height = picture.height;
            DirectLive::add(&sink_live.video_decoded, 1);
            let size = u64::from(picture.width) << 32 | u64::from(picture.height);
            sink_live.video_size.store(size, Ordering::Relaxed);
            let captured_at = match epoch {
                Some(epoch) => match read_stamp(&picture) {
                    Some(stamp) if u64::from(stamp.seq) == (original.seq & 0xffff_ffff) => {
                        Some(epoch + Duration::from_micros(u64::from(stamp.time_us)))
                    }
                    _ => {
                        out.stamp_errors += 1;
                        None
                    }
                },
                None => Some(picture.capture),
            };
            if let Some(at) = captured_at {
                let latency = now.saturating_duration_since(at);
                out.latency_ms.push(ms(latency));
                DirectLive::add(&sink_live.video_latency_us, latency.as_micros() as u64);
                DirectLive::add(&sink_live.video_latency_count, 1);
            }
            if let Some(p) = psnr(&original, &picture).filter(|p| p.is_finite()) {
                out.psnr_sum += p;
                out.psnr_count += 1;
            }
            let _ = raw_free_tx.try_send(original);
            let _ = dec_free_tx.try_send(picture);
        }
        sink.finish()?;
        Ok(out)
    })?;

    Ok(VideoHandle {
        stamped: epoch.is_some(),
        seconds,
        send,
        decode,
        sink,
    })
}

impl VideoHandle {
    /// True once the sender has stopped (end of source or of the run).
    pub(super) fn is_finished(&self) -> bool {
        self.send.is_finished()
    }

    /// Waits for every stage and reports.
    pub(super) fn join(self) -> Result<VideoReport, Error> {
        let sent = join(self.send, "video send")?;
        let decoded = join(self.decode, "video decode")?;
        let shown = join(self.sink, "video sink")?;
        let seconds = self.seconds.max(f64::EPSILON);
        Ok(VideoReport {
            frames_captured: sent.captured,
            frames_sent: sent.sent,
            frames_shown: shown.shown,
            frames_dropped: sent.skipped + sent.not_sent,
            width: shown.width,
            height: shown.height,
            encode_ms: sent.encode_ms.measured(),
            decode_ms: decoded.decode_ms.measured(),
            latency_ms: shown.latency_ms.measured(),
            psnr_db: (shown.psnr_count > 0).then(|| shown.psnr_sum / shown.psnr_count as f64),
            stamp_errors: shown.stamp_errors,
            stamped: self.stamped,
            kbps: sent.bytes as f64 * 8.0 / seconds / 1000.0,
            keyframes: sent.keyframes,
            decode_errors: decoded.errors,
        })
    }
}
