//! Times every 10 ms chunk of the microphone's audio processing (48 kHz mono, render side
//! included) over a run of speech echoed by a simulated room, and prints the percentiles:
//! `cargo run --release -p duet-bench --bin apm_cost [-- SECONDS [--wav DIR]]`. With `--wav`, the
//! far end and the microphone are also written to `DIR/far.wav` and `DIR/mic.wav`, a pair for
//! `duet aec`.

use std::time::Instant;

use duet_bench::apm::echo_scene;
use duet_media::audio::process::{audio_processing, ProcessingConfig, CHUNK};
use duet_media::audio::wav::WavSink;
use duet_media::audio::AudioSink;
use duet_media::stats::Percentiles;
use duet_media::{AudioFormat, AudioFrame, Channels, FrameDuration};

/// Writes 48 kHz mono samples to a 16-bit WAV file.
fn write_wav(path: &std::path::Path, samples: &[f32]) -> Result<(), Box<dyn std::error::Error>> {
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms10,
    };
    let now = Instant::now();
    let mut sink = WavSink::create(path, Channels::Mono)?;
    let mut frame = AudioFrame::silent(format, now);
    for chunk in samples.chunks_exact(CHUNK) {
        for (s, &x) in frame.samples.iter_mut().zip(chunk) {
            *s = (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        }
        sink.write(now, &frame)?;
    }
    sink.finish()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = match args.get(1) {
        Some(s) => s.parse().map_err(|e| format!("seconds {s:?}: {e}"))?,
        None => 60.0,
    };
    if !(seconds.is_finite() && (1.0..=3600.0).contains(&seconds)) {
        return Err(format!("seconds {seconds}: give 1 to 3600").into());
    }
    let (far, mic) = echo_scene(seconds)?;
    match (args.get(2).map(String::as_str), args.get(3)) {
        (None, _) => {}
        (Some("--wav"), Some(dir)) => {
            let dir = std::path::Path::new(dir);
            write_wav(&dir.join("far.wav"), &far)?;
            write_wav(&dir.join("mic.wav"), &mic)?;
        }
        _ => return Err("usage: apm_cost [SECONDS [--wav DIR]]".into()),
    }
    for (name, config) in [
        ("aec+ns+agc", ProcessingConfig::VOICE),
        (
            "aec",
            ProcessingConfig {
                echo_cancellation: true,
                noise_suppression: false,
                gain_control: false,
            },
        ),
    ] {
        let (mut reference, mut processor) = audio_processing(config, Channels::Mono)?;
        let mut out = vec![0.0f32; CHUNK];
        let mut micros = Vec::with_capacity(mic.len() / CHUNK);
        for (f, m) in far.chunks_exact(CHUNK).zip(mic.chunks_exact(CHUNK)) {
            out.copy_from_slice(m);
            let t = Instant::now();
            reference.push_f32(f);
            processor.process_f32(&mut out)?;
            micros.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let p = Percentiles::of(&micros);
        let max = micros.iter().copied().fold(0.0, f64::max);
        println!(
            "{name}: {} chunks, per 10 ms chunk p50 {:.0} µs, p95 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            micros.len(),
            p.p50,
            p.p95,
            p.p99,
            max
        );
    }
    Ok(())
}
