//! duet-share: what moves files between two messenger contacts, peer to peer.
//!
//! - [`names`]: turning a name that came from the peer into a path that can never leave the
//!   target folder.
//! - [`transfer`]: a sans-IO file transfer (offer, block requests with flow control, per-block
//!   SHA-256, resume from the last verified block, whole-file check) and its file-system side
//!   (partial file, quarantine, release into place).
//! - [`scan`]: handing a quarantined file to a virus scanner (ClamAV) before release.
//! - [`sync`]: a sans-IO sync engine that keeps a sharing folder equal on both sides (block
//!   hashes, version vectors, tombstones, conflict copies).
//!
//! The crate does no network I/O: the app carries the messages over a WebRTC data channel.
//!
//! ```
//! use duet_share::names::{safe_file_name, unclobbered};
//!
//! assert!(safe_file_name("report.pdf").is_ok());
//! for unsafe_name in ["../etc/passwd", "/etc/passwd", "C:evil", "CON.txt", "a/b"] {
//!     assert!(safe_file_name(unsafe_name).is_err(), "{unsafe_name}");
//! }
//! let dir = std::env::temp_dir();
//! assert!(unclobbered(&dir, "report.pdf").starts_with(&dir));
//! ```
#![forbid(unsafe_code)]

mod error;
pub mod names;
pub mod scan;
pub mod sync;
pub mod transfer;

pub use error::{Error, Result};
