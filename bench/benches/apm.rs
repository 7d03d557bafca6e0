//! Criterion bench of the microphone's audio processing: one 10 ms chunk (48 kHz mono) through
//! echo cancellation, noise suppression and gain control, render side included, on speech
//! echoed by a simulated room. The p99 comes from `cargo run --release -p duet-bench --bin
//! apm_cost`, which times every chunk of a longer run.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use duet_bench::apm::echo_scene;
use duet_media::audio::process::{audio_processing, ProcessingConfig, CHUNK};
use duet_media::Channels;

fn apm(c: &mut Criterion) {
    let (far, mic) = echo_scene(10.0).expect("bench signals");
    let mut group = c.benchmark_group("apm");
    group.throughput(Throughput::Elements(1));
    let configs = [
        ("aec+ns+agc", ProcessingConfig::VOICE),
        (
            "aec",
            ProcessingConfig {
                echo_cancellation: true,
                noise_suppression: false,
                gain_control: false,
            },
        ),
    ];
    for (name, config) in configs {
        let (mut reference, mut processor) =
            audio_processing(config, Channels::Mono).expect("stage");
        let mut chunks = far.chunks_exact(CHUNK).zip(mic.chunks_exact(CHUNK)).cycle();
        let mut out = vec![0.0f32; CHUNK];
        // Past the first seconds, so the canceller has converged as in a call.
        for _ in 0..300 {
            if let Some((f, m)) = chunks.next() {
                reference.push_f32(f);
                out.copy_from_slice(m);
                processor.process_f32(&mut out).expect("process");
            }
        }
        group.bench_function(BenchmarkId::new("chunk_10ms_48k_mono", name), |b| {
            b.iter(|| {
                if let Some((f, m)) = chunks.next() {
                    reference.push_f32(f);
                    out.copy_from_slice(m);
                    processor.process_f32(black_box(&mut out)).expect("process");
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, apm);
criterion_main!(benches);
