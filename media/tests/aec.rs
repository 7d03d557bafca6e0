//! The microphone's audio processing measured in a simulated room: how much echo it removes,
//! how it follows a moved speaker and a drifting clock, what it does to the near end alone,
//! in double talk and under noise. Near and far ends are different parts of one speech
//! recording; every figure comes from the signals.

use std::time::Duration;

use duet_media::audio::process::{audio_processing, ProcessingConfig, CHUNK};
use duet_media::audio::room::{Room, RoomConfig};
use duet_media::measure::audio::estimate_delay;
use duet_media::measure::echo::{
    erle_per_frame, median, power_db, segmental_spectral_snr_db, spectral_snr_db,
};
use duet_media::Channels;

/// Echo below this level (dBFS) is too close to the room's noise for ERLE to mean anything.
const ECHO_FLOOR_DB: f64 = -55.0;

/// Echo cancellation and the high-pass filter only: gain control changes levels on purpose and
/// is measured on its own.
const AEC: ProcessingConfig = ProcessingConfig {
    echo_cancellation: true,
    noise_suppression: false,
    gain_control: false,
};

/// 10.7 s of speech at 48 kHz, as floats.
fn speech() -> Vec<f32> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/speech-48k-mono.wav");
    let mut reader = hound::WavReader::open(path).expect("speech test file opens");
    reader
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect()
}

/// The far end talks from the first half of the recording, the near end from the second.
fn voices() -> (Vec<f32>, Vec<f32>) {
    let all = speech();
    let half = all.len() / 2 / CHUNK * CHUNK;
    (all[..half].to_vec(), all[half..2 * half].to_vec())
}

/// `seconds` of `x` repeated.
fn looped(x: &[f32], seconds: f64) -> Vec<f32> {
    let n = (seconds * 48_000.0) as usize / CHUNK * CHUNK;
    x.iter().copied().cycle().take(n).collect()
}

/// What one run through the room left behind, all of the same length.
struct Run {
    mic: Vec<f32>,
    echo: Vec<f32>,
    out: Vec<f32>,
}

/// Plays `far` into the room and the stage's render side, captures `near` plus the echo,
/// processes the microphone; `each` is called with the chunk index before the chunk.
fn run(
    config: ProcessingConfig,
    room: RoomConfig,
    far: &[f32],
    near: &[f32],
    mut each: impl FnMut(usize, &mut Room),
) -> Run {
    let (mut reference, mut processor) = audio_processing(config, Channels::Mono).unwrap();
    let mut room = Room::new(room).unwrap();
    let n = far.len().min(near.len());
    let mut r = Run {
        mic: vec![0.0; n],
        echo: vec![0.0; n],
        out: vec![0.0; n],
    };
    for (i, ((f, nr), ((m, e), o))) in far
        .chunks_exact(CHUNK)
        .zip(near.chunks_exact(CHUNK))
        .zip(
            r.mic
                .chunks_exact_mut(CHUNK)
                .zip(r.echo.chunks_exact_mut(CHUNK))
                .zip(r.out.chunks_exact_mut(CHUNK)),
        )
        .enumerate()
    {
        each(i, &mut room);
        reference.push_f32(f);
        room.play(f);
        room.capture(nr, m, Some(e));
        o.copy_from_slice(m);
        processor.process_f32(o).unwrap();
    }
    r
}

/// `out` moved earlier by the stage's delay, so it lines up with its input.
fn aligned(out: &[f32], config: ProcessingConfig) -> &[f32] {
    let lag = (config.delay().as_secs_f64() * 48_000.0).round() as usize;
    &out[lag..]
}

/// Median ERLE (dB) of the 10 ms frames from `from` to `to` seconds.
fn erle(r: &Run, config: ProcessingConfig, from: f64, to: f64) -> f64 {
    let out = aligned(&r.out, config);
    let frames = erle_per_frame(&r.echo, out, CHUNK, ECHO_FLOOR_DB);
    let (a, b) = ((from * 100.0) as usize, (to * 100.0) as usize);
    median(frames[a..b.min(frames.len())].iter().copied()).expect("echo above the floor")
}

#[test]
fn the_stage_delay_is_what_the_signal_shows() {
    let (_, near) = voices();
    let near = looped(&near, 3.0);
    let silence = vec![0.0; near.len()];
    for bits in 1..8u8 {
        let config = ProcessingConfig {
            echo_cancellation: bits & 1 != 0,
            noise_suppression: bits & 2 != 0,
            gain_control: bits & 4 != 0,
        };
        let r = run(config, RoomConfig::default(), &silence, &near, |_, _| {});
        let q = |x: &[f32]| -> Vec<i16> { x.iter().map(|s| (s * 32768.0) as i16).collect() };
        let found = estimate_delay(&q(&near[48_000..]), &q(&r.out[48_000..]), 2_400)
            .expect("the output correlates with its input");
        let stated = (config.delay().as_secs_f64() * 48_000.0).round() as usize;
        assert!(
            found.lag.abs_diff(stated) <= 16,
            "{config}: the output lags by {} samples, the stage says {stated}",
            found.lag
        );
    }
}

#[test]
fn far_end_single_talk_echo_is_removed() {
    let (far, _) = voices();
    let far = looped(&far, 8.0);
    let silence = vec![0.0; far.len()];
    let room = RoomConfig::default();
    let r = run(AEC, room, &far, &silence, |_, _| {});
    let aec = erle(&r, AEC, 2.0, 8.0);
    let all = run(ProcessingConfig::VOICE, room, &far, &silence, |_, _| {});
    let voice = erle(&all, ProcessingConfig::VOICE, 2.0, 8.0);
    println!("ERLE, far-end single talk, 80 ms / -6 dB / RT60 300 ms: {aec:.1} dB (AEC), {voice:.1} dB (AEC+NS+AGC)");
    assert!(aec >= 25.0, "ERLE {aec:.1} dB with AEC alone");
    assert!(voice >= 25.0, "ERLE {voice:.1} dB with AEC+NS+AGC");
}

#[test]
fn echo_is_removed_again_after_the_path_changes() {
    let (far, _) = voices();
    let far = looped(&far, 10.0);
    let silence = vec![0.0; far.len()];
    let r = run(AEC, RoomConfig::default(), &far, &silence, |i, room| {
        if i == 500 {
            room.set_delay(Duration::from_millis(150)).unwrap();
        }
    });
    let before = erle(&r, AEC, 2.0, 5.0);
    let after = erle(&r, AEC, 7.0, 10.0);
    println!("ERLE before the move {before:.1} dB, from 2 s after it {after:.1} dB");
    assert!(before >= 25.0, "{before:.1} dB");
    assert!(after >= 20.0, "{after:.1} dB from 2 s after the move");
}

#[test]
fn a_drifting_microphone_clock_keeps_the_echo_removed() {
    let (far, _) = voices();
    let far = looped(&far, 12.0);
    let silence = vec![0.0; far.len()];
    let room = RoomConfig {
        drift_ppm: 100.0,
        ..RoomConfig::default()
    };
    let r = run(AEC, room, &far, &silence, |_, _| {});
    let late = erle(&r, AEC, 2.0, 12.0);
    println!("ERLE with the microphone 100 ppm fast: {late:.1} dB");
    assert!(late >= 25.0, "{late:.1} dB");
}

#[test]
fn the_near_end_alone_passes_unchanged_in_level_and_spectrum() {
    let (_, near) = voices();
    let near = looped(&near, 6.0);
    let silence = vec![0.0; near.len()];
    let config = ProcessingConfig {
        gain_control: false,
        ..ProcessingConfig::VOICE
    };
    let r = run(config, RoomConfig::default(), &silence, &near, |_, _| {});
    let skip = 48_000;
    let out = &aligned(&r.out, config)[skip..];
    let input = &r.mic[skip..skip + out.len()];
    let level = power_db(out) - power_db(input);
    let snr = spectral_snr_db(input, out);
    println!("transparency ({config}): level {level:+.2} dB, magnitude-spectrum SNR {snr:.1} dB");
    assert!(level.abs() <= 1.0, "level changed by {level:.2} dB");
    assert!(snr >= 20.0, "magnitude-spectrum SNR {snr:.1} dB");
}

#[test]
fn double_talk_keeps_the_near_end_better_than_the_raw_microphone() {
    let (far, near) = voices();
    let far = looped(&far, 16.0);
    // The near end as loud as the echo (the path is -6 dB), joining after 6 s of the far end
    // alone, as in a call: by then the stage run on the near end alone has found that its
    // microphone hears no echo and stopped suppressing.
    let join = 6 * 48_000;
    let near: Vec<f32> = looped(&near, 16.0)
        .iter()
        .enumerate()
        .map(|(i, x)| if i < join { 0.0 } else { x * 0.5 })
        .collect();
    let room = RoomConfig::default();
    let config = AEC;
    let both = run(config, room, &far, &near, |_, _| {});
    // The same stage, the same far end playing, a microphone that hears only the near end.
    let no_echo = RoomConfig {
        echo_gain_db: -200.0,
        ..room
    };
    let alone = run(config, no_echo, &far, &near, |_, _| {});
    let from = join + 2 * 48_000;
    let snr_processed = spectral_snr_db(&alone.out[from..], &both.out[from..]);
    let snr_raw = spectral_snr_db(&near[from..], &both.mic[from..]);
    println!(
        "double talk: magnitude-spectrum SNR {snr_processed:.1} dB processed, {snr_raw:.1} dB raw microphone"
    );
    assert!(
        snr_processed > snr_raw,
        "processed {snr_processed:.1} dB vs raw {snr_raw:.1} dB"
    );
}

#[test]
fn noise_is_suppressed_and_speech_kept() {
    let (_, near) = voices();
    let near = looped(&near, 8.0);
    let speech_db = power_db(&near);
    // White noise 10 dB below the speech, constant through the run.
    let noisy_room = RoomConfig {
        noise_dbfs: Some(speech_db - 10.0),
        ..RoomConfig::default()
    };
    let quiet_room = RoomConfig {
        noise_dbfs: None,
        ..RoomConfig::default()
    };
    let silence = vec![0.0; near.len()];
    let config = ProcessingConfig {
        gain_control: false,
        ..ProcessingConfig::VOICE
    };
    let noisy = run(config, noisy_room, &silence, &near, |_, _| {});
    // What the stage makes of the speech alone: the reference for its output, as its filters
    // change the phase and so the short-time spectra of anything that passes.
    let clean = run(config, quiet_room, &silence, &near, |_, _| {});
    let skip = 2 * 48_000;
    let before = segmental_spectral_snr_db(&near[skip..], &noisy.mic[skip..]);
    let after = segmental_spectral_snr_db(&clean.out[skip..], &noisy.out[skip..]);
    let kept = power_db(&noisy.out[skip..]) - power_db(&near[skip..]);
    println!("noise suppression: segmental SNR {before:.1} dB in, {after:.1} dB out; speech level {kept:+.1} dB");
    assert!(after >= before + 4.0, "{before:.1} dB -> {after:.1} dB");
    assert!(kept.abs() <= 3.0, "speech level changed by {kept:.1} dB");
}

/// Plays `far` through a speakerphone whose person says nothing, with `config` on the
/// microphone path as a call has it (the speaker is the echo reference), and returns the level
/// of what the stage sends relative to the far end, after the first 2 s.
fn returned_through_speakerphone(config: ProcessingConfig, far: &[f32]) -> f64 {
    use duet_media::audio::process::process_path;
    use duet_media::audio::speakerphone::speakerphone;
    use duet_media::audio::synth::Silence;
    use duet_media::audio::NullAudioSink;
    use duet_media::{AudioFormat, AudioFrame, FrameDuration};
    use std::time::Instant;

    let start = Instant::now();
    let mic_format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };
    let play_format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms10,
    };
    let (microphone, speaker, _) = speakerphone(
        RoomConfig::default(),
        Box::new(Silence::new(mic_format, start)),
        Box::new(NullAudioSink::default()),
    )
    .unwrap();
    let path = process_path(config, Box::new(microphone), Box::new(speaker)).unwrap();
    let (mut source, mut sink) = (path.source, path.sink);
    let mut played = AudioFrame::silent(play_format, start);
    let mut sent = AudioFrame::silent(mic_format, start);
    let (mut far_energy, mut sent_energy) = (0.0f64, 0.0f64);
    // Two 10 ms periods played for every 20 ms frame captured, as a call's threads do.
    for (i, pair) in far.chunks_exact(2 * CHUNK).enumerate() {
        for half in pair.chunks_exact(CHUNK) {
            for (s, &x) in played.samples.iter_mut().zip(half) {
                *s = (x * 32767.0) as i16;
            }
            sink.write(start, &played).unwrap();
        }
        source.read(start, &mut sent).unwrap();
        if i >= 100 {
            far_energy += pair.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>();
            sent_energy += sent
                .samples
                .iter()
                .map(|&s| (f64::from(s) / 32768.0).powi(2))
                .sum::<f64>();
        }
    }
    10.0 * (sent_energy / far_energy).log10()
}

#[test]
fn a_speakerphone_returns_little_of_the_far_end() {
    let (far, _) = voices();
    let far = looped(&far, 10.0);
    let returned = |config| {
        let db = returned_through_speakerphone(config, &far);
        println!("speakerphone ({config}): what it sends is {db:.1} dB against the far end");
        db
    };
    // Without processing the far end goes back at the echo path's gain: a loop.
    assert!(returned(ProcessingConfig::OFF) > -10.0);
    assert!(returned(AEC) <= -25.0);
    assert!(returned(ProcessingConfig::VOICE) <= -25.0);
}
