//! The sync engine's work in flight: what a path waits for on disk, the downloads being
//! assembled, and the block requests sent to the peer.

use std::collections::BTreeMap;
use std::time::Instant;

use super::event::Expect;
use super::index::{BlockHash, FileEntry};

/// What a path is waiting for on disk.
#[derive(Debug, Clone)]
pub(super) enum Busy {
    /// A download into a temporary file.
    Job(u64),
    /// A delete, waiting for its outcome (or for downloads copying from the file).
    Deleting {
        target: FileEntry,
        quiet: bool,
        sent: bool,
    },
    /// The losing local version is being moved to its conflict name.
    Moving {
        copy: String,
        loser: FileEntry,
        winner: FileEntry,
    },
}

/// What to tell the user when a download completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum JobKind {
    Added,
    Changed,
    Renamed {
        from: String,
    },
    /// Already reported (the winner of a conflict).
    Quiet,
}

/// A download of one file version into a temporary file.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) path: String,
    pub(super) temp: String,
    pub(super) target: FileEntry,
    pub(super) expect: Expect,
    pub(super) kind: JobKind,
    /// Blocks being copied from local files: block number -> source path.
    pub(super) copying: BTreeMap<u32, String>,
    /// Blocks waiting for the peer: hash -> block numbers.
    pub(super) wanted: BTreeMap<BlockHash, Vec<u32>>,
    pub(super) finishing: bool,
}

/// A block request in flight.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) job: u64,
    pub(super) hash: BlockHash,
    pub(super) len: usize,
    pub(super) buf: Vec<u8>,
    pub(super) deadline: Instant,
    pub(super) attempts: u32,
}
