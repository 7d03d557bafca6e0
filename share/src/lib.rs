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
#![forbid(unsafe_code)]

mod error;
pub mod names;
pub mod scan;
pub mod sync;
pub mod transfer;

pub use error::{Error, Result};
