//! `duet aec`: the microphone's audio processing run offline on a recorded pair, as WebRTC's
//! audioproc tool does: what the speaker played (`--far`) and what the microphone heard
//! (`--mic`) go through the same stage a call uses, and the cleaned microphone is written out.
//!
//! It reports the echo delay the canceller found, the echo return loss enhancement over time
//! and what each 10 ms chunk cost. The ERLE measured here is the microphone's power over the
//! output's, per second, after lining the output up by the stage's own delay: it means echo
//! removed while only the far end talks (with a near-end talker it also counts what the stage
//! did to them). The canceller's own running estimate is given beside it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use duet_media::audio::process::{audio_processing, ProcessingConfig, CHUNK};
use duet_media::audio::wav::{WavSink, WavSource};
use duet_media::audio::{AudioSink, AudioSource};
use duet_media::measure::echo::power_db;
use duet_media::{AudioFormat, AudioFrame, Channels, FrameDuration, Read};
use serde::Serialize;

use crate::cli::spec::Switch;

/// Arguments of `duet aec`.
#[derive(clap::Args, Debug)]
pub struct AecArgs {
    /// What the speaker played: a WAV file of any rate and channel count.
    #[arg(long)]
    pub far: PathBuf,
    /// What the microphone heard over the same time: a WAV file of any rate and channel count.
    #[arg(long)]
    pub mic: PathBuf,
    /// Where to write the processed microphone (48 kHz mono, 16-bit).
    #[arg(long)]
    pub out: PathBuf,
    /// Echo cancellation.
    #[arg(long, default_value = "on")]
    pub aec: Switch,
    /// Noise suppression.
    #[arg(long, default_value = "on")]
    pub ns: Switch,
    /// Automatic gain control.
    #[arg(long, default_value = "on")]
    pub agc: Switch,
    /// Print one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
}

/// What `duet aec` found.
#[derive(Debug, Serialize)]
pub struct AecReport {
    /// The stage's settings, e.g. "aec on, ns on, agc on".
    pub config: String,
    /// Seconds of microphone audio processed.
    pub seconds: f64,
    /// The render-to-capture delay the echo canceller settled on (ms), null if it found none.
    pub delay_ms: Option<u64>,
    /// What the stage itself delays the microphone by (ms).
    pub stage_delay_ms: f64,
    /// Measured ERLE per whole second (dB): microphone power over output power; null for a
    /// second too quiet (below -60 dBFS at the microphone) to measure, or cut short at the end
    /// by the stage's delay.
    pub erle_db: Vec<Option<f64>>,
    /// The echo canceller's own ERLE estimate at the end of each second (dB).
    pub estimated_erle_db: Vec<Option<f64>>,
    /// The echo canceller's echo return loss estimate at the end (dB).
    pub estimated_erl_db: Option<f64>,
    /// Wall time to process one 10 ms chunk, render side included (µs).
    pub cost_us: Cost,
}

/// Per-chunk processing time, measured around each call.
#[derive(Debug, Serialize)]
pub struct Cost {
    /// Median.
    pub median: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// Runs `duet aec`.
pub fn run(args: AecArgs) -> Result<()> {
    let config = ProcessingConfig {
        echo_cancellation: args.aec.on(),
        noise_suppression: args.ns.on(),
        gain_control: args.agc.on(),
    };
    let report = process(&args, config)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&args, &report);
    }
    Ok(())
}

const CHUNK_FORMAT: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms10,
};

fn process(args: &AecArgs, config: ProcessingConfig) -> Result<AecReport> {
    let mut far = WavSource::open(&args.far, CHUNK_FORMAT)
        .with_context(|| format!("--far {}", args.far.display()))?;
    let mut mic = WavSource::open(&args.mic, CHUNK_FORMAT)
        .with_context(|| format!("--mic {}", args.mic.display()))?;
    let mut out = WavSink::create(&args.out, Channels::Mono)
        .with_context(|| format!("--out {}", args.out.display()))?;
    let (mut reference, mut processor) = audio_processing(config, Channels::Mono)?;
    let lag = (config.delay().as_secs_f64() * 48_000.0).round() as usize;

    let start = Instant::now();
    let mut far_frame = AudioFrame::silent(CHUNK_FORMAT, start);
    let mut frame = AudioFrame::silent(CHUNK_FORMAT, start);
    let mut far_done = false;
    let mut costs = Vec::new();
    let (mut mic_all, mut out_all) = (Vec::new(), Vec::new());
    let mut estimated = Vec::new();
    loop {
        match mic.read(start, &mut frame)? {
            Read::Frame => {}
            Read::End => break,
            Read::Pending => bail!("a WAV file never waits"),
        }
        if !far_done {
            match far.read(start, &mut far_frame)? {
                Read::Frame => {}
                _ => {
                    far_done = true;
                    far_frame.samples.fill(0);
                }
            }
        }
        mic_all.extend(frame.samples.iter().map(|&s| f32::from(s) / 32768.0));
        let t = Instant::now();
        reference.push(&far_frame);
        processor.process(&mut frame)?;
        costs.push(t.elapsed());
        out_all.extend(frame.samples.iter().map(|&s| f32::from(s) / 32768.0));
        out.write(start, &frame)?;
        if costs.len() % 100 == 0 {
            estimated.push(processor.stats().echo_return_loss_enhancement);
        }
    }
    out.finish()?;
    if costs.is_empty() {
        bail!("--mic {} holds no audio", args.mic.display());
    }
    let second = 100 * CHUNK;
    let aligned = out_all.get(lag..).unwrap_or_default();
    let erle_db = mic_all
        .chunks_exact(second)
        .zip(aligned.chunks(second))
        .map(|(m, o)| {
            let pm = power_db(m);
            (pm >= -60.0 && o.len() == m.len()).then(|| round1(pm - power_db(o).max(-150.0)))
        })
        .collect();
    costs.sort();
    let pick = |q: f64| -> f64 {
        let i = ((costs.len() - 1) as f64 * q).round() as usize;
        costs.get(i).map_or(0.0, |d| round1(micros(*d)))
    };
    let stats = processor.stats();
    Ok(AecReport {
        config: config.to_string(),
        seconds: mic_all.len() as f64 / 48_000.0,
        delay_ms: stats.echo_delay.map(|d| d.as_millis() as u64),
        stage_delay_ms: config.delay().as_secs_f64() * 1000.0,
        erle_db,
        estimated_erle_db: estimated.into_iter().map(|e| e.map(round1)).collect(),
        estimated_erl_db: stats.echo_return_loss.map(round1),
        cost_us: Cost {
            median: pick(0.5),
            p99: pick(0.99),
            max: pick(1.0),
        },
    })
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn print_summary(args: &AecArgs, r: &AecReport) {
    println!(
        "duet aec ({}): {:.1} s of {} against {}, written to {}",
        r.config,
        r.seconds,
        args.mic.display(),
        args.far.display(),
        args.out.display()
    );
    match r.delay_ms {
        Some(d) => println!("  echo delay found: {d} ms"),
        None => println!("  echo delay found: none"),
    }
    println!("  stage delay: {:.1} ms", r.stage_delay_ms);
    let show = |v: &[Option<f64>]| -> String {
        v.iter()
            .map(|e| e.map_or("-".to_string(), |e| format!("{e:.0}")))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("  ERLE per second, measured (dB): {}", show(&r.erle_db));
    println!(
        "  ERLE per second, canceller's estimate (dB): {}",
        show(&r.estimated_erle_db)
    );
    println!(
        "  cost per 10 ms chunk: median {:.0} µs, p99 {:.0} µs, max {:.0} µs",
        r.cost_us.median, r.cost_us.p99, r.cost_us.max
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use duet_media::audio::room::{Room, RoomConfig};

    /// Writes 48 kHz mono samples to a WAV file.
    fn write(path: &std::path::Path, samples: &[f32]) {
        let now = Instant::now();
        let mut sink = WavSink::create(path, Channels::Mono).unwrap();
        let mut frame = AudioFrame::silent(CHUNK_FORMAT, now);
        for chunk in samples.chunks_exact(CHUNK) {
            for (s, &x) in frame.samples.iter_mut().zip(chunk) {
                *s = (x * 32768.0) as i16;
            }
            sink.write(now, &frame).unwrap();
        }
        sink.finish().unwrap();
    }

    #[test]
    fn a_recorded_pair_gives_the_echo_delay_and_its_removal() {
        let mut speech = WavSource::from_bytes(
            "speech",
            duet_media::audio::anchor::SPEECH_WAV,
            CHUNK_FORMAT,
        )
        .unwrap();
        let now = Instant::now();
        let mut frame = AudioFrame::silent(CHUNK_FORMAT, now);
        let mut far = Vec::new();
        while speech.read(now, &mut frame).unwrap() == Read::Frame && far.len() < 6 * 48_000 {
            far.extend(frame.samples.iter().map(|&s| f32::from(s) / 32768.0));
        }
        let mut room = Room::new(RoomConfig::default()).unwrap();
        let mut mic = vec![0.0; far.len()];
        let silence = vec![0.0; CHUNK];
        for (f, m) in far.chunks_exact(CHUNK).zip(mic.chunks_exact_mut(CHUNK)) {
            room.play(f);
            room.capture(&silence, m, None);
        }
        let dir = tempfile::tempdir().unwrap();
        let args = AecArgs {
            far: dir.path().join("far.wav"),
            mic: dir.path().join("mic.wav"),
            out: dir.path().join("out.wav"),
            aec: Switch::On,
            ns: Switch::On,
            agc: Switch::On,
            json: true,
        };
        write(&args.far, &far);
        write(&args.mic, &mic);
        let report = process(&args, ProcessingConfig::VOICE).unwrap();
        let delay = report.delay_ms.expect("a delay is found");
        assert!((70..=100).contains(&delay), "delay {delay} ms");
        assert_eq!(report.erle_db.len(), 6);
        // The last second is shorter once lined up with the stage's delay: it is not measured.
        assert_eq!(report.erle_db[5], None);
        let late = report.erle_db[4].expect("the fifth second has echo");
        assert!(late >= 20.0, "ERLE {late} dB in the fifth second");
        assert!(report.cost_us.median > 0.0 && report.cost_us.p99 >= report.cost_us.median);
        let written = hound_len(&args.out);
        assert_eq!(written, far.len());

        let missing = AecArgs {
            far: dir.path().join("nope.wav"),
            ..args
        };
        let err = process(&missing, ProcessingConfig::VOICE).unwrap_err();
        assert!(format!("{err:#}").contains("nope.wav"), "{err:#}");
    }

    /// Samples in a WAV file written by duet.
    fn hound_len(path: &std::path::Path) -> usize {
        let mut source = WavSource::open(path, CHUNK_FORMAT).unwrap();
        let now = Instant::now();
        let mut frame = AudioFrame::silent(CHUNK_FORMAT, now);
        let mut n = 0;
        while source.read(now, &mut frame).unwrap() == Read::Frame {
            n += frame.samples.len();
        }
        n
    }
}
