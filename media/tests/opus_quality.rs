//! What Opus does to a call's audio, measured: a tone's pitch and SNR, the codec's delay on
//! speech, how much better FEC rebuilds lost frames than concealment, and every frame size.

use std::time::Instant;

use duet_media::audio::synth::Tone;
use duet_media::audio::AudioSource;
use duet_media::codec::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use duet_media::frame::{AudioFormat, AudioFrame, Channels, FrameDuration, SAMPLE_RATE};
use duet_media::measure::audio::{dominant_frequency, estimate_delay, snr_db};

const MONO20: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};

/// 10.8 s of speech, 48 kHz mono, cut to whole 20 ms frames.
fn speech() -> Vec<i16> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/speech-48k-mono.wav");
    let mut reader = hound::WavReader::open(path).expect("speech test file opens");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (48_000, 1, 16)
    );
    let mut samples: Vec<i16> = reader.samples::<i16>().map(|s| s.unwrap()).collect();
    samples.truncate(samples.len() / 960 * 960);
    samples
}

/// Encodes mono 20 ms frames of `samples` with `config`, one packet per frame.
fn encode_all(config: OpusConfig, samples: &[i16]) -> Vec<Vec<u8>> {
    let mut encoder = OpusEncoder::new(config).unwrap();
    let mut frame = AudioFrame::silent(config.format, Instant::now());
    let n = config.format.samples_per_frame();
    samples
        .chunks_exact(n)
        .map(|chunk| {
            frame.samples.copy_from_slice(chunk);
            let mut packet = Vec::new();
            encoder.encode(&frame, &mut packet).unwrap();
            packet
        })
        .collect()
}

fn decode_all(format: AudioFormat, packets: &[Vec<u8>]) -> Vec<i16> {
    let mut decoder = OpusDecoder::new(format).unwrap();
    let mut frame = AudioFrame::silent(format, Instant::now());
    let mut out = Vec::new();
    for packet in packets {
        decoder.decode(packet, &mut frame).unwrap();
        out.extend_from_slice(&frame.samples);
    }
    out
}

#[test]
fn a_tone_keeps_its_pitch_and_a_measured_snr() {
    let start = Instant::now();
    let mut tone = Tone::new(MONO20, 1000.0, 0.5, start);
    let mut frame = AudioFrame::silent(MONO20, start);
    let mut input = Vec::new();
    for _ in 0..100 {
        tone.read(start, &mut frame).unwrap();
        input.extend_from_slice(&frame.samples);
    }
    let encoder = OpusEncoder::new(OpusConfig::voice(MONO20)).unwrap();
    let lag = encoder.lookahead_samples();
    let output = decode_all(MONO20, &encode_all(*encoder.config(), &input));
    assert_eq!(output.len(), input.len());

    // Leave out the first 200 ms, while the codec settles. A tone repeats every 48 samples,
    // so its alignment is searched within half a period either side of the look-ahead.
    let settled = 9_600;
    let (input, output) = (&input[settled..], &output[settled..]);
    let from = lag - 24;
    let found = estimate_delay(input, &output[from..], 48).unwrap();
    let delay = from + found.lag;
    let freq = dominant_frequency(output, SAMPLE_RATE).unwrap();
    let snr = snr_db(input, output, delay);
    eprintln!(
        "1 kHz tone through Opus 32 kbps: {freq:.3} Hz, delay {delay} samples (look-ahead {lag}), \
         SNR {snr:.1} dB (at the look-ahead: {:.1} dB)",
        snr_db(input, output, lag)
    );
    assert!((freq - 1000.0).abs() < 1.0, "{freq} Hz");
    // Measured here: 309 samples. The SILK layer delays the tone slightly less than the look-ahead.
    assert!(delay.abs_diff(lag) <= 6, "delay {delay}");
    // Measured here: 24.0 dB.
    assert!(snr > 21.0, "SNR {snr} dB");
}

#[test]
fn speech_comes_back_delayed_by_the_encoder_lookahead() {
    let input = speech();
    let encoder = OpusEncoder::new(OpusConfig::voice(MONO20)).unwrap();
    let lookahead = encoder.lookahead_samples();
    let output = decode_all(MONO20, &encode_all(*encoder.config(), &input));

    let found = estimate_delay(&input, &output, 4_800).unwrap();
    let snr = snr_db(&input, &output, found.lag);
    eprintln!(
        "speech: lag {} samples (lookahead {lookahead}), correlation {:.4}, SNR {snr:.1} dB",
        found.lag, found.correlation
    );
    assert!(found.lag.abs_diff(lookahead) <= 48, "{found:?}");
    // Measured here: lag 309, correlation 0.954.
    assert!(found.correlation > 0.93, "{found:?}");
}

/// SNR of `decoded` against `clean` over the frames listed in `lost`.
fn snr_of_frames(clean: &[i16], decoded: &[i16], lost: &[usize]) -> f64 {
    let pick = |s: &[i16]| -> Vec<i16> {
        lost.iter()
            .flat_map(|&i| s[i * 960..(i + 1) * 960].iter().copied())
            .collect()
    };
    snr_db(&pick(clean), &pick(decoded), 0)
}

#[test]
fn fec_rebuilds_lost_frames_better_than_concealment() {
    let input = speech();
    let mut config = OpusConfig::voice(MONO20);
    config.expected_loss_pct = 20;
    let packets = encode_all(config, &input);
    let clean = decode_all(MONO20, &packets);
    let lost: Vec<usize> = (0..packets.len() - 1).filter(|i| i % 10 == 5).collect();

    let mut with_fec = OpusDecoder::new(MONO20).unwrap();
    let mut with_plc = OpusDecoder::new(MONO20).unwrap();
    let (mut fec_out, mut plc_out) = (Vec::new(), Vec::new());
    let mut frame = AudioFrame::silent(MONO20, Instant::now());
    for (i, packet) in packets.iter().enumerate() {
        if lost.contains(&i) {
            with_fec.recover(&packets[i + 1], &mut frame).unwrap();
            fec_out.extend_from_slice(&frame.samples);
            with_plc.conceal(&mut frame).unwrap();
            plc_out.extend_from_slice(&frame.samples);
        } else {
            with_fec.decode(packet, &mut frame).unwrap();
            fec_out.extend_from_slice(&frame.samples);
            with_plc.decode(packet, &mut frame).unwrap();
            plc_out.extend_from_slice(&frame.samples);
        }
    }

    let fec_lost = snr_of_frames(&clean, &fec_out, &lost);
    let plc_lost = snr_of_frames(&clean, &plc_out, &lost);
    let fec_all = snr_db(&clean, &fec_out, 0);
    let plc_all = snr_db(&clean, &plc_out, 0);
    let stats = with_fec.stats();
    eprintln!(
        "{} of {} frames lost: FEC {fec_lost:.1} dB, PLC {plc_lost:.1} dB on the lost frames; \
         whole signal FEC {fec_all:.1} dB, PLC {plc_all:.1} dB; {stats:?}",
        lost.len(),
        packets.len()
    );
    // Measured here: FEC 9.0 dB, PLC 0.6 dB on the lost frames.
    assert!(
        fec_lost > plc_lost + 5.0,
        "FEC {fec_lost} dB, PLC {plc_lost} dB"
    );
    assert!(
        fec_all > plc_all + 3.0,
        "FEC {fec_all} dB, PLC {plc_all} dB"
    );
    assert_eq!(stats.fec_recovered + stats.concealed, lost.len() as u64);
    assert!(
        stats.fec_recovered * 10 >= lost.len() as u64 * 8,
        "{stats:?}"
    );
    assert_eq!(with_plc.stats().concealed, lost.len() as u64);
    assert_eq!(stats.errors + with_plc.stats().errors, 0);
}

#[test]
fn recovery_without_fec_in_the_stream_is_counted_as_concealment() {
    let input = speech();
    let mut config = OpusConfig::voice(MONO20);
    config.fec = false;
    let packets = encode_all(config, &input[..96_000]);
    let mut decoder = OpusDecoder::new(MONO20).unwrap();
    let mut frame = AudioFrame::silent(MONO20, Instant::now());
    for i in 0..packets.len() - 1 {
        if i % 10 == 5 {
            decoder.recover(&packets[i + 1], &mut frame).unwrap();
        } else {
            decoder.decode(&packets[i], &mut frame).unwrap();
        }
    }
    let stats = decoder.stats();
    assert_eq!((stats.fec_recovered, stats.concealed), (0, 10));
}

#[test]
fn every_frame_size_and_stereo_round_trip() {
    let start = Instant::now();
    for channels in [Channels::Mono, Channels::Stereo] {
        for frame in [
            FrameDuration::Ms10,
            FrameDuration::Ms20,
            FrameDuration::Ms40,
            FrameDuration::Ms60,
        ] {
            let format = AudioFormat { channels, frame };
            let mut tone = Tone::new(format, 440.0, 0.5, start);
            let mut encoder = OpusEncoder::new(OpusConfig::voice(format)).unwrap();
            let mut decoder = OpusDecoder::new(format).unwrap();
            let mut input = AudioFrame::silent(format, start);
            let mut output = AudioFrame::silent(format, start);
            let mut packet = Vec::new();
            let mut left = Vec::new();
            let mut right = Vec::new();
            let frames = 1200 / frame.millis();
            for _ in 0..frames {
                tone.read(start, &mut input).unwrap();
                encoder.encode(&input, &mut packet).unwrap();
                let per_channel = opus::packet::get_nb_samples(&packet, SAMPLE_RATE).unwrap();
                assert_eq!(per_channel, frame.samples_per_channel(), "{format:?}");
                decoder.decode(&packet, &mut output).unwrap();
                assert_eq!(
                    output.samples.len(),
                    format.samples_per_frame(),
                    "{format:?}"
                );
                assert_eq!(output.format, format);
                let n = channels.count();
                left.extend(output.samples.iter().step_by(n));
                right.extend(output.samples.iter().skip(n - 1).step_by(n));
            }
            assert_eq!(left.len(), 57_600);
            for signal in [&left, &right] {
                let freq = dominant_frequency(&signal[9_600..], SAMPLE_RATE).unwrap();
                assert!((freq - 440.0).abs() < 1.0, "{format:?}: {freq} Hz");
            }
            assert_eq!(decoder.stats().decoded, u64::from(frames));
        }
    }
}
