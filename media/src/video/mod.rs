//! Video sources and sinks: webcam (nokhwa), moving test pattern with stamps, Y4M files.

use std::time::Instant;

use crate::error::Error;
use crate::frame::{Read, VideoFrame};

pub mod convert;
pub mod pattern;
pub mod scale;
pub mod stamp;
#[cfg(feature = "webcam")]
pub mod webcam;
pub mod y4m;

/// Something that produces I420 frames: a camera, the test pattern, a Y4M file.
///
/// Sources are not paced: the caller decides when to ask for the next frame.
pub trait VideoSource: Send {
    /// Width and height of the frames this source produces now.
    fn size(&self) -> (u32, u32);

    /// Fills `frame` (resized as needed) with the next picture. `now` is the time of the call;
    /// the source sets `frame.capture` and `frame.seq`.
    fn read(&mut self, now: Instant, frame: &mut VideoFrame) -> Result<Read, Error>;

    /// True for a camera (frames arrive in real time); false for a synthetic or file source,
    /// which the caller paces.
    fn is_live(&self) -> bool {
        false
    }

    /// For a source that stamps each picture with [`stamp::write_stamp`], the instant its
    /// stamps count time from; `None` for sources without stamps.
    fn stamp_epoch(&self) -> Option<Instant> {
        None
    }
}

/// Something that consumes I420 frames: a Y4M file, nothing.
pub trait VideoSink: Send {
    /// Takes one frame. `now` is the time of the call.
    fn write(&mut self, now: Instant, frame: &VideoFrame) -> Result<(), Error>;

    /// Flushes and closes. Called once at the end.
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A sink that discards every frame.
#[derive(Debug, Default)]
pub struct NullVideoSink {
    /// Frames written so far.
    pub frames: u64,
}

impl VideoSink for NullVideoSink {
    fn write(&mut self, _now: Instant, _frame: &VideoFrame) -> Result<(), Error> {
        self.frames += 1;
        Ok(())
    }
}
