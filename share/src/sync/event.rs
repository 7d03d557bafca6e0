//! What the engine asks of the file-system shell, what the shell reports back, and what the
//! engine tells the user.

use std::fmt;

use super::index::BlockHash;

/// What a file on disk must still be for the shell to replace, move or delete it: if it is
/// not, the user changed it meanwhile and the shell leaves it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No file at that path.
    Absent,
    /// A file of this size and modification time (nanoseconds since the Unix epoch).
    File {
        /// Size in bytes.
        size: u64,
        /// Modification time.
        mtime: i64,
    },
}

/// Work on disk for the shell. Apply actions in the order they come; report the
/// [`Outcome`] each one names to [`SyncEngine::handle_outcome`](super::SyncEngine::handle_outcome).
/// All paths are relative to the folder root and '/'-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create (or truncate) the temporary file `temp`, `size` bytes long, creating its folder.
    /// On failure report [`Outcome::JobFailed`].
    CreateTemp {
        /// The download.
        job: u64,
        /// Temporary file.
        temp: String,
        /// Final size.
        size: u64,
    },
    /// Copy block `from_index` of local file `from` to block `index` of `temp`, after checking
    /// that its bytes still hash to `hash`. Report [`Outcome::BlockCopied`].
    CopyBlock {
        /// The download.
        job: u64,
        /// Temporary file.
        temp: String,
        /// Block number in the temporary file.
        index: u32,
        /// Local file holding the block.
        from: String,
        /// Block number in `from`.
        from_index: u32,
        /// Length of the block.
        len: usize,
        /// Expected hash.
        hash: BlockHash,
    },
    /// Write verified block `index` of `temp`. Report [`Outcome::JobFailed`] only on failure.
    WriteBlock {
        /// The download.
        job: u64,
        /// Temporary file.
        temp: String,
        /// Block number.
        index: u32,
        /// The block's bytes.
        data: Vec<u8>,
    },
    /// Every block of `temp` is in place: if the file at `path` still matches `expect`, set
    /// the modification time of `temp` to `mtime` and rename it to `path` (creating parent
    /// folders). Report [`Outcome::Finished`], or [`Outcome::JobRefused`] when the shell will
    /// not take the content.
    Finish {
        /// The download.
        job: u64,
        /// Temporary file.
        temp: String,
        /// Final path.
        path: String,
        /// Modification time to set (nanoseconds since the Unix epoch).
        mtime: i64,
        /// What must be at `path` now.
        expect: Expect,
    },
    /// Remove the temporary file of an abandoned download, if it exists. No outcome.
    RemoveTemp {
        /// Temporary file.
        temp: String,
    },
    /// Delete `path` if it still matches `expect` (and remove folders it leaves empty).
    /// Report [`Outcome::Deleted`].
    Delete {
        /// The file.
        path: String,
        /// What must be at `path` now.
        expect: Expect,
    },
    /// Rename `path` to `copy` (a conflict copy) if it still matches `expect`.
    /// Report [`Outcome::ConflictMoved`].
    ConflictMove {
        /// The losing local version.
        path: String,
        /// Its new name.
        copy: String,
        /// What must be at `path` now.
        expect: Expect,
    },
    /// Read block `index` of local file `path` (`len` bytes) to answer the peer's request.
    /// Report [`Outcome::BlockRead`].
    ReadBlock {
        /// The peer's request.
        request: u64,
        /// The file.
        path: String,
        /// Block number.
        index: u32,
        /// Length of the block.
        len: usize,
    },
    /// Scan `path` (a file or a folder) again and pass the result to
    /// [`SyncEngine::handle_scan`](super::SyncEngine::handle_scan). No outcome.
    Rescan {
        /// The path.
        path: String,
    },
}

/// How an action that checks the disk first went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Done.
    Done,
    /// The file no longer matched what was expected: it was left alone.
    ChangedLocally,
    /// The operation failed; the reason.
    Failed(String),
}

/// What the shell reports after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answer to [`Action::ReadBlock`]: the bytes, or `None` if the file could not be read.
    BlockRead {
        /// The peer's request.
        request: u64,
        /// The bytes read.
        data: Option<Vec<u8>>,
    },
    /// Answer to [`Action::CopyBlock`]: `ok` is false when the source no longer held the block.
    BlockCopied {
        /// The download.
        job: u64,
        /// Block number in the temporary file.
        index: u32,
        /// Whether the block was copied.
        ok: bool,
    },
    /// The shell refused a finished download's content instead of applying
    /// [`Action::Finish`]: a virus scanner flagged it. The engine reports it and does not
    /// fetch the same content for that path again; a later change by the peer is fetched as
    /// usual.
    JobRefused {
        /// The download.
        job: u64,
        /// Why, for the user.
        reason: String,
    },
    /// A download could not go on (temporary file not writable).
    JobFailed {
        /// The download.
        job: u64,
        /// What failed.
        reason: String,
    },
    /// Answer to [`Action::Finish`].
    Finished {
        /// The download.
        job: u64,
        /// How it went.
        result: Applied,
    },
    /// Answer to [`Action::Delete`].
    Deleted {
        /// The file.
        path: String,
        /// How it went.
        result: Applied,
    },
    /// Answer to [`Action::ConflictMove`].
    ConflictMoved {
        /// The file.
        path: String,
        /// How it went.
        result: Applied,
    },
}

/// Something to tell the user about the folder. Its Display is a sentence such as
/// "alice added report.pdf".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// The peer's new file is now here.
    Added {
        /// User who added it.
        by: String,
        /// The file.
        path: String,
    },
    /// The peer's new version of a file is now here.
    Changed {
        /// User who changed it.
        by: String,
        /// The file.
        path: String,
    },
    /// A file deleted by the peer was deleted here.
    Deleted {
        /// User who deleted it.
        by: String,
        /// The file.
        path: String,
    },
    /// A file renamed by the peer was renamed here.
    Renamed {
        /// User who renamed it.
        by: String,
        /// Old path.
        from: String,
        /// New path.
        to: String,
    },
    /// Both sides changed a file: one version keeps the name, the other is kept as `copy`.
    Conflict {
        /// The file.
        path: String,
        /// User whose version lost the name.
        loser: String,
        /// Where that version is kept.
        copy: String,
    },
    /// A file could not be brought up to date; it is tried again later.
    Failed {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for SyncEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncEvent::Added { by, path } => write!(f, "{by} added {path}"),
            SyncEvent::Changed { by, path } => write!(f, "{by} changed {path}"),
            SyncEvent::Deleted { by, path } => write!(f, "{by} deleted {path}"),
            SyncEvent::Renamed { by, from, to } => write!(f, "{by} renamed {from} to {to}"),
            SyncEvent::Conflict { path, loser, copy } => {
                write!(f, "conflict on {path}: {loser}'s version kept as {copy}")
            }
            SyncEvent::Failed { path, reason } => write!(f, "could not sync {path}: {reason}"),
        }
    }
}
