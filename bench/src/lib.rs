//! duet-bench holds duet's criterion benchmarks (`cargo bench -p duet-bench`) and the latency
//! harness (`cargo run --release -p duet-bench --bin latency`), which compares the loopback's
//! per-frame codec cost against openh264 called directly on the same frames.
//!
//! ```no_run
//! use duet_media::codec::h264::H264Config;
//! let config = H264Config { width: 640, height: 480, bitrate_bps: 1_000_000, fps: 30.0, keyframe_interval: 0 };
//! let direct = duet_bench::direct_openh264(&config, 30)?;
//! println!("encode p50 {:.2} ms", direct.encode_ms.p50);
//! # Ok::<(), duet_media::Error>(())
//! ```

pub mod apm;

use std::time::Instant;

use duet_media::codec::h264::H264Config;
use duet_media::stats::{Percentiles, Samples};
use duet_media::video::pattern::TestPattern;
use duet_media::video::VideoSource;
use duet_media::{CodecError, Error, VideoFrame};
use openh264::decoder::Decoder;
use openh264::encoder::Encoder;
use openh264::formats::YUVSlices;
use openh264::OpenH264API;

/// Per-frame cost of openh264 called directly, without duet around it.
#[derive(Debug, Clone, Copy)]
pub struct DirectCost {
    /// Encode time per frame, ms.
    pub encode_ms: Percentiles,
    /// Decode time per frame, ms.
    pub decode_ms: Percentiles,
}

fn codec_error(e: openh264::Error) -> Error {
    CodecError::Encode {
        codec: "h264",
        reason: e.to_string(),
    }
    .into()
}

/// Encodes `frames` frames of the test pattern with openh264 configured exactly as duet's
/// encoder is for `config`, decodes each, and times both calls alone.
pub fn direct_openh264(config: &H264Config, frames: usize) -> Result<DirectCost, Error> {
    let start = Instant::now();
    let mut pattern = TestPattern::new(config.width, config.height, config.fps as u32, start)?;
    let mut frame = VideoFrame::black(config.width, config.height, start)?;
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), config.to_openh264())
        .map_err(codec_error)?;
    let mut decoder = Decoder::new().map_err(codec_error)?;
    let mut encode_ms = Samples::with_capacity(frames);
    let mut decode_ms = Samples::with_capacity(frames);
    let mut unit = Vec::new();
    let (w, h) = (config.width as usize, config.height as usize);
    for _ in 0..frames {
        pattern.read(start, &mut frame)?;
        let (y, u, v) = frame.planes();
        let source = YUVSlices::new((y, u, v), (w, h), (w, w / 2, w / 2));
        let t0 = Instant::now();
        let stream = encoder.encode(&source).map_err(codec_error)?;
        unit.clear();
        stream.write_vec(&mut unit);
        encode_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        if unit.is_empty() {
            continue;
        }
        let t1 = Instant::now();
        let _ = decoder.decode(&unit).map_err(codec_error)?;
        decode_ms.push(t1.elapsed().as_secs_f64() * 1e3);
    }
    Ok(DirectCost {
        encode_ms: encode_ms.percentiles(),
        decode_ms: decode_ms.percentiles(),
    })
}
