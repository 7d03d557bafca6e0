//! Chat: acks, receipts, typing, nudges, and the delivery queue of each user.
//!
//! Chat messages and receipts carry a `seq` and stay the hub's responsibility until the recipient
//! confirms them with `received` (which confirms every earlier one too: each user's deliveries go
//! out in `seq` order, so one confirmation can cover a batch): at most [`HubConfig::delivery_window`](super::HubConfig) are
//! in flight per user, the rest wait in order; whatever is unconfirmed when a user disconnects is
//! kept in the store and sent first, in order, at the next login.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::{check_len, Delivery, Fail, Hub, Reply, SEQ_BLOCK};
use crate::protocol::{ErrorCode, ServerMessage, UserName, MAX_FIELD, MAX_TEXT};
use crate::store::Store;
use crate::Error;

/// Chat message ids seen lately, so a resent message is acknowledged again and not delivered twice.
pub(super) struct Recent {
    seen: HashMap<(UserName, String), u64>,
    order: VecDeque<(Instant, UserName, String)>,
    ttl: Duration,
}

/// Ids remembered at most, whatever their age.
const RECENT_CAP: usize = 100_000;

impl Recent {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            seen: HashMap::new(),
            order: VecDeque::new(),
            ttl,
        }
    }

    fn get(&self, user: &UserName, id: &str) -> Option<u64> {
        self.seen.get(&(user.clone(), id.to_owned())).copied()
    }

    fn insert(&mut self, now: Instant, user: &UserName, id: &str, seq: u64) {
        while let Some((t, u, i)) = self.order.front() {
            if self.order.len() < RECENT_CAP && now.saturating_duration_since(*t) < self.ttl {
                break;
            }
            self.seen.remove(&(u.clone(), i.clone()));
            self.order.pop_front();
        }
        self.seen.insert((user.clone(), id.to_owned()), seq);
        self.order.push_back((now, user.clone(), id.to_owned()));
    }
}

/// The sender and id of a chat message, which the store uses to refuse duplicates.
pub(super) fn origin(msg: &ServerMessage) -> Option<(&UserName, &str)> {
    match msg {
        ServerMessage::Chat { from, id, .. } => Some((from, id.as_str())),
        _ => None,
    }
}

/// What the store keeps for `user`, oldest first.
pub(super) fn load_kept<S: Store>(
    store: &mut S,
    user: &UserName,
) -> Result<VecDeque<Delivery>, Error> {
    let mut out = VecDeque::new();
    for kept in store.undelivered(user)? {
        match ServerMessage::parse(&kept.body) {
            Ok(msg) => out.push_back(Delivery {
                seq: kept.seq,
                msg,
                stored: true,
            }),
            Err(e) => {
                tracing::error!(
                    "signaling: dropping unreadable kept message {} for {user}: {e}",
                    kept.seq
                );
                store.remove_undelivered(kept.seq)?;
            }
        }
    }
    Ok(out)
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

    /// Hands a message to `to`'s queue if online, else to the store. Returns the `seq` it goes by
    /// (an earlier one if the store already keeps the same chat message).
    fn deliver(&mut self, now: Instant, to: &UserName, d: Delivery) -> Result<u64, Error> {
        let seq = d.seq;
        if let Some(s) = self.sessions.get_mut(to) {
            s.backlog.push_back(d);
            self.pump(now, to);
            return Ok(seq);
        }
        let kept = self
            .store
            .push_undelivered(to, seq, origin(&d.msg), &d.msg.to_json())?;
        Ok(kept.unwrap_or(seq))
    }

    /// Sends what the window allows; disconnects a user whose backlog grew past the limit.
    pub(super) fn pump(&mut self, now: Instant, user: &UserName) {
        let (window, max_backlog) = (self.config.delivery_window, self.config.max_backlog);
        let Some(s) = self.sessions.get_mut(user) else {
            return;
        };
        while s.in_flight.len() < window {
            let Some(d) = s.backlog.pop_front() else {
                break;
            };
            self.out
                .push_back(super::Output::Send(s.conn, d.msg.clone()));
            s.in_flight.insert(d.seq, d);
        }
        if s.backlog.len() > max_backlog && !s.closing {
            s.closing = true;
            let conn = s.conn;
            let message = "too many unconfirmed messages; reconnect to receive them".to_owned();
            self.send(
                conn,
                ServerMessage::Error {
                    rid: None,
                    code: ErrorCode::Closing,
                    message,
                },
            );
            self.close(now, conn);
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
        let seq = self.alloc_seq()?;
        // A recipient who blocks the sender never sees it; the sender cannot tell.
        let seq = if self.blocks(to, user)? {
            seq
        } else {
            let msg = ServerMessage::Chat {
                from: user.clone(),
                id: id.clone(),
                text,
                seq,
            };
            self.deliver(
                now,
                to,
                Delivery {
                    seq,
                    msg,
                    stored: false,
                },
            )?
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
        let mut failed = None;
        for d in done.into_values() {
            if d.stored {
                if let Err(e) = self.store.remove_undelivered(d.seq) {
                    failed = Some(e);
                }
            }
            if let ServerMessage::Chat { from, id, .. } = d.msg {
                let receipt = self.alloc_seq().and_then(|rseq| {
                    let msg = ServerMessage::Receipt {
                        from: user.clone(),
                        id,
                        seq: rseq,
                    };
                    self.deliver(
                        now,
                        &from,
                        Delivery {
                            seq: rseq,
                            msg,
                            stored: false,
                        },
                    )
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
