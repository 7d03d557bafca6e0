//! The latency harness: runs a real-time loopback of the stamped test pattern and the built-in
//! speech, then encodes and decodes the same frames by calling openh264 and libopus directly,
//! and reports both side by side with the ratios and the targets they are held to. The direct
//! calls are fed one frame per frame period, as the loopback's threads are (the codec's caches
//! go cold while its thread sleeps, which costs openh264 about a third more per frame than
//! back-to-back calls); the back-to-back figures are printed beside them. Every latency says
//! where it comes from (`stamps`, `signal`); the run fails when the audio latency could not be
//! measured from the signal.
//!
//! ```text
//! cargo run --release -p duet-bench --bin latency -- [--size 1280x720] [--seconds 10] [--kbps 2500] [--fps 30]
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use duet_bench::{direct_openh264, direct_opus, Pacing};
use duet_media::audio::anchor::{AnchoredSource, Speech};
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
    let opus = OpusConfig::voice(format);
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
            source: Box::new(AnchoredSource::new(
                Speech::builtin().map_err(|e| e.to_string())?,
                format,
                start,
            )),
            sink: Box::new(NullAudioSink::default()),
            opus,
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
    let direct = direct_openh264(&h264, frames, Pacing::RealTime).map_err(|e| e.to_string())?;
    let warm = direct_openh264(&h264, frames, Pacing::BackToBack).map_err(|e| e.to_string())?;
    let mut speech = AnchoredSource::new(
        Speech::builtin().map_err(|e| e.to_string())?,
        format,
        Instant::now(),
    );
    let audio_frames = audio.frames_captured.max(1) as usize;
    let direct_audio = direct_opus(&opus, &mut speech, audio_frames, Pacing::RealTime)
        .map_err(|e| e.to_string())?;

    let audio_latency = match (audio.latency_ms, audio.latency_from_signal) {
        (Some(p), true) => p,
        _ => return Err("the audio latency could not be measured from the signal".into()),
    };
    let (Some(encode), Some(decode)) = (video.encode_ms, video.decode_ms) else {
        return Err("no video frame was encoded and decoded".into());
    };
    let Some(video_latency) = video.latency_ms.filter(|_| video.stamped) else {
        return Err("the video latency could not be read from the stamps".into());
    };
    let encode_ratio = encode.p50 / direct.encode_ms.p50;
    let decode_ratio = decode.p50 / direct.decode_ms.p50;
    let (Some(opus_encode), Some(opus_decode)) = (audio.encode_us, audio.decode_us) else {
        return Err("no audio frame was encoded and decoded".into());
    };
    let opus_encode_ratio = opus_encode.p50 / direct_audio.encode_us.p50;
    let opus_decode_ratio = opus_decode.p50 / direct_audio.decode_us.p50;
    let overhead = video_latency.p50 - (encode.p50 + decode.p50);
    let audio_budget = f64::from(audio.frame_ms) + audio.lookahead_ms + 5.0;
    let rss_growth = report
        .memory
        .rss_10s_mb
        .map(|at_10s| report.memory.rss_end_mb / at_10s.max(f64::EPSILON) - 1.0);
    let json_opt =
        |x: Option<f64>, digits: usize| x.map_or("null".into(), |v| format!("{v:.digits$}"));

    println!(
        "{{\"size\":\"{}x{}\",\"seconds\":{:.1},\"frames\":{},\
\"loopback\":{{\"encode_ms_p50\":{:.3},\"decode_ms_p50\":{:.3},\"latency_ms_p50\":{:.3},\"latency_ms_p99\":{:.3},\"latency_source\":\"stamps\",\"stamp_errors\":{}}},\
\"direct\":{{\"pacing\":\"real_time\",\"encode_ms_p50\":{:.3},\"decode_ms_p50\":{:.3}}},\
\"direct_back_to_back\":{{\"encode_ms_p50\":{:.3},\"decode_ms_p50\":{:.3}}},\
\"encode_ratio\":{:.3},\"decode_ratio\":{:.3},\"video_latency_overhead_ms\":{:.3},\
\"opus\":{{\"loopback\":{{\"encode_us_p50\":{:.1},\"decode_us_p50\":{:.1}}},\"direct\":{{\"pacing\":\"real_time\",\"encode_us_p50\":{:.1},\"decode_us_p50\":{:.1}}},\"encode_ratio\":{:.3},\"decode_ratio\":{:.3}}},\
\"audio\":{{\"source\":\"speech\",\"latency_ms_p50\":{:.3},\"latency_ms_p95\":{:.3},\"latency_source\":\"signal\",\"budget_ms\":{:.3},\"lookahead_ms\":{:.3}}},\
\"memory\":{{\"rss_10s_mb\":{},\"rss_end_mb\":{:.1},\"growth\":{}}}}}",
        args.width,
        args.height,
        report.seconds,
        frames,
        encode.p50,
        decode.p50,
        video_latency.p50,
        video_latency.p99,
        video.stamp_errors,
        direct.encode_ms.p50,
        direct.decode_ms.p50,
        warm.encode_ms.p50,
        warm.decode_ms.p50,
        encode_ratio,
        decode_ratio,
        overhead,
        opus_encode.p50,
        opus_decode.p50,
        direct_audio.encode_us.p50,
        direct_audio.decode_us.p50,
        opus_encode_ratio,
        opus_decode_ratio,
        audio_latency.p50,
        audio_latency.p95,
        audio_budget,
        audio.lookahead_ms,
        json_opt(report.memory.rss_10s_mb, 1),
        report.memory.rss_end_mb,
        json_opt(rss_growth, 4),
    );
    eprintln!(
        "video latency p50 {:.2} ms, p99 {:.2} ms (source: stamps read back from the decoded pixels)",
        video_latency.p50, video_latency.p99
    );
    eprintln!(
        "audio latency p50 {:.2} ms, p95 {:.2} ms (source: signal, speech aligned against what was sent)",
        audio_latency.p50, audio_latency.p95
    );
    eprintln!(
        "H.264 p50 encode {:.2} / decode {:.2} ms in the loopback, {:.2} / {:.2} ms direct in real \
         time ({encode_ratio:.2}x / {decode_ratio:.2}x), {:.2} / {:.2} ms direct back to back",
        encode.p50,
        decode.p50,
        direct.encode_ms.p50,
        direct.decode_ms.p50,
        warm.encode_ms.p50,
        warm.decode_ms.p50,
    );
    eprintln!(
        "Opus p50 encode {:.0} / decode {:.0} µs in the loopback, {:.0} / {:.0} µs direct in real \
         time ({opus_encode_ratio:.2}x / {opus_decode_ratio:.2}x)",
        opus_encode.p50, opus_decode.p50, direct_audio.encode_us.p50, direct_audio.decode_us.p50,
    );
    let verdicts = [
        (
            "H.264 encode within 1.1x of openh264 direct",
            encode_ratio <= 1.1,
        ),
        (
            "H.264 decode within 1.1x of openh264 direct",
            decode_ratio <= 1.1,
        ),
        (
            "video latency p50 <= encode p50 + decode p50 + 3 ms",
            overhead <= 3.0,
        ),
        (
            "audio latency p50 <= frame + look-ahead + 5 ms",
            audio_latency.p50 <= audio_budget,
        ),
        ("every stamp read back", video.stamp_errors == 0),
    ];
    for (what, ok) in verdicts {
        eprintln!("{} {what}", if ok { "PASS" } else { "FAIL" });
    }
    if let Some(growth) = rss_growth.filter(|_| report.seconds >= 30.0) {
        let ok = growth.abs() <= 0.10;
        eprintln!(
            "{} RSS at the end within 10% of RSS at 10 s",
            if ok { "PASS" } else { "FAIL" }
        );
    }
    Ok(())
}
