//! A video sink wrapper that reads the stamp in each picture a call shows: how many pictures
//! arrived, their size, and the glass-to-glass latency from capture to display. With the
//! sender's test pattern stamped from [`wall_epoch`](crate::video::stamp::wall_epoch), this
//! works across processes.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::error::Error;
use crate::frame::VideoFrame;
use crate::stage::ms;
use crate::stats::Samples;
use crate::video::stamp::{read_stamp, stamp_age};
use crate::video::VideoSink;

/// What a [`RecordingVideoSink`] saw.
#[derive(Debug, Clone)]
pub struct VideoRecord {
    /// Pictures handed to the sink.
    pub shown: u64,
    /// Latency from capture to display of each stamped picture, ms (the most recent ones).
    pub latency_ms: Samples,
    /// Pictures whose stamp could not be read, or that came out of order.
    pub stamp_errors: u64,
    /// Size of the last picture.
    pub size: (u32, u32),
    last_seq: Option<u32>,
}

impl VideoRecord {
    /// An empty record keeping up to `capacity` latencies.
    pub fn new(capacity: usize) -> Self {
        Self {
            shown: 0,
            latency_ms: Samples::with_capacity(capacity),
            stamp_errors: 0,
            size: (0, 0),
            last_seq: None,
        }
    }
}

/// Reads the stamp of each picture, notes it in a shared [`VideoRecord`], then passes the
/// picture on.
pub struct RecordingVideoSink {
    inner: Box<dyn VideoSink>,
    epoch: Option<Instant>,
    record: Arc<Mutex<VideoRecord>>,
}

impl RecordingVideoSink {
    /// Wraps `inner`. `epoch` is the instant the sender's stamps count from (`None` for a
    /// source without stamps: pictures are only counted).
    pub fn new(
        inner: Box<dyn VideoSink>,
        epoch: Option<Instant>,
        record: Arc<Mutex<VideoRecord>>,
    ) -> Self {
        Self {
            inner,
            epoch,
            record,
        }
    }
}

impl VideoSink for RecordingVideoSink {
    fn write(&mut self, now: Instant, frame: &VideoFrame) -> Result<(), Error> {
        self.inner.write(now, frame)?;
        let mut record = lock(&self.record);
        record.shown += 1;
        record.size = (frame.width, frame.height);
        let Some(epoch) = self.epoch else {
            return Ok(());
        };
        match read_stamp(frame) {
            Some(stamp) if record.last_seq.is_none_or(|last| stamp.seq > last) => {
                record.last_seq = Some(stamp.seq);
                let age = stamp_age(now, epoch, stamp.time_us);
                record.latency_ms.push(ms(age));
            }
            _ => record.stamp_errors += 1,
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Error> {
        self.inner.finish()
    }
}

/// Locks a record, whether or not another thread panicked holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
