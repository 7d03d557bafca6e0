//! The file-system side of a transfer: hashing and reading the offered file, and the
//! quarantine an arriving file lives in until it is whole, checked and scanned.
//!
//! An arriving file is written to `<dir>/.duet-quarantine/<sha256>.part`, its resume state to
//! `<sha256>.json` beside it; nothing reaches `<dir>` itself until [`Incoming::finish`] has
//! checked the whole file against the offered SHA-256 and the scanner passed it. Nothing is
//! written at all before [`Incoming::accept`], which is how the user's acceptance starts a
//! transfer, and which refuses an offer over the size limit first. Memory stays bounded: files
//! are hashed through a fixed buffer and written one verified block at a time.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// The scanner flagged the file; it stays in quarantine at `path` and never reaches the
    /// target folder. Tell the sender with `Receiver::cancel`.
    Held {
        /// The signature the scanner named.
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
    /// `config.max_size` (before anything is written), then opens (or reopens, to resume) its
    /// partial file in the quarantine folder, and returns it with the [`Receiver`] to drive.
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
        let quarantine = safe_join(dir, &safe_file_name(QUARANTINE_DIR)?)?;
        // Private to its owner: what waits in it has not been checked yet.
        let mut create = fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut create, 0o700);
        match create.create(&quarantine) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && quarantine.is_dir() => {}
            Err(e) => return Err(Error::io(&quarantine, e)),
        }
        let hex = offer.sha256.to_hex();
        let part = quarantine.join(format!("{hex}.part"));
        let state = quarantine.join(format!("{hex}.json"));
        let resuming = part.is_file();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| Error::io(&part, e))?;
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
        fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
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
            if let Verdict::Infected { signature } = scanner.scan(&self.part)? {
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

    /// Moves the partial file into the target folder without replacing anything there.
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
                // No hard links on this file system: a rename, checked just before.
                Err(_) => {
                    fs::rename(&self.part, &target).map_err(|e| Error::io(&target, e))?;
                    return Ok(target);
                }
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
    let bytes = fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(state) => Some(state),
        Err(e) => {
            tracing::debug!(path = %path.display(), %e, "unreadable resume state; starting over");
            None
        }
    }
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
    fn streaming_manifest_equals_the_in_memory_one() {
        let data: Vec<u8> = (0..300_001u32).map(|i| (i * 7 % 251) as u8).collect();
        for bs in [4096, 65536, 100_000, 128 * 1024] {
            let streamed = hash_reader(&data[..], bs).unwrap();
            assert_eq!(streamed, Manifest::from_bytes(&data, bs), "block size {bs}");
        }
    }
}
