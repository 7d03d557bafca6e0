//! What the hub remembers across restarts: accounts (token hashes only), contact relationships,
//! the last chosen presence, and messages not yet confirmed by their recipient.
//!
//! [`Store`] is the interface the [`Hub`](crate::hub::Hub) calls synchronously; [`SqliteStore`]
//! keeps it in one SQLite file, [`MemoryStore`] in memory (for tests and embedding).

mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use sha2::{Digest, Sha256};

use crate::protocol::{Link, Status, UserName};
use crate::Error;

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// SHA-256 of the account's token. The token itself is never stored.
    pub token_hash: [u8; 32],
    /// The status last chosen.
    pub status: Status,
    /// The personal message last chosen.
    pub note: String,
}

/// One side of a relationship: how `owner` stands towards `other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relation {
    /// Request sent, received, or accepted.
    pub link: Link,
    /// Whether `owner` blocks `other`.
    pub blocked: bool,
}

impl Relation {
    /// Whether the pair may chat, call and see each other, as far as this side goes.
    pub fn is_open(self) -> bool {
        self.link == Link::Accepted && !self.blocked
    }
}

/// How much is kept for one recipient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// Messages kept (chat messages and receipts).
    pub messages: u64,
    /// Their total size, in bytes of JSON.
    pub bytes: u64,
}

/// The token hash of a revoked account: no token hashes to it (finding one would break SHA-256).
pub const REVOKED: [u8; 32] = [0; 32];

/// A message kept for a recipient until confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// Its sequence number.
    pub seq: u64,
    /// The JSON text of the [`ServerMessage`](crate::protocol::ServerMessage) to deliver.
    pub body: String,
}

/// Storage behind a [`Hub`](crate::hub::Hub). Calls are synchronous and short.
pub trait Store {
    /// Creates an account; [`Error::UserExists`] if the name is taken.
    fn add_user(&mut self, name: &UserName, token_hash: [u8; 32]) -> Result<(), Error>;
    /// Looks an account up.
    fn account(&mut self, name: &UserName) -> Result<Option<Account>, Error>;
    /// Remembers the presence a user chose.
    fn set_presence(&mut self, name: &UserName, status: Status, note: &str) -> Result<(), Error>;
    /// Every relationship `owner` has, in name order.
    fn relations(&mut self, owner: &UserName) -> Result<Vec<(UserName, Relation)>, Error>;
    /// How `owner` stands towards `other`.
    fn relation(&mut self, owner: &UserName, other: &UserName) -> Result<Option<Relation>, Error>;
    /// Sets or (with `None`) forgets how `owner` stands towards `other`.
    fn set_relation(
        &mut self,
        owner: &UserName,
        other: &UserName,
        rel: Option<Relation>,
    ) -> Result<(), Error>;
    /// Keeps `body` for `recipient`. `origin` is the sender and its message id, for chat messages;
    /// if that pair is already kept, nothing is added and the kept `seq` is returned.
    fn push_undelivered(
        &mut self,
        recipient: &UserName,
        seq: u64,
        origin: Option<(&UserName, &str)>,
        body: &str,
    ) -> Result<Option<u64>, Error>;
    /// At most `limit` messages kept for `recipient` with a `seq` above `after`, in `seq` order.
    fn undelivered_after(
        &mut self,
        recipient: &UserName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Stored>, Error>;
    /// How many messages (and bytes) are kept for `recipient`.
    fn mailbox(&mut self, recipient: &UserName) -> Result<Mailbox, Error>;
    /// Forgets a kept message once its recipient confirmed it.
    fn remove_undelivered(&mut self, seq: u64) -> Result<(), Error>;
    /// Replaces an account's token hash ([`REVOKED`] revokes it); false if there is no such account.
    fn set_token_hash(&mut self, name: &UserName, token_hash: [u8; 32]) -> Result<bool, Error>;
    /// Deletes an account with its relationships (both sides) and the messages kept for it;
    /// false if there was no such account.
    fn delete_user(&mut self, name: &UserName) -> Result<bool, Error>;
    /// A number that changes whenever an account's token changes or an account is deleted (so a
    /// running server notices what `duet user` did to its database).
    fn accounts_generation(&mut self) -> Result<u64, Error>;
    /// The lowest sequence number never handed out.
    fn seq_floor(&mut self) -> Result<u64, Error>;
    /// Raises [`seq_floor`](Store::seq_floor): numbers below `floor` are reserved.
    fn set_seq_floor(&mut self, floor: u64) -> Result<(), Error>;

    /// Creates an account with a fresh token and returns the token (the store keeps only its hash).
    fn create_user(&mut self, name: &UserName) -> Result<String, Error> {
        let token = new_token();
        self.add_user(name, hash_token(&token))?;
        Ok(token)
    }

    /// Gives an account a fresh token and returns it; `None` if there is no such account.
    fn rotate_token(&mut self, name: &UserName) -> Result<Option<String>, Error> {
        let token = new_token();
        Ok(self
            .set_token_hash(name, hash_token(&token))?
            .then_some(token))
    }

    /// Everything kept for `recipient`, oldest first (for tests and tools: the hub reads pages).
    fn undelivered(&mut self, recipient: &UserName) -> Result<Vec<Stored>, Error> {
        self.undelivered_after(recipient, 0, usize::MAX)
    }

    /// Forgets several kept messages (the SQLite store does it in one transaction).
    fn remove_undelivered_many(&mut self, seqs: &[u64]) -> Result<(), Error> {
        seqs.iter().try_for_each(|s| self.remove_undelivered(*s))
    }
}

/// Whether two token hashes are equal, in time that does not depend on where they differ.
pub fn hashes_match(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A fresh account token: 32 random bytes as 64 hex digits.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// The SHA-256 of a token. Tokens are 256 random bits, so a fast hash is enough to make a
/// stolen database useless for logging in.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The text of a status in storage.
pub(crate) fn status_text(s: Status) -> &'static str {
    match s {
        Status::Online => "online",
        Status::Away => "away",
        Status::Busy => "busy",
        Status::Invisible => "invisible",
    }
}

/// A status read from storage (unknown text reads as online).
pub(crate) fn status_from(text: &str) -> Status {
    match text {
        "away" => Status::Away,
        "busy" => Status::Busy,
        "invisible" => Status::Invisible,
        _ => Status::Online,
    }
}

/// The text of a link in storage.
pub(crate) fn link_text(l: Link) -> &'static str {
    match l {
        Link::Stranger => "stranger",
        Link::Outgoing => "outgoing",
        Link::Incoming => "incoming",
        Link::Accepted => "accepted",
    }
}

/// A link read from storage.
pub(crate) fn link_from(text: &str) -> Result<Link, Error> {
    Ok(match text {
        "stranger" => Link::Stranger,
        "outgoing" => Link::Outgoing,
        "incoming" => Link::Incoming,
        "accepted" => Link::Accepted,
        other => {
            return Err(Error::Invalid {
                what: "stored contact link",
                problem: other.to_owned(),
            })
        }
    })
}

#[cfg(test)]
mod tests;
