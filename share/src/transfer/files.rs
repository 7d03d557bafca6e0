//! The file-system side of a transfer: hashing and reading the offered file, and the
//! quarantine an arriving file lives in until it is whole, checked and scanned.
//!
//! An arriving file is written to `<dir>/.duet-quarantine/<sha256>.part`, its resume state to
//! `<sha256>.json` beside it; nothing reaches `<dir>` itself until [`Incoming::finish`] has
//! checked the whole file against the offered SHA-256 and the scanner passed it. Nothing is
//! written at all before [`Incoming::accept`], which is how the user's acceptance starts a
//! transfer, and which first refuses an offer over the size limit, one the disk has no room for
//! (free space minus [`ReceiverConfig::free_margin`]), and one that would take the quarantine
//! past [`ReceiverConfig::quarantine_quota`]; it also deletes partial files of transfers
//! abandoned longer than [`ReceiverConfig::partial_expiry`]. Memory stays bounded: files are
//! hashed through a fixed buffer and written one verified block at a time.
//!
//! The quarantine folder is private: it is created 0700, and an existing one that belongs to
//! another user or that others may enter is refused. Files in it are opened without following
//! symlinks, and a released file never replaces one already in `<dir>`. A file the scanner
//! flagged (or gave no verdict on in time) stays as `<sha256>.held`: [`held_files`] lists them
//! and [`purge_held`] removes them.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use sha2::{Digest, Sha256};

use super::{Hash256, Manifest, Offer, Receiver, ReceiverConfig, ResumeState};
use crate::names::{safe_file_name, safe_join, unclobbered};
use crate::scan::{Scanner, Verdict};
use crate::{Error, Result};

/// The folder, inside the target folder, that holds arriving files.
pub const QUARANTINE_DIR: &str = ".duet-quarantine";
const READ_BUFFER: usize = 64 * 1024;

/// Hashes the file at `path` into its manifest, reading through a fixed 64 KiB buffer.
pub fn manifest_of(path: &Path, block_size: u32) -> Result<Manifest> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    hash_reader(file, block_size).map_err(|e| Error::io(path, e))
}

fn hash_reader(mut r: impl Read, block_size: u32) -> std::io::Result<Manifest> {
    let block_size = block_size.max(1);
    let mut whole = Sha256::new();
    let mut block = Sha256::new();
    let mut in_block = 0u32;
    let mut total = 0u64;
    let mut block_hashes = Vec::new();
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let mut data = buf.get(..n).unwrap_or_default();
        whole.update(data);
        total += n as u64;
        while !data.is_empty() {
            let take = data.len().min((block_size - in_block) as usize);
            let (head, tail) = data.split_at(take);
            block.update(head);
            in_block += take as u32;
            data = tail;
            if in_block == block_size {
                block_hashes.push(Hash256(block.finalize_reset().into()));
                in_block = 0;
            }
        }
    }
    if in_block > 0 {
        block_hashes.push(Hash256(block.finalize().into()));
    }
    Ok(Manifest {
        file_size: total,
        block_size,
        sha256: Hash256(whole.finalize().into()),
        block_hashes,
    })
}

/// The size and SHA-256 of everything `r` yields, read through a fixed buffer.
fn whole_file_hash(mut r: impl Read) -> std::io::Result<(u64, Hash256)> {
    let mut h = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; READ_BUFFER];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok((total, Hash256(h.finalize().into()))),
            Ok(n) => {
                h.update(buf.get(..n).unwrap_or_default());
                total += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A file being offered: its manifest, and the open file to read blocks from.
pub struct Outgoing {
    path: PathBuf,
    file: File,
    manifest: Manifest,
}

impl Outgoing {
    /// Opens and hashes the file at `path` (see [`manifest_of`]), in blocks of
    /// [`Manifest::block_size_for`] its size.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let manifest =
            hash_reader(&file, Manifest::block_size_for(len)).map_err(|e| Error::io(path, e))?;
        Ok(Outgoing {
            path: path.to_owned(),
            file,
            manifest,
        })
    }

    /// The manifest, for [`super::Sender::new`].
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The offer for the invitation: the file's own name, size and SHA-256.
    pub fn offer(&self) -> Result<Offer> {
        let name = self.path.file_name().map(|n| n.to_string_lossy());
        let name =
            name.ok_or_else(|| Error::Config(format!("{} has no name", self.path.display())))?;
        Offer::new(&name, self.manifest.file_size, self.manifest.sha256)
    }

    /// Reads `len` bytes at `offset`, for a `SenderEvent::ReadBlock`.
    pub fn read_block(&mut self, offset: u64, len: u32) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len as usize];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(buf)
    }
}

/// How an arriving file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The file is whole, matched its SHA-256, passed the scanner, and is at `path`.
    Released {
        /// Where it now is, in the target folder.
        path: PathBuf,
    },
    /// The scanner flagged the file, or gave no verdict before its deadline; it stays in
    /// quarantine at `path` and never reaches the target folder. Tell the sender with
    /// `Receiver::cancel`.
    Held {
        /// The signature the scanner named, or why there was no verdict.
        signature: String,
        /// The quarantined file.
        path: PathBuf,
    },
}

/// An accepted offer's partial file in the quarantine folder.
pub struct Incoming {
    dir: PathBuf,
    offer: Offer,
    part: PathBuf,
    state: PathBuf,
    file: File,
}

impl Incoming {
    /// Accepts `offer` into the folder `dir`: refuses it with [`Error::TooLarge`] if it is over
    /// `config.max_size`, with [`Error::QuotaExceeded`] if the quarantine would pass
    /// `config.quarantine_quota`, and with [`Error::NoSpace`] if the disk cannot hold it and
    /// `config.free_margin` besides (all before anything is written); deletes expired partial
    /// files; then opens (or reopens, to resume) its partial file in the quarantine folder, and
    /// returns it with the [`Receiver`] to drive.
    pub fn accept(
        dir: &Path,
        offer: Offer,
        config: ReceiverConfig,
        now: Instant,
    ) -> Result<(Incoming, Receiver)> {
        if offer.size > config.max_size {
            return Err(Error::TooLarge {
                size: offer.size,
                limit: config.max_size,
            });
        }
        let meta = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
        if !meta.is_dir() {
            return Err(Error::Config(format!("{} is not a folder", dir.display())));
        }
        let quarantine = open_quarantine(dir)?;
        expire_partials(&quarantine, config.partial_expiry, SystemTime::now());
        let hex = offer.sha256.to_hex();
        let part = quarantine.join(format!("{hex}.part"));
        let state = quarantine.join(format!("{hex}.json"));
        let existing = match fs::symlink_metadata(&part) {
            Ok(m) if m.is_file() => Some(m.len()),
            _ => None,
        };
        let resuming = existing.is_some();
        let have = existing.unwrap_or(0).min(offer.size);
        let used = quarantine_usage(&quarantine)?.saturating_sub(existing.unwrap_or(0));
        if used.saturating_add(offer.size) > config.quarantine_quota {
            return Err(Error::QuotaExceeded {
                used,
                size: offer.size,
                quota: config.quarantine_quota,
            });
        }
        let needed = offer.size - have;
        if let Some(available) = free_space(&quarantine)? {
            if needed.saturating_add(config.free_margin) > available {
                return Err(Error::NoSpace {
                    needed,
                    available,
                    margin: config.free_margin,
                });
            }
        }
        let file = open_no_follow(
            &part,
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false),
        )?;
        // One receiver per file and folder: a second offer of the same file while the first
        // is arriving would write the same partial file. The lock goes with the file handle,
        // so a receiver that dies leaves nothing locked.
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Busy(format!(
                    "{} is already being received into {}",
                    offer.name().file_name(),
                    dir.display()
                )))
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&part, e)),
        }
        let resume = if resuming { load_state(&state) } else { None };
        let receiver = Receiver::new(offer.clone(), config, resume, now)?;
        let incoming = Incoming {
            dir: dir.to_owned(),
            offer,
            part,
            state,
            file,
        };
        Ok((incoming, receiver))
    }

    /// The partial file.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// Writes a verified block (`ReceiverEvent::Write`) at `offset` of the partial file.
    pub fn write_block(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.write_all(data))
            .map_err(|e| Error::io(&self.part, e))
    }

    /// Saves `state` beside the partial file, after flushing the file's data to disk so that
    /// the state never claims a block the disk does not hold.
    pub fn save_state(&mut self, state: &ResumeState) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io(&self.part, e))?;
        let json = serde_json::to_vec(state)
            .map_err(|e| Error::Config(format!("cannot serialize the resume state: {e}")))?;
        let tmp = self.state.with_extension("json.tmp");
        open_no_follow(
            &tmp,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?
        .write_all(&json)
        .map_err(|e| Error::io(&tmp, e))?;
        fs::rename(&tmp, &self.state).map_err(|e| Error::io(&self.state, e))
    }

    /// Does all the shell has to do for a `ReceiverEvent::Write`: writes the block, tells the
    /// receiver, and saves the resume state.
    pub fn store(
        &mut self,
        receiver: &mut Receiver,
        block: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<()> {
        self.write_block(offset, data)?;
        receiver.block_written(block)?;
        match receiver.resume_state() {
            Some(state) => self.save_state(&state),
            None => Ok(()),
        }
    }

    /// Ends a complete transfer (`ReceiverEvent::Complete`): checks the whole file against the
    /// offered size and SHA-256 (a mismatch deletes it and is an [`Error::Integrity`]), has
    /// `scanner` check it, and only if it is clean moves it into the target folder under a free
    /// name ([`unclobbered`]). A flagged file stays in quarantine ([`Outcome::Held`]); a scanner
    /// error is returned and the file stays in quarantine too. `None` skips scanning.
    pub fn finish(mut self, scanner: Option<&Scanner>) -> Result<Outcome> {
        self.file.sync_all().map_err(|e| Error::io(&self.part, e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(&self.part, e))?;
        let (size, sha256) = whole_file_hash(&self.file).map_err(|e| Error::io(&self.part, e))?;
        if size != self.offer.size || sha256 != self.offer.sha256 {
            let err = Error::Integrity(format!(
                "the received file ({size} bytes, SHA-256 {sha256}) is not the one offered \
                 ({} bytes, SHA-256 {})",
                self.offer.size, self.offer.sha256
            ));
            self.discard()?;
            return Err(err);
        }
        if let Some(scanner) = scanner {
            let flagged = match scanner.scan(&self.part)? {
                Verdict::Clean => None,
                Verdict::Infected { signature } => Some(signature),
                Verdict::TimedOut { after } => {
                    Some(format!("no verdict within {} s", after.as_secs_f64()))
                }
            };
            if let Some(signature) = flagged {
                let held = self.part.with_extension("held");
                fs::rename(&self.part, &held).map_err(|e| Error::io(&held, e))?;
                remove_if_there(&self.state)?;
                return Ok(Outcome::Held {
                    signature,
                    path: held,
                });
            }
        }
        let path = self.release()?;
        remove_if_there(&self.state)?;
        Ok(Outcome::Released { path })
    }

    /// Moves the partial file into the target folder without replacing anything there: a hard
    /// link (which fails on an existing name), else a rename that refuses to replace, else a
    /// copy into a newly created file. Each way picks the next free name when the one it
    /// tried was taken meanwhile.
    fn release(&self) -> Result<PathBuf> {
        let name = self.offer.name().file_name();
        loop {
            let candidate = unclobbered(&self.dir, name);
            let free_name = candidate
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let target = safe_join(&self.dir, &safe_file_name(&free_name)?)?;
            match fs::hard_link(&self.part, &target) {
                Ok(()) => {
                    fs::remove_file(&self.part).map_err(|e| Error::io(&self.part, e))?;
                    return Ok(target);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                // No hard links on this file system.
                Err(_) => {}
            }
            match rename_no_replace(&self.part, &target) {
                Ok(true) => return Ok(target),
                Ok(false) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&target, e)),
            }
            match copy_new(&self.part, &target) {
                Ok(()) => {
                    fs::remove_file(&self.part).map_err(|e| Error::io(&self.part, e))?;
                    return Ok(target);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&target, e)),
            }
        }
    }

    /// Deletes the partial file and its resume state (the transfer was cancelled or failed).
    pub fn discard(self) -> Result<()> {
        drop(self.file);
        remove_if_there(&self.part)?;
        remove_if_there(&self.state)
    }
}

fn load_state(path: &Path) -> Option<ResumeState> {
    let mut bytes = Vec::new();
    open_no_follow(path, OpenOptions::new().read(true))
        .ok()?
        .read_to_end(&mut bytes)
        .ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::debug!(path = %path.display(), %e, "unreadable resume state; starting over");
            None
        }
    }
}

/// A file in the quarantine that the scanner held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldFile {
    /// The held file, `<dir>/.duet-quarantine/<sha256>.held`.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// When it was held (its last change).
    pub modified: Option<SystemTime>,
}

/// The held files in the quarantine of `dir`, oldest first; none when `dir` has no quarantine.
/// The quarantine is checked as [`Incoming::accept`] checks it.
pub fn held_files(dir: &Path) -> Result<Vec<HeldFile>> {
    let quarantine = dir.join(QUARANTINE_DIR);
    match fs::symlink_metadata(&quarantine) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&quarantine, e)),
        Ok(_) => check_quarantine(&quarantine)?,
    }
    let entries = fs::read_dir(&quarantine).map_err(|e| Error::io(&quarantine, e))?;
    let mut held = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&quarantine, e))?;
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "held") {
            continue;
        }
        let meta = entry.metadata().map_err(|e| Error::io(&path, e))?;
        if !meta.is_file() {
            continue;
        }
        held.push(HeldFile {
            path,
            size: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    held.sort_by(|a, b| a.modified.cmp(&b.modified).then(a.path.cmp(&b.path)));
    Ok(held)
}

/// Deletes the held files in the quarantine of `dir`; returns what was deleted.
pub fn purge_held(dir: &Path) -> Result<Vec<HeldFile>> {
    let held = held_files(dir)?;
    for file in &held {
        remove_if_there(&file.path)?;
    }
    Ok(held)
}

/// Creates the quarantine folder of `dir` (0700), or checks the one that is there.
fn open_quarantine(dir: &Path) -> Result<PathBuf> {
    let quarantine = safe_join(dir, &safe_file_name(QUARANTINE_DIR)?)?;
    // Private to its owner: what waits in it has not been checked yet.
    let mut create = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut create, 0o700);
    match create.create(&quarantine) {
        Ok(()) => Ok(quarantine),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            check_quarantine(&quarantine)?;
            Ok(quarantine)
        }
        Err(e) => Err(Error::io(&quarantine, e)),
    }
}

/// Refuses a quarantine folder that is not a real folder, belongs to another user, or that
/// others may enter (any permission bit for group or others).
fn check_quarantine(quarantine: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(quarantine).map_err(|e| Error::io(quarantine, e))?;
    if !meta.is_dir() {
        return Err(Error::Quarantine(format!(
            "{} is not a folder (a symlink or a file); remove it",
            quarantine.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(Error::Quarantine(format!(
                "{} belongs to user {}, not to this user ({me}); refusing to use it",
                quarantine.display(),
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Quarantine(format!(
                "{} is open to other users (mode {mode:o}); make it 0700 or remove it",
                quarantine.display()
            )));
        }
    }
    Ok(())
}

/// Bytes in the regular files of the quarantine (partial, held, state).
fn quarantine_usage(quarantine: &Path) -> Result<u64> {
    let entries = fs::read_dir(quarantine).map_err(|e| Error::io(quarantine, e))?;
    let mut used = 0u64;
    for entry in entries.flatten() {
        if let Ok(meta) = entry.metadata() {
            if meta.is_file() {
                used = used.saturating_add(meta.len());
            }
        }
    }
    Ok(used)
}

/// Deletes partial files (and their resume state) not written for `expiry`. A partial file
/// that a receiver holds locked is being written and stays, however old.
fn expire_partials(quarantine: &Path, expiry: std::time::Duration, now: SystemTime) {
    let Ok(entries) = fs::read_dir(quarantine) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "part") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok());
        if !meta.is_file() || age.is_none_or(|age| age < expiry) {
            continue;
        }
        let Ok(file) = open_no_follow(&path, OpenOptions::new().write(true)) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        tracing::info!(file = %path.display(), "deleting the partial file of an abandoned transfer");
        let _ = remove_if_there(&path);
        let _ = remove_if_there(&path.with_extension("json"));
        drop(file);
    }
}

/// Bytes free for this user on the file system of `path`; `None` where it cannot be known.
fn free_space(path: &Path) -> Result<Option<u64>> {
    #[cfg(unix)]
    {
        let stat = rustix::fs::statvfs(path).map_err(|e| Error::io(path, e.into()))?;
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

/// Opens `path` with `options`, failing if its last component is a symlink (created files
/// are private to their owner).
fn open_no_follow(path: &Path, options: &mut OpenOptions) -> Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .mode(0o600);
    }
    options.open(path).map_err(|e| {
        if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            Error::UnsafeName {
                name: path.display().to_string(),
                reason: "a symlink where a file of the quarantine belongs".into(),
            }
        } else {
            Error::io(path, e)
        }
    })
}

/// Renames `from` to `to` unless `to` exists: `Ok(true)` when moved, `Ok(false)` when this
/// system cannot rename without replacing, an `AlreadyExists` error when `to` exists.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::EXIST => {
                Err(std::io::Error::from(ErrorKind::AlreadyExists))
            }
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (from, to);
        Ok(false)
    }
}

/// Copies `from` into a new file `to` (failing if `to` exists), flushed to disk.
fn copy_new(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut source = File::open(from)?;
    let mut target = OpenOptions::new().write(true).create_new(true).open(to)?;
    let copied = std::io::copy(&mut source, &mut target).and_then(|_| target.sync_all());
    if copied.is_err() {
        let _ = fs::remove_file(to);
    }
    copied
}

fn remove_if_there(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallbacks_of_release_never_replace_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("from"), dir.path().join("to"));
        fs::write(&from, b"arriving").unwrap();
        fs::write(&to, b"mine").unwrap();
        let renamed = rename_no_replace(&from, &to);
        assert!(
            matches!(&renamed, Err(e) if e.kind() == ErrorKind::AlreadyExists)
                || matches!(renamed, Ok(false)),
            "{renamed:?}"
        );
        let copied = copy_new(&from, &to).unwrap_err();
        assert_eq!(copied.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&to).unwrap(), b"mine");
        assert_eq!(fs::read(&from).unwrap(), b"arriving");
        let free = dir.path().join("free");
        copy_new(&from, &free).unwrap();
        assert_eq!(fs::read(&free).unwrap(), b"arriving");
    }

    #[test]
    fn streaming_manifest_equals_the_in_memory_one() {
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 251) as u8).collect();
        for bs in [4096, 65536, 100_000, 128 * 1024] {
            let streamed = hash_reader(&data[..], bs).unwrap();
            assert_eq!(streamed, Manifest::from_bytes(&data, bs), "block size {bs}");
        }
    }
}
