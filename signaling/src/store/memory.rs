//! A [`Store`] that lives in memory and forgets everything when dropped.

use std::collections::{BTreeMap, HashMap};

use super::{Account, Mailbox, Relation, Store, Stored};
use crate::protocol::{Status, UserName};
use crate::Error;

/// A kept message: recipient, seq, (sender, id) of a chat message, body.
type Kept = (UserName, u64, Option<(UserName, String)>, String);

/// A store in memory, for tests and for embedding a hub that needs no persistence.
#[derive(Debug, Default)]
pub struct MemoryStore {
    accounts: HashMap<UserName, Account>,
    relations: BTreeMap<(UserName, UserName), Relation>,
    /// Kept messages by arrival: key is the arrival number.
    kept: BTreeMap<u64, Kept>,
    arrivals: u64,
    floor: u64,
    generation: u64,
}

impl Store for MemoryStore {
    fn add_user(&mut self, name: &UserName, token_hash: [u8; 32]) -> Result<(), Error> {
        if self.accounts.contains_key(name) {
            return Err(Error::UserExists(name.to_string()));
        }
        let account = Account {
            token_hash,
            status: Status::Online,
            note: String::new(),
        };
        self.accounts.insert(name.clone(), account);
        Ok(())
    }

    fn account(&mut self, name: &UserName) -> Result<Option<Account>, Error> {
        Ok(self.accounts.get(name).cloned())
    }

    fn set_presence(&mut self, name: &UserName, status: Status, note: &str) -> Result<(), Error> {
        if let Some(a) = self.accounts.get_mut(name) {
            a.status = status;
            note.clone_into(&mut a.note);
        }
        Ok(())
    }

    fn relations(&mut self, owner: &UserName) -> Result<Vec<(UserName, Relation)>, Error> {
        Ok(self
            .relations
            .iter()
            .filter(|((o, _), _)| o == owner)
            .map(|((_, other), r)| (other.clone(), *r))
            .collect())
    }

    fn relation(&mut self, owner: &UserName, other: &UserName) -> Result<Option<Relation>, Error> {
        Ok(self.relations.get(&(owner.clone(), other.clone())).copied())
    }

    fn set_relation(
        &mut self,
        owner: &UserName,
        other: &UserName,
        rel: Option<Relation>,
    ) -> Result<(), Error> {
        let key = (owner.clone(), other.clone());
        match rel {
            Some(r) => self.relations.insert(key, r),
            None => self.relations.remove(&key),
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
        if let Some((sender, id)) = origin {
            let same = |o: &Option<(UserName, String)>| {
                o.as_ref().is_some_and(|(s, i)| s == sender && i == id)
            };
            if let Some((_, kept_seq, _, _)) = self.kept.values().find(|(_, _, o, _)| same(o)) {
                return Ok(Some(*kept_seq));
            }
        }
        self.arrivals += 1;
        let origin = origin.map(|(s, i)| (s.clone(), i.to_owned()));
        self.kept.insert(
            self.arrivals,
            (recipient.clone(), seq, origin, body.to_owned()),
        );
        Ok(None)
    }

    fn undelivered_after(
        &mut self,
        recipient: &UserName,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Stored>, Error> {
        let mut out: Vec<Stored> = self
            .kept
            .values()
            .filter(|(r, seq, ..)| r == recipient && *seq > after)
            .map(|(_, seq, _, body)| Stored {
                seq: *seq,
                body: body.clone(),
            })
            .collect();
        out.sort_by_key(|s| s.seq);
        out.truncate(limit);
        Ok(out)
    }

    fn mailbox(&mut self, recipient: &UserName) -> Result<Mailbox, Error> {
        let mut m = Mailbox::default();
        for (_, _, _, body) in self.kept.values().filter(|(r, ..)| r == recipient) {
            m.messages += 1;
            m.bytes += body.len() as u64;
        }
        Ok(m)
    }

    fn set_token_hash(&mut self, name: &UserName, token_hash: [u8; 32]) -> Result<bool, Error> {
        let Some(a) = self.accounts.get_mut(name) else {
            return Ok(false);
        };
        a.token_hash = token_hash;
        self.generation += 1;
        Ok(true)
    }

    fn delete_user(&mut self, name: &UserName) -> Result<bool, Error> {
        if self.accounts.remove(name).is_none() {
            return Ok(false);
        }
        self.relations
            .retain(|(o, other), _| o != name && other != name);
        self.kept.retain(|_, (r, _, origin, _)| {
            r != name && origin.as_ref().is_none_or(|(sender, _)| sender != name)
        });
        self.generation += 1;
        Ok(true)
    }

    fn accounts_generation(&mut self) -> Result<u64, Error> {
        Ok(self.generation)
    }

    fn remove_undelivered(&mut self, seq: u64) -> Result<(), Error> {
        self.kept.retain(|_, (_, s, _, _)| *s != seq);
        Ok(())
    }

    fn seq_floor(&mut self) -> Result<u64, Error> {
        Ok(self.floor.max(1))
    }

    fn set_seq_floor(&mut self, floor: u64) -> Result<(), Error> {
        self.floor = self.floor.max(floor);
        Ok(())
    }
}
