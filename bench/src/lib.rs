//! duet-bench holds duet's criterion benchmarks (`cargo bench -p duet-bench`) and the latency
//! harness (`cargo run --release -p duet-bench --bin latency`), which compares the loopback's
//! per-frame codec cost against openh264 and libopus called directly on the same frames.
//!
//! ```no_run
//! use duet_bench::Pacing;
//! use duet_media::codec::h264::H264Config;
//! let config = H264Config { width: 640, height: 480, bitrate_bps: 1_000_000, fps: 30.0, keyframe_interval: 0 };
//! let direct = duet_bench::direct_openh264(&config, 30, Pacing::RealTime)?;
//! println!("encode p50 {:.2} ms", direct.encode_ms.p50);
//! # Ok::<(), duet_media::Error>(())
//! ```

pub mod apm;

use std::time::{Duration, Instant};

use duet_media::audio::AudioSource;
use duet_media::codec::h264::H264Config;
use duet_media::codec::opus::OpusConfig;
use duet_media::stats::{Percentiles, Samples};
use duet_media::video::pattern::TestPattern;
use duet_media::video::VideoSource;
use duet_media::{AudioFrame, Channels, CodecError, Error, Read, VideoFrame};
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

/// How frames are fed to a codec called directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// One frame after another, as fast as the codec goes: its caches stay warm.
    BackToBack,
    /// One frame per frame period, as a call feeds it: the thread sleeps between frames, as
    /// duet's pipeline threads do.
    RealTime,
}

impl Pacing {
    /// Waits, when pacing in real time, until frame `index` is due.
    fn wait(self, start: Instant, period: Duration, index: usize) {
        if self == Pacing::RealTime {
            let due = start + period.mul_f64(index as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

fn codec_error(e: openh264::Error) -> Error {
    CodecError::Encode {
        codec: "h264",
        reason: e.to_string(),
    }
    .into()
}

/// Encodes `frames` frames of the test pattern with openh264 configured exactly as duet's
/// encoder is for `config`, decodes each, and times both calls alone, fed as `pacing` says.
pub fn direct_openh264(
    config: &H264Config,
    frames: usize,
    pacing: Pacing,
) -> Result<DirectCost, Error> {
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
    let period = Duration::from_secs_f64(1.0 / f64::from(config.fps.max(1.0)));
    for i in 0..frames {
        pacing.wait(start, period, i);
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

/// Per-frame cost of libopus called directly, without duet around it.
#[derive(Debug, Clone, Copy)]
pub struct DirectOpusCost {
    /// Encode time per frame, µs.
    pub encode_us: Percentiles,
    /// Decode time per frame, µs.
    pub decode_us: Percentiles,
}

fn opus_error(e: opus::Error) -> Error {
    CodecError::Encode {
        codec: "opus",
        reason: e.to_string(),
    }
    .into()
}

/// Encodes `frames` frames read from `source` with libopus configured as duet's encoder is for
/// `config` (VoIP application, bitrate, complexity, FEC, expected loss, DTX), decodes each, and
/// times both calls alone, fed as `pacing` says.
pub fn direct_opus(
    config: &OpusConfig,
    source: &mut dyn AudioSource,
    frames: usize,
    pacing: Pacing,
) -> Result<DirectOpusCost, Error> {
    const SAMPLE_RATE: u32 = 48_000;
    let channels = match config.format.channels {
        Channels::Mono => opus::Channels::Mono,
        Channels::Stereo => opus::Channels::Stereo,
    };
    let mut encoder =
        opus::Encoder::new(SAMPLE_RATE, channels, opus::Application::Voip).map_err(opus_error)?;
    encoder
        .set_bitrate(opus::Bitrate::Bits(config.bitrate_bps as i32))
        .map_err(opus_error)?;
    encoder
        .set_complexity(i32::from(config.complexity))
        .map_err(opus_error)?;
    encoder.set_inband_fec(config.fec).map_err(opus_error)?;
    encoder
        .set_packet_loss_perc(i32::from(config.expected_loss_pct))
        .map_err(opus_error)?;
    encoder.set_dtx(config.dtx).map_err(opus_error)?;
    let mut decoder = opus::Decoder::new(SAMPLE_RATE, channels).map_err(opus_error)?;
    let start = Instant::now();
    let period = config.format.frame.duration();
    let mut frame = AudioFrame::silent(config.format, start);
    let mut packet = vec![0u8; 1500];
    let mut decoded = vec![0i16; config.format.samples_per_frame()];
    let mut encode_us = Samples::with_capacity(frames);
    let mut decode_us = Samples::with_capacity(frames);
    for i in 0..frames {
        pacing.wait(start, period, i);
        match source.read(start + period.mul_f64(i as f64), &mut frame)? {
            Read::Frame => {}
            Read::Pending => continue,
            Read::End => break,
        }
        let t0 = Instant::now();
        let len = encoder
            .encode(&frame.samples, &mut packet)
            .map_err(opus_error)?;
        encode_us.push(t0.elapsed().as_secs_f64() * 1e6);
        let t1 = Instant::now();
        decoder
            .decode(&packet[..len], &mut decoded, false)
            .map_err(opus_error)?;
        decode_us.push(t1.elapsed().as_secs_f64() * 1e6);
    }
    Ok(DirectOpusCost {
        encode_us: encode_us.percentiles(),
        decode_us: decode_us.percentiles(),
    })
}
