//! The sans-IO sync engine of one sharing folder with one peer.
//!
//! It owns the local index and the last index the peer announced. What to change on disk is
//! decided in `reconcile`; downloads and block requests live in `fetch`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::event::{Action, Expect, Outcome, SyncEvent};
use super::index::{BlockHash, FileEntry, Index, Scan};
use super::message::{index_messages, SyncMessage};
use super::work::{Busy, Job, Request};
use crate::{Error, Result};

/// Settings of a [`SyncEngine`].
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Our user id, recorded in versions and in `modified_by`.
    pub local: String,
    /// The peer's user id.
    pub peer: String,
    /// How long to wait for a requested block before asking again.
    pub request_timeout: Duration,
    /// Block requests in flight at once (each up to 128 KiB).
    pub max_requests: usize,
    /// Attempts per block before the download is abandoned (and retried later).
    pub max_attempts: u32,
    /// Delay before abandoned downloads are tried again.
    pub retry_after: Duration,
}

impl SyncConfig {
    /// Defaults for a folder shared between `local` and `peer`: 10 s request timeout,
    /// 8 requests in flight, 5 attempts, retry after 30 s.
    pub fn new(local: impl Into<String>, peer: impl Into<String>) -> Self {
        SyncConfig {
            local: local.into(),
            peer: peer.into(),
            request_timeout: Duration::from_secs(10),
            max_requests: 8,
            max_attempts: 5,
            retry_after: Duration::from_secs(30),
        }
    }
}

/// Counters of what the engine did, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Block requests sent to the peer (re-requests included).
    pub blocks_requested: u64,
    /// Blocks received from the peer that matched their hash.
    pub blocks_received: u64,
    /// Bytes of block data received from the peer (bad blocks included).
    pub bytes_received: u64,
    /// Received blocks that did not match their hash (each requested again).
    pub bad_blocks: u64,
    /// Blocks copied from local files instead of being transferred.
    pub blocks_copied: u64,
    /// Blocks sent to the peer.
    pub blocks_served: u64,
    /// Messages from the peer that were malformed or broke the protocol; each was dropped.
    pub protocol_errors: u64,
    /// Downloads whose content the shell refused ([`Outcome::JobRefused`]).
    pub refused: u64,
}

/// The sync engine of one sharing folder with one peer. Sans-IO: it is told the time, fed
/// scans, peer messages and action outcomes, and drained with the `poll_*` methods.
///
/// Drain rule: after every `handle_*` call, drain [`poll_transmit`](Self::poll_transmit),
/// [`poll_action`](Self::poll_action) (applying each action and reporting its outcome) and
/// [`poll_event`](Self::poll_event); call [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct SyncEngine {
    pub(super) cfg: SyncConfig,
    pub(super) local: Index,
    pub(super) remote: Index,
    pub(super) connected: bool,
    pub(super) busy: BTreeMap<String, Busy>,
    pub(super) jobs: BTreeMap<u64, Job>,
    pub(super) requests: BTreeMap<u64, Request>,
    pub(super) queue: VecDeque<(u64, BlockHash)>,
    pub(super) serving: HashMap<u64, BlockHash>,
    pub(super) block_map: Option<HashMap<BlockHash, (String, u32)>>,
    pub(super) next_id: u64,
    pub(super) partial: Option<FileEntry>,
    pub(super) rename_hints: HashMap<String, String>,
    pub(super) quiet_deletes: BTreeSet<String>,
    pub(super) retry_at: Option<Instant>,
    /// Content refused for a path ([`Outcome::JobRefused`]), not to be fetched again.
    pub(super) refused: HashMap<String, FileEntry>,
    pub(super) transmit: VecDeque<SyncMessage>,
    pub(super) actions: VecDeque<Action>,
    pub(super) events: VecDeque<SyncEvent>,
    pub(super) stats: SyncStats,
    pub(super) generation: u64,
}

impl SyncEngine {
    /// An engine starting from `index` (an empty one for a new folder, or the one saved
    /// before a restart), not connected.
    pub fn new(cfg: SyncConfig, index: Index) -> Self {
        SyncEngine {
            cfg,
            local: index,
            remote: Index::new(),
            connected: false,
            busy: BTreeMap::new(),
            jobs: BTreeMap::new(),
            requests: BTreeMap::new(),
            queue: VecDeque::new(),
            serving: HashMap::new(),
            block_map: None,
            next_id: 1,
            partial: None,
            rename_hints: HashMap::new(),
            quiet_deletes: BTreeSet::new(),
            retry_at: None,
            refused: HashMap::new(),
            transmit: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: SyncStats::default(),
            generation: 0,
        }
    }

    /// The local index: save it so a restart resumes.
    pub fn index(&self) -> &Index {
        &self.local
    }

    /// A number that changes whenever the local index does: save the index (see
    /// [`Folder::save_index`](super::Folder::save_index)) when it differs from the last saved.
    pub fn index_generation(&self) -> u64 {
        self.generation
    }

    /// The peer's index as last announced.
    pub fn remote_index(&self) -> &Index {
        &self.remote
    }

    /// The counters.
    pub fn stats(&self) -> SyncStats {
        self.stats
    }

    /// True when nothing is in progress or waiting to be drained.
    pub fn is_idle(&self) -> bool {
        self.busy.is_empty()
            && self.jobs.is_empty()
            && self.requests.is_empty()
            && self.transmit.is_empty()
            && self.actions.is_empty()
            && self.partial.is_none()
    }

    /// Call when the data channel to the peer opens (again): sends our whole index. After a
    /// channel dropped, call [`handle_disconnected`](Self::handle_disconnected) first.
    pub fn handle_connected(&mut self, now: Instant) {
        let _ = now;
        self.connected = true;
        // The peer sends its whole index again; forget what it may have since dropped.
        self.remote = Index::new();
        let all: Vec<FileEntry> = self.local.iter().cloned().collect();
        self.announce(all);
        self.transmit.push_back(SyncMessage::IndexDone);
    }

    /// Call when the data channel closes: abandons downloads and requests.
    pub fn handle_disconnected(&mut self, now: Instant) {
        let _ = now;
        self.connected = false;
        // Downloads already being moved into place are left to finish.
        let jobs: Vec<u64> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.finishing)
            .map(|(id, _)| *id)
            .collect();
        for job in jobs {
            self.cancel_job(job);
        }
        self.busy
            .retain(|_, b| !matches!(b, Busy::Deleting { sent: false, .. }));
        self.requests.clear();
        self.queue.clear();
        self.serving.clear();
        self.partial = None;
        self.transmit.clear();
    }

    /// Feeds the result of a scan (whole folder, or the paths a watcher reported: pass them in
    /// one scan so that a rename is announced as one change). A new or
    /// changed file gets a new version of ours; a file that vanished becomes a tombstone.
    /// Paths with a download or delete in progress are skipped.
    pub fn handle_scan(&mut self, now: Instant, scan: Scan) {
        let mut changed = Vec::new();
        let mut touched = Vec::new();
        let mut seen = BTreeSet::new();
        let Scan { roots, files } = scan;
        let scan = Scan {
            roots,
            files: Vec::new(),
        };
        for file in files {
            if super::path::check(&file.path).is_err() || !scan.covers(&file.path) {
                continue;
            }
            seen.insert(file.path.clone());
            if self.busy.contains_key(&file.path) {
                continue;
            }
            let prev = self.local.get(&file.path);
            if let Some(e) = prev {
                if !e.deleted && e.size == file.size && e.blocks == file.blocks {
                    if e.mtime != file.mtime {
                        // Touched, not changed: no new version, but an action that was
                        // refused because of the new time can be tried again.
                        let mut e = e.clone();
                        e.mtime = file.mtime;
                        self.local.insert(e);
                        self.generation += 1;
                        touched.push(file.path);
                    }
                    continue;
                }
            }
            let mut version = prev.map(|e| e.version.clone()).unwrap_or_default();
            version.bump(&self.cfg.local);
            changed.push(FileEntry {
                path: file.path,
                size: file.size,
                mtime: file.mtime,
                blocks: file.blocks,
                version,
                deleted: false,
                modified_by: self.cfg.local.clone(),
            });
        }
        let vanished: Vec<FileEntry> = self
            .local
            .live()
            .filter(|e| scan.covers(&e.path) && !seen.contains(&e.path))
            .filter(|e| !self.busy.contains_key(&e.path))
            .cloned()
            .collect();
        for e in vanished {
            changed.push(self.tombstone(&e));
        }
        for e in &changed {
            self.set_local(e.clone());
        }
        let mut paths: Vec<String> = changed.iter().map(|e| e.path.clone()).collect();
        paths.extend(touched);
        self.announce(changed);
        for path in paths {
            self.reconcile(now, &path);
        }
        self.pump(now);
    }

    /// Feeds a message from the peer. A malformed message or entry is dropped, counted in
    /// [`SyncStats::protocol_errors`] and returned as an error; the engine goes on.
    pub fn handle_message(&mut self, now: Instant, msg: SyncMessage) -> Result<()> {
        let result = match msg {
            SyncMessage::Index(entries) => self.handle_index(now, entries),
            SyncMessage::MoreBlocks { path, blocks } => self.handle_more_blocks(now, path, blocks),
            SyncMessage::IndexDone => Ok(()),
            SyncMessage::Request {
                id,
                path,
                index,
                hash,
            } => {
                self.handle_request(id, &path, index, hash);
                Ok(())
            }
            SyncMessage::Data {
                id,
                offset,
                total,
                data,
            } => self.handle_data(now, id, offset, total, data),
            SyncMessage::Missing { id } => {
                self.handle_missing(now, id);
                Ok(())
            }
        };
        self.pump(now);
        // A corrupt block is counted in `bad_blocks`.
        if result
            .as_ref()
            .is_err_and(|e| !matches!(e, Error::Integrity(_)))
        {
            self.stats.protocol_errors += 1;
        }
        result
    }

    /// Decodes `bytes` from the data channel and feeds the message; garbage is counted and
    /// returned as an [`Error::Protocol`].
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) -> Result<()> {
        match SyncMessage::decode(bytes) {
            Ok(msg) => self.handle_message(now, msg),
            Err(e) => {
                self.stats.protocol_errors += 1;
                Err(e)
            }
        }
    }

    /// Reports how an [`Action`] went.
    pub fn handle_outcome(&mut self, now: Instant, outcome: Outcome) {
        match outcome {
            Outcome::BlockRead { request, data } => self.handle_block_read(request, data),
            Outcome::BlockCopied { job, index, ok } => {
                self.handle_block_copied(now, job, index, ok)
            }
            Outcome::JobRefused { job, reason } => self.refuse_job(job, reason),
            Outcome::JobFailed { job, reason } => self.fail_job(now, job, reason),
            Outcome::Finished { job, result } => self.handle_finished(now, job, result),
            Outcome::Deleted { path, result } => self.handle_deleted(now, path, result),
            Outcome::ConflictMoved { path, result } => self.handle_moved(now, path, result),
        }
        self.pump(now);
    }

    /// The next message for the peer; encode it with [`SyncMessage::encode`].
    pub fn poll_transmit(&mut self) -> Option<SyncMessage> {
        self.transmit.pop_front()
    }

    /// The next action for the shell.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event for the user.
    pub fn poll_event(&mut self) -> Option<SyncEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.requests
            .values()
            .map(|r| r.deadline)
            .chain(self.retry_at)
            .min()
    }

    /// Re-requests blocks that did not arrive in time and retries abandoned downloads.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_requests(now);
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            let paths: Vec<String> = self.remote.iter().map(|e| e.path.clone()).collect();
            for path in paths {
                self.reconcile(now, &path);
            }
        }
        self.pump(now);
    }

    pub(super) fn set_local(&mut self, entry: FileEntry) {
        self.block_map = None;
        self.generation += 1;
        self.local.insert(entry);
    }

    fn tombstone(&self, e: &FileEntry) -> FileEntry {
        let mut version = e.version.clone();
        version.bump(&self.cfg.local);
        FileEntry {
            path: e.path.clone(),
            size: 0,
            mtime: e.mtime,
            blocks: Vec::new(),
            version,
            deleted: true,
            modified_by: self.cfg.local.clone(),
        }
    }

    /// Queues `entries` for the peer: live files first, so that a renamed file's blocks are
    /// fetched before its old name is deleted.
    pub(super) fn announce(&mut self, mut entries: Vec<FileEntry>) {
        if !self.connected || entries.is_empty() {
            return;
        }
        entries.sort_by_key(|e| e.deleted);
        self.transmit.extend(index_messages(entries));
    }

    pub(super) fn report_failure(&mut self, now: Instant, path: String, reason: String) {
        self.events.push_back(SyncEvent::Failed { path, reason });
        self.retry_at.get_or_insert(now + self.cfg.retry_after);
    }
}

/// What the disk holds for a local entry.
pub(super) fn expect_of(e: &FileEntry) -> Expect {
    if e.deleted {
        Expect::Absent
    } else {
        Expect::File {
            size: e.size,
            mtime: e.mtime,
        }
    }
}
