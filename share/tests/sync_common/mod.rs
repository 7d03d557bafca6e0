//! Shared harness of the sync tests: two engines linked in memory with simulated time, over
//! an in-memory disk or a real folder.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use duet_share::sync::{
    hash_blocks, Action, Applied, BlockHash, Expect, Folder, Index, Outcome, Scan, ScannedFile,
    SyncConfig, SyncEngine, SyncEvent, SyncMessage, BLOCK_SIZE, MAX_MESSAGE,
};

/// Where a side's files live.
pub trait Disk {
    /// Scans everything.
    fn scan(&mut self, previous: &Index) -> Scan;
    /// Scans some paths.
    fn scan_paths(&mut self, previous: &Index, paths: &[String]) -> Scan;
    /// Applies one action.
    fn apply(&mut self, action: &Action) -> Option<Outcome>;
}

/// A folder held in memory: path -> (bytes, mtime).
#[derive(Debug, Default)]
pub struct MemDisk {
    pub files: BTreeMap<String, (Vec<u8>, i64)>,
    pub temps: BTreeMap<String, Vec<u8>>,
    /// Contents this side's scanner flags: a finished download holding one is refused.
    pub flagged: Vec<Vec<u8>>,
}

impl MemDisk {
    fn scanned(&self, path: &str) -> Option<ScannedFile> {
        let (data, mtime) = self.files.get(path)?;
        let (size, blocks) = hash_blocks(&data[..]).ok()?;
        Some(ScannedFile {
            path: path.to_string(),
            size,
            mtime: *mtime,
            blocks,
        })
    }

    fn matches(&self, path: &str, expect: Expect) -> bool {
        match (self.files.get(path), expect) {
            (None, Expect::Absent) => true,
            (Some((d, m)), Expect::File { size, mtime }) => d.len() as u64 == size && *m == mtime,
            _ => false,
        }
    }

    fn block(&self, path: &str, index: u32, len: usize) -> Option<Vec<u8>> {
        let (data, _) = self.files.get(path)?;
        let start = index as usize * BLOCK_SIZE;
        data.get(start..start + len).map(<[u8]>::to_vec)
    }

    fn write(&mut self, temp: &str, index: u32, data: &[u8]) -> bool {
        let Some(buf) = self.temps.get_mut(temp) else {
            return false;
        };
        let start = index as usize * BLOCK_SIZE;
        match buf.get_mut(start..start + data.len()) {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

impl Disk for MemDisk {
    fn scan(&mut self, _previous: &Index) -> Scan {
        Scan::full(self.files.keys().filter_map(|p| self.scanned(p)).collect())
    }

    fn scan_paths(&mut self, _previous: &Index, paths: &[String]) -> Scan {
        let scan = Scan {
            roots: paths.to_vec(),
            files: Vec::new(),
        };
        let files = self
            .files
            .keys()
            .filter(|p| scan.covers(p))
            .filter_map(|p| self.scanned(p))
            .collect();
        Scan { files, ..scan }
    }

    fn apply(&mut self, action: &Action) -> Option<Outcome> {
        match action {
            Action::CreateTemp { temp, size, .. } => {
                self.temps.insert(temp.clone(), vec![0; *size as usize]);
                None
            }
            Action::CopyBlock {
                job,
                temp,
                index,
                from,
                from_index,
                len,
                hash,
            } => {
                let data = self.block(from, *from_index, *len);
                let ok = data
                    .is_some_and(|d| BlockHash::of(&d) == *hash && self.write(temp, *index, &d));
                Some(Outcome::BlockCopied {
                    job: *job,
                    index: *index,
                    ok,
                })
            }
            Action::WriteBlock {
                job,
                temp,
                index,
                data,
            } => (!self.write(temp, *index, data)).then(|| Outcome::JobFailed {
                job: *job,
                reason: "no temp".into(),
            }),
            Action::Finish {
                job,
                temp,
                path,
                mtime,
                expect,
            } => {
                if self
                    .temps
                    .get(temp)
                    .is_some_and(|d| self.flagged.contains(d))
                {
                    self.temps.remove(temp);
                    return Some(Outcome::JobRefused {
                        job: *job,
                        reason: "flagged".into(),
                    });
                }
                let result = if !self.matches(path, *expect) {
                    Applied::ChangedLocally
                } else if let Some(data) = self.temps.remove(temp) {
                    self.files.insert(path.clone(), (data, *mtime));
                    Applied::Done
                } else {
                    Applied::Failed("no temp".into())
                };
                Some(Outcome::Finished { job: *job, result })
            }
            Action::RemoveTemp { temp } => {
                self.temps.remove(temp);
                None
            }
            Action::Delete { path, expect } => {
                let result = if !self.files.contains_key(path) {
                    Applied::Done
                } else if self.matches(path, *expect) {
                    self.files.remove(path);
                    Applied::Done
                } else {
                    Applied::ChangedLocally
                };
                Some(Outcome::Deleted {
                    path: path.clone(),
                    result,
                })
            }
            Action::ConflictMove { path, copy, expect } => {
                let result = if !self.matches(path, *expect) {
                    Applied::ChangedLocally
                } else if let Some(f) = self.files.remove(path) {
                    self.files.insert(copy.clone(), f);
                    Applied::Done
                } else {
                    Applied::Failed("gone".into())
                };
                Some(Outcome::ConflictMoved {
                    path: path.clone(),
                    result,
                })
            }
            Action::ReadBlock {
                request,
                path,
                index,
                len,
            } => Some(Outcome::BlockRead {
                request: *request,
                data: self.block(path, *index, *len),
            }),
            Action::Rescan { .. } => None,
        }
    }
}

impl Disk for Folder {
    fn scan(&mut self, previous: &Index) -> Scan {
        Folder::scan(self, previous).expect("scan")
    }

    fn scan_paths(&mut self, previous: &Index, paths: &[String]) -> Scan {
        Folder::scan_paths(self, previous, paths).expect("scan paths")
    }

    fn apply(&mut self, action: &Action) -> Option<Outcome> {
        Folder::apply(self, action)
    }
}

/// One contact: an engine and its disk.
pub struct Side<D> {
    pub engine: SyncEngine,
    pub disk: D,
    pub events: Vec<String>,
}

impl<D: Disk> Side<D> {
    pub fn new(user: &str, peer: &str, disk: D, index: Index) -> Self {
        Side {
            engine: SyncEngine::new(SyncConfig::new(user, peer), index),
            disk,
            events: Vec::new(),
        }
    }

    /// Scans the whole folder into the engine.
    pub fn rescan(&mut self, now: Instant) {
        let scan = self.disk.scan(self.engine.index());
        self.engine.handle_scan(now, scan);
    }

    /// Applies every pending action; true if there was one.
    fn run_actions(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Some(action) = self.engine.poll_action() {
            any = true;
            if let Action::Rescan { path } = &action {
                let scan = self
                    .disk
                    .scan_paths(self.engine.index(), std::slice::from_ref(path));
                self.engine.handle_scan(now, scan);
            } else if let Some(outcome) = self.disk.apply(&action) {
                self.engine.handle_outcome(now, outcome);
            }
        }
        while let Some(e) = self.engine.poll_event() {
            self.events.push(e.to_string());
        }
        any
    }

    /// Takes the events seen so far.
    pub fn take_events(&mut self) -> Vec<String> {
        std::mem::take(&mut self.events)
    }
}

/// What crossed the simulated data channel.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkStats {
    pub messages: u64,
    pub bytes: u64,
    pub largest: usize,
    pub index_messages: u64,
}

/// Two sides linked in memory, with simulated time.
pub struct Pair<D> {
    pub a: Side<D>,
    pub b: Side<D>,
    pub now: Instant,
    pub connected: bool,
    pub link: LinkStats,
    /// Data messages still to corrupt in transit (one byte flipped).
    pub corrupt_data: u32,
    /// Requests still to drop in transit.
    pub drop_requests: u32,
}

impl<D: Disk> Pair<D> {
    pub fn new(a: Side<D>, b: Side<D>) -> Self {
        Pair {
            a,
            b,
            now: Instant::now(),
            connected: false,
            link: LinkStats::default(),
            corrupt_data: 0,
            drop_requests: 0,
        }
    }

    pub fn connect(&mut self) {
        self.connected = true;
        self.a.engine.handle_connected(self.now);
        self.b.engine.handle_connected(self.now);
    }

    pub fn disconnect(&mut self) {
        self.connected = false;
        self.a.engine.handle_disconnected(self.now);
        self.b.engine.handle_disconnected(self.now);
        self.a.run_actions(self.now);
        self.b.run_actions(self.now);
    }

    /// Carries messages and applies actions until both sides are quiet, advancing simulated
    /// time to pending timeouts (at most `max_timeouts` of them).
    pub fn settle(&mut self) {
        for _ in 0..1_000 {
            self.progress();
            let next = [self.a.engine.poll_timeout(), self.b.engine.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if !(self.a.engine.is_idle() && self.b.engine.is_idle()) => {
                    self.now = self.now.max(t);
                    self.a.engine.handle_timeout(self.now);
                    self.b.engine.handle_timeout(self.now);
                }
                _ => return,
            }
        }
        panic!("did not settle");
    }

    /// Carries messages and applies actions until nothing moves (no time passes).
    pub fn progress(&mut self) {
        for _ in 0..1_000_000 {
            if !self.step() {
                return;
            }
        }
        panic!("no progress");
    }

    /// Applies pending actions and carries pending messages once; true if anything moved.
    pub fn step(&mut self) -> bool {
        let mut moved = self.a.run_actions(self.now);
        moved |= self.b.run_actions(self.now);
        moved |= self.carry(true);
        moved |= self.carry(false);
        moved
    }

    fn carry(&mut self, a_to_b: bool) -> bool {
        let (from, to) = if a_to_b {
            (&mut self.a, &mut self.b)
        } else {
            (&mut self.b, &mut self.a)
        };
        let mut moved = false;
        while let Some(msg) = from.engine.poll_transmit() {
            moved = true;
            if !self.connected {
                continue;
            }
            if matches!(msg, SyncMessage::Request { .. }) && self.drop_requests > 0 {
                self.drop_requests -= 1;
                continue;
            }
            if matches!(msg, SyncMessage::Index(_)) {
                self.link.index_messages += 1;
            }
            let mut bytes = msg.encode();
            assert!(bytes.len() <= MAX_MESSAGE, "{} bytes", bytes.len());
            if matches!(msg, SyncMessage::Data { .. }) && self.corrupt_data > 0 {
                self.corrupt_data -= 1;
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0xFF;
                }
            }
            self.link.messages += 1;
            self.link.bytes += bytes.len() as u64;
            self.link.largest = self.link.largest.max(bytes.len());
            let _ = to.engine.handle_bytes(self.now, &bytes);
        }
        moved
    }

    /// Advances simulated time.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }
}

/// Deterministic pseudo-random bytes (xorshift), so block hashes differ between files.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A pair over in-memory disks, connected and settled, with no files.
pub fn mem_pair() -> Pair<MemDisk> {
    let a = Side::new("alice", "bob", MemDisk::default(), Index::new());
    let b = Side::new("bob", "alice", MemDisk::default(), Index::new());
    let mut pair = Pair::new(a, b);
    pair.connect();
    pair.settle();
    pair
}

/// Nanoseconds since the epoch of 2026-11-26 + `secs`.
pub fn t(secs: i64) -> i64 {
    (1_795_651_200 + secs) * 1_000_000_000
}

/// Events as strings, for matching.
pub fn event_strings(events: &[SyncEvent]) -> Vec<String> {
    events.iter().map(ToString::to_string).collect()
}
