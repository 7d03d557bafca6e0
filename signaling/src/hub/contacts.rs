//! Contacts and presence.
//!
//! A relationship is kept from each side ([`Relation`]). Two users are contacts when both sides
//! are `accepted`; each side may also block the other, which makes it look offline to them and
//! silently drops what they send it. Presence goes only to unblocked contacts, on login, on
//! change and on logout; `invisible` looks like `offline`.

use std::collections::HashMap;

use super::{check_len, shown, ConnId, Fail, Hub, Reply};
use crate::protocol::{
    Contact, ContactChange, ErrorCode, Link, ServerMessage, Shown, Status, UserName, MAX_FIELD,
};
use crate::store::{Relation, Store};

impl<S: Store> Hub<S> {
    /// The connections of online contacts who may see `user`'s presence.
    fn open_peers(&self, user: &UserName, contacts: &HashMap<UserName, Relation>) -> Vec<ConnId> {
        contacts
            .iter()
            .filter(|(_, r)| r.is_open())
            .filter_map(|(c, _)| self.sessions.get(c))
            .filter(|s| s.contacts.get(user).is_some_and(|r| r.is_open()))
            .map(|s| s.conn)
            .collect()
    }

    /// Tells `user`'s contacts (listed in `contacts`) its presence.
    pub(super) fn tell_contacts(
        &mut self,
        user: &UserName,
        contacts: &HashMap<UserName, Relation>,
        status: Shown,
        note: &str,
    ) {
        for conn in self.open_peers(user, contacts) {
            self.send(
                conn,
                ServerMessage::Presence {
                    from: user.clone(),
                    status,
                    note: note.to_owned(),
                },
            );
        }
    }

    /// Tells an online `user`'s contacts its presence.
    pub(super) fn tell_contacts_from_session(
        &mut self,
        user: &UserName,
        status: Shown,
        note: &str,
    ) {
        let peers = match self.sessions.get(user) {
            Some(s) => self.open_peers(user, &s.contacts),
            None => return,
        };
        for conn in peers {
            self.send(
                conn,
                ServerMessage::Presence {
                    from: user.clone(),
                    status,
                    note: note.to_owned(),
                },
            );
        }
    }

    /// `subject`'s presence as `viewer` may see it.
    fn shown_to(&self, subject: &UserName, viewer: &UserName) -> (Shown, String) {
        let open = |a: &UserName, b: &UserName| {
            self.sessions
                .get(a)
                .and_then(|s| s.contacts.get(b))
                .is_some_and(|r| r.is_open())
        };
        match self.sessions.get(subject) {
            Some(s)
                if s.status != Status::Invisible
                    && open(subject, viewer)
                    && open(viewer, subject) =>
            {
                (shown(s.status), s.note.clone())
            }
            _ => (Shown::Offline, String::new()),
        }
    }

    /// Sends each of two online users the other's presence, if they may see it.
    fn exchange_presence(&mut self, a: &UserName, b: &UserName) {
        for (viewer, subject) in [(a, b), (b, a)] {
            let (status, note) = self.shown_to(subject, viewer);
            self.send_user(
                viewer,
                ServerMessage::Presence {
                    from: subject.clone(),
                    status,
                    note,
                },
            );
        }
    }

    /// `user`'s contact list with what it may see of each.
    pub(super) fn contact_list(&self, user: &UserName) -> Vec<Contact> {
        let Some(s) = self.sessions.get(user) else {
            return Vec::new();
        };
        let mut list: Vec<Contact> = s
            .contacts
            .iter()
            .map(|(other, r)| {
                let (status, note) = self.shown_to(other, user);
                Contact {
                    user: other.clone(),
                    link: r.link,
                    blocked: r.blocked,
                    status,
                    note,
                }
            })
            .collect();
        list.sort_by(|a, b| a.user.cmp(&b.user));
        list
    }

    pub(super) fn presence(
        &mut self,
        user: &UserName,
        status: Status,
        note: Option<String>,
    ) -> Reply {
        if let Some(n) = &note {
            check_len("note", n, MAX_FIELD)?;
        }
        let Some(s) = self.sessions.get_mut(user) else {
            return Ok(None);
        };
        let visible = |status: Status, note: &str| {
            (
                shown(status),
                if status == Status::Invisible {
                    String::new()
                } else {
                    note.to_owned()
                },
            )
        };
        let before = visible(s.status, &s.note);
        s.status = status;
        if let Some(n) = note {
            s.note = n;
        }
        let note = s.note.clone();
        self.store.set_presence(user, status, &note)?;
        let after = visible(status, &note);
        if after != before {
            self.tell_contacts_from_session(user, after.0, &after.1);
        }
        Ok(None)
    }

    pub(super) fn contact_add(&mut self, user: &UserName, other: &UserName) -> Reply {
        if user == other {
            return Err(Fail::new(ErrorCode::Invalid, "you cannot add yourself"));
        }
        // A name nobody has is asked like anyone who has not answered yet: a request cannot be
        // used to find out which names exist.
        let exists = self.store.account(other)?.is_some();
        let mine = self.rel(user, other)?;
        match mine.map(|r| r.link) {
            Some(Link::Accepted) => {
                if mine.is_some_and(|r| r.blocked) {
                    return self.contact_unblock(user, other);
                }
                return Ok(None);
            }
            Some(Link::Incoming) => return self.contact_accept(user, other),
            _ => {}
        }
        self.set_rel(
            user,
            other,
            Some(Relation {
                link: Link::Outgoing,
                blocked: false,
            }),
        )?;
        // Someone who blocks the requester never hears of the request.
        if exists && !self.blocks(other, user)? {
            self.set_rel(
                other,
                user,
                Some(Relation {
                    link: Link::Incoming,
                    blocked: false,
                }),
            )?;
            self.send_user(other, ServerMessage::ContactRequest { from: user.clone() });
        }
        Ok(None)
    }

    pub(super) fn contact_accept(&mut self, user: &UserName, other: &UserName) -> Reply {
        let mine = self.rel(user, other)?;
        let theirs = self.rel(other, user)?;
        if mine.map(|r| r.link) != Some(Link::Incoming)
            || theirs.map(|r| r.link) != Some(Link::Outgoing)
        {
            return Err(Fail::new(
                ErrorCode::NotAllowed,
                format!("no contact request from {other}"),
            ));
        }
        let blocked = |r: Option<Relation>| r.is_some_and(|r| r.blocked);
        self.set_rel(
            user,
            other,
            Some(Relation {
                link: Link::Accepted,
                blocked: blocked(mine),
            }),
        )?;
        self.set_rel(
            other,
            user,
            Some(Relation {
                link: Link::Accepted,
                blocked: blocked(theirs),
            }),
        )?;
        self.send_user(
            other,
            ServerMessage::ContactUpdate {
                user: user.clone(),
                change: ContactChange::Accepted,
            },
        );
        if self.sessions.contains_key(user) && self.sessions.contains_key(other) {
            self.exchange_presence(user, other);
        }
        Ok(None)
    }

    pub(super) fn contact_decline(&mut self, user: &UserName, other: &UserName) -> Reply {
        let mine = self.rel(user, other)?;
        if mine.map(|r| r.link) != Some(Link::Incoming) {
            return Err(Fail::new(
                ErrorCode::NotAllowed,
                format!("no contact request from {other}"),
            ));
        }
        self.forget(user, other)?;
        if self
            .rel(other, user)?
            .is_some_and(|r| r.link == Link::Outgoing)
        {
            self.forget(other, user)?;
            self.send_user(
                other,
                ServerMessage::ContactUpdate {
                    user: user.clone(),
                    change: ContactChange::Declined,
                },
            );
        }
        Ok(None)
    }

    pub(super) fn contact_block(&mut self, user: &UserName, other: &UserName) -> Reply {
        if user == other {
            return Err(Fail::new(ErrorCode::Invalid, "you cannot block yourself"));
        }
        let mine = self.rel(user, other)?;
        let was_open = mine.is_some_and(|r| r.is_open());
        let link = mine.map_or(Link::Stranger, |r| r.link);
        let seen_before = self.shown_to(user, other).0;
        self.set_rel(
            user,
            other,
            Some(Relation {
                link,
                blocked: true,
            }),
        )?;
        // Blocking ends every invitation and call between us.
        self.end_invites_between(user, other, user);
        if was_open {
            // They now see me offline (without being told why), and I no longer see them.
            if seen_before != Shown::Offline {
                self.send_user(
                    other,
                    ServerMessage::Presence {
                        from: user.clone(),
                        status: Shown::Offline,
                        note: String::new(),
                    },
                );
            }
            self.send_user(
                user,
                ServerMessage::Presence {
                    from: other.clone(),
                    status: Shown::Offline,
                    note: String::new(),
                },
            );
        }
        Ok(None)
    }

    pub(super) fn contact_unblock(&mut self, user: &UserName, other: &UserName) -> Reply {
        let Some(mine) = self.rel(user, other)? else {
            return Ok(None);
        };
        self.set_rel(
            user,
            other,
            Some(Relation {
                link: mine.link,
                blocked: false,
            }),
        )?;
        if mine.link == Link::Accepted
            && self.sessions.contains_key(user)
            && self.sessions.contains_key(other)
        {
            self.exchange_presence(user, other);
        }
        Ok(None)
    }

    pub(super) fn contact_remove(&mut self, user: &UserName, other: &UserName) -> Reply {
        let Some(mine) = self.rel(user, other)? else {
            return Ok(None);
        };
        if mine.link == Link::Stranger {
            return Ok(None);
        }
        let visible = self.shown_to(user, other).0 != Shown::Offline;
        self.end_invites_between(user, other, user);
        self.forget(user, other)?;
        if self
            .rel(other, user)?
            .is_some_and(|r| r.link != Link::Stranger)
        {
            self.forget(other, user)?;
            if visible {
                self.send_user(
                    other,
                    ServerMessage::Presence {
                        from: user.clone(),
                        status: Shown::Offline,
                        note: String::new(),
                    },
                );
            }
            self.send_user(
                other,
                ServerMessage::ContactUpdate {
                    user: user.clone(),
                    change: ContactChange::Removed,
                },
            );
        }
        Ok(None)
    }

    /// Ends `owner`'s link to `other`, keeping a block if there is one.
    fn forget(&mut self, owner: &UserName, other: &UserName) -> Result<(), Fail> {
        let blocked = self.blocks(owner, other)?;
        let rel = blocked.then_some(Relation {
            link: Link::Stranger,
            blocked: true,
        });
        self.set_rel(owner, other, rel)?;
        Ok(())
    }
}
