//! duet's cpal microphone and speaker, run for real against ALSA's `null` and `file` plugins.
//!
//! `testdata/asoundrc-null` replaces the system's ALSA setup (through `ALSA_CONFIG_PATH`, set
//! before the first ALSA call) with four devices that need no sound card. They are not paced
//! by a clock: capture delivers and playback swallows samples as fast as the callback thread
//! runs, so the microphone's ring overflows all the time and the speaker underruns whenever
//! nothing is queued. The tests check that this is counted and that frames stay whole.

use std::f64::consts::TAU;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use duet_media::audio::device::{
    list_devices, DeviceConfig, DeviceInfo, Microphone, SampleFormat, Speaker,
};
use duet_media::audio::synth::Tone;
use duet_media::audio::{AudioSink, AudioSource};
use duet_media::{AudioFormat, AudioFrame, Channels, DeviceError, Error, FrameDuration, Read};

/// Set in the child process that checks a machine without devices.
const CHILD: &str = "DUET_ALSA_NO_DEVICES";

/// Files the file plugins read and write (named in the environment, see the asoundrc), in
/// cargo's scratch directory for integration tests.
struct Alsa {
    /// Five seconds of 1 kHz at half scale as a 44.1 kHz mono s16 device delivers it.
    infile: PathBuf,
    outfile: PathBuf,
}

/// Points ALSA at the test setup and writes the capture file. Every test calls it before
/// touching a device.
fn alsa() -> &'static Alsa {
    static ALSA: OnceLock<Alsa> = OnceLock::new();
    ALSA.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let alsa = Alsa {
            infile: dir.join("duet-alsa-tone-44k1-mono-s16.raw"),
            outfile: dir.join(format!("duet-alsa-{}-tape.raw", std::process::id())),
        };
        let tone: Vec<u8> = (0..5 * 44_100)
            .map(|k| (16384.0 * (TAU * 1000.0 * f64::from(k) / 44_100.0).sin()).round() as i16)
            .flat_map(i16::to_le_bytes)
            .collect();
        std::fs::write(&alsa.infile, tone).unwrap();
        // No test thread has called into ALSA yet: they all wait for this.
        if std::env::var_os(CHILD).is_none() {
            let rc = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/asoundrc-null");
            std::env::set_var("ALSA_CONFIG_PATH", rc);
        }
        std::env::set_var("DUET_ALSA_INFILE", &alsa.infile);
        std::env::set_var("DUET_ALSA_OUTFILE", &alsa.outfile);
        alsa
    })
}

fn format(channels: Channels, frame: FrameDuration) -> AudioFormat {
    AudioFormat { channels, frame }
}

/// Reads `n` frames, polling while the source is pending; gives up after 5 s.
fn read_frames(mic: &mut Microphone, n: usize) -> Vec<(Instant, AudioFrame)> {
    let mut frames = Vec::new();
    let mut frame = AudioFrame::silent(mic.format(), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(5);
    while frames.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} frames in 5 s",
            frames.len()
        );
        let now = Instant::now();
        match mic.read(now, &mut frame).unwrap() {
            Read::Frame => frames.push((now, frame.clone())),
            Read::Pending => std::thread::sleep(Duration::from_millis(1)),
            Read::End => panic!("a microphone does not end"),
        }
    }
    frames
}

fn zero_crossings(x: impl Iterator<Item = i16>) -> usize {
    let mut prev: Option<bool> = None;
    let mut n = 0;
    for v in x {
        let negative = v < 0;
        if prev.is_some_and(|p| p != negative) {
            n += 1;
        }
        prev = Some(negative);
    }
    n
}

fn raw_i16(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[test]
fn default_microphone_overflows_yet_gives_whole_frames() {
    alsa();
    let mut mic = Microphone::open(None, format(Channels::Mono, FrameDuration::Ms20)).unwrap();
    assert_eq!(mic.name(), "default");
    assert!(mic.is_live());
    // cpal's choice for a device that takes anything.
    let native = DeviceConfig {
        sample_rate: 48_000,
        channels: 2,
        sample_format: SampleFormat::F32,
    };
    assert_eq!(mic.device_config(), native);
    let frames = read_frames(&mut mic, 30);
    for (i, (now, frame)) in frames.iter().enumerate() {
        assert_eq!(frame.seq, i as u64);
        assert_eq!(frame.samples.len(), 960, "frame {i}");
        // The null device captures digital silence.
        assert!(frame.samples.iter().all(|&s| s == 0), "frame {i}");
        // Stamped before the read, by no more than the bounded backlog.
        assert!(frame.capture <= *now);
        // The device is not paced: by the time the frame is stamped the ring has filled up
        // again, to at most its quarter second.
        assert!(
            *now - frame.capture < Duration::from_millis(300),
            "frame {i}: {:?} old",
            *now - frame.capture
        );
    }
    // Far more was delivered than read: counted, not queued.
    assert!(mic.overflows() > 0, "no overflow counted");
    assert!(mic.callbacks() > 0);
    // Bounded by the ring (a quarter second), however far behind the reader is.
    assert!(
        mic.buffered() <= Duration::from_millis(260),
        "{:?}",
        mic.buffered()
    );
    eprintln!(
        "default microphone: {} callbacks, {} samples dropped, {:?} buffered",
        mic.callbacks(),
        mic.overflows(),
        mic.buffered()
    );
}

#[test]
fn a_44k1_i16_mono_microphone_is_converted_to_48k_stereo_frames() {
    alsa();
    let config = DeviceConfig {
        sample_rate: 44_100,
        channels: 1,
        sample_format: SampleFormat::I16,
    };
    let mut mic = Microphone::open_with_config(
        Some("duet_tone"),
        format(Channels::Stereo, FrameDuration::Ms20),
        config,
    )
    .unwrap();
    assert_eq!(mic.device_config(), config);
    let frames = read_frames(&mut mic, 1);
    drop(mic);

    let (_, frame) = &frames[0];
    assert_eq!(frame.samples.len(), 1920);
    let left: Vec<i16> = frame.samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = frame.samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left, right, "mono is spread to both channels");
    // Past the resampler's ramp-in (its first 69 samples), 860 samples of 1 kHz at 48 kHz:
    // 35.8 zero crossings.
    let crossings = zero_crossings(left[100..].iter().copied());
    assert!((34..=38).contains(&crossings), "{crossings} crossings");
    let peak = left[100..].iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((16_000..=16_800).contains(&peak), "peak {peak}");
}

#[test]
fn missing_devices_are_not_found_by_name() {
    alsa();
    let mono = format(Channels::Mono, FrameDuration::Ms20);
    let err = Microphone::open(Some("no-such-device"), mono).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Device(DeviceError::NotFound { kind: "microphone", name: Some(n) })
                if n == "no-such-device"
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "no microphone found named \"no-such-device\""
    );
    let err = Speaker::open(Some("no-such-device"), mono).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Device(DeviceError::NotFound {
                kind: "speaker",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-device"));
}

#[test]
fn default_speaker_underruns_when_idle_and_drains_what_is_written() {
    alsa();
    let mono = format(Channels::Mono, FrameDuration::Ms20);
    let mut speaker = Speaker::open(None, mono).unwrap();
    assert_eq!(speaker.device_config().channels, 2);
    std::thread::sleep(Duration::from_millis(30));
    // Nothing written: every sample played was silence.
    let idle = speaker.underruns();
    assert!(idle > 0, "no underrun counted");
    assert_eq!(speaker.overflows(), 0);

    let start = Instant::now();
    let mut tone = Tone::new(mono, 440.0, 0.5, start);
    let mut frame = AudioFrame::silent(mono, start);
    for _ in 0..50 {
        tone.read(start, &mut frame).unwrap();
        speaker.write(Instant::now(), &frame).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while speaker.buffered() > Duration::ZERO {
        assert!(
            Instant::now() < deadline,
            "{:?} never played",
            speaker.buffered()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Stereo device: 50 frames of 960 mono samples are 96000 device samples; whatever was
    // not dropped for want of room was taken by the callback.
    assert!(speaker.overflows() < 96_000, "everything was dropped");
    assert!(speaker.underruns() > idle);
    eprintln!(
        "default speaker: {idle} samples of silence while idle, {} after 50 frames, \
         {} samples dropped on write, {} callbacks",
        speaker.underruns(),
        speaker.overflows(),
        speaker.callbacks()
    );
}

#[test]
fn speaker_on_a_file_records_the_frames_resampled_and_spread() {
    let alsa = alsa();
    let mono = format(Channels::Mono, FrameDuration::Ms20);
    let config = DeviceConfig {
        sample_rate: 44_100,
        channels: 2,
        sample_format: SampleFormat::I16,
    };
    let mut speaker = Speaker::open_with_config(Some("duet_tape"), mono, config).unwrap();
    assert_eq!(speaker.device_config(), config);
    let start = Instant::now();
    let mut tone = Tone::new(mono, 1000.0, 0.5, start);
    let mut frame = AudioFrame::silent(mono, start);
    let mut written = 0;
    for _ in 0..25 {
        tone.read(start, &mut frame).unwrap();
        speaker.write(Instant::now(), &frame).unwrap();
        written += 1;
        // Stay under the ring's size so that nothing is dropped.
        while speaker.buffered() > Duration::from_millis(60) {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    while speaker.buffered() > Duration::ZERO {
        std::thread::sleep(Duration::from_micros(200));
    }
    let overflows = speaker.overflows();
    drop(speaker);
    let bytes = std::fs::read(&alsa.outfile).unwrap();
    let _ = std::fs::remove_file(&alsa.outfile);

    assert_eq!(overflows, 0);
    let samples = raw_i16(&bytes);
    let (left, right): (Vec<i16>, Vec<i16>) = samples.chunks_exact(2).map(|f| (f[0], f[1])).unzip();
    assert_eq!(left, right, "mono is spread to both channels");
    // The callback played silence between writes; without it the tone is continuous.
    let sound: Vec<i16> = left.into_iter().filter(|&s| s != 0).collect();
    // 25 frames of 20 ms at 44.1 kHz are 22050 samples, less the resampler's delay still in
    // its filter (about 64) and the odd sample that is exactly zero.
    assert!(
        (21_900..=22_050).contains(&sound.len()),
        "{} samples of sound in {} written frames",
        sound.len(),
        written
    );
    // 1 kHz: 2000 zero crossings a second, past the resampler's ramp-in (it rings around
    // zero for a few dozen samples).
    let tone = &sound[100..];
    let crossings = zero_crossings(tone.iter().copied());
    let expected = 2000.0 * tone.len() as f64 / 44_100.0;
    assert!(
        (crossings as f64 - expected).abs() <= 2.0,
        "{crossings} crossings, expected {expected:.1}"
    );
    let peak = tone.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!((16_000..=16_800).contains(&peak), "peak {peak}");
    eprintln!(
        "file speaker: {} bytes recorded, {} samples of sound",
        bytes.len(),
        sound.len()
    );
}

#[test]
fn list_devices_reports_the_configured_devices() {
    alsa();
    let list = list_devices().unwrap();
    let names = |devs: &[DeviceInfo]| devs.iter().map(|d| d.name.clone()).collect::<Vec<_>>();
    for devs in [&list.inputs, &list.outputs] {
        let mut n = names(devs);
        n.sort();
        assert_eq!(n, ["default", "duet_tape", "duet_tone", "null"]);
        let defaults: Vec<&DeviceInfo> = devs.iter().filter(|d| d.default).collect();
        assert_eq!(defaults.len(), 1);
        assert_eq!(defaults[0].name, "default");
        let null = devs.iter().find(|d| d.name == "null").unwrap();
        assert_eq!(
            null.description,
            "Discard all samples (playback) or generate zero samples (capture)"
        );
        assert_eq!(
            null.native,
            Some(DeviceConfig {
                sample_rate: 48_000,
                channels: 2,
                sample_format: SampleFormat::F32,
            })
        );
        for (channels, encoding) in [(1, SampleFormat::I16), (2, SampleFormat::F32)] {
            assert!(
                null.formats.iter().any(|f| f.channels == channels
                    && f.sample_format == encoding
                    && f.min_rate <= 44_100
                    && f.max_rate >= 48_000),
                "null does not list {channels} ch {encoding}"
            );
        }
        let line = null.to_string();
        assert!(line.starts_with("null: Discard all samples"), "{line}");
        assert!(line.contains("opens as 2 ch, 48000 Hz, f32"), "{line}");
    }
}

#[test]
fn a_machine_without_devices_lists_none_and_says_so_on_open() {
    alsa();
    // ALSA reads its setup once per process: check an empty one in a child process.
    let empty = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("duet-alsa-empty.conf");
    std::fs::write(&empty, "# no devices at all\n").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "no_devices_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env("ALSA_CONFIG_PATH", &empty)
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs only inside [`a_machine_without_devices_lists_none_and_says_so_on_open`].
#[test]
#[ignore = "run by a_machine_without_devices_lists_none_and_says_so_on_open"]
fn no_devices_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    alsa();
    let list = list_devices().unwrap();
    assert!(list.inputs.is_empty(), "{:?}", list.inputs);
    assert!(list.outputs.is_empty(), "{:?}", list.outputs);
    let err = Microphone::open(None, format(Channels::Mono, FrameDuration::Ms20)).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Device(DeviceError::Open {
                kind: "microphone",
                ..
            })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("default"), "{err}");
}
