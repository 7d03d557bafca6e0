//! WAV files in and out: duet's own files round-trip bit for bit, other rates and layouts are
//! converted to 48 kHz frames of the right length and pitch, and bad files are named in errors.

use std::f64::consts::TAU;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use duet_media::audio::synth::Tone;
use duet_media::audio::wav::{WavSink, WavSource};
use duet_media::audio::{AudioSink, AudioSource};
use duet_media::{AudioFormat, AudioFrame, Channels, Error, FrameDuration, Read, SourceError};

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("duet-wav-{}-{name}", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn read_all(source: &mut WavSource, start: Instant) -> Vec<AudioFrame> {
    let mut frames = Vec::new();
    let mut frame = AudioFrame::silent(source.format(), start);
    for i in 0..10_000 {
        // The time of later reads does not matter: the file's sample clock does.
        let now = start + Duration::from_secs(i);
        match source.read(now, &mut frame).unwrap() {
            Read::Frame => frames.push(frame.clone()),
            Read::End => return frames,
            Read::Pending => panic!("a file source is never pending"),
        }
    }
    panic!("no end of file");
}

fn zero_crossings(x: &[i16]) -> usize {
    x.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
}

#[test]
fn frames_written_read_back_bit_identical() {
    let file = TempFile::new("roundtrip.wav");
    let format = AudioFormat {
        channels: Channels::Stereo,
        frame: FrameDuration::Ms20,
    };
    let start = Instant::now();
    let mut tone = Tone::new(format, 997.0, 0.9, start);
    let mut sink = WavSink::create(&file.0, Channels::Stereo).unwrap();
    let mut written = Vec::new();
    let mut frame = AudioFrame::silent(format, start);
    for n in 0..25 {
        tone.read(start, &mut frame).unwrap();
        // Put the extremes in too.
        frame.samples[0] = i16::MIN;
        frame.samples[1] = i16::MAX;
        frame.samples[2] = n;
        sink.write(start, &frame).unwrap();
        written.push(frame.samples.clone());
    }
    sink.finish().unwrap();
    assert_eq!(sink.frames(), 25);
    // Finishing twice is harmless; writing afterwards is refused.
    sink.finish().unwrap();
    assert!(sink.write(start, &frame).is_err());

    let mut source = WavSource::open(&file.0, format).unwrap();
    assert_eq!((source.file_rate(), source.file_channels()), (48_000, 2));
    let read = read_all(&mut source, start);
    assert_eq!(read.len(), 25);
    for (n, (got, want)) in read.iter().zip(&written).enumerate() {
        assert_eq!(got.samples, *want, "frame {n}");
        assert_eq!(got.seq, n as u64);
        assert_eq!(got.capture, start + Duration::from_millis(20 * n as u64));
        assert_eq!(got.format, format);
    }
    // Stays ended.
    let mut frame = AudioFrame::silent(format, start);
    assert_eq!(source.read(start, &mut frame).unwrap(), Read::End);
}

#[test]
fn a_44k1_stereo_file_reads_as_48k_mono_of_the_same_length_and_pitch() {
    let file = TempFile::new("tone-44k1.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    // 1.005 s of 1 kHz: left at 0.6 of full scale, right at 0.2, so the mix is 0.4.
    let frames_in = 44_321;
    let mut writer = hound::WavWriter::create(&file.0, spec).unwrap();
    for k in 0..frames_in {
        let s = (TAU * 1000.0 * f64::from(k) / 44_100.0).sin();
        let full = f64::from((1 << 23) - 1);
        writer
            .write_sample((0.6 * full * s).round() as i32)
            .unwrap();
        writer
            .write_sample((0.2 * full * s).round() as i32)
            .unwrap();
    }
    writer.finalize().unwrap();

    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms10,
    };
    let start = Instant::now();
    let mut source = WavSource::open(&file.0, format).unwrap();
    let frames = read_all(&mut source, start);
    // 44321 frames at 44.1 kHz are 48234.8 at 48 kHz: 48 frames of 480 and a padded one.
    assert_eq!(frames.len(), 101);
    let all: Vec<i16> = frames
        .iter()
        .flat_map(|f| f.samples.iter().copied())
        .collect();
    let last_sound = all.iter().rposition(|&s| s != 0).unwrap();
    let expected = 44_321 * 48_000 / 44_100;
    assert!(
        (expected - 3..=expected).contains(&last_sound),
        "sound ends at {last_sound}, expected about {expected}"
    );
    assert!(all[expected + 1..].iter().all(|&s| s == 0));
    // It lines up with the file: the resampler's delay was dropped, up to a fraction of a
    // sample (rubato reports its delay in whole frames).
    let fit = |shift: f64| {
        all[100..2000]
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let k = (i + 100) as f64 - shift;
                let ideal = 0.4 * 32768.0 * (TAU * 1000.0 * k / 48_000.0).sin();
                (f64::from(v) - ideal).abs()
            })
            .fold(0.0f64, f64::max)
    };
    let (shift, worst) = (-200..=200)
        .map(|i| f64::from(i) / 100.0)
        .map(|s| (s, fit(s)))
        .fold((0.0, f64::MAX), |b, c| if c.1 < b.1 { c } else { b });
    assert!(shift.abs() < 1.0, "output lags the file by {shift} samples");
    assert!(worst < 10.0, "deviates from the ideal tone by {worst}");
    // 1 kHz crosses zero 2000 times a second: one second of it, away from the ends.
    let second = &all[100..48_100];
    let crossings = zero_crossings(second);
    assert!((1998..=2002).contains(&crossings), "{crossings} crossings");
    let peak = second.iter().map(|s| s.unsigned_abs()).max().unwrap();
    let want = 0.4 * 32768.0;
    assert!(
        (f64::from(peak) - want).abs() < want * 0.01,
        "peak {peak}, expected {want}"
    );
    assert_eq!(frames[100].seq, 100);
    assert_eq!(frames[100].capture, start + Duration::from_millis(1000));
}

#[test]
fn eight_bit_and_float_files_are_read_and_mono_is_spread_to_stereo() {
    let format = AudioFormat {
        channels: Channels::Stereo,
        frame: FrameDuration::Ms20,
    };
    let eight = TempFile::new("u8.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 8,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&eight.0, spec).unwrap();
    for k in 0..960i32 {
        w.write_sample((k % 200 - 100) as i8).unwrap();
    }
    w.finalize().unwrap();
    let frames = read_all(
        &mut WavSource::open(&eight.0, format).unwrap(),
        Instant::now(),
    );
    assert_eq!(frames.len(), 1);
    for (k, pair) in frames[0].samples.chunks(2).enumerate() {
        let want = ((k as i32 % 200 - 100) * 256) as i16;
        assert_eq!(pair, [want, want], "sample {k}");
    }

    let float = TempFile::new("f32.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&float.0, spec).unwrap();
    for v in [0.5f32, -0.25, 1.5, -1.5] {
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    let frames = read_all(
        &mut WavSource::open(&float.0, format).unwrap(),
        Instant::now(),
    );
    assert_eq!(frames.len(), 1);
    assert_eq!(
        frames[0].samples[..8],
        [16384, 16384, -8192, -8192, 32767, 32767, -32768, -32768]
    );
    assert!(frames[0].samples[8..].iter().all(|&s| s == 0));
}

#[test]
fn bad_files_are_errors_that_name_them() {
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };
    let missing = std::env::temp_dir().join("duet-no-such-file.wav");
    let err = WavSource::open(&missing, format).unwrap_err();
    assert!(matches!(err, Error::Source(SourceError::Io { ref path, .. }) if *path == missing));
    assert!(err.to_string().contains("duet-no-such-file.wav"), "{err}");
    assert!(!err.is_recoverable());

    let text = TempFile::new("not-a-wav.wav");
    std::fs::write(&text.0, b"this is a text file, not audio at all").unwrap();
    let err = WavSource::open(&text.0, format).unwrap_err();
    assert!(
        matches!(err, Error::Source(SourceError::Format { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("not-a-wav.wav"), "{err}");

    let empty = TempFile::new("empty.wav");
    std::fs::write(&empty.0, b"").unwrap();
    let err = WavSource::open(&empty.0, format).unwrap_err();
    assert!(
        matches!(err, Error::Source(SourceError::Format { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty.wav"), "{err}");

    let err = WavSource::from_bytes("built-in sample", b"RIFF\x04\0\0\0WAVE", format).unwrap_err();
    assert!(err.to_string().contains("built-in sample"), "{err}");

    let dir = std::env::temp_dir()
        .join("duet-no-such-dir")
        .join("out.wav");
    let err = WavSink::create(&dir, Channels::Mono).unwrap_err();
    assert!(err.to_string().contains("duet-no-such-dir"), "{err}");
}

#[test]
fn a_truncated_file_ends_early_without_error() {
    let file = TempFile::new("cut.wav");
    let mut sink = WavSink::create(&file.0, Channels::Mono).unwrap();
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };
    let start = Instant::now();
    let mut tone = Tone::new(format, 440.0, 0.5, start);
    let mut frame = AudioFrame::silent(format, start);
    for _ in 0..3 {
        tone.read(start, &mut frame).unwrap();
        sink.write(start, &frame).unwrap();
    }
    sink.finish().unwrap();
    // Cut the data in the middle of the second frame (header of 44 bytes).
    let bytes = std::fs::read(&file.0).unwrap();
    std::fs::write(&file.0, &bytes[..44 + 2 * 1500 + 1]).unwrap();
    // What is there is read; the cut half sample and the missing rest are not an error.
    let frames = read_all(&mut WavSource::open(&file.0, format).unwrap(), start);
    assert_eq!(frames.len(), 2);
    let mut tone = Tone::new(format, 440.0, 0.5, start);
    let mut want = Vec::new();
    for _ in 0..2 {
        tone.read(start, &mut frame).unwrap();
        want.extend_from_slice(&frame.samples);
    }
    want[1500..].fill(0);
    let got: Vec<i16> = frames
        .iter()
        .flat_map(|f| f.samples.iter().copied())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn the_built_in_speech_sample_opens() {
    let bytes: &'static [u8] = include_bytes!("../testdata/speech-48k-mono.wav");
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };
    let mut source = WavSource::from_bytes("speech", bytes, format).unwrap();
    let frames = read_all(&mut source, Instant::now());
    let seconds = frames.len() as f64 * 0.02;
    assert!((5.0..=15.0).contains(&seconds), "{seconds} s");
    assert!(frames
        .iter()
        .any(|f| f.samples.iter().any(|&s| s.unsigned_abs() > 1000)));
}
