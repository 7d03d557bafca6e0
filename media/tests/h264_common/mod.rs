//! Helpers shared by the H.264 behaviour tests: a test pattern driven through the encoder.

#![allow(dead_code)]

use std::time::Instant;

use duet_media::codec::h264::{EncodedVideo, H264Config, H264Encoder};
use duet_media::video::pattern::TestPattern;
use duet_media::video::VideoSource;
use duet_media::{Read, VideoFrame};

/// The config of a `width` x `height` stream at 30 fps.
pub fn config(width: u32, height: u32, bitrate_bps: u32) -> H264Config {
    H264Config {
        width,
        height,
        bitrate_bps,
        fps: 30.0,
        keyframe_interval: 0,
    }
}

/// A test pattern and an encoder fed from it.
pub struct Sender {
    pub pattern: TestPattern,
    pub encoder: H264Encoder,
    pub frame: VideoFrame,
    pub start: Instant,
}

impl Sender {
    pub fn new(config: H264Config) -> Self {
        let start = Instant::now();
        Self {
            pattern: TestPattern::new(config.width, config.height, 30, start).unwrap(),
            encoder: H264Encoder::new(config).unwrap(),
            frame: VideoFrame::black(config.width, config.height, start).unwrap(),
            start,
        }
    }

    /// Reads the next picture and encodes it; false if rate control skipped it.
    pub fn next(&mut self, out: &mut EncodedVideo) -> bool {
        assert_eq!(
            self.pattern.read(self.start, &mut self.frame).unwrap(),
            Read::Frame
        );
        self.encoder.encode(&self.frame, out).unwrap()
    }

    /// The next access unit that was not skipped, with its source picture.
    pub fn next_sent(&mut self) -> (EncodedVideo, VideoFrame) {
        let mut out = EncodedVideo::new();
        for _ in 0..30 {
            if self.next(&mut out) {
                return (out, self.frame.clone());
            }
        }
        panic!("the encoder skipped 30 frames in a row");
    }
}

/// NAL unit types of an access unit, in order.
pub fn nal_types(data: &[u8]) -> Vec<u8> {
    duet_media::codec::h264::nal_units(data)
        .map(|nal| nal[0] & 0x1f)
        .collect()
}
