//! The crate-wide error type, built from one small enum per stage.

use std::path::PathBuf;

/// Any error duet-media reports.
///
/// Each variant wraps the error of one stage. [`Error::is_recoverable`] says whether the
/// stage can go on after it (a bad packet) or must be rebuilt (a missing device).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An encoder or decoder failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An audio or video device could not be opened or failed while running.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A media file or source could not be read or written.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A call could not be set up or went on no longer: a peer's signal could not be applied
    /// (bad SDP or candidate), or the WebRTC stack failed.
    #[error("call: {0}")]
    Call(String),
}

impl Error {
    /// True when the stage that failed can keep running (drop the packet or frame and go on).
    pub fn is_recoverable(&self) -> bool {
        match self {
            Error::Codec(e) => e.is_recoverable(),
            Error::Device(_) | Error::Source(_) | Error::Config(_) | Error::Call(_) => false,
        }
    }
}

/// Errors of the Opus and H.264 codecs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec library refused to be created or configured.
    #[error("{codec} setup failed: {reason}")]
    Setup {
        /// "opus" or "h264".
        codec: &'static str,
        /// What the library said.
        reason: String,
    },
    /// A frame could not be encoded.
    #[error("{codec} encode failed: {reason}")]
    Encode {
        /// "opus" or "h264".
        codec: &'static str,
        /// What the library said.
        reason: String,
    },
    /// A packet or access unit could not be decoded: it is dropped and counted.
    #[error("{codec} decode failed: {reason}")]
    Decode {
        /// "opus" or "h264", or "mjpeg" for a camera picture.
        codec: &'static str,
        /// What the library said.
        reason: String,
    },
    /// A frame does not match what the codec was configured for.
    #[error("{codec} frame mismatch: {reason}")]
    Mismatch {
        /// "opus" or "h264", or the pixel format being converted ("yuyv", "nv12", "rgb24", "mjpeg").
        codec: &'static str,
        /// What differs.
        reason: String,
    },
}

impl CodecError {
    /// Decode errors are per packet and recoverable; the others need a new codec.
    pub fn is_recoverable(&self) -> bool {
        matches!(
            self,
            CodecError::Decode { .. } | CodecError::Mismatch { .. }
        )
    }
}

/// Errors of capture and playout devices.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// No device of that kind exists on this machine.
    #[error("no {kind} found{}", name.as_ref().map(|n| format!(" named {n:?}")).unwrap_or_default())]
    NotFound {
        /// "microphone", "speaker" or "camera".
        kind: &'static str,
        /// The name asked for, if any.
        name: Option<String>,
    },
    /// The device exists but could not be opened or configured.
    #[error("cannot open {kind} {name:?}: {reason}")]
    Open {
        /// "microphone", "speaker" or "camera".
        kind: &'static str,
        /// The device's name.
        name: String,
        /// What the driver said.
        reason: String,
    },
    /// The device failed while running.
    #[error("{kind} {name:?} failed: {reason}")]
    Stream {
        /// "microphone", "speaker" or "camera".
        kind: &'static str,
        /// The device's name.
        name: String,
        /// What the driver said.
        reason: String,
    },
    /// Support for this kind of device was not compiled in.
    #[error("{0} support is not built in (enable the cargo feature)")]
    Unsupported(&'static str),
}

/// Errors of file sources and sinks (WAV, Y4M) and of synthetic sources.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file's contents are not in the expected format.
    #[error("{}: {reason}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
