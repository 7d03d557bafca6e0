//! The media choices of the command line (`--audio tone`, `--video y4m:clip.y4m`, `--size 1280x720`),
//! parsed into values and opened as duet-media sources.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use duet_media::audio::anchor::{AnchoredSource, MarkedTone, Speech};
use duet_media::audio::device::Microphone;
use duet_media::audio::process::ProcessingConfig;
use duet_media::audio::synth::Silence;
use duet_media::audio::wav::WavSource;
use duet_media::audio::AudioSource;
use duet_media::video::pattern::TestPattern;
use duet_media::video::stamp::wall_epoch;
use duet_media::video::y4m::Y4mSource;
use duet_media::video::VideoSource;
use duet_media::AudioFormat;

/// Frequency of `--audio tone`, Hz.
pub const TONE_HZ: u32 = duet_media::audio::anchor::TONE_HZ;

/// A choice that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChoiceError(String);

impl fmt::Display for ChoiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ChoiceError {}

/// `on` or `off`, for the switches of the microphone's audio processing (`--aec on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// Switched on.
    On,
    /// Switched off.
    Off,
}

impl Switch {
    /// True for [`Switch::On`].
    pub fn on(self) -> bool {
        self == Switch::On
    }
}

/// The microphone path's audio processing for `choice`: each part on by default for a
/// microphone, or for any source heard through a simulated room (`in_room`), and off for
/// synthetic and file sources, unless `aec`, `ns` or `agc` says otherwise.
pub fn processing(
    choice: &AudioChoice,
    in_room: bool,
    aec: Option<Switch>,
    ns: Option<Switch>,
    agc: Option<Switch>,
) -> ProcessingConfig {
    let default = in_room || matches!(choice, AudioChoice::Mic(_));
    let pick = |s: Option<Switch>| s.map_or(default, Switch::on);
    ProcessingConfig {
        echo_cancellation: pick(aec),
        noise_suppression: pick(ns),
        gain_control: pick(agc),
    }
}

/// Where the audio of a call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioChoice {
    /// A 440 Hz tone with a chirp at the start of every wall-clock second, so that a
    /// receiver can align it.
    Tone,
    /// The built-in speech sample, looped on the wall clock.
    Speech,
    /// A WAV file (any rate, depth and channel count).
    Wav(PathBuf),
    /// A microphone: the default one, or the one named.
    Mic(Option<String>),
    /// Digital silence.
    Silence,
    /// No audio.
    None,
}

impl FromStr for AudioChoice {
    type Err = ChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tone" => Ok(Self::Tone),
            "speech" => Ok(Self::Speech),
            "mic" => Ok(Self::Mic(None)),
            "silence" => Ok(Self::Silence),
            "none" => Ok(Self::None),
            _ => match s.split_once(':') {
                Some(("wav", path)) if !path.is_empty() => Ok(Self::Wav(PathBuf::from(path))),
                Some(("mic", name)) if !name.is_empty() => Ok(Self::Mic(Some(name.to_string()))),
                _ => Err(ChoiceError(format!(
                    "unknown audio source {s:?}: choose tone, speech, wav:PATH, mic, mic:NAME, silence or none"
                ))),
            },
        }
    }
}

/// Where the video of a call comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoChoice {
    /// The moving test pattern with stamps.
    Pattern,
    /// A Y4M file (4:2:0).
    Y4m(PathBuf),
    /// A webcam, by index (0 when not given).
    Webcam(u32),
    /// No video.
    None,
}

impl FromStr for VideoChoice {
    type Err = ChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pattern" => Ok(Self::Pattern),
            "webcam" => Ok(Self::Webcam(0)),
            "none" => Ok(Self::None),
            _ => match s.split_once(':') {
                Some(("y4m", path)) if !path.is_empty() => Ok(Self::Y4m(PathBuf::from(path))),
                Some(("webcam", n)) => n
                    .parse()
                    .map(Self::Webcam)
                    .map_err(|_| ChoiceError(format!("webcam index {n:?} is not a number"))),
                _ => Err(ChoiceError(format!(
                    "unknown video source {s:?}: choose pattern, y4m:PATH, webcam, webcam:N or none"
                ))),
            },
        }
    }
}

/// A picture size, `WIDTHxHEIGHT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl FromStr for Size {
    type Err = ChoiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ChoiceError(format!(
                "bad size {s:?}: expected WIDTHxHEIGHT, e.g. 1280x720"
            ))
        };
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let width = w.trim().parse().map_err(|_| bad())?;
        let height = h.trim().parse().map_err(|_| bad())?;
        duet_media::frame::check_size(width, height)
            .map_err(|e| ChoiceError(format!("bad size {s:?}: {e}")))?;
        Ok(Self { width, height })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Opens the audio source chosen, producing `format`; `start` is when its first frame is due.
/// `Ok(None)` for [`AudioChoice::None`].
///
/// The tone and the speech are anchored to the wall clock (the sample playing at wall time `t`
/// is known from `t`), so whoever hears them, in this process or another, measures their
/// mouth-to-ear latency from the signal.
pub fn open_audio(
    choice: &AudioChoice,
    format: AudioFormat,
    start: Instant,
) -> duet_media::Result<Option<Box<dyn AudioSource>>> {
    Ok(Some(match choice {
        AudioChoice::Tone => Box::new(AnchoredSource::new(
            MarkedTone::new(TONE_HZ, 0.5),
            format,
            start,
        )),
        AudioChoice::Speech => Box::new(AnchoredSource::new(Speech::builtin()?, format, start)),
        AudioChoice::Wav(path) => Box::new(WavSource::open(path, format)?),
        AudioChoice::Mic(name) => Box::new(Microphone::open(name.as_deref(), format)?),
        AudioChoice::Silence => Box::new(Silence::new(format, start)),
        AudioChoice::None => return Ok(None),
    }))
}

/// Opens the video source chosen at `size` and `fps` (a Y4M file keeps its own size);
/// `start` is when its first frame is due. `Ok(None)` for [`VideoChoice::None`].
pub fn open_video(
    choice: &VideoChoice,
    size: Size,
    fps: u32,
    start: Instant,
) -> duet_media::Result<Option<Box<dyn VideoSource>>> {
    Ok(Some(match choice {
        // Stamped from the wall-clock epoch, so a receiver in another process reads the latency.
        VideoChoice::Pattern => Box::new(
            TestPattern::new(size.width, size.height, fps, start)?.with_epoch(wall_epoch()),
        ),
        VideoChoice::Y4m(path) => Box::new(Y4mSource::open(path)?),
        VideoChoice::Webcam(index) => open_webcam(*index, size, fps)?,
        VideoChoice::None => return Ok(None),
    }))
}

#[cfg(feature = "webcam")]
fn open_webcam(index: u32, size: Size, fps: u32) -> duet_media::Result<Box<dyn VideoSource>> {
    Ok(Box::new(duet_media::video::webcam::Webcam::open(
        index,
        size.width,
        size.height,
        fps,
    )?))
}

#[cfg(not(feature = "webcam"))]
fn open_webcam(_index: u32, _size: Size, _fps: u32) -> duet_media::Result<Box<dyn VideoSource>> {
    Err(duet_media::DeviceError::Unsupported("webcam").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processing_is_on_for_a_microphone_unless_switched_off() {
        let mic = AudioChoice::Mic(None);
        assert_eq!(
            processing(&mic, false, None, None, None),
            ProcessingConfig::VOICE
        );
        assert_eq!(
            processing(&AudioChoice::Speech, false, None, None, None),
            ProcessingConfig::OFF
        );
        let some = processing(&mic, false, Some(Switch::Off), None, Some(Switch::Off));
        assert!(!some.echo_cancellation && some.noise_suppression && !some.gain_control);
        let asked = processing(&AudioChoice::Tone, false, Some(Switch::On), None, None);
        assert!(asked.echo_cancellation && !asked.noise_suppression);
        let roomed = processing(&AudioChoice::Speech, true, None, Some(Switch::Off), None);
        assert!(roomed.echo_cancellation && !roomed.noise_suppression && roomed.gain_control);
    }

    #[test]
    fn audio_choices() {
        assert_eq!("speech".parse(), Ok(AudioChoice::Speech));
        assert_eq!(
            "wav:a b.wav".parse(),
            Ok(AudioChoice::Wav("a b.wav".into()))
        );
        assert_eq!("mic:USB".parse(), Ok(AudioChoice::Mic(Some("USB".into()))));
        let err = "wav:".parse::<AudioChoice>().unwrap_err();
        assert!(err.to_string().contains("unknown audio source"), "{err}");
    }

    #[test]
    fn video_choices() {
        assert_eq!("webcam:2".parse(), Ok(VideoChoice::Webcam(2)));
        assert!("webcam:two"
            .parse::<VideoChoice>()
            .unwrap_err()
            .to_string()
            .contains("two"));
        assert_eq!("y4m:x.y4m".parse(), Ok(VideoChoice::Y4m("x.y4m".into())));
    }

    #[test]
    fn speech_loops_with_continuous_numbering() {
        let format = AudioFormat {
            channels: duet_media::Channels::Mono,
            frame: duet_media::FrameDuration::Ms60,
        };
        let start = Instant::now();
        let mut speech = open_audio(&AudioChoice::Speech, format, start)
            .unwrap()
            .unwrap();
        let mut frame = duet_media::AudioFrame::silent(format, start);
        // The sample lasts about 10 s: 400 frames of 60 ms go round it more than twice.
        for n in 0..400u64 {
            let deadline = start + format.frame.duration() * n as u32;
            assert_eq!(
                speech.read(deadline, &mut frame).unwrap(),
                duet_media::Read::Frame
            );
            assert_eq!(frame.seq, n);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(
            "1280x720".parse(),
            Ok(Size {
                width: 1280,
                height: 720
            })
        );
        for bad in ["1280", "axb", "641x480", "0x0", "99999x2"] {
            let err = bad.parse::<Size>().unwrap_err();
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
    }
}
