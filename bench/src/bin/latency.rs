//! The latency harness: runs a real-time loopback of the stamped test pattern (and speech-like
//! tone audio), then encodes and decodes the same frames by calling openh264 directly, and
//! reports both side by side with the ratios and the targets they are held to.
//!
//! ```text
//! cargo run --release -p duet-bench --bin latency -- [--size 1280x720] [--seconds 10] [--kbps 2500] [--fps 30]
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use duet_bench::direct_openh264;
use duet_media::audio::synth::Tone;
use duet_media::audio::NullAudioSink;
use duet_media::codec::h264::H264Config;
use duet_media::codec::opus::OpusConfig;
use duet_media::loopback::{self, AudioLoop, LoopbackConfig, VideoLoop};
use duet_media::video::pattern::TestPattern;
use duet_media::video::NullVideoSink;
use duet_media::{AudioFormat, Channels, FrameDuration};

struct Args {
    width: u32,
    height: u32,
    seconds: f64,
    kbps: u32,
    fps: u32,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        width: 1280,
        height: 720,
        seconds: 10.0,
        kbps: 2500,
        fps: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value:?}");
        match flag.as_str() {
            "--size" => {
                let (w, h) = value
                    .split_once('x')
                    .ok_or_else(|| format!("bad size {value:?}: expected WxH"))?;
                args.width = w.parse().map_err(|_| bad())?;
                args.height = h.parse().map_err(|_| bad())?;
            }
            "--seconds" => args.seconds = value.parse().map_err(|_| bad())?,
            "--kbps" => args.kbps = value.parse().map_err(|_| bad())?,
            "--fps" => args.fps = value.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latency: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args = parse()?;
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };
    let start = Instant::now() + Duration::from_millis(100);
    let h264 = H264Config {
        width: args.width,
        height: args.height,
        bitrate_bps: args.kbps * 1000,
        fps: args.fps as f32,
        keyframe_interval: 0,
    };
    let pattern =
        TestPattern::new(args.width, args.height, args.fps, start).map_err(|e| e.to_string())?;
    let report = loopback::run(LoopbackConfig {
        start,
        duration: Duration::from_secs_f64(args.seconds),
        audio: Some(AudioLoop {
            source: Box::new(Tone::new(format, 440.0, 0.5, start)),
            sink: Box::new(NullAudioSink::default()),
            opus: OpusConfig::voice(format),
        }),
        video: Some(VideoLoop {
            source: Box::new(pattern),
            sink: Box::new(NullVideoSink::default()),
            h264,
        }),
    })
    .map_err(|e| e.to_string())?;
    let video = report.video.ok_or("no video report")?;
    let audio = report.audio.ok_or("no audio report")?;

    let frames = video.frames_sent.max(1) as usize;
    let direct = direct_openh264(&h264, frames).map_err(|e| e.to_string())?;

    let encode_ratio = video.encode_ms.p50 / direct.encode_ms.p50;
    let decode_ratio = video.decode_ms.p50 / direct.decode_ms.p50;
    let overhead = video.latency_ms.p50 - (video.encode_ms.p50 + video.decode_ms.p50);
    let audio_budget = f64::from(audio.frame_ms) + audio.lookahead_ms + 5.0;
    let rss_growth = report.memory.rss_end_mb / report.memory.rss_10s_mb.max(f64::EPSILON) - 1.0;

    println!(
        "{{\"size\":\"{}x{}\",\"seconds\":{:.1},\"frames\":{},\
\"loopback\":{{\"encode_ms_p50\":{:.3},\"decode_ms_p50\":{:.3},\"latency_ms_p50\":{:.3},\"latency_ms_p99\":{:.3},\"stamp_errors\":{}}},\
\"direct\":{{\"encode_ms_p50\":{:.3},\"decode_ms_p50\":{:.3}}},\
\"encode_ratio\":{:.3},\"decode_ratio\":{:.3},\"video_latency_overhead_ms\":{:.3},\
\"audio\":{{\"latency_ms_p50\":{:.3},\"budget_ms\":{:.3},\"lookahead_ms\":{:.3}}},\
\"memory\":{{\"rss_10s_mb\":{:.1},\"rss_end_mb\":{:.1},\"growth\":{:.4}}}}}",
        args.width,
        args.height,
        report.seconds,
        frames,
        video.encode_ms.p50,
        video.decode_ms.p50,
        video.latency_ms.p50,
        video.latency_ms.p99,
        video.stamp_errors,
        direct.encode_ms.p50,
        direct.decode_ms.p50,
        encode_ratio,
        decode_ratio,
        overhead,
        audio.latency_ms.p50,
        audio_budget,
        audio.lookahead_ms,
        report.memory.rss_10s_mb,
        report.memory.rss_end_mb,
        rss_growth,
    );
    let verdicts = [
        ("encode within 1.2x of openh264 direct", encode_ratio <= 1.2),
        ("decode within 1.2x of openh264 direct", decode_ratio <= 1.2),
        (
            "video latency p50 <= encode p50 + decode p50 + 3 ms",
            overhead <= 3.0,
        ),
        (
            "audio latency p50 <= frame + look-ahead + 5 ms",
            audio.latency_ms.p50 <= audio_budget,
        ),
        ("every stamp read back", video.stamp_errors == 0),
    ];
    for (what, ok) in verdicts {
        eprintln!("{} {what}", if ok { "PASS" } else { "FAIL" });
    }
    if report.seconds >= 30.0 {
        let ok = rss_growth.abs() <= 0.10;
        eprintln!(
            "{} RSS at the end within 10% of RSS at 10 s",
            if ok { "PASS" } else { "FAIL" }
        );
    }
    Ok(())
}
