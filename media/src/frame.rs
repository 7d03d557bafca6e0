//! Raw media frames: 48 kHz PCM audio and I420 video, each with its capture time.

use std::time::{Duration, Instant};

use crate::error::Error;

/// The sample rate of every audio frame inside duet: devices and files are converted to it.
pub const SAMPLE_RATE: u32 = 48_000;

/// Number of interleaved channels of an audio frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channels {
    /// One channel.
    Mono,
    /// Two interleaved channels, left first.
    Stereo,
}

impl Channels {
    /// 1 or 2.
    pub fn count(self) -> usize {
        match self {
            Channels::Mono => 1,
            Channels::Stereo => 2,
        }
    }

    /// The layout with `n` channels, if duet supports it.
    pub fn from_count(n: usize) -> Result<Self, Error> {
        match n {
            1 => Ok(Channels::Mono),
            2 => Ok(Channels::Stereo),
            _ => Err(Error::Config(format!(
                "{n} channels: duet carries mono or stereo"
            ))),
        }
    }
}

/// The duration of one audio frame: the packet size Opus is configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameDuration {
    /// 10 ms (480 samples per channel).
    Ms10,
    /// 20 ms (960 samples per channel), the usual choice for calls.
    Ms20,
    /// 40 ms (1920 samples per channel).
    Ms40,
    /// 60 ms (2880 samples per channel).
    Ms60,
}

impl FrameDuration {
    /// The frame duration of `ms` milliseconds, if it is one of 10, 20, 40, 60.
    pub fn from_millis(ms: u32) -> Result<Self, Error> {
        match ms {
            10 => Ok(Self::Ms10),
            20 => Ok(Self::Ms20),
            40 => Ok(Self::Ms40),
            60 => Ok(Self::Ms60),
            _ => Err(Error::Config(format!(
                "frame of {ms} ms: choose 10, 20, 40 or 60"
            ))),
        }
    }

    /// Milliseconds.
    pub fn millis(self) -> u32 {
        match self {
            Self::Ms10 => 10,
            Self::Ms20 => 20,
            Self::Ms40 => 40,
            Self::Ms60 => 60,
        }
    }

    /// As a [`Duration`].
    pub fn duration(self) -> Duration {
        Duration::from_millis(u64::from(self.millis()))
    }

    /// Samples per channel at [`SAMPLE_RATE`].
    pub fn samples_per_channel(self) -> usize {
        self.millis() as usize * SAMPLE_RATE as usize / 1000
    }
}

/// The shape of the audio frames a source produces and a sink accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    /// Channel layout.
    pub channels: Channels,
    /// Frame duration.
    pub frame: FrameDuration,
}

impl AudioFormat {
    /// Interleaved samples in one frame.
    pub fn samples_per_frame(&self) -> usize {
        self.frame.samples_per_channel() * self.channels.count()
    }
}

/// One frame of 48 kHz interleaved 16-bit PCM.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioFrame {
    /// Interleaved samples, `format.samples_per_frame()` of them.
    pub samples: Vec<i16>,
    /// Layout of `samples`.
    pub format: AudioFormat,
    /// Sequence number given by the source, starting at 0.
    pub seq: u64,
    /// When the first sample of the frame was captured.
    pub capture: Instant,
}

impl AudioFrame {
    /// A silent frame of `format`, captured at `capture`.
    pub fn silent(format: AudioFormat, capture: Instant) -> Self {
        Self {
            samples: vec![0; format.samples_per_frame()],
            format,
            seq: 0,
            capture,
        }
    }
}

/// One planar I420 (YUV 4:2:0) picture: a full-size Y plane, then quarter-size U and V planes.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFrame {
    /// Width in pixels; even.
    pub width: u32,
    /// Height in pixels; even.
    pub height: u32,
    /// Y, then U, then V, each tightly packed (stride = width, width / 2, width / 2).
    pub data: Vec<u8>,
    /// Sequence number given by the source, starting at 0.
    pub seq: u64,
    /// When the picture was captured.
    pub capture: Instant,
}

impl VideoFrame {
    /// A black frame of `width` x `height`, which must both be even and non-zero.
    pub fn black(width: u32, height: u32, capture: Instant) -> Result<Self, Error> {
        check_size(width, height)?;
        let mut data = vec![0u8; i420_len(width, height)];
        let y = (width * height) as usize;
        data[y..].fill(128);
        Ok(Self {
            width,
            height,
            data,
            seq: 0,
            capture,
        })
    }

    /// Resizes the buffer for `width` x `height` (contents unspecified afterwards).
    pub fn resize(&mut self, width: u32, height: u32) -> Result<(), Error> {
        check_size(width, height)?;
        self.width = width;
        self.height = height;
        self.data.resize(i420_len(width, height), 0);
        Ok(())
    }

    /// The Y plane.
    pub fn y(&self) -> &[u8] {
        &self.data[..(self.width * self.height) as usize]
    }

    /// The Y, U and V planes, mutably.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let y = (self.width * self.height) as usize;
        let c = y / 4;
        let (yp, rest) = self.data.split_at_mut(y);
        let (u, v) = rest.split_at_mut(c);
        (yp, u, v)
    }

    /// The Y, U and V planes.
    pub fn planes(&self) -> (&[u8], &[u8], &[u8]) {
        let y = (self.width * self.height) as usize;
        let c = y / 4;
        (
            &self.data[..y],
            &self.data[y..y + c],
            &self.data[y + c..y + 2 * c],
        )
    }
}

/// Bytes of an I420 picture of `width` x `height`.
pub fn i420_len(width: u32, height: u32) -> usize {
    let y = width as usize * height as usize;
    y + y / 2
}

/// Checks that a picture size is usable: even, non-zero, at most 4096x2304.
pub fn check_size(width: u32, height: u32) -> Result<(), Error> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(Error::Config(format!(
            "video size {width}x{height}: width and height must be even and non-zero"
        )));
    }
    if width > 4096 || height > 2304 {
        return Err(Error::Config(format!(
            "video size {width}x{height}: at most 4096x2304"
        )));
    }
    Ok(())
}

/// What a source returned from one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The frame passed in was filled.
    Frame,
    /// Not enough captured data yet: call again later.
    Pending,
    /// The source has ended (end of file); it produces nothing more.
    End,
}
