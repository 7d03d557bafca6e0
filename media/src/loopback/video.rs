//! The video path of the loopback: capture, H.264 encode, H.264 decode, sink, with latency read
//! from the stamps in the decoded pixels and PSNR against the source frames.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, TrySendError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{join, ms, sleep_until, stage, DirectLive, VideoLoop, VideoReport};
use crate::codec::h264::{EncodedVideo, H264Decoder, H264Encoder};
use crate::error::Error;
use crate::frame::{Read, VideoFrame};
use crate::measure::video::psnr;
use crate::stats::Samples;
use crate::video::stamp::read_stamp;

/// Frames in flight between two stages before the upstream one drops.
const QUEUE: usize = 4;

struct Captured {
    frames: u64,
    dropped: u64,
}

struct Encoded {
    encode_ms: Samples,
    sent: u64,
    skipped: u64,
    bytes: u64,
    keyframes: u64,
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
    capture: JoinHandle<Result<Captured, Error>>,
    encode: JoinHandle<Result<Encoded, Error>>,
    decode: JoinHandle<Result<Decoded, Error>>,
    sink: JoinHandle<Result<Shown, Error>>,
}

/// Starts the four stage threads of the video path.
pub(super) fn spawn(
    path: VideoLoop,
    start: Instant,
    duration: Duration,
    stop: Arc<AtomicBool>,
    live: Arc<DirectLive>,
) -> Result<VideoHandle, Error> {
    let VideoLoop {
        mut source,
        mut sink,
        h264,
    } = path;
    let fps = h264.fps.max(1.0);
    let interval = Duration::from_secs_f64(1.0 / f64::from(fps));
    let expected = (duration.as_secs_f64() * f64::from(fps)).ceil() as usize + 1;
    let epoch = source.stamp_epoch();
    let (width, height) = source.size();
    let mut encoder = H264Encoder::new(h264)?;
    let mut decoder = H264Decoder::new()?;
    let keyframe_wanted = Arc::new(AtomicBool::new(false));
    let keyframe_request = keyframe_wanted.clone();
    let end = start + duration;

    // Source frames travel capture -> encode -> decode -> sink and back to capture.
    let (raw_tx, raw_rx) = sync_channel::<VideoFrame>(QUEUE);
    let (raw_free_tx, raw_free_rx) = sync_channel::<VideoFrame>(QUEUE * 4);
    let (enc_tx, enc_rx) = sync_channel::<(EncodedVideo, VideoFrame)>(QUEUE);
    let (enc_free_tx, enc_free_rx) = sync_channel::<EncodedVideo>(QUEUE * 2);
    let (dec_tx, dec_rx) = sync_channel::<(VideoFrame, VideoFrame)>(QUEUE);
    let (dec_free_tx, dec_free_rx) = sync_channel::<VideoFrame>(QUEUE * 2);
    let requeue_tx = raw_free_tx.clone();
    let enc_recycle_tx = enc_free_tx.clone();
    let encode_requeue_tx = raw_free_tx.clone();
    let decode_requeue_tx = raw_free_tx.clone();
    let capture_live = live.clone();
    let (encode_live, decode_live, sink_live) = (live.clone(), live.clone(), live);

    let capture = stage("video-capture", move || {
        let live = source.is_live();
        let mut out = Captured {
            frames: 0,
            dropped: 0,
        };
        let mut n: u32 = 0;
        while !stop.load(Ordering::Relaxed) {
            let deadline = start + interval * n;
            if deadline >= end {
                break;
            }
            let mut frame = match raw_free_rx.try_recv() {
                Ok(frame) => frame,
                Err(_) => VideoFrame::black(width, height, start)?,
            };
            let now = if live { Instant::now() } else { deadline };
            match source.read(now, &mut frame)? {
                Read::Frame => {}
                Read::Pending => {
                    thread::sleep(Duration::from_millis(1));
                    let _ = requeue_tx.try_send(frame);
                    continue;
                }
                Read::End => break,
            }
            if !live {
                sleep_until(frame.capture);
            }
            n += 1;
            out.frames += 1;
            DirectLive::add(&capture_live.video_captured, 1);
            if let Err(TrySendError::Full(frame)) = raw_tx.try_send(frame) {
                out.dropped += 1;
                let _ = requeue_tx.try_send(frame);
            }
        }
        Ok(out)
    })?;

    let encode = stage("video-encode", move || {
        let mut out = Encoded {
            encode_ms: Samples::with_capacity(expected),
            sent: 0,
            skipped: 0,
            bytes: 0,
            keyframes: 0,
        };
        for frame in raw_rx {
            if keyframe_request.swap(false, Ordering::Relaxed) {
                encoder.request_keyframe();
            }
            let mut encoded = enc_free_rx
                .try_recv()
                .unwrap_or_else(|_| EncodedVideo::new());
            let t0 = Instant::now();
            let produced = encoder.encode(&frame, &mut encoded)?;
            let took = t0.elapsed();
            out.encode_ms.push(ms(took));
            if !produced {
                out.skipped += 1;
                let _ = encode_requeue_tx.try_send(frame);
                let _ = enc_recycle_tx.try_send(encoded);
                continue;
            }
            out.sent += 1;
            out.bytes += encoded.data.len() as u64;
            out.keyframes += u64::from(encoded.keyframe);
            DirectLive::add(&encode_live.video_encoded, 1);
            DirectLive::add(&encode_live.video_keyframes, u64::from(encoded.keyframe));
            DirectLive::add(&encode_live.video_bytes, encoded.data.len() as u64);
            DirectLive::add(&encode_live.video_encode_ns, took.as_nanos() as u64);
            if enc_tx.send((encoded, frame)).is_err() {
                break;
            }
        }
        Ok(out)
    })?;

    let decode = stage("video-decode", move || {
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

    let sink = stage("video-sink", move || {
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
        seconds: duration.as_secs_f64(),
        capture,
        encode,
        decode,
        sink,
    })
}

impl VideoHandle {
    /// True once the capture stage has stopped (end of source or of the run).
    pub(super) fn is_finished(&self) -> bool {
        self.capture.is_finished()
    }

    /// Waits for every stage and reports.
    pub(super) fn join(self) -> Result<VideoReport, Error> {
        let captured = join(self.capture, "video capture")?;
        let encoded = join(self.encode, "video encode")?;
        let decoded = join(self.decode, "video decode")?;
        let shown = join(self.sink, "video sink")?;
        let seconds = self.seconds.max(f64::EPSILON);
        Ok(VideoReport {
            frames_captured: captured.frames,
            frames_sent: encoded.sent,
            frames_shown: shown.shown,
            frames_dropped: captured.dropped + encoded.skipped,
            width: shown.width,
            height: shown.height,
            encode_ms: encoded.encode_ms.measured(),
            decode_ms: decoded.decode_ms.measured(),
            latency_ms: shown.latency_ms.measured(),
            psnr_db: (shown.psnr_count > 0).then(|| shown.psnr_sum / shown.psnr_count as f64),
            stamp_errors: shown.stamp_errors,
            stamped: self.stamped,
            kbps: encoded.bytes as f64 * 8.0 / seconds / 1000.0,
            keyframes: encoded.keyframes,
            decode_errors: decoded.errors,
        })
    }
}
