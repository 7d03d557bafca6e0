//! Criterion benches of the per-frame hot paths of duet-media: Opus encode/decode, H.264
//! encode/decode, resampling, pixel-format conversion and stamp reading.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use duet_media::audio::resample::Resampler;
use duet_media::audio::synth::Tone;
use duet_media::audio::AudioSource;
use duet_media::codec::h264::{EncodedVideo, H264Config, H264Decoder, H264Encoder};
use duet_media::codec::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use duet_media::video::convert::{nv12_to_i420, yuyv_to_i420};
use duet_media::video::pattern::TestPattern;
use duet_media::video::stamp::read_stamp;
use duet_media::video::VideoSource;
use duet_media::{AudioFormat, AudioFrame, Channels, FrameDuration, VideoFrame};

/// Frames of speech-like content cycled through by the audio benches.
const AUDIO_FRAMES: usize = 50;
/// Frames of the moving pattern cycled through by the video benches.
const VIDEO_FRAMES: usize = 30;

fn tone_frames(format: AudioFormat) -> Vec<AudioFrame> {
    let start = Instant::now();
    let mut tone = Tone::new(format, 440.0, 0.5, start);
    (0..AUDIO_FRAMES)
        .map(|n| {
            let mut f = AudioFrame::silent(format, start);
            tone.read(start + format.frame.duration() * n as u32, &mut f)
                .expect("tone");
            f
        })
        .collect()
}

fn opus(c: &mut Criterion) {
    let mut group = c.benchmark_group("opus");
    for frame in [FrameDuration::Ms10, FrameDuration::Ms20] {
        for fec in [false, true] {
            let format = AudioFormat {
                channels: Channels::Mono,
                frame,
            };
            let frames = tone_frames(format);
            let mut config = OpusConfig::voice(format);
            config.bitrate_bps = 32_000;
            config.fec = fec;
            let label = format!(
                "{}ms_fec_{}",
                frame.millis(),
                if fec { "on" } else { "off" }
            );

            let mut encoder = OpusEncoder::new(config).expect("encoder");
            let mut packet = Vec::with_capacity(1500);
            let mut i = 0;
            group.bench_function(BenchmarkId::new("encode", &label), |b| {
                b.iter(|| {
                    i = (i + 1) % frames.len();
                    encoder
                        .encode(black_box(&frames[i]), &mut packet)
                        .expect("encode")
                })
            });

            let packets: Vec<Vec<u8>> = frames
                .iter()
                .map(|f| {
                    let mut p = Vec::new();
                    encoder.encode(f, &mut p).expect("encode");
                    p
                })
                .collect();
            let mut decoder = OpusDecoder::new(format).expect("decoder");
            let mut out = AudioFrame::silent(format, Instant::now());
            let mut j = 0;
            group.bench_function(BenchmarkId::new("decode", &label), |b| {
                b.iter(|| {
                    j = (j + 1) % packets.len();
                    decoder
                        .decode(black_box(&packets[j]), &mut out)
                        .expect("decode")
                })
            });
        }
    }
    group.finish();
}

fn pattern_frames(width: u32, height: u32) -> Vec<VideoFrame> {
    let start = Instant::now();
    let mut pattern = TestPattern::new(width, height, 30, start).expect("pattern");
    (0..VIDEO_FRAMES)
        .map(|_| {
            let mut f = VideoFrame::black(width, height, start).expect("frame");
            pattern.read(start, &mut f).expect("pattern frame");
            f
        })
        .collect()
}

fn h264(c: &mut Criterion) {
    let mut group = c.benchmark_group("h264");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(6));
    for (width, height, kbps) in [(640, 480, 1000), (1280, 720, 2500)] {
        let frames = pattern_frames(width, height);
        let label = format!("{width}x{height}");
        let config = H264Config {
            width,
            height,
            bitrate_bps: kbps * 1000,
            fps: 30.0,
            keyframe_interval: 0,
        };
        let mut encoder = H264Encoder::new(config).expect("encoder");
        let mut out = EncodedVideo::new();
        let mut i = 0;
        group.bench_function(BenchmarkId::new("encode", &label), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                encoder
                    .encode(black_box(&frames[i]), &mut out)
                    .expect("encode")
            })
        });

        // A fresh stream: one IDR, then P frames, decoded in a loop from the IDR on.
        let mut encoder = H264Encoder::new(config).expect("encoder");
        let units: Vec<Vec<u8>> = frames
            .iter()
            .filter_map(|f| {
                let mut e = EncodedVideo::new();
                encoder.encode(f, &mut e).expect("encode").then_some(e.data)
            })
            .collect();
        let mut decoder = H264Decoder::new().expect("decoder");
        let mut picture = VideoFrame::black(width, height, Instant::now()).expect("frame");
        let mut j = 0;
        group.bench_function(BenchmarkId::new("decode", &label), |b| {
            b.iter(|| {
                let r = decoder
                    .decode(black_box(&units[j]), &mut picture)
                    .expect("decode");
                j = (j + 1) % units.len();
                r
            })
        });
    }
    group.finish();
}

fn resample(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    let mut resampler = Resampler::new(44_100, 1).expect("resampler");
    let input: Vec<f32> = (0..441).map(|i| (i as f32 * 0.0625).sin() * 0.5).collect();
    let mut output = Vec::with_capacity(4096);
    group.throughput(Throughput::Elements(441));
    group.bench_function("44100_to_48000_10ms", |b| {
        b.iter(|| {
            output.clear();
            resampler
                .process(black_box(&input), &mut output)
                .expect("resample");
        })
    });
    group.finish();
}

fn convert(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert");
    for (width, height) in [(640u32, 480u32), (1280, 720)] {
        let label = format!("{width}x{height}");
        let pixels = (width * height) as usize;
        let yuyv: Vec<u8> = (0..pixels * 2).map(|i| (i * 7) as u8).collect();
        let nv12: Vec<u8> = (0..pixels * 3 / 2).map(|i| (i * 13) as u8).collect();
        let mut out = VideoFrame::black(width, height, Instant::now()).expect("frame");
        group.bench_function(BenchmarkId::new("yuyv_to_i420", &label), |b| {
            b.iter(|| yuyv_to_i420(black_box(&yuyv), width, height, &mut out).expect("yuyv"))
        });
        group.bench_function(BenchmarkId::new("nv12_to_i420", &label), |b| {
            b.iter(|| nv12_to_i420(black_box(&nv12), width, height, &mut out).expect("nv12"))
        });
    }
    group.finish();
}

fn stamp(c: &mut Criterion) {
    let mut group = c.benchmark_group("stamp");
    for (width, height) in [(640u32, 480u32), (1280, 720)] {
        let frames = pattern_frames(width, height);
        let mut i = 0;
        group.bench_function(BenchmarkId::new("read", format!("{width}x{height}")), |b| {
            b.iter(|| {
                i = (i + 1) % frames.len();
                read_stamp(black_box(&frames[i])).expect("stamp")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, opus, h264, resample, convert, stamp);
criterion_main!(benches);
