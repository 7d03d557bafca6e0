//! A sans-IO file transfer: one file, offered through the signaling server, sent peer to peer.
//!
//! The sender hashes the file into a [`Manifest`] (size, block size, whole-file SHA-256, one
//! SHA-256 per block) and offers it as an [`Offer`] (name, size, SHA-256). Once the user accepts,
//! the [`Receiver`] asks for the manifest, checks it against the offer, then requests blocks,
//! keeping at most a window of bytes outstanding; the [`Sender`] answers each request with data
//! chunks of at most [`MAX_CHUNK`] bytes, so every [`Message`] fits in [`MAX_MESSAGE`] bytes. The
//! receiver checks each block's SHA-256 and hands it to the shell to write; a bad block is
//! requested again. Its [`ResumeState`] lets a later transfer of the same file fetch only the
//! missing blocks.
//!
//! Neither side does I/O or reads a clock: the app carries [`Message`]s over an ordered,
//! reliable data channel (`encode`/`decode`), passes the time in, and does what
//! `poll_event` asks (read or write a block). [`files`] is that file-system side.
//!
//! ```
//! use std::time::Instant;
//! use duet_share::transfer::{Manifest, Offer, Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderEvent};
//!
//! let data = vec![7u8; 300_000];
//! let manifest = Manifest::from_bytes(&data, 128 * 1024);
//! let offer = Offer::new("seven.bin", manifest.file_size, manifest.sha256).unwrap();
//! let now = Instant::now();
//! let mut rx = Receiver::new(offer, ReceiverConfig::default(), None, now).unwrap();
//! let mut tx = Sender::new(manifest);
//! let mut out = vec![0u8; data.len()];
//! loop {
//!     let mut moved = false;
//!     while let Some(m) = rx.poll_transmit() { tx.handle_message(now, m).unwrap(); moved = true; }
//!     while let Some(SenderEvent::ReadBlock { block, offset, len }) = tx.poll_event() {
//!         let (o, l) = (offset as usize, len as usize);
//!         tx.block_read(block, &data[o..o + l]).unwrap();
//!     }
//!     while let Some(m) = tx.poll_transmit() { rx.handle_message(now, m).unwrap(); moved = true; }
//!     while let Some(ev) = rx.poll_event() {
//!         if let ReceiverEvent::Write { block, offset, data: bytes } = ev {
//!             out[offset as usize..][..bytes.len()].copy_from_slice(&bytes);
//!             rx.block_written(block).unwrap();
//!         }
//!     }
//!     if !moved { break; }
//! }
//! assert!(rx.is_complete());
//! assert_eq!(out, data);
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::names::{safe_file_name, RelPath};
use crate::{Error, Result};

pub mod files;
mod message;
mod receiver;
mod sender;

pub use message::{Message, MAX_CHUNK, MAX_MESSAGE, PROTOCOL_VERSION};
pub use receiver::{Receiver, ReceiverConfig, ReceiverEvent, ReceiverStats, ResumeState};
pub use sender::{Sender, SenderEvent, SENDER_IDLE_TIMEOUT};

/// The default block: the unit of hashing, flow control and resume.
pub const DEFAULT_BLOCK_SIZE: u32 = 128 * 1024;
/// The smallest block size a manifest may use.
pub const MIN_BLOCK_SIZE: u32 = 4 * 1024;
/// The largest block size a manifest may use.
pub const MAX_BLOCK_SIZE: u32 = 16 * 1024 * 1024;
/// The most blocks a manifest may have (32 MiB of block hashes); bigger files use bigger
/// blocks, see [`Manifest::block_size_for`].
pub const MAX_BLOCKS: u32 = 1 << 20;

/// A SHA-256 digest. Shown and serialized as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    /// The SHA-256 of `data`.
    pub fn of(data: &[u8]) -> Self {
        Hash256(Sha256::digest(data).into())
    }

    /// Parses 64 hex digits, as carried in an invitation.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| Error::Protocol(format!("bad SHA-256 {s:?}: {e}")))?;
        Ok(Hash256(out))
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({})", self.to_hex())
    }
}

impl Serialize for Hash256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash256::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// What the invitation says about a single-file offer: the name (checked to be one safe
/// component), the size and the whole-file SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    name: RelPath,
    /// The file size in bytes.
    pub size: u64,
    /// The whole-file SHA-256.
    pub sha256: Hash256,
}

impl Offer {
    /// An offer; the name is refused unless [`safe_file_name`] accepts it.
    pub fn new(name: &str, size: u64, sha256: Hash256) -> Result<Self> {
        Ok(Offer {
            name: safe_file_name(name)?,
            size,
            sha256,
        })
    }

    /// The file name, safe to join to the target folder.
    pub fn name(&self) -> &RelPath {
        &self.name
    }
}

/// What the sender knows about the file: sizes and hashes. Sent first, split over
/// [`Message::Manifest`] parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The file size in bytes.
    pub file_size: u64,
    /// The block size in bytes (the last block may be shorter).
    pub block_size: u32,
    /// The whole-file SHA-256.
    pub sha256: Hash256,
    /// The SHA-256 of each block, in order.
    pub block_hashes: Vec<Hash256>,
}

impl Manifest {
    /// The manifest of bytes held in memory (tests, small files); files use
    /// [`files::manifest_of`].
    pub fn from_bytes(data: &[u8], block_size: u32) -> Self {
        let block_hashes = data
            .chunks(block_size.max(1) as usize)
            .map(Hash256::of)
            .collect();
        Manifest {
            file_size: data.len() as u64,
            block_size,
            sha256: Hash256::of(data),
            block_hashes,
        }
    }

    /// The block size to use for a file of `file_size` bytes: [`DEFAULT_BLOCK_SIZE`], doubled
    /// while the file would have more than [`MAX_BLOCKS`] blocks.
    pub fn block_size_for(file_size: u64) -> u32 {
        let mut size = DEFAULT_BLOCK_SIZE;
        while size < MAX_BLOCK_SIZE && file_size.div_ceil(u64::from(size)) > u64::from(MAX_BLOCKS) {
            size *= 2;
        }
        size
    }

    /// The number of blocks a file of `file_size` bytes has, if it fits a `u32`.
    pub fn blocks_for(file_size: u64, block_size: u32) -> Option<u32> {
        if block_size == 0 {
            return None;
        }
        u32::try_from(file_size.div_ceil(u64::from(block_size))).ok()
    }

    /// The offset and length of block `index`.
    pub fn block_range(&self, index: u32) -> Option<(u64, u32)> {
        block_range(self.file_size, self.block_size, index)
    }

    /// A digest of everything in the manifest: two manifests with the same id describe the
    /// same blocks. Stored in the [`ResumeState`].
    pub fn id(&self) -> Hash256 {
        let mut h = Sha256::new();
        h.update(self.file_size.to_be_bytes());
        h.update(self.block_size.to_be_bytes());
        h.update(self.sha256.0);
        for b in &self.block_hashes {
            h.update(b.0);
        }
        Hash256(h.finalize().into())
    }
}

/// The offset and length of block `index` of a file, or `None` past the end.
fn block_range(file_size: u64, block_size: u32, index: u32) -> Option<(u64, u32)> {
    let offset = u64::from(index).checked_mul(u64::from(block_size))?;
    if offset >= file_size {
        return None;
    }
    let len = (file_size - offset).min(u64::from(block_size));
    Some((offset, len as u32))
}
