//! The sending side: answers the receiver's requests, one block at a time, in order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::message::{Message, HASHES_PER_PART, MAX_CHUNK, PROTOCOL_VERSION};
use super::{Hash256, Manifest};
use crate::{Error, Result};

/// The most block requests a sender queues; a receiver asking for more is misbehaving.
const MAX_QUEUED: usize = 4096;
/// How long the sender waits for any message from a receiver that has begun, before failing.
/// Long, because the receiver is silent while its virus scanner reads a large file.
pub const SENDER_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// What the shell must do or show for a [`Sender`]; drain with [`Sender::poll_event`].
#[derive(Debug)]
pub enum SenderEvent {
    /// Read `len` bytes at `offset` of the file and pass them to [`Sender::block_read`].
    ReadBlock {
        /// The block index.
        block: u32,
        /// Where the block starts in the file.
        offset: u64,
        /// The block length.
        len: u32,
    },
    /// The receiver has the whole file and accepted it.
    Done,
    /// The receiver stopped the transfer.
    Cancelled {
        /// The receiver's reason (declined, held by its virus scanner, ...).
        reason: String,
    },
    /// The transfer failed; the receiver has been told why.
    Failed(Error),
}

/// The sending side of one file transfer: answers [`Message::Begin`] with the manifest and each
/// [`Message::Request`] with the block's data chunks, in the order the requests came.
///
/// It holds at most one block in memory: it asks the shell to read the next block
/// ([`SenderEvent::ReadBlock`]) only once the current one is sent. Pull messages with
/// [`poll_transmit`](Self::poll_transmit) while the data channel has room, and drain
/// [`poll_event`](Self::poll_event) and `poll_transmit` until both are empty.
pub struct Sender {
    manifest: Manifest,
    queue: VecDeque<u32>,
    reading: Option<u32>,
    current: Option<(u32, Vec<u8>, usize)>,
    transmit: VecDeque<Message>,
    events: VecDeque<SenderEvent>,
    last_heard: Option<Instant>,
    closed: bool,
    blocks_served: u64,
}

impl Sender {
    /// A sender for the file `manifest` describes (see `files::manifest_of`).
    pub fn new(manifest: Manifest) -> Self {
        Sender {
            manifest,
            queue: VecDeque::new(),
            reading: None,
            current: None,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            last_heard: None,
            closed: false,
            blocks_served: 0,
        }
    }

    /// The manifest being served.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Handles one message from the receiver. A malformed or misplaced message is dropped and
    /// returned as [`Error::Protocol`]; the transfer goes on.
    pub fn handle_message(&mut self, now: Instant, msg: Message) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.last_heard = Some(now);
        match msg {
            Message::Begin { version } if version != PROTOCOL_VERSION => {
                self.fail(Error::Protocol(format!(
                    "the receiver speaks version {version}, this side {PROTOCOL_VERSION}"
                )));
            }
            Message::Begin { .. } => self.queue_manifest(),
            Message::Request { block } => {
                if self.manifest.block_range(block).is_none() {
                    return Err(Error::Protocol(format!("request for block {block}")));
                }
                if self.queue.len() >= MAX_QUEUED {
                    return Err(Error::Protocol("too many requests queued".into()));
                }
                self.queue.push_back(block);
                self.next_read();
            }
            Message::Done => {
                self.close();
                self.events.push_back(SenderEvent::Done);
            }
            Message::Cancel { reason } => {
                self.close();
                self.events.push_back(SenderEvent::Cancelled { reason });
            }
            other => {
                return Err(Error::Protocol(format!(
                    "unexpected message to a sender: {other:?}"
                )))
            }
        }
        Ok(())
    }

    fn queue_manifest(&mut self) {
        let m = &self.manifest;
        let mut parts = m.block_hashes.chunks(HASHES_PER_PART);
        let mut first = 0u32;
        loop {
            let hashes = parts.next().unwrap_or_default();
            self.transmit.push_back(Message::Manifest {
                file_size: m.file_size,
                block_size: m.block_size,
                sha256: m.sha256,
                first,
                hashes: hashes.to_vec(),
            });
            first += hashes.len() as u32;
            if first as usize >= m.block_hashes.len() {
                break;
            }
        }
    }

    fn next_read(&mut self) {
        if self.reading.is_some() || self.current.is_some() {
            return;
        }
        while let Some(block) = self.queue.pop_front() {
            if let Some((offset, len)) = self.manifest.block_range(block) {
                self.reading = Some(block);
                self.events
                    .push_back(SenderEvent::ReadBlock { block, offset, len });
                return;
            }
        }
    }

    /// Gives the bytes read for a [`SenderEvent::ReadBlock`]. If they no longer match the
    /// manifest the file changed since it was offered, and the transfer fails. An `Err` means
    /// no read of `block` was asked for.
    pub fn block_read(&mut self, block: u32, data: &[u8]) -> Result<()> {
        if self.reading != Some(block) {
            return Err(Error::Protocol(format!("block {block} was not asked for")));
        }
        self.reading = None;
        if self.manifest.block_hashes.get(block as usize) != Some(&Hash256::of(data)) {
            self.fail(Error::Integrity(format!(
                "block {block} changed since the file was offered"
            )));
            return Ok(());
        }
        self.blocks_served += 1;
        self.current = Some((block, data.to_vec(), 0));
        Ok(())
    }

    /// The next message for the receiver.
    pub fn poll_transmit(&mut self) -> Option<Message> {
        if let Some(m) = self.transmit.pop_front() {
            return Some(m);
        }
        let (block, data, pos) = self.current.as_mut()?;
        let start = *pos;
        let end = (start + MAX_CHUNK).min(data.len());
        let msg = Message::Data {
            block: *block,
            offset: start as u32,
            bytes: data.get(start..end).unwrap_or_default().to_vec(),
        };
        *pos = end;
        if end >= data.len() {
            self.current = None;
            self.next_read();
        }
        Some(msg)
    }

    /// The next thing the shell must do or show.
    pub fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called: the idle limit
    /// ([`SENDER_IDLE_TIMEOUT`]) once the receiver has begun.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.closed {
            true => None,
            false => self.last_heard.map(|t| t + SENDER_IDLE_TIMEOUT),
        }
    }

    /// Handles the passing of time: fails the transfer when the receiver went silent.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.fail(Error::Protocol(format!(
                "no message from the receiver for {} s",
                SENDER_IDLE_TIMEOUT.as_secs()
            )));
        }
    }

    /// Stops the transfer and tells the receiver why.
    pub fn cancel(&mut self, reason: &str) {
        if !self.closed {
            self.close();
            self.transmit.push_back(Message::Cancel {
                reason: reason.to_owned(),
            });
        }
    }

    fn fail(&mut self, err: Error) {
        self.cancel(&err.to_string());
        self.events.push_back(SenderEvent::Failed(err));
    }

    fn close(&mut self) {
        self.closed = true;
        self.transmit.clear();
        self.queue.clear();
        self.reading = None;
        self.current = None;
    }

    /// How many blocks were read and sent (a block sent twice counts twice).
    pub fn blocks_served(&self) -> u64 {
        self.blocks_served
    }

    /// True once the transfer is over (done, cancelled or failed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }
}
