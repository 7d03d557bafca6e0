//! Encode and decode cost of duet's codecs, one row per setting: H.264 on the moving, stamped
//! test pattern at three sizes and three bitrates, and Opus on recorded speech at three bitrates
//! with in-band FEC off and on. Each row shows the per-frame encode and decode time (p50 and p95),
//! the bitrate the encoder actually produced and the quality that came out.
//!
//! ```text
//! cargo run --release --example codec_latency
//! cargo run --release --example codec_latency -- --seconds 10
//! cargo run --release --example codec_latency -- --quick
//! ```
//!
//! Only the `encode` and `decode` calls are timed: drawing the pattern, reading the WAV file
//! and measuring quality are not. Nothing is paced, so a row of N seconds of media takes as long
//! as its frames take to code. Quality is the mean luma PSNR of each decoded picture against the
//! picture sent, and for Opus the SNR of the whole decoded waveform against the speech sent
//! (Opus is a perceptual codec, so its SNR compares rows rather than judging how speech sounds).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use duet_media::audio::wav::WavSource;
use duet_media::audio::AudioSource;
use duet_media::codec::h264::{EncodedVideo, H264Config, H264Decoder, H264Encoder};
use duet_media::codec::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use duet_media::measure::audio::{estimate_delay, snr_db};
use duet_media::measure::video::psnr;
use duet_media::stats::Percentiles;
use duet_media::video::pattern::TestPattern;
use duet_media::{AudioFormat, AudioFrame, Channels, FrameDuration, Read, VideoFrame};

/// Frame rate of the test pattern, and the one the H.264 rate control plans for.
const FPS: u32 = 30;
/// Picture sizes and target bitrates (bit/s) of the H.264 rows.
const SIZES: [(u32, u32); 3] = [(320, 240), (640, 480), (1280, 720)];
const VIDEO_BPS: [u32; 3] = [300_000, 1_000_000, 2_500_000];
/// Target bitrates (bit/s) of the Opus rows, each run with FEC off and on.
const AUDIO_BPS: [u32; 3] = [16_000, 32_000, 64_000];
/// Opus frames of 20 ms, mono, as a call sends them.
const FORMAT: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};
/// Ten seconds of speech at 48 kHz, bundled with duet-media's tests.
const SPEECH: &[u8] = include_bytes!("../media/testdata/speech-48k-mono.wav");

/// Times duet's H.264 and Opus coders per frame and prints a table.
#[derive(Parser)]
struct Args {
    /// Seconds of media coded per row.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// One second per row, and only the middle bitrate of each codec: a quick look.
    #[arg(long)]
    quick: bool,
}

/// One line of the table.
struct Row {
    codec: &'static str,
    size: String,
    bitrate_bps: u32,
    frames: String,
    encode_ms: Percentiles,
    decode_ms: Percentiles,
    kbps: f64,
    quality: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let seconds = if args.quick { 1.0 } else { args.seconds };
    if !(seconds.is_finite() && (0.1..=600.0).contains(&seconds)) {
        bail!("--seconds {}: choose 0.1 to 600", args.seconds);
    }
    let pick = |all: &[u32]| {
        if args.quick {
            vec![all[1]]
        } else {
            all.to_vec()
        }
    };

    println!(
        "{seconds} s of media per row; H.264 at {FPS} fps (openh264, one thread, IDR only at \
         the start), Opus 20 ms mono at complexity 9; times in ms per frame\n"
    );
    println!(
        "{:<9} {:>9} {:>8} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}  quality",
        "codec", "size", "bitrate", "frames", "enc p50", "enc p95", "dec p50", "dec p95", "kbit/s"
    );
    for (width, height) in SIZES {
        for bps in pick(&VIDEO_BPS) {
            print_row(&h264_row(width, height, bps, seconds)?);
        }
    }
    let frames = (seconds * 1000.0 / f64::from(FORMAT.frame.millis())).ceil() as usize;
    let speech = speech_frames(frames)?;
    for bps in pick(&AUDIO_BPS) {
        for fec in [false, true] {
            print_row(&opus_row(&speech, bps, fec)?);
        }
    }
    Ok(())
}

/// Codes `seconds` of the test pattern at `width` x `height` and `bps`, frame by frame: each
/// access unit is decoded as soon as it is made and compared with the picture it came from.
fn h264_row(width: u32, height: u32, bps: u32, seconds: f64) -> Result<Row> {
    let start = Instant::now();
    let pattern = TestPattern::new(width, height, FPS, start)?;
    let config = H264Config {
        width,
        height,
        bitrate_bps: bps,
        fps: FPS as f32,
        keyframe_interval: 0,
    };
    let mut encoder = H264Encoder::new(config)?;
    let mut decoder = H264Decoder::new()?;
    let mut picture = VideoFrame::black(width, height, start)?;
    let mut decoded = VideoFrame::black(width, height, start)?;
    let mut encoded = EncodedVideo::new();

    let total = ((seconds * f64::from(FPS)).round() as u64).max(1);
    let (mut encode_ms, mut decode_ms, mut psnrs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut coded, mut bytes) = (0u64, 0usize);
    for n in 0..total {
        pattern.render(n, &mut picture)?;
        let t0 = Instant::now();
        let produced = encoder.encode(&picture, &mut encoded)?;
        encode_ms.push(ms(t0.elapsed()));
        if !produced {
            continue; // rate control skipped this picture
        }
        coded += 1;
        bytes += encoded.data.len();
        let t0 = Instant::now();
        let shown = decoder
            .decode(&encoded.data, &mut decoded)
            .with_context(|| format!("decoding frame {n} at {width}x{height}"))?;
        decode_ms.push(ms(t0.elapsed()));
        if shown {
            // Identical pictures have an infinite PSNR: leave them out of the mean.
            psnrs.extend(psnr(&picture, &decoded).filter(|p| p.is_finite()));
        }
    }
    let media_seconds = total as f64 / f64::from(FPS);
    Ok(Row {
        codec: "h264",
        size: format!("{width}x{height}"),
        bitrate_bps: bps,
        frames: if coded == total {
            total.to_string()
        } else {
            format!("{coded}/{total}")
        },
        encode_ms: Percentiles::of(&encode_ms),
        decode_ms: Percentiles::of(&decode_ms),
        kbps: bytes as f64 * 8.0 / media_seconds / 1000.0,
        quality: match mean(&psnrs) {
            Some(db) => format!("PSNR {db:.1} dB"),
            None => "lossless".into(),
        },
    })
}

/// Codes `speech` with Opus at `bps`, FEC on or off, decoding each packet as it is made.
fn opus_row(speech: &[AudioFrame], bps: u32, fec: bool) -> Result<Row> {
    let mut config = OpusConfig::voice(FORMAT);
    config.bitrate_bps = bps;
    config.fec = fec;
    // The encoder sizes its FEC for the loss it expects; without any it sends none.
    config.expected_loss_pct = if fec { 10 } else { 0 };
    let mut encoder = OpusEncoder::new(config)?;
    let mut decoder = OpusDecoder::new(FORMAT)?;
    let mut out = AudioFrame::silent(FORMAT, Instant::now());
    let mut packet = Vec::new();

    let (mut encode_ms, mut decode_ms) = (Vec::new(), Vec::new());
    let (mut sent, mut received, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    for frame in speech {
        let t0 = Instant::now();
        encoder.encode(frame, &mut packet)?;
        encode_ms.push(ms(t0.elapsed()));
        bytes += packet.len();
        let t0 = Instant::now();
        decoder.decode(&packet, &mut out)?;
        decode_ms.push(ms(t0.elapsed()));
        sent.extend_from_slice(&frame.samples);
        received.extend_from_slice(&out.samples);
    }
    // The decoded signal lags by the encoder's look-ahead; find the exact lag near it.
    let lag = encoder.lookahead_samples();
    let lag = estimate_delay(&sent, &received, 2 * lag).map_or(lag, |a| a.lag);
    let media_seconds = speech.len() as f64 * f64::from(FORMAT.frame.millis()) / 1000.0;
    Ok(Row {
        codec: if fec { "opus+fec" } else { "opus" },
        size: "20ms mono".into(),
        bitrate_bps: bps,
        frames: speech.len().to_string(),
        encode_ms: Percentiles::of(&encode_ms),
        decode_ms: Percentiles::of(&decode_ms),
        kbps: bytes as f64 * 8.0 / media_seconds.max(f64::EPSILON) / 1000.0,
        quality: format!("SNR {:.1} dB", snr_db(&sent, &received, lag)),
    })
}

/// `count` frames of the bundled speech, starting over at its end.
fn speech_frames(count: usize) -> Result<Vec<AudioFrame>> {
    let open = || WavSource::from_bytes("speech-48k-mono.wav", SPEECH, FORMAT);
    let mut source = open()?;
    let mut frames = Vec::with_capacity(count);
    let mut frame = AudioFrame::silent(FORMAT, Instant::now());
    while frames.len() < count {
        match source.read(Instant::now(), &mut frame)? {
            Read::Frame => frames.push(frame.clone()),
            Read::End if frames.is_empty() => bail!("the bundled speech file holds no audio"),
            Read::End => source = open()?,
            Read::Pending => bail!("the speech file asked to be read later"),
        }
    }
    Ok(frames)
}

fn print_row(row: &Row) {
    let kbps = format!("{}k", row.bitrate_bps / 1000);
    println!(
        "{:<9} {:>9} {:>8} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.1}  {}",
        row.codec,
        row.size,
        kbps,
        row.frames,
        row.encode_ms.p50,
        row.encode_ms.p95,
        row.decode_ms.p50,
        row.decode_ms.p95,
        row.kbps,
        row.quality
    );
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
