//! The receiving side: asks for the manifest, requests blocks within a window, verifies them.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::message::{Message, PROTOCOL_VERSION};
use super::{block_range, Hash256, Manifest, Offer, MAX_BLOCKS, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE};
use crate::{Error, Result};

/// Limits and timers of a [`Receiver`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// The largest file accepted, in bytes; a bigger offer is refused before anything is written.
    pub max_size: u64,
    /// The most bytes of blocks requested but not yet written (in flight, buffered, or handed to
    /// the shell): the receiver's memory bound.
    pub window_bytes: u64,
    /// How long the link may stay silent with blocks outstanding before they are requested again.
    pub request_timeout: Duration,
    /// How long without any message from the sender before the transfer fails.
    pub idle_timeout: Duration,
    /// How many times one block may fail its SHA-256 check before the transfer fails.
    pub max_block_failures: u32,
    /// The most bytes the quarantine folder may hold, partial and held files together,
    /// counting the offer being accepted.
    pub quarantine_quota: u64,
    /// The bytes that must stay free on the disk after an accepted offer is written.
    pub free_margin: u64,
    /// A partial file left by an abandoned transfer is deleted when it has not been written
    /// for this long (looked at whenever an offer is accepted into its folder).
    pub partial_expiry: Duration,
}

impl Default for ReceiverConfig {
    /// 64 GiB, a 4 MiB window, 10 s request timeout, 60 s idle timeout, 3 failures per block,
    /// a 10 GiB quarantine quota, 256 MiB kept free on the disk, partial files kept 7 days.
    fn default() -> Self {
        ReceiverConfig {
            max_size: 64 << 30,
            window_bytes: 4 << 20,
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_block_failures: 3,
            quarantine_quota: 10 << 30,
            free_margin: 256 << 20,
            partial_expiry: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What a receiver must remember to resume: which blocks of which manifest are verified and
/// written. Saved as JSON next to the partial file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeState {
    /// The whole-file SHA-256 of the offer.
    pub sha256: Hash256,
    /// [`Manifest::id`] of the manifest the blocks belong to.
    pub manifest_id: Hash256,
    /// The number of blocks in that manifest.
    pub block_count: u32,
    /// Verified and written blocks, as half-open ranges `[start, end)`.
    pub verified: Vec<(u32, u32)>,
}

impl ResumeState {
    /// How many blocks are verified.
    pub fn verified_blocks(&self) -> u64 {
        self.verified
            .iter()
            .map(|&(a, b)| u64::from(b.saturating_sub(a)))
            .sum()
    }
}

/// What the shell must do or show for a [`Receiver`]; drain with [`Receiver::poll_event`].
#[derive(Debug)]
pub enum ReceiverEvent {
    /// A verified block: write `data` at `offset` of the partial file, then call
    /// [`Receiver::block_written`].
    Write {
        /// The block index.
        block: u32,
        /// Where the block starts in the file.
        offset: u64,
        /// The block's bytes, SHA-256 checked.
        data: Vec<u8>,
    },
    /// Every block is verified and written: check the whole file, scan it, release it, then
    /// call [`Receiver::finish`] or [`Receiver::cancel`].
    Complete,
    /// The sender stopped the transfer.
    Cancelled {
        /// The sender's reason.
        reason: String,
    },
    /// The transfer failed; the sender has been told why.
    Failed(Error),
}

/// Counters a [`Receiver`] keeps, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Blocks verified (including those known from the resume state).
    pub blocks_verified: u64,
    /// Blocks taken from the resume state: verified in an earlier transfer, not requested in
    /// this one (0 when the state was for another manifest).
    pub blocks_resumed: u64,
    /// Blocks that failed their SHA-256 check.
    pub hash_failures: u64,
    /// Blocks requested again after a gap or a timeout.
    pub rerequests: u64,
    /// Chunks that were dropped: duplicates, or for blocks not outstanding.
    pub stale_chunks: u64,
    /// The most block bytes held at once.
    pub peak_buffered: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Missing,
    Requested,
    Writing,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Manifest,
    Blocks,
    Complete,
    Closed,
}

/// A block requested and not yet complete; chunks fill `buf` in order.
struct Pending {
    block: u32,
    len: u32,
    buf: Vec<u8>,
}

/// The manifest as its parts arrive.
struct PartialManifest {
    block_size: u32,
    hashes: Vec<Option<Hash256>>,
    missing: usize,
}

/// The receiving side of one file transfer, created once the user accepted the [`Offer`].
///
/// Feed it every message from the sender with [`handle_message`](Self::handle_message), send
/// what [`poll_transmit`](Self::poll_transmit) returns, act on
/// [`poll_event`](Self::poll_event), and call [`handle_timeout`](Self::handle_timeout) at
/// [`poll_timeout`](Self::poll_timeout). It never holds more than
/// [`ReceiverConfig::window_bytes`] of block data. It relies on the sender answering requests
/// in order, one whole block at a time, over an ordered channel.
pub struct Receiver {
    offer: Offer,
    config: ReceiverConfig,
    phase: Phase,
    now: Instant,
    resume: Option<ResumeState>,
    partial: Option<PartialManifest>,
    manifest: Option<Manifest>,
    blocks: Vec<Block>,
    cursor: u32,
    outstanding: VecDeque<Pending>,
    writing: usize,
    failures: HashMap<u32, u32>,
    buffered: u64,
    stats: ReceiverStats,
    transmit: VecDeque<Message>,
    events: VecDeque<ReceiverEvent>,
    last_heard: Instant,
    last_progress: Instant,
}

impl Receiver {
    /// A receiver for an accepted offer, resuming from `resume` when given (a state for another
    /// file is ignored). Refuses an offer over [`ReceiverConfig::max_size`] with
    /// [`Error::TooLarge`]. Its first transmit asks the sender for the manifest.
    pub fn new(
        offer: Offer,
        config: ReceiverConfig,
        resume: Option<ResumeState>,
        now: Instant,
    ) -> Result<Self> {
        if offer.size > config.max_size {
            return Err(Error::TooLarge {
                size: offer.size,
                limit: config.max_size,
            });
        }
        if config.window_bytes < u64::from(MIN_BLOCK_SIZE) {
            return Err(Error::Config(format!(
                "a window of {} bytes is smaller than a block",
                config.window_bytes
            )));
        }
        let resume = resume.filter(|r| r.sha256 == offer.sha256);
        let mut transmit = VecDeque::new();
        transmit.push_back(Message::Begin {
            version: PROTOCOL_VERSION,
        });
        Ok(Receiver {
            offer,
            config,
            phase: Phase::Manifest,
            now,
            resume,
            partial: None,
            manifest: None,
            blocks: Vec::new(),
            cursor: 0,
            outstanding: VecDeque::new(),
            writing: 0,
            failures: HashMap::new(),
            buffered: 0,
            stats: ReceiverStats::default(),
            transmit,
            events: VecDeque::new(),
            last_heard: now,
            last_progress: now,
        })
    }

    /// The offer this receiver accepted.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// Handles one message from the sender. A malformed or misplaced message is dropped and
    /// returned as [`Error::Protocol`]; the transfer goes on. Failures of the transfer itself
    /// come out of [`poll_event`](Self::poll_event).
    pub fn handle_message(&mut self, now: Instant, msg: Message) -> Result<()> {
        self.now = now;
        self.last_heard = now;
        if matches!(self.phase, Phase::Closed) {
            return Ok(());
        }
        match msg {
            Message::Manifest {
                file_size,
                block_size,
                sha256,
                first,
                hashes,
            } => self.on_manifest(file_size, block_size, sha256, first, hashes),
            Message::Data {
                block,
                offset,
                bytes,
            } => self.on_data(block, offset, bytes),
            Message::Cancel { reason } => {
                self.close();
                self.events.push_back(ReceiverEvent::Cancelled { reason });
                Ok(())
            }
            other => Err(Error::Protocol(format!(
                "unexpected message to a receiver: {other:?}"
            ))),
        }
    }

    fn on_manifest(
        &mut self,
        file_size: u64,
        block_size: u32,
        sha256: Hash256,
        first: u32,
        hashes: Vec<Hash256>,
    ) -> Result<()> {
        if self.phase != Phase::Manifest {
            return Ok(());
        }
        if file_size != self.offer.size || sha256 != self.offer.sha256 {
            self.fail(Error::Integrity(format!(
                "the manifest ({file_size} bytes, SHA-256 {sha256}) disagrees with the offer \
                 ({} bytes, SHA-256 {})",
                self.offer.size, self.offer.sha256
            )));
            return Ok(());
        }
        let partial = match &mut self.partial {
            Some(p) => {
                if p.block_size != block_size {
                    return Err(Error::Protocol("manifest parts disagree".into()));
                }
                p
            }
            None => {
                let usable = (MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&block_size)
                    && u64::from(block_size) <= self.config.window_bytes;
                let count = Manifest::blocks_for(file_size, block_size)
                    .filter(|&n| usable && n <= MAX_BLOCKS);
                let Some(count) = count else {
                    self.fail(Error::Protocol(format!(
                        "unusable block size {block_size} for {file_size} bytes"
                    )));
                    return Ok(());
                };
                self.partial.insert(PartialManifest {
                    block_size,
                    hashes: vec![None; count as usize],
                    missing: count as usize,
                })
            }
        };
        let start = first as usize;
        let slots = partial
            .hashes
            .get_mut(start..start.saturating_add(hashes.len()))
            .ok_or_else(|| Error::Protocol(format!("manifest part at {first} past the end")))?;
        for (slot, h) in slots.iter_mut().zip(hashes) {
            if slot.is_none() {
                partial.missing -= 1;
            }
            *slot = Some(h);
        }
        if partial.missing == 0 {
            let manifest = Manifest {
                file_size,
                block_size,
                sha256,
                block_hashes: partial
                    .hashes
                    .iter()
                    .map(|h| h.unwrap_or_default())
                    .collect(),
            };
            self.partial = None;
            self.start_blocks(manifest);
        }
        Ok(())
    }

    fn start_blocks(&mut self, manifest: Manifest) {
        self.blocks = vec![Block::Missing; manifest.block_hashes.len()];
        if let Some(r) = self.resume.take() {
            if r.manifest_id == manifest.id() && r.block_count as usize == self.blocks.len() {
                for &(a, b) in &r.verified {
                    for s in self.blocks.iter_mut().take(b as usize).skip(a as usize) {
                        *s = Block::Done;
                    }
                }
            } else {
                tracing::debug!("resume state is for another manifest; starting over");
            }
        }
        self.stats.blocks_verified =
            self.blocks.iter().filter(|b| **b == Block::Done).count() as u64;
        self.stats.blocks_resumed = self.stats.blocks_verified;
        self.manifest = Some(manifest);
        self.phase = Phase::Blocks;
        self.last_progress = self.now;
        self.fill_window();
        self.check_complete();
    }

    fn on_data(&mut self, block: u32, offset: u32, bytes: Vec<u8>) -> Result<()> {
        let Some(pos) = self.outstanding.iter().position(|p| p.block == block) else {
            self.stats.stale_chunks += 1;
            return Ok(());
        };
        let Some(p) = self.outstanding.get_mut(pos) else {
            return Ok(());
        };
        let end = u64::from(offset) + bytes.len() as u64;
        if end > u64::from(p.len) {
            return Err(Error::Protocol(format!(
                "chunk {offset}..{end} past the end of block {block} ({} bytes)",
                p.len
            )));
        }
        self.last_progress = self.now;
        if offset as usize != p.buf.len() {
            // A duplicate, or a gap: keep nothing partial; the block is requested again once
            // the sender has moved on, or at the timeout.
            self.stats.stale_chunks += 1;
            if offset as usize > p.buf.len() && p.buf.capacity() > 0 {
                self.buffered -= u64::from(p.len);
                p.buf = Vec::new();
            }
            return Ok(());
        }
        if p.buf.capacity() == 0 {
            p.buf = Vec::with_capacity(p.len as usize);
            self.buffered += u64::from(p.len);
            self.stats.peak_buffered = self.stats.peak_buffered.max(self.buffered);
        }
        p.buf.extend_from_slice(&bytes);
        // The sender answers in order: blocks requested before this one are finished with.
        for _ in 0..pos {
            if let Some(earlier) = self.outstanding.pop_front() {
                self.rerequest(earlier, true);
            }
        }
        let done = self
            .outstanding
            .front()
            .is_some_and(|p| p.buf.len() == p.len as usize);
        if done {
            if let Some(p) = self.outstanding.pop_front() {
                self.block_complete(p);
            }
        }
        Ok(())
    }

    fn block_complete(&mut self, p: Pending) {
        let expected = self
            .manifest
            .as_ref()
            .and_then(|m| m.block_hashes.get(p.block as usize));
        if expected == Some(&Hash256::of(&p.buf)) {
            self.set(p.block, Block::Writing);
            self.writing += 1;
            let offset = u64::from(p.block) * u64::from(self.block_size());
            self.events.push_back(ReceiverEvent::Write {
                block: p.block,
                offset,
                data: p.buf,
            });
            return;
        }
        self.stats.hash_failures += 1;
        let n = self.failures.entry(p.block).or_insert(0);
        *n += 1;
        if *n >= self.config.max_block_failures {
            let n = *n;
            self.fail(Error::Integrity(format!(
                "block {} failed its SHA-256 check {n} times",
                p.block
            )));
            return;
        }
        tracing::debug!(
            block = p.block,
            "block failed its SHA-256 check; requesting it again"
        );
        self.rerequest(p, false);
    }

    /// Drops what `p` holds and asks for its block again; `lost` counts it as a re-request.
    fn rerequest(&mut self, mut p: Pending, lost: bool) {
        self.release(&mut p);
        if lost {
            self.stats.rerequests += 1;
        }
        self.transmit.push_back(Message::Request { block: p.block });
        self.outstanding.push_back(p);
    }

    /// Requests missing blocks while the window has room.
    fn fill_window(&mut self) {
        if self.phase != Phase::Blocks {
            return;
        }
        let block_size = u64::from(self.block_size());
        let slots = (self.config.window_bytes / block_size.max(1)).max(1) as usize;
        while self.outstanding.len() + self.writing < slots {
            let Some(block) = (self.cursor..self.blocks.len() as u32)
                .find(|&b| self.blocks.get(b as usize) == Some(&Block::Missing))
            else {
                return;
            };
            self.cursor = block + 1;
            let Some((_, len)) = block_range(self.offer.size, self.block_size(), block) else {
                return;
            };
            self.set(block, Block::Requested);
            self.outstanding.push_back(Pending {
                block,
                len,
                buf: Vec::new(),
            });
            self.transmit.push_back(Message::Request { block });
        }
    }

    fn block_size(&self) -> u32 {
        self.manifest.as_ref().map_or(1, |m| m.block_size)
    }

    fn set(&mut self, block: u32, state: Block) {
        if let Some(s) = self.blocks.get_mut(block as usize) {
            *s = state;
        }
    }

    fn check_complete(&mut self) {
        if self.phase == Phase::Blocks && self.blocks.iter().all(|b| *b == Block::Done) {
            self.phase = Phase::Complete;
            self.events.push_back(ReceiverEvent::Complete);
        }
    }

    /// Tells the receiver that the shell wrote `block` (from [`ReceiverEvent::Write`]); its
    /// memory is released, it counts as verified in the [`resume_state`](Self::resume_state),
    /// and the next block is requested. An `Err` means `block` was not waiting to be written.
    pub fn block_written(&mut self, block: u32) -> Result<()> {
        if self.blocks.get(block as usize) != Some(&Block::Writing) {
            return Err(Error::Protocol(format!(
                "block {block} was not waiting to be written"
            )));
        }
        self.set(block, Block::Done);
        self.writing -= 1;
        self.buffered -= block_range(self.offer.size, self.block_size(), block)
            .map_or(0, |(_, len)| u64::from(len));
        self.stats.blocks_verified += 1;
        self.fill_window();
        self.check_complete();
        Ok(())
    }

    /// The next message for the sender.
    pub fn poll_transmit(&mut self) -> Option<Message> {
        self.transmit.pop_front()
    }

    /// The next thing the shell must do or show.
    pub fn poll_event(&mut self) -> Option<ReceiverEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.last_heard + self.config.idle_timeout;
        match self.phase {
            Phase::Manifest => Some(idle.min(self.last_progress + self.config.request_timeout)),
            Phase::Blocks if !self.outstanding.is_empty() => {
                Some(idle.min(self.last_progress + self.config.request_timeout))
            }
            _ => None,
        }
    }

    /// Handles the passing of time: requests again what went unanswered, and fails the
    /// transfer when the sender has been silent for [`ReceiverConfig::idle_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        let waiting = match self.phase {
            Phase::Manifest => true,
            Phase::Blocks => !self.outstanding.is_empty(),
            _ => false,
        };
        if !waiting {
            return;
        }
        if now >= self.last_heard + self.config.idle_timeout {
            self.fail(Error::Protocol(format!(
                "no message from the sender for {} s",
                self.config.idle_timeout.as_secs()
            )));
            return;
        }
        if now < self.last_progress + self.config.request_timeout {
            return;
        }
        self.last_progress = now;
        if self.phase == Phase::Manifest {
            self.transmit.push_back(Message::Begin {
                version: PROTOCOL_VERSION,
            });
            return;
        }
        for _ in 0..self.outstanding.len() {
            if let Some(p) = self.outstanding.pop_front() {
                self.rerequest(p, true);
            }
        }
    }

    /// Ends a complete transfer: the file was checked and released (or the user kept it), and
    /// the sender is told it arrived.
    pub fn finish(&mut self) {
        if self.phase != Phase::Closed {
            self.close();
            self.transmit.push_back(Message::Done);
        }
    }

    /// Stops the transfer and tells the sender why (the user cancelled, the scanner held the
    /// file, the disk is full, ...).
    pub fn cancel(&mut self, reason: &str) {
        if self.phase != Phase::Closed {
            self.close();
            self.transmit.push_back(Message::Cancel {
                reason: reason.to_owned(),
            });
        }
    }

    fn fail(&mut self, err: Error) {
        tracing::debug!(%err, "transfer failed");
        self.cancel(&err.to_string());
        self.events.push_back(ReceiverEvent::Failed(err));
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.transmit.clear();
        while let Some(mut p) = self.outstanding.pop_front() {
            self.release(&mut p);
        }
    }

    /// Frees the buffer of `p`, if it has one.
    fn release(&mut self, p: &mut Pending) {
        if p.buf.capacity() > 0 {
            self.buffered -= u64::from(p.len);
            p.buf = Vec::new();
        }
    }

    /// True once every block is verified and written.
    pub fn is_complete(&self) -> bool {
        self.manifest.is_some() && self.blocks.iter().all(|b| *b == Block::Done)
    }

    /// Bytes of block data held now (buffers and blocks handed out but not written).
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered
    }

    /// The counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// What to save to resume later: `None` until the manifest is known (unless the receiver
    /// was built from a resume state, which is then returned unchanged).
    pub fn resume_state(&self) -> Option<ResumeState> {
        let Some(manifest) = &self.manifest else {
            return self.resume.clone();
        };
        let mut verified = Vec::new();
        let mut start = None;
        for (i, b) in self.blocks.iter().chain([&Block::Missing]).enumerate() {
            match (b, start) {
                (Block::Done, None) => start = Some(i as u32),
                (Block::Done, Some(_)) => {}
                (_, Some(s)) => {
                    verified.push((s, i as u32));
                    start = None;
                }
                (_, None) => {}
            }
        }
        Some(ResumeState {
            sha256: self.offer.sha256,
            manifest_id: manifest.id(),
            block_count: self.blocks.len() as u32,
            verified,
        })
    }
}
