//! What the hub keeps between messages besides the store: the live invitations, and the chat
//! message ids seen lately.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::protocol::{Invitation, InviteState, UserName};

/// A live invitation.
pub(super) struct Invite {
    pub(super) caller: UserName,
    pub(super) callee: UserName,
    pub(super) invitation: Invitation,
    pub(super) state: InviteState,
    /// When it expires (invited, ringing) or is hung up for a missing party (accepted).
    pub(super) deadline: Option<Instant>,
    /// The callee blocks the caller: it is never shown to the callee and just expires.
    pub(super) hidden: bool,
}

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

    pub(super) fn get(&self, user: &UserName, id: &str) -> Option<u64> {
        self.seen.get(&(user.clone(), id.to_owned())).copied()
    }

    pub(super) fn insert(&mut self, now: Instant, user: &UserName, id: &str, seq: u64) {
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
