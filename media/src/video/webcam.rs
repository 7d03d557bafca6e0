//! Webcam capture through nokhwa (V4L2 on Linux, AVFoundation on macOS, Media Foundation on
//! Windows), converted to I420 with [`crate::video::convert`].
//!
//! nokhwa's camera blocks until the next picture and cannot move between threads, so each
//! [`Webcam`] owns a small capture thread: it opens the camera, waits for pictures, converts
//! each one to I420 as soon as it arrives (that instant is the frame's capture time) and hands
//! it over through a channel of [`QUEUE`] frames. [`VideoSource::read`] never blocks: it takes
//! the newest frame, or returns [`Read::Pending`] when none has arrived since the last read.
//! Frame buffers travel back to the thread for reuse, so a warmed-up capture allocates
//! nothing per frame apart from what the JPEG library needs for MJPEG.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::Instant;

use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};
use nokhwa::Camera;

use crate::error::{DeviceError, Error};
use crate::frame::{check_size, Read, VideoFrame};
use crate::video::convert::{nv12_to_i420, rgb24_to_i420, yuyv_to_i420, MjpegDecoder};
use crate::video::VideoSource;

/// Frames waiting between the capture thread and [`Webcam::read`]; when the reader falls
/// behind, newer frames are dropped until it catches up.
pub const QUEUE: usize = 2;

/// Pixel formats duet converts, cheapest first: among otherwise equal camera modes the
/// earlier one is chosen.
const FORMATS: [FrameFormat; 4] = [
    FrameFormat::NV12,
    FrameFormat::YUYV,
    FrameFormat::MJPEG,
    FrameFormat::RAWRGB,
];

/// A camera found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    /// The index to pass to [`Webcam::open`].
    pub index: u32,
    /// The name the driver gives the camera.
    pub name: String,
    /// Where it is attached (for V4L2, its device node).
    pub description: String,
}

/// The cameras on this machine; an empty list when there are none.
pub fn list_cameras() -> Result<Vec<CameraInfo>, Error> {
    // v4l's device walk unwraps on odd names under /dev: a panic there is an error here.
    let found = panic::catch_unwind(AssertUnwindSafe(|| nokhwa::query(ApiBackend::Auto)))
        .map_err(|_| stream_error("cameras", "listing the cameras failed".into()))?
        .map_err(|e| stream_error("cameras", e.to_string()))?;
    Ok(found
        .into_iter()
        .filter_map(|info| {
            Some(CameraInfo {
                index: info.index().as_index().ok()?,
                name: info.human_name(),
                description: info.description().to_string(),
            })
        })
        .collect())
}

fn stream_error(name: &str, reason: String) -> Error {
    DeviceError::Stream {
        kind: "camera",
        name: name.to_string(),
        reason,
    }
    .into()
}

fn open_error(index: u32, reason: String) -> Error {
    DeviceError::Open {
        kind: "camera",
        name: format!("camera {index}"),
        reason,
    }
    .into()
}

/// What the capture thread sends.
enum Captured {
    Frame(VideoFrame),
    Failed(String),
}

/// The mode a camera was opened in.
struct Opened {
    name: String,
    format: CameraFormat,
}

/// A live camera as a [`VideoSource`] of I420 frames.
///
/// Dropping it stops the capture thread after the camera's next picture (the thread is not
/// joined: a stalled camera would block the caller).
#[derive(Debug)]
pub struct Webcam {
    name: String,
    width: u32,
    height: u32,
    fps: u32,
    format: FrameFormat,
    frames: Receiver<Captured>,
    recycle: SyncSender<VideoFrame>,
    stop: Arc<AtomicBool>,
    /// Frames the capture thread dropped because the queue was full.
    dropped: Arc<AtomicU64>,
    seq: u64,
    /// Frames [`VideoSource::read`] passed over for a newer one.
    skipped: u64,
}

impl Webcam {
    /// Opens camera `index` in the mode closest to `width` x `height` at `fps` (nearest size,
    /// then nearest rate, then the cheapest pixel format among NV12, YUYV, MJPEG and RGB) and
    /// starts capturing. A missing camera is [`DeviceError::NotFound`].
    pub fn open(index: u32, width: u32, height: u32, fps: u32) -> Result<Self, Error> {
        check_size(width, height)?;
        if fps == 0 {
            return Err(Error::Config("camera frame rate of 0 fps".into()));
        }
        // Ask first, so that "no camera" is a plain answer rather than a driver error.
        if let Ok(cameras) = list_cameras() {
            if !cameras.iter().any(|c| c.index == index) {
                return Err(DeviceError::NotFound {
                    kind: "camera",
                    name: Some(format!("camera {index}")),
                }
                .into());
            }
        }
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<Opened, Error>>(1);
        let (frames_tx, frames) = mpsc::sync_channel(QUEUE);
        let (recycle, recycled) = mpsc::sync_channel(QUEUE + 2);
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let ends = ThreadEnds {
            frames: frames_tx,
            recycled,
            stop: Arc::clone(&stop),
            dropped: Arc::clone(&dropped),
        };
        thread::Builder::new()
            .name(format!("camera-{index}"))
            .spawn(move || match open_camera(index, width, height, fps) {
                Ok((mut camera, opened)) => {
                    let format = opened.format;
                    if ready_tx.send(Ok(opened)).is_ok() {
                        capture(&mut camera, format, &ends);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| open_error(index, format!("cannot start the capture thread: {e}")))?;
        let opened = ready_rx
            .recv()
            .map_err(|_| open_error(index, "the camera driver failed while opening".into()))??;
        let resolution = opened.format.resolution();
        Ok(Self {
            name: opened.name,
            width: resolution.width(),
            height: resolution.height(),
            fps: opened.format.frame_rate(),
            format: opened.format.format(),
            frames,
            recycle,
            stop,
            dropped,
            seq: 0,
            skipped: 0,
        })
    }

    /// The camera's name, as its driver reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Frames per second of the mode the camera was opened in.
    pub fn fps(&self) -> u32 {
        self.fps
    }

    /// The camera's pixel format (before conversion to I420): "NV12", "YUYV", "MJPEG" or "RAWRGB".
    pub fn pixel_format(&self) -> String {
        self.format.to_string()
    }

    /// Frames captured but never returned by a read: dropped while the queue was full, or
    /// passed over for a newer frame.
    pub fn skipped(&self) -> u64 {
        self.skipped + self.dropped.load(Ordering::Relaxed)
    }
}

impl VideoSource for Webcam {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Swaps the newest captured frame into `frame`, or returns [`Read::Pending`] when none
    /// has arrived since the last call. `frame.capture` is when the picture arrived.
    fn read(&mut self, _now: Instant, frame: &mut VideoFrame) -> Result<Read, Error> {
        let mut newest: Option<VideoFrame> = None;
        loop {
            match self.frames.try_recv() {
                Ok(Captured::Frame(captured)) => {
                    if let Some(older) = newest.replace(captured) {
                        self.skipped += 1;
                        let _ = self.recycle.try_send(older);
                    }
                }
                Ok(Captured::Failed(reason)) => return Err(stream_error(&self.name, reason)),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) if newest.is_none() => {
                    let reason = "the capture thread has stopped".to_string();
                    return Err(stream_error(&self.name, reason));
                }
                Err(TryRecvError::Disconnected) => break,
            }
        }
        let Some(mut captured) = newest else {
            return Ok(Read::Pending);
        };
        std::mem::swap(frame, &mut captured);
        frame.seq = self.seq;
        self.seq += 1;
        // The caller's old buffer goes back to the capture thread.
        let _ = self.recycle.try_send(captured);
        Ok(Read::Frame)
    }

    fn is_live(&self) -> bool {
        true
    }
}

impl Drop for Webcam {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Opens the camera and sets the mode closest to the request. Runs on the capture thread.
fn open_camera(index: u32, width: u32, height: u32, fps: u32) -> Result<(Camera, Opened), Error> {
    let driver = |e: nokhwa::NokhwaError| open_error(index, e.to_string());
    let any = RequestedFormat::with_formats(RequestedFormatType::None, &FORMATS);
    let mut camera = Camera::new(CameraIndex::Index(index), any).map_err(driver)?;
    let modes = camera.compatible_camera_formats().map_err(driver)?;
    let best = closest(&modes, width, height, fps).ok_or_else(|| {
        let offered: Vec<String> = modes.iter().map(ToString::to_string).collect();
        open_error(
            index,
            format!(
                "no mode in NV12, YUYV, MJPEG or RGB at an even size up to 4096x2304 \
                 (the camera offers: {})",
                offered.join(", ")
            ),
        )
    })?;
    if camera.camera_format() != best {
        let exact = [best.format()];
        let request = RequestedFormat::with_formats(RequestedFormatType::Exact(best), &exact);
        camera.set_camera_requset(request).map_err(driver)?;
    }
    camera.open_stream().map_err(driver)?;
    let name = camera.info().human_name();
    let format = camera.camera_format();
    Ok((camera, Opened { name, format }))
}

/// The mode nearest `width` x `height` (by squared distance), then nearest `fps`, then
/// cheapest to convert; only modes duet can convert at a usable size count.
fn closest(modes: &[CameraFormat], width: u32, height: u32, fps: u32) -> Option<CameraFormat> {
    modes
        .iter()
        .filter(|m| check_size(m.width(), m.height()).is_ok())
        .filter_map(|m| Some((FORMATS.iter().position(|f| *f == m.format())?, m)))
        .min_by_key(|(cost, m)| {
            let dw = i64::from(m.width()) - i64::from(width);
            let dh = i64::from(m.height()) - i64::from(height);
            (dw * dw + dh * dh, m.frame_rate().abs_diff(fps), *cost)
        })
        .map(|(_, m)| *m)
}

/// What the capture thread holds of its [`Webcam`].
struct ThreadEnds {
    /// Converted frames and failures, to [`Webcam::read`].
    frames: SyncSender<Captured>,
    /// Buffers handed back by [`Webcam::read`] for reuse.
    recycled: Receiver<VideoFrame>,
    /// Set when the [`Webcam`] is dropped.
    stop: Arc<AtomicBool>,
    /// Frames dropped because the queue was full.
    dropped: Arc<AtomicU64>,
}

/// The capture loop: waits for each picture, converts it and passes it on, until the
/// [`Webcam`] is dropped or the camera fails.
fn capture(camera: &mut Camera, format: CameraFormat, ends: &ThreadEnds) {
    let ThreadEnds {
        frames,
        recycled,
        stop,
        dropped,
    } = ends;
    let (width, height) = (format.width(), format.height());
    let mut mjpeg = MjpegDecoder::new();
    let mut spare: Option<VideoFrame> = None;
    while !stop.load(Ordering::Relaxed) {
        let raw = match camera.frame_raw() {
            Ok(raw) => raw,
            Err(e) => {
                let _ = frames.send(Captured::Failed(e.to_string()));
                return;
            }
        };
        let arrived = Instant::now();
        let buffer = spare.take().or_else(|| recycled.try_recv().ok());
        let mut frame = match buffer {
            Some(frame) => frame,
            None => match VideoFrame::black(width, height, arrived) {
                Ok(frame) => frame,
                Err(e) => {
                    let _ = frames.send(Captured::Failed(e.to_string()));
                    return;
                }
            },
        };
        let converted = match format.format() {
            FrameFormat::NV12 => nv12_to_i420(&raw, width, height, &mut frame),
            FrameFormat::YUYV => yuyv_to_i420(&raw, width, height, &mut frame),
            FrameFormat::MJPEG => mjpeg.decode(&raw, &mut frame),
            _ => rgb24_to_i420(&raw, width, height, &mut frame),
        };
        match converted {
            Ok(()) => {
                frame.capture = arrived;
                match frames.try_send(Captured::Frame(frame)) {
                    Ok(()) => {}
                    // The reader is behind: this frame is dropped and its buffer kept.
                    Err(TrySendError::Full(Captured::Frame(frame))) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        spare = Some(frame);
                    }
                    Err(TrySendError::Full(Captured::Failed(_))) => {}
                    Err(TrySendError::Disconnected(_)) => return,
                }
            }
            // A damaged picture (a cut-off JPEG) is skipped; the next one may be fine.
            Err(e) if e.is_recoverable() => spare = Some(frame),
            Err(e) => {
                let _ = frames.send(Captured::Failed(e.to_string()));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nokhwa::utils::Resolution;

    use super::*;

    fn mode(w: u32, h: u32, format: FrameFormat, fps: u32) -> CameraFormat {
        CameraFormat::new(Resolution::new(w, h), format, fps)
    }

    #[test]
    fn the_closest_mode_wins_by_size_then_rate_then_cost() {
        let modes = [
            mode(1280, 720, FrameFormat::YUYV, 10),
            mode(1280, 720, FrameFormat::MJPEG, 30),
            mode(640, 480, FrameFormat::YUYV, 30),
            mode(640, 480, FrameFormat::MJPEG, 30),
            mode(1920, 1080, FrameFormat::NV12, 30),
            mode(1281, 720, FrameFormat::NV12, 30),
            mode(1280, 720, FrameFormat::GRAY, 30),
        ];
        let pick = |w, h, fps| closest(&modes, w, h, fps);
        assert_eq!(pick(1280, 720, 30), Some(modes[1]));
        assert_eq!(pick(1280, 720, 5), Some(modes[0]));
        assert_eq!(pick(640, 480, 30), Some(modes[2]));
        assert_eq!(pick(1920, 1080, 60), Some(modes[4]));
        assert_eq!(pick(320, 240, 30), Some(modes[2]));
        assert_eq!(closest(&modes[5..], 1280, 720, 30), None);
    }

    #[test]
    fn the_driver_reports_a_missing_device_node() {
        // Past the existence check: what nokhwa itself says when /dev/video0 is absent.
        if std::path::Path::new("/dev/video0").exists() || !cfg!(target_os = "linux") {
            return;
        }
        let e = open_camera(0, 640, 480, 30).err().map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.starts_with("cannot open camera \"camera 0\""), "{e}");
        assert!(e.contains("No such file or directory"), "{e}");
    }

    /// A webcam fed by hand through its channel, as the capture thread would.
    fn fed() -> (Webcam, SyncSender<Captured>, Receiver<VideoFrame>) {
        let (frames_tx, frames) = mpsc::sync_channel(QUEUE);
        let (recycle, recycled) = mpsc::sync_channel(QUEUE + 2);
        let webcam = Webcam {
            name: "test camera".into(),
            width: 4,
            height: 2,
            fps: 30,
            format: FrameFormat::YUYV,
            frames,
            recycle,
            stop: Arc::new(AtomicBool::new(false)),
            dropped: Arc::new(AtomicU64::new(3)),
            seq: 0,
            skipped: 0,
        };
        (webcam, frames_tx, recycled)
    }

    fn captured(fill: u8, at: Instant) -> Captured {
        let mut frame = VideoFrame::black(4, 2, at).unwrap();
        frame.data.fill(fill);
        Captured::Frame(frame)
    }

    #[test]
    fn read_takes_the_newest_frame_and_recycles_the_rest() {
        let (mut webcam, tx, recycled) = fed();
        let t0 = Instant::now();
        let mut frame = VideoFrame::black(2, 2, t0).unwrap();
        assert_eq!(webcam.read(t0, &mut frame).unwrap(), Read::Pending);
        let t1 = t0 + std::time::Duration::from_millis(5);
        tx.send(captured(1, t0)).unwrap();
        tx.send(captured(2, t1)).unwrap();
        assert_eq!(webcam.read(t0, &mut frame).unwrap(), Read::Frame);
        assert_eq!((frame.data[0], frame.capture, frame.seq), (2, t1, 0));
        assert_eq!(webcam.skipped(), 1 + 3);
        // The older frame and the caller's old buffer both went back for reuse.
        let back: Vec<usize> = recycled.try_iter().map(|f| f.data.len()).collect();
        assert_eq!(back, [12, 6]);
        assert_eq!(webcam.read(t1, &mut frame).unwrap(), Read::Pending);
        tx.send(captured(3, t1)).unwrap();
        assert_eq!(webcam.read(t1, &mut frame).unwrap(), Read::Frame);
        assert_eq!((frame.data[0], frame.seq), (3, 1));
        assert!(webcam.is_live());
    }

    #[test]
    fn capture_failures_reach_the_reader() {
        let (mut webcam, tx, _recycled) = fed();
        let mut frame = VideoFrame::black(2, 2, Instant::now()).unwrap();
        tx.send(Captured::Failed("Could not capture frame: EIO".into()))
            .unwrap();
        let e = webcam.read(Instant::now(), &mut frame).unwrap_err();
        assert_eq!(
            e.to_string(),
            "camera \"test camera\" failed: Could not capture frame: EIO"
        );
        drop(tx);
        let e = webcam.read(Instant::now(), &mut frame).unwrap_err();
        assert!(e.to_string().contains("capture thread has stopped"), "{e}");
    }
}
