//! The file-system shell of a sharing folder: scanning it, applying the engine's actions to
//! it, and saving the index so a restart resumes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::event::{Action, Applied, Expect, Outcome};
use super::index::{hash_blocks, BlockHash, Index, Scan, ScannedFile, BLOCK_SIZE};
use super::path::{check, STATE_DIR};
use super::SyncEngine;
use crate::{Error, Result};

const INDEX_FILE: &str = "index.json";

/// A sharing folder on disk. Every path it is given is checked and resolved inside its root;
/// it never follows a symbolic link out of it.
///
/// A shell loop around one engine, with the data channel left out:
///
/// ```no_run
/// use std::time::{Duration, Instant};
/// use duet_share::sync::{Debouncer, Folder, FolderWatcher, Rescan, SyncConfig, SyncEngine};
///
/// # fn send(_: Vec<u8>) {}
/// # fn received() -> Vec<Vec<u8>> { Vec::new() }
/// # fn main() -> duet_share::Result<()> {
/// let folder = Folder::open("/home/alice/Shared/Trip")?;
/// let mut engine = SyncEngine::new(SyncConfig::new("alice", "bob"), folder.load_index()?);
/// let watcher = FolderWatcher::new(folder.root())?;
/// let (delay, period) = (Duration::from_millis(500), Duration::from_secs(600));
/// let mut debounce = Debouncer::new(Instant::now(), delay, period);
/// engine.handle_connected(Instant::now()); // when the data channel opens
/// let mut saved = engine.index_generation();
/// loop {
///     for path in watcher.recv(Duration::from_millis(100)) {
///         debounce.push(Instant::now(), path);
///     }
///     let now = Instant::now();
///     match debounce.poll(now) {
///         Some(Rescan::Full) => engine.handle_scan(now, folder.scan(engine.index())?),
///         Some(Rescan::Paths(paths)) => {
///             engine.handle_scan(now, folder.scan_paths(engine.index(), &paths)?)
///         }
///         None => {}
///     }
///     for bytes in received() {
///         let _ = engine.handle_bytes(now, &bytes); // counted in stats; the engine goes on
///     }
///     if engine.poll_timeout().is_some_and(|t| t <= now) {
///         engine.handle_timeout(now);
///     }
///     folder.run(now, &mut engine);
///     while let Some(msg) = engine.poll_transmit() {
///         send(msg.encode());
///     }
///     while let Some(event) = engine.poll_event() {
///         println!("{event}");
///     }
///     if engine.index_generation() != saved {
///         folder.save_index(engine.index())?;
///         saved = engine.index_generation();
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Folder {
    root: PathBuf,
}

impl Folder {
    /// Opens the folder at `root` (which must exist), creates its [`STATE_DIR`] and removes
    /// temporary files an interrupted run left there.
    pub fn open(root: impl Into<PathBuf>) -> Result<Folder> {
        let root = root.into();
        let meta = fs::metadata(&root).map_err(|e| Error::io(&root, e))?;
        if !meta.is_dir() {
            return Err(Error::Config(format!("{} is not a folder", root.display())));
        }
        let state = root.join(STATE_DIR);
        fs::create_dir_all(&state).map_err(|e| Error::io(&state, e))?;
        if let Ok(stale) = fs::read_dir(state.join("tmp")) {
            for entry in stale.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Folder { root })
    }

    /// The folder's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index saved by [`save_index`](Self::save_index), or an empty one.
    pub fn load_index(&self) -> Result<Index> {
        let path = self.root.join(STATE_DIR).join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::io(&path, io::Error::new(io::ErrorKind::InvalidData, e))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::new()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Saves `index` (atomically: a temporary file renamed over the old one).
    pub fn save_index(&self, index: &Index) -> Result<()> {
        let dir = self.root.join(STATE_DIR);
        let tmp = dir.join("index.json.tmp");
        let bytes = serde_json::to_vec(index)
            .map_err(|e| Error::io(&tmp, io::Error::new(io::ErrorKind::InvalidData, e)))?;
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        let path = dir.join(INDEX_FILE);
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Scans the whole folder. Files whose size and modification time match `previous` keep
    /// their hashes; others are hashed with one block-sized buffer.
    pub fn scan(&self, previous: &Index) -> Result<Scan> {
        let mut files = Vec::new();
        self.walk(&self.root, "", previous, &mut files);
        Ok(Scan::full(files))
    }

    /// Scans files or subfolders, e.g. the paths a watcher reported, as one scan. A path
    /// that no longer exists is part of the scan with no file (its files have vanished). A
    /// path that is never synced (inside [`STATE_DIR`] or a quarantine folder, or an unsafe
    /// name, see [`check`]) is left out of the scan: nothing under it is found or vanishes.
    pub fn scan_paths(&self, previous: &Index, paths: &[String]) -> Result<Scan> {
        if paths.iter().any(String::is_empty) {
            return self.scan(previous);
        }
        let mut found = BTreeMap::new();
        let mut roots = Vec::with_capacity(paths.len());
        for rel in paths {
            let Ok(full) = self.resolve(rel) else {
                continue;
            };
            roots.push(rel.clone());
            let mut files = Vec::new();
            match fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => self.walk(&full, rel, previous, &mut files),
                Ok(meta) if meta.is_file() => {
                    files.extend(self.scan_file(&full, rel, &meta, previous));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(full, e)),
            }
            found.extend(files.into_iter().map(|f| (f.path.clone(), f)));
        }
        Ok(Scan {
            roots,
            files: found.into_values().collect(),
        })
    }

    /// Scans one file or subfolder: [`scan_paths`](Self::scan_paths) of one path.
    pub fn scan_path(&self, previous: &Index, rel: &str) -> Result<Scan> {
        self.scan_paths(previous, &[rel.to_string()])
    }

    fn walk(&self, dir: &Path, rel: &str, previous: &Index, out: &mut Vec<ScannedFile>) {
        let Ok(entries) = fs::read_dir(dir) else {
            // Unreadable: keep what the index knows rather than report the files deleted.
            out.extend(
                previous
                    .live()
                    .filter(|e| under(&e.path, rel))
                    .map(|e| ScannedFile {
                        path: e.path.clone(),
                        size: e.size,
                        mtime: e.mtime,
                        blocks: e.blocks.clone(),
                    }),
            );
            return;
        };
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if rel.is_empty() && name == STATE_DIR {
                continue;
            }
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if check(&child).is_err() {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(entry.path()) else {
                continue;
            };
            if meta.is_dir() {
                self.walk(&entry.path(), &child, previous, out);
            } else if meta.is_file() {
                out.extend(self.scan_file(&entry.path(), &child, &meta, previous));
            }
        }
    }

    fn scan_file(
        &self,
        full: &Path,
        rel: &str,
        meta: &fs::Metadata,
        previous: &Index,
    ) -> Option<ScannedFile> {
        let mtime = mtime_ns(meta);
        let prev = previous.get(rel).filter(|e| !e.deleted);
        if let Some(e) = prev.filter(|e| e.size == meta.len() && e.mtime == mtime) {
            return Some(ScannedFile {
                path: rel.to_string(),
                size: e.size,
                mtime,
                blocks: e.blocks.clone(),
            });
        }
        match File::open(full).and_then(hash_blocks) {
            Ok((size, blocks)) => Some(ScannedFile {
                path: rel.to_string(),
                size,
                mtime,
                blocks,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            // Unreadable now: report what the index knows, not a deletion.
            Err(_) => prev.map(|e| ScannedFile {
                path: rel.to_string(),
                size: e.size,
                mtime: e.mtime,
                blocks: e.blocks.clone(),
            }),
        }
    }

    /// Applies every action `engine` has, reporting outcomes and feeding rescans, until it
    /// has none left. Returns how many actions were applied.
    pub fn run(&self, now: Instant, engine: &mut SyncEngine) -> usize {
        let mut count = 0;
        while let Some(action) = engine.poll_action() {
            count += 1;
            if let Action::Rescan { path } = &action {
                if let Ok(scan) = self.scan_path(engine.index(), path) {
                    engine.handle_scan(now, scan);
                }
                continue;
            }
            if let Some(outcome) = self.apply(&action) {
                engine.handle_outcome(now, outcome);
            }
        }
        count
    }

    /// Applies one action and returns the outcome to report, if the action has one.
    /// [`Action::Rescan`] is left to the caller (see [`run`](Self::run)).
    pub fn apply(&self, action: &Action) -> Option<Outcome> {
        match action {
            Action::CreateTemp { job, temp, size } => {
                self.create_temp(temp, *size)
                    .err()
                    .map(|e| Outcome::JobFailed {
                        job: *job,
                        reason: e.to_string(),
                    })
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
                let data = self.read_block(from, *from_index, *len);
                let Some(data) = data.filter(|d| BlockHash::of(d) == *hash) else {
                    return Some(Outcome::BlockCopied {
                        job: *job,
                        index: *index,
                        ok: false,
                    });
                };
                Some(match self.write_block(temp, *index, &data) {
                    Ok(()) => Outcome::BlockCopied {
                        job: *job,
                        index: *index,
                        ok: true,
                    },
                    Err(e) => Outcome::JobFailed {
                        job: *job,
                        reason: e.to_string(),
                    },
                })
            }
            Action::WriteBlock {
                job,
                temp,
                index,
                data,
            } => self
                .write_block(temp, *index, data)
                .err()
                .map(|e| Outcome::JobFailed {
                    job: *job,
                    reason: e.to_string(),
                }),
            Action::Finish {
                job,
                temp,
                path,
                mtime,
                expect,
            } => Some(Outcome::Finished {
                job: *job,
                result: self.finish(temp, path, *mtime, *expect),
            }),
            Action::RemoveTemp { temp } => {
                let _ = fs::remove_file(self.temp_path(temp));
                None
            }
            Action::Delete { path, expect } => Some(Outcome::Deleted {
                path: path.clone(),
                result: self.delete(path, *expect),
            }),
            Action::ConflictMove { path, copy, expect } => Some(Outcome::ConflictMoved {
                path: path.clone(),
                result: self.conflict_move(path, copy, *expect),
            }),
            Action::ReadBlock {
                request,
                path,
                index,
                len,
            } => Some(Outcome::BlockRead {
                request: *request,
                data: self.read_block(path, *index, *len),
            }),
            Action::Rescan { .. } => None,
        }
    }

    /// Resolves a checked relative path, refusing symbolic links on the way.
    fn resolve(&self, rel: &str) -> Result<PathBuf> {
        check(rel)?;
        crate::names::safe_join(&self.root, &crate::names::safe_relative(rel)?)
    }

    /// Where a temporary file of the engine ([`Action::CreateTemp`]'s `temp`) is on disk: for
    /// example to hand a finished download to a virus scanner before [`Action::Finish`].
    pub fn temp_file(&self, temp: &str) -> PathBuf {
        self.temp_path(temp)
    }

    /// A temporary file of the engine: only plain names under `.duet/tmp`.
    fn temp_path(&self, temp: &str) -> PathBuf {
        let name = temp.rsplit('/').next().unwrap_or_default();
        let name: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        self.root.join(STATE_DIR).join("tmp").join(name)
    }

    fn create_temp(&self, temp: &str, size: u64) -> Result<()> {
        let path = self.temp_path(temp);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        file.set_len(size).map_err(|e| Error::io(&path, e))
    }

    fn write_block(&self, temp: &str, index: u32, data: &[u8]) -> Result<()> {
        let path = self.temp_path(temp);
        let mut file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.seek(SeekFrom::Start(u64::from(index) * BLOCK_SIZE as u64))
            .and_then(|_| file.write_all(data))
            .map_err(|e| Error::io(&path, e))
    }

    /// Reads `len` bytes of block `index` of a local file, or `None` if it cannot.
    fn read_block(&self, rel: &str, index: u32, len: usize) -> Option<Vec<u8>> {
        let path = self.resolve(rel).ok()?;
        if !fs::symlink_metadata(&path).ok()?.is_file() {
            return None;
        }
        let mut file = File::open(&path).ok()?;
        file.seek(SeekFrom::Start(u64::from(index) * BLOCK_SIZE as u64))
            .ok()?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf).ok()?;
        Some(buf)
    }

    /// Whether the disk at `path` still holds what the engine expects.
    fn matches(&self, path: &Path, expect: Expect) -> io::Result<bool> {
        match (fs::symlink_metadata(path), expect) {
            (Err(e), Expect::Absent) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            (Err(e), Expect::File { .. }) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            (Err(e), _) => Err(e),
            (Ok(_), Expect::Absent) => Ok(false),
            (Ok(meta), Expect::File { size, mtime }) => {
                Ok(meta.is_file() && meta.len() == size && mtime_ns(&meta) == mtime)
            }
        }
    }

    fn finish(&self, temp: &str, rel: &str, mtime: i64, expect: Expect) -> Applied {
        let result = (|| -> Result<Applied> {
            let path = self.resolve(rel)?;
            if !self
                .matches(&path, expect)
                .map_err(|e| Error::io(&path, e))?
            {
                return Ok(Applied::ChangedLocally);
            }
            let tmp = self.temp_path(temp);
            let file = OpenOptions::new()
                .write(true)
                .open(&tmp)
                .map_err(|e| Error::io(&tmp, e))?;
            file.set_modified(system_time(mtime))
                .map_err(|e| Error::io(&tmp, e))?;
            drop(file);
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
            Ok(Applied::Done)
        })();
        result.unwrap_or_else(|e| Applied::Failed(e.to_string()))
    }

    fn delete(&self, rel: &str, expect: Expect) -> Applied {
        let result = (|| -> Result<Applied> {
            let path = self.resolve(rel)?;
            match fs::symlink_metadata(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Applied::Done),
                Err(e) => return Err(Error::io(&path, e)),
                Ok(_) => {}
            }
            if !self
                .matches(&path, expect)
                .map_err(|e| Error::io(&path, e))?
            {
                return Ok(Applied::ChangedLocally);
            }
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            // Remove the folders this leaves empty, up to the root.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != self.root) {
                if fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(Applied::Done)
        })();
        result.unwrap_or_else(|e| Applied::Failed(e.to_string()))
    }

    fn conflict_move(&self, rel: &str, copy: &str, expect: Expect) -> Applied {
        let result = (|| -> Result<Applied> {
            let path = self.resolve(rel)?;
            let target = self.resolve(copy)?;
            if !self
                .matches(&path, expect)
                .map_err(|e| Error::io(&path, e))?
            {
                return Ok(Applied::ChangedLocally);
            }
            if fs::symlink_metadata(&target).is_ok() {
                return Ok(Applied::Failed(format!("{copy} already exists")));
            }
            fs::rename(&path, &target).map_err(|e| Error::io(&target, e))?;
            Ok(Applied::Done)
        })();
        result.unwrap_or_else(|e| Applied::Failed(e.to_string()))
    }
}

fn under(path: &str, rel: &str) -> bool {
    rel.is_empty() || path == rel || path.strip_prefix(rel).is_some_and(|r| r.starts_with('/'))
}

/// Modification time of `meta` in nanoseconds since the Unix epoch (0 if unknown).
fn mtime_ns(meta: &fs::Metadata) -> i64 {
    match meta.modified() {
        Ok(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
        },
        Err(_) => 0,
    }
}

fn system_time(nanos: i64) -> SystemTime {
    let magnitude = Duration::from_nanos(nanos.unsigned_abs());
    if nanos >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}
