//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in duet-share. Each variant names what failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A name from the peer or the user that could leave the target folder or is unusable.
    #[error("unsafe name {name:?}: {reason}")]
    UnsafeName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A message from the peer that breaks the protocol; it is dropped and counted.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Data that does not match its hash.
    #[error("integrity: {0}")]
    Integrity(String),
    /// A file larger than the configured limit.
    #[error("{size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The offered size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The disk has no room for an offer and the margin that must stay free.
    #[error(
        "{needed} bytes do not fit: {available} bytes are free on the disk and {margin} must stay free"
    )]
    NoSpace {
        /// The bytes still to be written.
        needed: u64,
        /// The bytes free on the disk for this user.
        available: u64,
        /// The bytes that must stay free.
        margin: u64,
    },
    /// The quarantine folder would grow past its quota.
    #[error(
        "the quarantine holds {used} bytes; {size} more would pass its quota of {quota} bytes"
    )]
    QuotaExceeded {
        /// Bytes already in the quarantine (partial and held files).
        used: u64,
        /// The offer's size.
        size: u64,
        /// The quota.
        quota: u64,
    },
    /// A quarantine folder that others could read or write.
    #[error("quarantine: {0}")]
    Quarantine(String),
    /// The virus scanner could not run, or refused the file.
    #[error("scanner: {0}")]
    Scanner(String),
    /// The file is already being received into the same folder, by this process or another.
    #[error("{0}")]
    Busy(String),
    /// A setting that cannot work.
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
