//! Messages between two sync engines and their byte encoding.
//!
//! A message encodes to at most [`MAX_MESSAGE`] bytes: control messages are a tag byte and
//! JSON; block data is a tag byte, a 16-byte header and raw bytes.

use serde::{Deserialize, Serialize};

use super::index::{BlockHash, FileEntry};
use crate::{Error, Result};

/// Largest encoded message, in bytes (16 KiB, what a WebRTC data channel carries best).
pub const MAX_MESSAGE: usize = 16 * 1024;

/// Bytes of block data carried by one [`SyncMessage::Data`].
pub const DATA_CHUNK: usize = MAX_MESSAGE - DATA_HEADER;

const TAG_JSON: u8 = b'{';
const TAG_STR: u8 = b'"';
const TAG_DATA: u8 = 0xD0;
const DATA_HEADER: usize = 1 + 8 + 4 + 4;

/// One message between the two engines of a sharing folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SyncMessage {
    /// Entries of the sender's index: its whole index after connecting, then what changed.
    Index(Vec<FileEntry>),
    /// More block hashes of the last entry of the previous `Index` message, for a file too
    /// large to describe in one message.
    MoreBlocks {
        /// The file.
        path: String,
        /// The next block hashes.
        blocks: Vec<BlockHash>,
    },
    /// The sender's whole index has been sent.
    IndexDone,
    /// Asks for one block of a file of the receiver's index.
    Request {
        /// Chosen by the requester, echoed in the answer.
        id: u64,
        /// The file.
        path: String,
        /// Block number.
        index: u32,
        /// The expected hash.
        hash: BlockHash,
    },
    /// Part of the answer to a request: bytes `offset..offset + data.len()` of the block.
    #[serde(skip)]
    Data {
        /// The request answered.
        id: u64,
        /// Where these bytes start in the block.
        offset: u32,
        /// Length of the whole block.
        total: u32,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The block of a request is not (or no longer) available.
    Missing {
        /// The request answered.
        id: u64,
    },
}

impl SyncMessage {
    /// The bytes to send.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SyncMessage::Data {
                id,
                offset,
                total,
                data,
            } => {
                let mut out = Vec::with_capacity(DATA_HEADER + data.len());
                out.push(TAG_DATA);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(data);
                out
            }
            // Serialising these plain types to JSON cannot fail.
            other => serde_json::to_vec(other).unwrap_or_default(),
        }
    }

    /// Parses received bytes. Anything malformed is an [`Error::Protocol`].
    pub fn decode(bytes: &[u8]) -> Result<SyncMessage> {
        if bytes.len() > MAX_MESSAGE {
            return Err(Error::Protocol(format!(
                "message of {} bytes is over {MAX_MESSAGE}",
                bytes.len()
            )));
        }
        match bytes.first() {
            Some(&TAG_JSON) | Some(&TAG_STR) => serde_json::from_slice(bytes)
                .map_err(|e| Error::Protocol(format!("bad sync message: {e}"))),
            Some(&TAG_DATA) => {
                let field = |range: std::ops::Range<usize>| {
                    bytes
                        .get(range)
                        .ok_or_else(|| Error::Protocol("short data message".into()))
                };
                let id = u64::from_be_bytes(to_array(field(1..9)?)?);
                let offset = u32::from_be_bytes(to_array(field(9..13)?)?);
                let total = u32::from_be_bytes(to_array(field(13..17)?)?);
                let data = field(DATA_HEADER..bytes.len())?.to_vec();
                Ok(SyncMessage::Data {
                    id,
                    offset,
                    total,
                    data,
                })
            }
            Some(tag) => Err(Error::Protocol(format!("unknown message tag {tag:#x}"))),
            None => Err(Error::Protocol("empty message".into())),
        }
    }
}

fn to_array<const N: usize>(slice: &[u8]) -> Result<[u8; N]> {
    slice
        .try_into()
        .map_err(|_| Error::Protocol("bad field length".into()))
}

/// Bytes an entry takes in a JSON `Index` message, with its separator.
fn entry_len(entry: &FileEntry) -> usize {
    serde_json::to_vec(entry).map_or(0, |v| v.len()) + 1
}

/// Splits `entries` into `Index` messages (and `MoreBlocks` for long block lists) that each
/// encode to at most [`MAX_MESSAGE`] bytes.
pub fn index_messages(entries: Vec<FileEntry>) -> Vec<SyncMessage> {
    // `{"index":[` + `]}` and some room.
    const FRAME: usize = 32;
    const HASH_LEN: usize = 64 + 3;
    let budget = MAX_MESSAGE - FRAME;
    let mut out = Vec::new();
    let mut batch = Vec::new();
    let mut used = 0;
    for mut entry in entries {
        let len = entry_len(&entry);
        if used + len > budget && !batch.is_empty() {
            out.push(SyncMessage::Index(std::mem::take(&mut batch)));
            used = 0;
        }
        if len <= budget {
            used += len;
            batch.push(entry);
            continue;
        }
        // Too many blocks for one message: send the entry with as many as fit, then the rest.
        let base = len - entry.blocks.len() * HASH_LEN;
        let first = budget.saturating_sub(base) / HASH_LEN;
        let mut rest = entry.blocks.split_off(first.min(entry.blocks.len()));
        out.push(SyncMessage::Index(vec![entry.clone()]));
        let per_message = (budget.saturating_sub(entry.path.len() * 2 + 32) / HASH_LEN).max(1);
        while !rest.is_empty() {
            let tail = rest.split_off(per_message.min(rest.len()));
            out.push(SyncMessage::MoreBlocks {
                path: entry.path.clone(),
                blocks: rest,
            });
            rest = tail;
        }
    }
    if !batch.is_empty() {
        out.push(SyncMessage::Index(batch));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_and_garbage_is_an_error() {
        let msg = SyncMessage::Data {
            id: 7,
            offset: 3,
            total: 10,
            data: vec![1, 2, 3],
        };
        assert_eq!(SyncMessage::decode(&msg.encode()).unwrap(), msg);
        for bad in [&b""[..], b"\xD0\x01", b"{\"nope\":1}", b"xyz", b"{"] {
            assert!(matches!(SyncMessage::decode(bad), Err(Error::Protocol(_))));
        }
    }
}
