//! Sharing folders: a sans-IO engine that keeps one folder equal on two contacts' machines,
//! and the file-system shell that runs it on a real folder.
//!
//! - [`SyncEngine`] (one per folder and peer) holds the folder's [`Index`]: one [`FileEntry`]
//!   per file with its SHA-256 block hashes ([`BLOCK_SIZE`] blocks), a [`VersionVector`] and a
//!   tombstone flag for deleted files. On connect both sides send their whole index, then
//!   what changes. A newer version is assembled in a temporary file from blocks found in any
//!   local file (so renames and moves transfer nothing) and blocks requested from the peer,
//!   each checked against its hash, then moved into place unless the file changed locally.
//!   Concurrent changes keep both versions: the loser is saved as
//!   `name.sync-conflict-YYYYMMDD-HHMMSS-USER.ext` and syncs like any file.
//! - The engine does no I/O. It is fed scans ([`SyncEngine::handle_scan`]), peer messages
//!   ([`SyncEngine::handle_bytes`]) and action outcomes ([`SyncEngine::handle_outcome`]), is
//!   told the time, and is drained with `poll_transmit` (messages of at most [`MAX_MESSAGE`]
//!   bytes for the data channel), `poll_action` (work on disk), `poll_event` (what to tell the
//!   user) and `poll_timeout`.
//! - [`Folder`] is the shell: it scans a real folder (skipping [`STATE_DIR`]), applies actions,
//!   and saves the index; [`FolderWatcher`] and [`Debouncer`] turn file-system notifications
//!   into paths to rescan, with a periodic full rescan.
//!
//! ```
//! use std::time::Instant;
//! use duet_share::sync::{Index, Scan, ScannedFile, SyncConfig, SyncEngine};
//!
//! let now = Instant::now();
//! let mut alice = SyncEngine::new(SyncConfig::new("alice", "bob"), Index::new());
//! let mut bob = SyncEngine::new(SyncConfig::new("bob", "alice"), Index::new());
//! let (size, blocks) = duet_share::sync::hash_blocks(&b"hello"[..]).unwrap();
//! alice.handle_scan(now, Scan::full(vec![ScannedFile { path: "hi.txt".into(), size, mtime: 0, blocks }]));
//! alice.handle_connected(now);
//! bob.handle_connected(now);
//! while let Some(msg) = alice.poll_transmit() {
//!     bob.handle_bytes(now, &msg.encode()).unwrap();
//! }
//! // Bob's shell now creates a temporary file and asks for the block.
//! assert!(bob.poll_action().is_some());
//! ```

mod engine;
mod event;
mod fetch;
mod folder;
mod index;
mod message;
mod path;
mod reconcile;
mod vv;
mod watch;
mod work;

pub use engine::{SyncConfig, SyncEngine, SyncStats};
pub use event::{Action, Applied, Expect, Outcome, SyncEvent};
pub use folder::Folder;
pub use index::{
    block_count, block_len, diff, hash_blocks, BlockHash, FileEntry, Index, Need, Scan,
    ScannedFile, BLOCK_SIZE, MAX_FILE_SIZE,
};
pub use message::{index_messages, SyncMessage, DATA_CHUNK, MAX_MESSAGE};
pub use path::{check as check_path, conflict_name, STATE_DIR};
pub use vv::{VersionOrdering, VersionVector};
pub use watch::{Debouncer, FolderWatcher, Rescan};
