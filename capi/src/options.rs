//! The options of a call, given to `duet_call_new` as a small JSON object: what media to send
//! (a tone and the test pattern, synthetic: a C app needs no device), at what size and rate,
//! and where to bind. Every field has a default; an unknown field is an error, so a typo is
//! not silently ignored.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use duet_media::audio::process::ProcessingConfig;
use duet_media::call::CallConfig;
use duet_media::codec::h264::H264Config;
use duet_media::codec::opus::OpusConfig;
use duet_media::video::pattern::TestPattern;
use duet_media::{AudioFormat, Channels, FrameDuration};
use serde::Deserialize;

use crate::error::Failure;

/// The audio both sides send and receive: mono, 20 ms frames.
pub(crate) const AUDIO_FORMAT: AudioFormat = AudioFormat {
    channels: Channels::Mono,
    frame: FrameDuration::Ms20,
};

/// What a call sends and how it is set up, as read from the options JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct CallOptions {
    /// Send and receive audio (a sine tone is sent).
    pub audio: bool,
    /// Send and receive video (the moving test pattern is sent).
    pub video: bool,
    /// Width of the video sent, pixels (even).
    pub width: u32,
    /// Height of the video sent, pixels (even).
    pub height: u32,
    /// Frame rate of the video sent.
    pub fps: u32,
    /// Starting video bitrate, kbit/s.
    pub video_kbps: u32,
    /// Opus bitrate, kbit/s.
    pub audio_kbps: u32,
    /// Frequency of the tone sent, Hz.
    pub tone_hz: f32,
    /// Local address the call's UDP socket binds, as `ip:port` (port 0 picks one).
    pub bind: String,
    /// How long the connection may take to come up, ms.
    pub connect_timeout_ms: u64,
    /// The call ends when nothing has come from the peer for this long, ms.
    pub silence_timeout_ms: u64,
    /// Echo cancellation on the audio sent, with the audio received as its reference (off: the
    /// tone sent is synthetic).
    pub aec: bool,
    /// Noise suppression on the audio sent (off).
    pub ns: bool,
    /// Automatic gain control on the audio sent (off).
    pub agc: bool,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            audio: true,
            video: true,
            width: 320,
            height: 240,
            fps: 30,
            video_kbps: 300,
            audio_kbps: 32,
            tone_hz: 440.0,
            bind: "127.0.0.1:0".into(),
            connect_timeout_ms: 20_000,
            silence_timeout_ms: 10_000,
            aec: false,
            ns: false,
            agc: false,
        }
    }
}

impl CallOptions {
    /// Reads options from JSON; `None` is every default.
    pub fn from_json(json: Option<&str>) -> Result<Self, Failure> {
        let options = match json {
            None => Self::default(),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| Failure::invalid(format!("call options: {e}")))?,
        };
        Ok(options)
    }

    /// The session's configuration, every value checked.
    pub fn call_config(&self) -> Result<CallConfig, Failure> {
        let bind: SocketAddr = self.bind.parse().map_err(|e| {
            Failure::invalid(format!(
                "call options: bind address {:?} is not ip:port: {e}",
                self.bind
            ))
        })?;
        let mut config = CallConfig::new(self.audio.then_some(AUDIO_FORMAT), self.video);
        config.bind = bind;
        config.connect_timeout = Duration::from_millis(self.connect_timeout_ms);
        config.silence_timeout = Duration::from_millis(self.silence_timeout_ms);
        let total = self.audio_bps().saturating_add(self.video_bps());
        config.bitrate_bps = (
            100_000.min(total).max(1),
            total.max(1),
            total.max(100_000).saturating_mul(2),
        );
        config
            .validate()
            .map_err(|e| Failure::invalid(format!("call options: {e}")))?;
        if let Some(opus) = self.opus() {
            opus.validate()
                .map_err(|e| Failure::invalid(format!("call options: {e}")))?;
        }
        if let Some(h264) = self.h264() {
            h264.validate()
                .map_err(|e| Failure::invalid(format!("call options: {e}")))?;
            TestPattern::new(self.width, self.height, self.fps, Instant::now())
                .map_err(|e| Failure::invalid(format!("call options: {e}")))?;
        }
        Ok(config)
    }

    /// The audio processing asked for: `aec`, `ns` and `agc`.
    pub fn processing(&self) -> ProcessingConfig {
        ProcessingConfig {
            echo_cancellation: self.aec,
            noise_suppression: self.ns,
            gain_control: self.agc,
        }
    }

    /// The Opus settings, when audio is sent.
    pub fn opus(&self) -> Option<OpusConfig> {
        self.audio.then(|| OpusConfig {
            bitrate_bps: self.audio_bps(),
            ..OpusConfig::voice(AUDIO_FORMAT)
        })
    }

    /// The H.264 settings, when video is sent.
    pub fn h264(&self) -> Option<H264Config> {
        self.video.then(|| H264Config {
            width: self.width,
            height: self.height,
            bitrate_bps: self.video_bps(),
            fps: self.fps as f32,
            keyframe_interval: 0,
        })
    }

    fn audio_bps(&self) -> u32 {
        if self.audio {
            self.audio_kbps.saturating_mul(1000)
        } else {
            0
        }
    }

    fn video_bps(&self) -> u32 {
        if self.video {
            self.video_kbps.saturating_mul(1000)
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_options_is_every_default() {
        let options = CallOptions::from_json(None).unwrap();
        assert_eq!(options, CallOptions::default());
        let config = options.call_config().unwrap();
        assert!(config.video && config.audio.is_some());
        assert_eq!(config.bitrate_bps, (100_000, 332_000, 664_000));
    }

    #[test]
    fn given_fields_override_the_defaults() {
        let options = CallOptions::from_json(Some(
            r#"{"video":false,"audio_kbps":24,"bind":"0.0.0.0:0"}"#,
        ))
        .unwrap();
        assert!(!options.video && options.audio);
        assert_eq!(options.opus().unwrap().bitrate_bps, 24_000);
        assert!(options.h264().is_none());
        assert_eq!(
            options.call_config().unwrap().bitrate_bps,
            (24_000, 24_000, 200_000)
        );
    }

    #[test]
    fn bad_options_are_errors_naming_the_problem() {
        for (json, needle) in [
            ("{", "EOF"),
            (r#"{"vidoe":true}"#, "unknown field `vidoe`"),
            (r#"{"fps":"fast"}"#, "invalid type"),
        ] {
            let failure = CallOptions::from_json(Some(json)).unwrap_err();
            assert!(failure.message.contains(needle), "{json}: {failure}");
        }
        for (json, needle) in [
            (r#"{"audio":false,"video":false}"#, "audio, video or both"),
            (r#"{"bind":"localhost"}"#, "bind address"),
            (r#"{"width":321}"#, "321"),
            (r#"{"fps":0}"#, "0 fps"),
            (r#"{"audio_kbps":1}"#, "1000"),
            (r#"{"connect_timeout_ms":0}"#, "longer than zero"),
        ] {
            let options = CallOptions::from_json(Some(json)).unwrap();
            let failure = options.call_config().unwrap_err();
            assert!(failure.message.contains(needle), "{json}: {failure}");
        }
    }
}
