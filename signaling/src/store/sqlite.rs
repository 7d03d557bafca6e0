//! A [`Store`] in one SQLite file (write-ahead log, so `duet user add` can write while a server runs).
//!
//! The file is created readable by its owner only (it holds token hashes and messages). A chat
//! message is written with `synchronous=FULL` (the log is flushed to the disk before the write
//! returns, so before the sender's ack); other writes use `NORMAL`, which survives a crash of the
//! process but may lose the last writes on a power cut (a receipt or a confirmation: the message
//! is then delivered again, and clients drop the duplicate by its id).

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode as SqlCode, OptionalExtension};

use super::{
    link_from, link_text, status_from, status_text, Account, Mailbox, Relation, Store, Stored,
};
use crate::protocol::{Status, UserName};
use crate::Error;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'online',
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS contacts (
    owner TEXT NOT NULL,
    other TEXT NOT NULL,
    link TEXT NOT NULL,
    blocked INTEGER NOT NULL,
    PRIMARY KEY (owner, other)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS undelivered (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    sender TEXT,
    client_id TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS undelivered_by_recipient ON undelivered (recipient, id);
CREATE INDEX IF NOT EXISTS undelivered_by_recipient_seq ON undelivered (recipient, seq);
CREATE UNIQUE INDEX IF NOT EXISTS undelivered_by_origin ON undelivered (sender, client_id) WHERE sender IS NOT NULL;
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', 1), ('seq_floor', 1), ('accounts_generation', 0);
";

/// The SQLite store: the server's default.
#[derive(Debug)]
pub struct SqliteStore {
    db: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        create_private(path)?;
        Self::init(Connection::open(path)?)
    }

    /// A database in memory, gone when dropped.
    pub fn open_in_memory() -> Result<Self, Error> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Self, Error> {
        db.busy_timeout(Duration::from_secs(5))?;
        // In-memory databases answer "memory" here; both are fine.
        let _mode: String = db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.execute_batch(SCHEMA)?;
        let schema: i64 = db.query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })?;
        if schema != 1 {
            return Err(Error::Invalid {
                what: "database",
                problem: format!("schema version {schema}, expected 1"),
            });
        }
        Ok(Self { db })
    }

    fn bump_generation(&mut self) -> Result<(), Error> {
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES ('accounts_generation', 1) ON CONFLICT (key) DO UPDATE SET value = value + 1",
            [],
        )?;
        Ok(())
    }

    /// Runs `f` inside one transaction (much faster for many writes, e.g. creating many accounts).
    pub fn batch<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, Error>) -> Result<T, Error> {
        self.db.execute_batch("BEGIN")?;
        match f(self) {
            Ok(v) => {
                self.db.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                // The original error matters more than a failed rollback.
                let _ = self.db.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

/// Creates `path` empty with mode 0600 if it does not exist (SQLite gives its `-wal` and `-shm`
/// files the same mode).
fn create_private(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn seq_sql(seq: u64) -> Result<i64, Error> {
    i64::try_from(seq).map_err(|_| Error::Invalid {
        what: "sequence number",
        problem: format!("{seq} too large"),
    })
}

fn name_from(text: String) -> Result<UserName, Error> {
    UserName::new(&text)
}

impl Store for SqliteStore {
    fn add_user(&mut self, name: &UserName, token_hash: [u8; 32]) -> Result<(), Error> {
        let r = self
            .db
            .prepare_cached("INSERT INTO users (name, token_hash) VALUES (?1, ?2)")?
            .execute(params![name.as_str(), &token_hash[..]]);
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == SqlCode::ConstraintViolation => {
                Err(Error::UserExists(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn account(&mut self, name: &UserName) -> Result<Option<Account>, Error> {
        let row = self
            .db
            .prepare_cached("SELECT token_hash, status, note FROM users WHERE name = ?1")?
            .query_row([name.as_str()], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()?;
        let Some((hash, status, note)) = row else {
            return Ok(None);
        };
        let token_hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| Error::Invalid {
            what: "stored token hash",
            problem: format!("{} bytes", hash.len()),
        })?;
        Ok(Some(Account {
            token_hash,
            status: status_from(&status),
            note,
        }))
    }

    fn set_presence(&mut self, name: &UserName, status: Status, note: &str) -> Result<(), Error> {
        self.db
            .prepare_cached("UPDATE users SET status = ?2, note = ?3 WHERE name = ?1")?
            .execute(params![name.as_str(), status_text(status), note])?;
        Ok(())
    }

    fn relations(&mut self, owner: &UserName) -> Result<Vec<(UserName, Relation)>, Error> {
        let mut stmt = self.db.prepare_cached(
            "SELECT other, link, blocked FROM contacts WHERE owner = ?1 ORDER BY other",
        )?;
        let rows = stmt.query_map([owner.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (other, link, blocked) = row?;
            out.push((
                name_from(other)?,
                Relation {
                    link: link_from(&link)?,
                    blocked,
                },
            ));
        }
        Ok(out)
    }

    fn relation(&mut self, owner: &UserName, other: &UserName) -> Result<Option<Relation>, Error> {
        let row = self
            .db
            .prepare_cached("SELECT link, blocked FROM contacts WHERE owner = ?1 AND other = ?2")?
            .query_row([owner.as_str(), other.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?))
            })
            .optional()?;
        row.map(|(link, blocked)| {
            Ok(Relation {
                link: link_from(&link)?,
                blocked,
            })
        })
        .transpose()
    }

    fn set_relation(
        &mut self,
        owner: &UserName,
        other: &UserName,
        rel: Option<Relation>,
    ) -> Result<(), Error> {
        match rel {
            Some(r) => self
                .db
                .prepare_cached("INSERT OR REPLACE INTO contacts (owner, other, link, blocked) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![owner.as_str(), other.as_str(), link_text(r.link), r.blocked])?,
            None => self
                .db
                .prepare_cached("DELETE FROM contacts WHERE owner = ?1 AND other = ?2")?
                .execute([owner.as_str(), other.as_str()])?,
        };
        Ok(())
    }

    fn push_undelivered(
        &mut self,
        recipient: &UserName,
        seq: u64,
        origin: Option<(&UserName, &str)>,
        body: &str,
    ) -> Result<Option<u64>, Error> {
        let (sender, id) = match origin {
            Some((s, i)) => (Some(s.as_str()), Some(i)),
            None => (None, None),
        };
        // A chat message is acknowledged to its sender once this returns: it must be on the disk.
        // (Inside a batch the level cannot change; the batch's commit decides.)
        let full = sender.is_some() && self.db.is_autocommit();
        if full {
            self.db.pragma_update(None, "synchronous", "FULL")?;
        }
        let inserted = self
            .db
            .prepare_cached(
                "INSERT OR IGNORE INTO undelivered (recipient, seq, sender, client_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![recipient.as_str(), seq_sql(seq)?, sender, id, body]);
        if full {
            self.db.pragma_update(None, "synchronous", "NORMAL")?;
        }
        let inserted = inserted?;
        if inserted == 1 {
            return Ok(None);
        }
        let kept: i64 = self
            .db
            .prepare_cached("SELECT seq FROM undelivered WHERE sender = ?1 AND client_id = ?2")?
            .query_row(params![sender, id], |r| r.get(0))?;
        Ok(Some(kept as u64))
    }

    fn undelivered_after(
        &mut self,
        recipient: &UserName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Stored>, Error> {
        let mut stmt = self.db.prepare_cached(
            "SELECT seq, body FROM undelivered WHERE recipient = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![recipient.as_str(), after, limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, body) = row?;
            out.push(Stored {
                seq: seq as u64,
                body,
            });
        }
        Ok(out)
    }

    fn mailbox(&mut self, recipient: &UserName) -> Result<Mailbox, Error> {
        let (messages, bytes): (i64, i64) = self
            .db
            .prepare_cached(
                "SELECT count(*), coalesce(sum(length(CAST(body AS BLOB))), 0) FROM undelivered WHERE recipient = ?1",
            )?
            .query_row([recipient.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(Mailbox {
            messages: messages.max(0) as u64,
            bytes: bytes.max(0) as u64,
        })
    }

    fn remove_undelivered_many(&mut self, seqs: &[u64]) -> Result<(), Error> {
        self.batch(|s| seqs.iter().try_for_each(|seq| s.remove_undelivered(*seq)))
    }

    fn set_token_hash(&mut self, name: &UserName, token_hash: [u8; 32]) -> Result<bool, Error> {
        self.batch(|s| {
            let changed =
                s.db.prepare_cached("UPDATE users SET token_hash = ?2 WHERE name = ?1")?
                    .execute(params![name.as_str(), &token_hash[..]])?;
            if changed == 0 {
                return Ok(false);
            }
            s.bump_generation()?;
            Ok(true)
        })
    }

    fn delete_user(&mut self, name: &UserName) -> Result<bool, Error> {
        self.batch(|s| {
            let n = name.as_str();
            let gone = s.db.execute("DELETE FROM users WHERE name = ?1", [n])?;
            if gone == 0 {
                return Ok(false);
            }
            s.db.execute("DELETE FROM contacts WHERE owner = ?1 OR other = ?1", [n])?;
            s.db.execute(
                "DELETE FROM undelivered WHERE recipient = ?1 OR sender = ?1",
                [n],
            )?;
            s.bump_generation()?;
            Ok(true)
        })
    }

    fn accounts_generation(&mut self) -> Result<u64, Error> {
        let v: i64 = self
            .db
            .prepare_cached("SELECT value FROM meta WHERE key = 'accounts_generation'")?
            .query_row([], |r| r.get(0))?;
        Ok(v.max(0) as u64)
    }

    fn remove_undelivered(&mut self, seq: u64) -> Result<(), Error> {
        self.db
            .prepare_cached("DELETE FROM undelivered WHERE seq = ?1")?
            .execute([seq_sql(seq)?])?;
        Ok(())
    }

    fn seq_floor(&mut self) -> Result<u64, Error> {
        let v: i64 = self
            .db
            .prepare_cached("SELECT value FROM meta WHERE key = 'seq_floor'")?
            .query_row([], |r| r.get(0))?;
        Ok(v.max(1) as u64)
    }

    fn set_seq_floor(&mut self, floor: u64) -> Result<(), Error> {
        self.db
            .prepare_cached("UPDATE meta SET value = max(value, ?1) WHERE key = 'seq_floor'")?
            .execute([seq_sql(floor)?])?;
        Ok(())
    }
}
