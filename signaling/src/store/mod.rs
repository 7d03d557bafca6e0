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
mod tests {
    use super::*;

    fn name(s: &str) -> UserName {
        UserName::new(s).unwrap()
    }

    /// The behaviour every store must have.
    pub(crate) fn exercise(store: &mut dyn Store) {
        let (a, b) = (name("alice"), name("bob"));
        let token = store.create_user(&a).unwrap();
        assert_eq!(token.len(), 64);
        assert!(matches!(store.create_user(&a), Err(Error::UserExists(_))));
        let acct = store.account(&a).unwrap().unwrap();
        assert_eq!(acct.token_hash, hash_token(&token));
        assert_eq!((acct.status, acct.note.as_str()), (Status::Online, ""));
        store.set_presence(&a, Status::Away, "lunch").unwrap();
        assert_eq!(store.account(&a).unwrap().unwrap().status, Status::Away);
        assert_eq!(store.account(&b).unwrap(), None);

        let rel = Relation {
            link: Link::Outgoing,
            blocked: false,
        };
        store.set_relation(&a, &b, Some(rel)).unwrap();
        store
            .set_relation(
                &a,
                &name("carol"),
                Some(Relation {
                    link: Link::Stranger,
                    blocked: true,
                }),
            )
            .unwrap();
        assert_eq!(store.relation(&a, &b).unwrap(), Some(rel));
        assert_eq!(store.relations(&a).unwrap().len(), 2);
        assert_eq!(store.relations(&a).unwrap()[0].0, b);
        store.set_relation(&a, &b, None).unwrap();
        assert_eq!(store.relation(&a, &b).unwrap(), None);

        assert_eq!(
            store
                .push_undelivered(&b, 10, Some((&a, "m1")), "one")
                .unwrap(),
            None
        );
        assert_eq!(store.push_undelivered(&b, 11, None, "two").unwrap(), None);
        assert_eq!(
            store
                .push_undelivered(&b, 12, Some((&a, "m1")), "again")
                .unwrap(),
            Some(10)
        );
        let kept: Vec<u64> = store
            .undelivered(&b)
            .unwrap()
            .iter()
            .map(|s| s.seq)
            .collect();
        assert_eq!(kept, vec![10, 11]);
        store.remove_undelivered(10).unwrap();
        assert_eq!(
            store.undelivered(&b).unwrap(),
            vec![Stored {
                seq: 11,
                body: "two".into()
            }]
        );
        assert!(store.undelivered(&a).unwrap().is_empty());

        assert_eq!(store.seq_floor().unwrap(), 1);
        store.set_seq_floor(4097).unwrap();
        assert_eq!(store.seq_floor().unwrap(), 4097);

        // Pages in seq order, and what a mailbox holds.
        let carol = name("carol");
        for seq in [30, 20, 40, 50] {
            store.push_undelivered(&carol, seq, None, "xy").unwrap();
        }
        let page = |store: &mut dyn Store, after, limit| -> Vec<u64> {
            let kept = store.undelivered_after(&carol, after, limit).unwrap();
            kept.iter().map(|s| s.seq).collect()
        };
        assert_eq!(page(store, 0, 2), vec![20, 30]);
        assert_eq!(page(store, 30, 10), vec![40, 50]);
        assert_eq!(
            store.mailbox(&carol).unwrap(),
            Mailbox {
                messages: 4,
                bytes: 8
            }
        );
        store.remove_undelivered_many(&[20, 40]).unwrap();
        assert_eq!(page(store, 0, 10), vec![30, 50]);

        // Tokens change and accounts go, each moving the generation on.
        let g0 = store.accounts_generation().unwrap();
        let fresh = store.rotate_token(&a).unwrap().unwrap();
        assert_eq!(
            store.account(&a).unwrap().unwrap().token_hash,
            hash_token(&fresh)
        );
        assert!(store.rotate_token(&name("nobody")).unwrap().is_none());
        assert!(store.set_token_hash(&a, REVOKED).unwrap());
        let g1 = store.accounts_generation().unwrap();
        assert!(g1 > g0);
        store.create_user(&carol).unwrap();
        store.set_relation(&a, &carol, Some(rel)).unwrap();
        store
            .push_undelivered(&a, 60, Some((&carol, "c1")), "from carol")
            .unwrap();
        assert!(store.delete_user(&carol).unwrap());
        assert!(!store.delete_user(&carol).unwrap());
        assert!(store.accounts_generation().unwrap() > g1);
        assert_eq!(store.account(&carol).unwrap(), None);
        assert!(store
            .relations(&a)
            .unwrap()
            .iter()
            .all(|(o, _)| *o != carol));
        assert!(store.undelivered(&carol).unwrap().is_empty());
        assert!(store.undelivered(&a).unwrap().is_empty());
    }

    #[test]
    fn hashes_are_compared_whole() {
        let h = hash_token("t");
        assert!(hashes_match(&h, &h));
        for i in [0, 17, 31] {
            let mut other = h;
            other[i] ^= 1;
            assert!(!hashes_match(&h, &other), "byte {i}");
        }
    }

    #[test]
    fn the_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("duet.db");
        let mut store = SqliteStore::open(&path).unwrap();
        store.create_user(&name("alice")).unwrap();
        for file in ["duet.db", "duet.db-wal"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn memory_store_behaves() {
        exercise(&mut MemoryStore::default());
    }

    #[test]
    fn sqlite_store_behaves_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("duet.db");
        exercise(&mut SqliteStore::open(&path).unwrap());
        let mut again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.seq_floor().unwrap(), 4097);
        assert_eq!(again.undelivered(&name("bob")).unwrap().len(), 1);
        assert_eq!(
            again.account(&name("alice")).unwrap().unwrap().note,
            "lunch"
        );
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (t1, t2) = (new_token(), new_token());
        assert_ne!(t1, t2);
        assert!(t1.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(hash_token(&t1), hash_token(&t2));
        assert_eq!(
            hex::encode(hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
