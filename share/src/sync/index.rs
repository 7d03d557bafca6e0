//! What a folder holds: block hashes, file entries, the index, and the difference of two indexes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::vv::{VersionOrdering, VersionVector};
use crate::{Error, Result};

/// Size of a block: files are hashed and transferred in blocks of 128 KiB (the last one shorter).
pub const BLOCK_SIZE: usize = 128 * 1024;

/// Largest file the sync engine accepts from the peer (1 TiB, 8 Mi blocks).
pub const MAX_FILE_SIZE: u64 = 1 << 40;

/// Longest user id accepted in an entry, in bytes.
const MAX_USER: usize = 256;

/// The SHA-256 of one block; sent as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub [u8; 32]);

impl BlockHash {
    /// The hash of `data`.
    pub fn of(data: &[u8]) -> Self {
        BlockHash(Sha256::digest(data).into())
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &hex::encode(self.0)[..12])
    }
}

impl Serialize for BlockHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for BlockHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&text, &mut out).map_err(serde::de::Error::custom)?;
        Ok(BlockHash(out))
    }
}

/// Number of blocks of a file of `size` bytes.
pub fn block_count(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE as u64)
}

/// Length in bytes of block `index` of a file of `size` bytes (0 past the end).
pub fn block_len(size: u64, index: u32) -> usize {
    let start = u64::from(index) * BLOCK_SIZE as u64;
    // At most BLOCK_SIZE, so the cast cannot truncate.
    size.saturating_sub(start).min(BLOCK_SIZE as u64) as usize
}

/// Hashes what `reader` yields in [`BLOCK_SIZE`] blocks with one block-sized buffer.
/// Returns the total size and the block hashes. Suitable for a benchmark of block hashing.
///
/// ```
/// let (size, blocks) = duet_share::sync::hash_blocks(&[7u8; 200_000][..]).unwrap();
/// assert_eq!((size, blocks.len()), (200_000, 2));
/// ```
pub fn hash_blocks(mut reader: impl Read) -> std::io::Result<(u64, Vec<BlockHash>)> {
    let mut buf = vec![0u8; BLOCK_SIZE];
    let mut blocks = Vec::new();
    let mut size = 0u64;
    loop {
        let mut filled = 0;
        while filled < BLOCK_SIZE {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        size += filled as u64;
        blocks.push(BlockHash::of(&buf[..filled]));
        if filled < BLOCK_SIZE {
            break;
        }
    }
    Ok((size, blocks))
}

/// One file of a folder as the index knows it, or a tombstone for a deleted one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the folder root, '/'-separated.
    pub path: String,
    /// Size in bytes (0 for a tombstone).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (UTC).
    pub mtime: i64,
    /// SHA-256 of each [`BLOCK_SIZE`] block, in order (empty for a tombstone).
    pub blocks: Vec<BlockHash>,
    /// Which changes this version contains.
    pub version: VersionVector,
    /// True for a tombstone: the file was deleted.
    pub deleted: bool,
    /// User id of whoever made this version.
    pub modified_by: String,
}

impl FileEntry {
    /// True when both entries hold the same content (both deleted, or the same blocks).
    pub fn same_content(&self, other: &FileEntry) -> bool {
        self.deleted == other.deleted && self.size == other.size && self.blocks == other.blocks
    }

    /// Checks that the entry is consistent: a safe path, a size of at most
    /// [`MAX_FILE_SIZE`], as many blocks as the size needs, a non-empty version, user ids
    /// without control characters. Called on every entry from the peer.
    pub fn validate(&self) -> Result<()> {
        self.validate_blocks(true)
    }

    /// [`validate`](Self::validate), allowing fewer blocks than the size needs when `complete`
    /// is false (an entry whose block list continues in later messages).
    pub(super) fn validate_blocks(&self, complete: bool) -> Result<()> {
        super::path::check(&self.path)?;
        if self.size > MAX_FILE_SIZE {
            return Err(Error::TooLarge {
                size: self.size,
                limit: MAX_FILE_SIZE,
            });
        }
        let expected = if self.deleted {
            0
        } else {
            block_count(self.size)
        };
        let count = self.blocks.len() as u64;
        if count > expected || (complete && count < expected) {
            return Err(Error::Protocol(format!(
                "{}: {count} blocks for {} bytes",
                self.path, self.size
            )));
        }
        if self.version.is_empty() {
            return Err(Error::Protocol(format!("{}: empty version", self.path)));
        }
        let users =
            std::iter::once(self.modified_by.as_str()).chain(self.version.iter().map(|(u, _)| u));
        for user in users {
            if user.is_empty() || user.len() > MAX_USER || user.chars().any(char::is_control) {
                return Err(Error::Protocol(format!(
                    "{}: bad user id {user:?}",
                    self.path
                )));
            }
        }
        Ok(())
    }
}

/// What a scan found for one file: its content, without history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// Path relative to the folder root, '/'-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime: i64,
    /// Block hashes.
    pub blocks: Vec<BlockHash>,
}

/// The result of scanning a folder or parts of it: every file found under `roots`.
/// A file the index knows under one of the roots that is not in `files` has vanished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The parts scanned: files or subfolders; `""` stands for the whole folder.
    pub roots: Vec<String>,
    /// The files found there.
    pub files: Vec<ScannedFile>,
}

impl Scan {
    /// A scan of the whole folder.
    pub fn full(files: Vec<ScannedFile>) -> Self {
        Scan {
            roots: vec![String::new()],
            files,
        }
    }

    /// True when `path` lies under one of the scanned parts.
    pub fn covers(&self, path: &str) -> bool {
        self.roots.iter().any(|root| {
            root.is_empty()
                || path == root
                || path
                    .strip_prefix(root.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// The index of a folder: one entry per path, tombstones included.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    entries: BTreeMap<String, FileEntry>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry for `path`.
    pub fn get(&self, path: &str) -> Option<&FileEntry> {
        self.entries.get(path)
    }

    /// Inserts or replaces the entry for `entry.path`.
    pub fn insert(&mut self, entry: FileEntry) {
        self.entries.insert(entry.path.clone(), entry);
    }

    /// Removes the entry for `path`.
    pub fn remove(&mut self, path: &str) -> Option<FileEntry> {
        self.entries.remove(path)
    }

    /// All entries in path order.
    pub fn iter(&self) -> impl Iterator<Item = &FileEntry> {
        self.entries.values()
    }

    /// The entries that are not tombstones.
    pub fn live(&self) -> impl Iterator<Item = &FileEntry> {
        self.entries.values().filter(|e| !e.deleted)
    }

    /// Number of entries, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What to do about one path after comparing a local and a remote index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The remote version is newer: fetch it (or delete, for a tombstone).
    Pull,
    /// Both changed: resolve a conflict.
    Conflict,
}

/// The paths where `remote` has something `local` lacks, in path order: newer versions and
/// conflicts (concurrent versions with different content). Equal, older and same-content
/// entries are left out. Suitable for a benchmark of index comparison.
pub fn diff(local: &Index, remote: &Index) -> Vec<(String, Need)> {
    let mut out = Vec::new();
    for r in remote.iter() {
        match local.get(&r.path) {
            None if r.deleted => {}
            None => out.push((r.path.clone(), Need::Pull)),
            Some(l) => match l.version.compare(&r.version) {
                VersionOrdering::Equal | VersionOrdering::After => {}
                VersionOrdering::Before => out.push((r.path.clone(), Need::Pull)),
                VersionOrdering::Concurrent if l.same_content(r) => {}
                VersionOrdering::Concurrent => out.push((r.path.clone(), Need::Conflict)),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_blocks_and_sizes() {
        let data = vec![1u8; BLOCK_SIZE * 2 + 5];
        let (size, blocks) = hash_blocks(&data[..]).unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0], blocks[1]);
        assert_eq!(blocks[2], BlockHash::of(&[1u8; 5]));
        assert_eq!(hash_blocks(&[][..]).unwrap(), (0, vec![]));
        assert_eq!(block_len(data.len() as u64, 2), 5);
        assert_eq!(block_len(data.len() as u64, 3), 0);
    }

    #[test]
    fn scan_root_covers_subtree_only() {
        let scan = Scan {
            roots: vec!["a/b".into(), "c".into()],
            files: vec![],
        };
        assert!(scan.covers("c"));
        assert!(scan.covers("a/b"));
        assert!(scan.covers("a/b/c"));
        assert!(!scan.covers("a/bc"));
        assert!(Scan::full(vec![]).covers("x"));
    }
}
