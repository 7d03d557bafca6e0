//! The transfer's wire messages and their compact binary encoding.
//!
//! Every message is one data-channel message: a tag byte, then big-endian fields. No message
//! is longer than [`MAX_MESSAGE`] bytes.

use super::Hash256;
use crate::{Error, Result};

/// The largest encoded message, in bytes: what one data-channel message carries best.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// The version sent in [`Message::Begin`]; a sender refuses a version it does not speak.
pub const PROTOCOL_VERSION: u8 = 1;

const DATA_HEADER: usize = 1 + 4 + 4;
const MANIFEST_HEADER: usize = 1 + 8 + 4 + 32 + 4 + 2;
/// The most file bytes one [`Message::Data`] carries.
pub const MAX_CHUNK: usize = MAX_MESSAGE - DATA_HEADER;
/// The most block hashes one [`Message::Manifest`] part carries.
pub(crate) const HASHES_PER_PART: usize = (MAX_MESSAGE - MANIFEST_HEADER) / 32;
/// The longest reason a [`Message::Cancel`] carries, in bytes.
const MAX_REASON: usize = 1024;

const TAG_BEGIN: u8 = 1;
const TAG_MANIFEST: u8 = 2;
const TAG_REQUEST: u8 = 3;
const TAG_DATA: u8 = 4;
const TAG_DONE: u8 = 5;
const TAG_CANCEL: u8 = 6;

/// One message between the two sides of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Receiver to sender: the offer was accepted, send the manifest.
    Begin {
        /// The receiver's [`PROTOCOL_VERSION`].
        version: u8,
    },
    /// Sender to receiver: one part of the manifest, holding the block hashes from `first` on.
    Manifest {
        /// The file size in bytes.
        file_size: u64,
        /// The block size in bytes.
        block_size: u32,
        /// The whole-file SHA-256.
        sha256: Hash256,
        /// The index of the first block hash in this part.
        first: u32,
        /// Block hashes `first..first + hashes.len()`.
        hashes: Vec<Hash256>,
    },
    /// Receiver to sender: send block `block`.
    Request {
        /// The block index.
        block: u32,
    },
    /// Sender to receiver: bytes of a block.
    Data {
        /// The block index.
        block: u32,
        /// Where the bytes start within the block.
        offset: u32,
        /// At most [`MAX_CHUNK`] bytes.
        bytes: Vec<u8>,
    },
    /// Receiver to sender: the whole file arrived and was accepted; the transfer is over.
    Done,
    /// Either side: the transfer stops, and why (shown to the other user).
    Cancel {
        /// A short reason, at most 1 KiB.
        reason: String,
    },
}

impl Message {
    /// Appends the encoding of this message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Begin { version } => out.extend_from_slice(&[TAG_BEGIN, *version]),
            Message::Manifest {
                file_size,
                block_size,
                sha256,
                first,
                hashes,
            } => {
                out.push(TAG_MANIFEST);
                out.extend_from_slice(&file_size.to_be_bytes());
                out.extend_from_slice(&block_size.to_be_bytes());
                out.extend_from_slice(&sha256.0);
                out.extend_from_slice(&first.to_be_bytes());
                let n = hashes.len().min(HASHES_PER_PART);
                out.extend_from_slice(&(n as u16).to_be_bytes());
                for h in hashes.iter().take(n) {
                    out.extend_from_slice(&h.0);
                }
            }
            Message::Request { block } => {
                out.push(TAG_REQUEST);
                out.extend_from_slice(&block.to_be_bytes());
            }
            Message::Data {
                block,
                offset,
                bytes,
            } => {
                out.push(TAG_DATA);
                out.extend_from_slice(&block.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&bytes[..bytes.len().min(MAX_CHUNK)]);
            }
            Message::Done => out.push(TAG_DONE),
            Message::Cancel { reason } => {
                out.push(TAG_CANCEL);
                let mut end = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                out.extend_from_slice(&reason.as_bytes()[..end]);
            }
        }
    }

    /// The encoding of this message in a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one message. Anything malformed is an [`Error::Protocol`] naming the problem.
    pub fn decode(buf: &[u8]) -> Result<Message> {
        if buf.len() > MAX_MESSAGE {
            return Err(bad(format!(
                "message of {} bytes is over {MAX_MESSAGE}",
                buf.len()
            )));
        }
        let mut r = Reader(buf);
        let msg = match r.u8()? {
            TAG_BEGIN => Message::Begin { version: r.u8()? },
            TAG_MANIFEST => {
                let file_size = r.u64()?;
                let block_size = r.u32()?;
                let sha256 = r.hash()?;
                let first = r.u32()?;
                let n = usize::from(r.u16()?);
                if n > HASHES_PER_PART {
                    return Err(bad(format!("manifest part with {n} hashes")));
                }
                let hashes = (0..n).map(|_| r.hash()).collect::<Result<Vec<_>>>()?;
                Message::Manifest {
                    file_size,
                    block_size,
                    sha256,
                    first,
                    hashes,
                }
            }
            TAG_REQUEST => Message::Request { block: r.u32()? },
            TAG_DATA => {
                let block = r.u32()?;
                let offset = r.u32()?;
                let bytes = r.rest().to_vec();
                if bytes.is_empty() || bytes.len() > MAX_CHUNK {
                    return Err(bad(format!("data chunk of {} bytes", bytes.len())));
                }
                Message::Data {
                    block,
                    offset,
                    bytes,
                }
            }
            TAG_DONE => Message::Done,
            TAG_CANCEL => {
                let rest = r.rest();
                if rest.len() > MAX_REASON {
                    return Err(bad(format!("cancel reason of {} bytes", rest.len())));
                }
                let reason = std::str::from_utf8(rest)
                    .map_err(|_| bad("cancel reason is not UTF-8"))?
                    .to_owned();
                Message::Cancel { reason }
            }
            tag => return Err(bad(format!("unknown message tag {tag}"))),
        };
        if !r.0.is_empty() {
            return Err(bad(format!("{} trailing bytes", r.0.len())));
        }
        Ok(msg)
    }
}

fn bad(what: impl Into<String>) -> Error {
    Error::Protocol(what.into())
}

/// Reads big-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let (head, tail) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| bad("message cut short"))?;
        self.0 = tail;
        Ok(*head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take()?))
    }
    fn hash(&mut self) -> Result<Hash256> {
        Ok(Hash256(self.take()?))
    }
    fn rest(&mut self) -> &[u8] {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_messages_fit_in_one_data_channel_message() {
        let data = Message::Data {
            block: u32::MAX,
            offset: 0,
            bytes: vec![1; MAX_CHUNK],
        };
        assert_eq!(data.to_bytes().len(), MAX_MESSAGE);
        let manifest = Message::Manifest {
            file_size: u64::MAX,
            block_size: 1,
            sha256: Hash256([2; 32]),
            first: 0,
            hashes: vec![Hash256([3; 32]); HASHES_PER_PART],
        };
        let bytes = manifest.to_bytes();
        assert!(bytes.len() <= MAX_MESSAGE);
        assert_eq!(Message::decode(&bytes).unwrap(), manifest);
    }

    #[test]
    fn cancel_reason_is_cut_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let bytes = Message::Cancel { reason: long }.to_bytes();
        match Message::decode(&bytes).unwrap() {
            Message::Cancel { reason } => assert_eq!(reason.len(), 1024),
            other => panic!("{other:?}"),
        }
    }
}
