//! Chat: acks, receipts, typing, nudges, and the delivery queue of each user.
//!
//! Chat messages and receipts carry a `seq` and are written to the store (a chat message before
//! its sender's ack) whether their recipient is online or not. They stay there until the
//! recipient confirms them with `received` (which confirms every earlier one too: each user's
//! deliveries go out in `seq` order, so one confirmation can cover a batch). At most
//! [`HubConfig::delivery_window`](super::HubConfig) are in flight per user; the rest wait in
//! the store and are read a page at a time as confirmations make room, so any backlog is
//! delivered in order, once, without being held in memory, and never counts against a client
//! as slowness. A recipient whose store holds too much makes new chat messages for them fail
//! with `mailbox_full`.

use std::time::Instant;

use super::{check_len, Delivery, Fail, Hub, Reply, SEQ_BLOCK};
use crate::protocol::{ErrorCode, ServerMessage, UserName, MAX_FIELD, MAX_TEXT};
use crate::store::{Mailbox, Store};
use crate::Error;

/// The sender and id of a chat message, which the store uses to refuse duplicates.
pub(super) fn origin(msg: &ServerMessage) -> Option<(&UserName, &str)> {
    match msg {
        ServerMessage::Chat { from, id, .. } => Some((from, id.as_str())),
        _ => None,
    }
}

impl<S: Store> Hub<S> {
    /// A new sequence number; reserves a block in the store when the last one is used up.
    pub(super) fn alloc_seq(&mut self) -> Result<u64, Error> {
        if self.next_seq >= self.reserved_seq {
            let reserve = self.next_seq + SEQ_BLOCK;
            self.store.set_seq_floor(reserve)?;
            self.reserved_seq = reserve;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    /// Writes a message for `to` to the store, and to `to`'s queue if online. Returns the `seq`
    /// it goes by (an earlier one if the store already keeps the same chat message).
    fn deliver(
        &mut self,
        now: Instant,
        to: &UserName,
        seq: u64,
        msg: ServerMessage,
    ) -> Result<u64, Error> {
        let body = msg.to_json();
        let bytes = body.len() as u64;
        if let Some(kept) = self.store.push_undelivered(to, seq, origin(&msg), &body)? {
            return Ok(kept);
        }
        if let Some(m) = self.mailboxes.get_mut(to) {
            m.messages += 1;
            m.bytes += bytes;
        }
        let page = self.config.page;
        if let Some(s) = self.sessions.get_mut(to) {
            if !s.more_in_store && s.queued.len() < page {
                s.queued.push_back(Delivery { seq, msg, bytes });
                s.cursor = seq;
            } else {
                s.more_in_store = true;
            }
            self.pump(now, to);
        }
        Ok(seq)
    }

    /// What the store keeps for `user` (looked up once, then kept up to date).
    fn mailbox(&mut self, user: &UserName) -> Result<Mailbox, Error> {
        if let Some(m) = self.mailboxes.get(user) {
            return Ok(*m);
        }
        let m = self.store.mailbox(user)?;
        if self.mailboxes.len() > 100_000 {
            self.mailboxes.clear();
        }
        self.mailboxes.insert(user.clone(), m);
        Ok(m)
    }

    /// Sends what the window allows, reading the store a page at a time.
    pub(super) fn pump(&mut self, _now: Instant, user: &UserName) {
        let (window, page) = (self.config.delivery_window, self.config.page.max(1));
        let Some(s) = self.sessions.get_mut(user) else {
            return;
        };
        while s.in_flight.len() < window {
            if s.queued.is_empty() && s.more_in_store {
                let kept = match self.store.undelivered_after(user, s.cursor, page) {
                    Ok(k) => k,
                    Err(e) => {
                        // Left in the store: the next confirmation or login tries again.
                        tracing::error!("signaling: cannot read kept messages for {user}: {e}");
                        break;
                    }
                };
                s.more_in_store = kept.len() >= page;
                for k in kept {
                    s.cursor = s.cursor.max(k.seq);
                    match ServerMessage::parse(&k.body) {
                        Ok(msg) => s.queued.push_back(Delivery {
                            seq: k.seq,
                            msg,
                            bytes: k.body.len() as u64,
                        }),
                        Err(e) => {
                            tracing::error!(
                                "signaling: dropping unreadable kept message {} for {user}: {e}",
                                k.seq
                            );
                            if let Err(e) = self.store.remove_undelivered(k.seq) {
                                tracing::error!("signaling: cannot drop it: {e}");
                            }
                            self.mailboxes.remove(user);
                        }
                    }
                }
            }
            let Some(d) = s.queued.pop_front() else {
                break;
            };
            self.out
                .push_back(super::Output::Send(s.conn, d.msg.clone()));
            s.in_flight.insert(d.seq, d);
        }
    }

    pub(super) fn chat(
        &mut self,
        now: Instant,
        user: &UserName,
        rid: Option<u64>,
        to: &UserName,
        id: String,
        text: String,
    ) -> Reply {
        if id.is_empty() {
            return Err(Fail::new(ErrorCode::Invalid, "id must not be empty"));
        }
        check_len("id", &id, MAX_FIELD)?;
        check_len("text", &text, MAX_TEXT)?;
        self.require_contact(user, to)?;
        if let Some(seq) = self.recent.get(user, &id) {
            return Ok(Some(ServerMessage::Ack { rid, id, seq }));
        }
        // A recipient who blocks the sender never sees it; the sender cannot tell.
        let blocked = self.blocks(to, user)?;
        if !blocked {
            let m = self.mailbox(to)?;
            if m.messages >= self.config.mailbox_messages
                || m.bytes + text.len() as u64 > self.config.mailbox_bytes
            {
                let message = format!(
                    "{to}'s mailbox is full ({} messages wait for {to} to read them); try later",
                    m.messages
                );
                return Err(Fail::new(ErrorCode::MailboxFull, message));
            }
        }
        let seq = self.alloc_seq()?;
        let seq = if blocked {
            seq
        } else {
            let msg = ServerMessage::Chat {
                from: user.clone(),
                id: id.clone(),
                text,
                seq,
            };
            self.deliver(now, to, seq, msg)?
        };
        self.recent.insert(now, user, &id, seq);
        Ok(Some(ServerMessage::Ack { rid, id, seq }))
    }

    /// Confirms `seq` and every earlier message sent to `user` (deliveries go out in `seq` order).
    pub(super) fn received(&mut self, now: Instant, user: &UserName, seq: u64) -> Reply {
        let Some(s) = self.sessions.get_mut(user) else {
            return Ok(None);
        };
        // Numbers already confirmed are confirmations sent twice: nothing to do.
        let later = match seq.checked_add(1) {
            Some(next) => s.in_flight.split_off(&next),
            None => Default::default(),
        };
        let done = std::mem::replace(&mut s.in_flight, later);
        if done.is_empty() {
            return Ok(None);
        }
        let seqs: Vec<u64> = done.keys().copied().collect();
        let mut failed = self.store.remove_undelivered_many(&seqs).err();
        if failed.is_some() {
            // Not forgotten: they will be delivered again, and clients drop duplicates by id.
            self.mailboxes.remove(user);
        } else if let Some(m) = self.mailboxes.get_mut(user) {
            m.messages = m.messages.saturating_sub(done.len() as u64);
            m.bytes = m
                .bytes
                .saturating_sub(done.values().map(|d| d.bytes).sum::<u64>());
        }
        for d in done.into_values() {
            if let ServerMessage::Chat { from, id, .. } = d.msg {
                let receipt = self.alloc_seq().and_then(|rseq| {
                    let msg = ServerMessage::Receipt {
                        from: user.clone(),
                        id,
                        seq: rseq,
                    };
                    self.deliver(now, &from, rseq, msg)
                });
                if let Err(e) = receipt {
                    failed = Some(e);
                }
            }
        }
        self.pump(now, user);
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(None),
        }
    }

    pub(super) fn typing(&mut self, user: &UserName, to: &UserName, active: bool) -> Reply {
        self.require_contact(user, to)?;
        if !self.blocks(to, user)? {
            self.send_user(
                to,
                ServerMessage::Typing {
                    from: user.clone(),
                    active,
                },
            );
        }
        Ok(None)
    }

    pub(super) fn nudge(&mut self, now: Instant, user: &UserName, to: &UserName) -> Reply {
        self.require_contact(user, to)?;
        let interval = self.config.nudge_interval;
        if let Some(s) = self.sessions.get_mut(user) {
            if s.last_nudge
                .is_some_and(|t| now.saturating_duration_since(t) < interval)
            {
                let message = format!("one nudge every {} s", interval.as_secs_f64());
                return Err(Fail::new(ErrorCode::RateLimited, message));
            }
            s.last_nudge = Some(now);
        }
        if !self.blocks(to, user)? {
            self.send_user(to, ServerMessage::Nudge { from: user.clone() });
        }
        Ok(None)
    }

    /// Refuses unless `user` has `to` as an unblocked, accepted contact.
    pub(super) fn require_contact(&mut self, user: &UserName, to: &UserName) -> Result<(), Fail> {
        match self.rel(user, to)? {
            Some(r) if r.blocked => Err(Fail::new(
                ErrorCode::Blocked,
                format!("you block {to}; unblock first"),
            )),
            Some(r) if r.is_open() => Ok(()),
            _ => Err(Fail::new(
                ErrorCode::NotContact,
                format!("{to} is not your contact"),
            )),
        }
    }

    /// Whether `owner` blocks `other`.
    pub(super) fn blocks(&mut self, owner: &UserName, other: &UserName) -> Result<bool, Error> {
        Ok(self.rel(owner, other)?.is_some_and(|r| r.blocked))
    }
}
