//! Invitations: calls, file offers and folder shares, and the call signals relayed for them.
//!
//! ```text
//!   invited --ringing--> ringing --accept--> accepted --hangup--> hung_up
//!      |                    |
//!      +--------------------+--> declined | busy | cancelled | expired (no answer in time)
//! ```
//!
//! Signals flow only between the two parties of a ringing or accepted invitation. An invitation
//! to a callee who is offline waits (until it expires) and is delivered at their login. An
//! accepted invitation ends, hung up, if a party stays disconnected longer than the grace period.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::state::Invite;
use super::{check_len, Fail, Hub, Reply, Timer};
use crate::protocol::{
    ErrorCode, Invitation, InviteId, InviteState, ServerMessage, UserName, MAX_FIELD,
};
use crate::store::Store;

fn check_invitation(inv: &Invitation) -> Result<(), Fail> {
    let name_ok = |name: &str| {
        check_len("name", name, MAX_FIELD)?;
        if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
            return Err(Fail::new(ErrorCode::Invalid, format!("bad name {name:?}")));
        }
        Ok(())
    };
    match inv {
        Invitation::Call { .. } => Ok(()),
        Invitation::Folder { name } => name_ok(name),
        Invitation::File { name, sha256, .. } => {
            name_ok(name)?;
            if sha256.len() != 64
                || !sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(Fail::new(
                    ErrorCode::Invalid,
                    "sha256 must be 64 lowercase hex digits",
                ));
            }
            Ok(())
        }
    }
}

fn no_such(id: InviteId) -> Fail {
    Fail::new(
        ErrorCode::NoSuchInvitation,
        format!("no live invitation {id} of yours"),
    )
}

impl<S: Store> Hub<S> {
    pub(super) fn invite(
        &mut self,
        now: Instant,
        user: &UserName,
        rid: Option<u64>,
        to: &UserName,
        invitation: Invitation,
        expires_ms: Option<u64>,
    ) -> Reply {
        check_invitation(&invitation)?;
        self.require_contact(user, to)?;
        let ttl = expires_ms.map_or(self.config.invite_ttl, Duration::from_millis);
        let ttl = ttl.clamp(Duration::from_secs(1), self.config.max_invite_ttl);
        let id = InviteId(self.next_invite);
        self.next_invite += 1;
        let hidden = self.blocks(to, user)?;
        let is_call = matches!(invitation, Invitation::Call { .. });
        // An invisible callee looks offline: a call to them is not answered with `busy`.
        let invisible = self
            .sessions
            .get(to)
            .is_none_or(|s| s.status == crate::protocol::Status::Invisible);
        let in_call = is_call
            && !invisible
            && self.invites.values().any(|i| {
                i.state == InviteState::Accepted
                    && matches!(i.invitation, Invitation::Call { .. })
                    && (&i.caller == to || &i.callee == to)
            });
        let expires_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        let reply = ServerMessage::Invited {
            rid,
            id,
            to: to.clone(),
        };
        if in_call && !hidden {
            // After the reply, the caller learns the callee is busy; the callee is not disturbed.
            let state = ServerMessage::InviteState {
                id,
                state: InviteState::Busy,
                reason: Some("in another call".into()),
            };
            self.send_user(user, state);
            return Ok(Some(reply));
        }
        let deadline = now + ttl;
        self.timers.push(Reverse((deadline, Timer::Invite(id))));
        if !hidden {
            let msg = ServerMessage::Invitation {
                from: user.clone(),
                id,
                invitation: invitation.clone(),
                expires_ms,
            };
            self.send_user(to, msg);
        }
        let inv = Invite {
            caller: user.clone(),
            callee: to.clone(),
            invitation,
            state: InviteState::Invited,
            deadline: Some(deadline),
            hidden,
        };
        self.invites.insert(id, inv);
        Ok(Some(reply))
    }

    /// The invitation `id` if `user` is its callee (or, with `either`, a party).
    fn party_invite(
        &mut self,
        user: &UserName,
        id: InviteId,
        either: bool,
    ) -> Result<&mut Invite, Fail> {
        match self.invites.get_mut(&id) {
            Some(i) if &i.callee == user || (either && &i.caller == user) => Ok(i),
            _ => Err(no_such(id)),
        }
    }

    pub(super) fn ringing(&mut self, user: &UserName, id: InviteId) -> Reply {
        let inv = self.party_invite(user, id, false)?;
        match inv.state {
            InviteState::Ringing => Ok(None),
            InviteState::Invited => {
                inv.state = InviteState::Ringing;
                let caller = inv.caller.clone();
                self.send_user(
                    &caller,
                    ServerMessage::InviteState {
                        id,
                        state: InviteState::Ringing,
                        reason: None,
                    },
                );
                Ok(None)
            }
            _ => Err(Fail::new(
                ErrorCode::NotAllowed,
                "the invitation was already answered",
            )),
        }
    }

    pub(super) fn accept(&mut self, user: &UserName, id: InviteId) -> Reply {
        let inv = self.party_invite(user, id, false)?;
        if !matches!(inv.state, InviteState::Invited | InviteState::Ringing) {
            return Err(Fail::new(
                ErrorCode::NotAllowed,
                "the invitation was already answered",
            ));
        }
        inv.state = InviteState::Accepted;
        inv.deadline = None;
        let (caller, callee) = (inv.caller.clone(), inv.callee.clone());
        for party in [&caller, &callee] {
            self.send_user(
                party,
                ServerMessage::InviteState {
                    id,
                    state: InviteState::Accepted,
                    reason: None,
                },
            );
        }
        Ok(None)
    }

    pub(super) fn decline(
        &mut self,
        user: &UserName,
        id: InviteId,
        reason: Option<String>,
    ) -> Reply {
        self.answer(user, id, InviteState::Declined, reason)
    }

    pub(super) fn busy(&mut self, user: &UserName, id: InviteId) -> Reply {
        self.answer(user, id, InviteState::Busy, None)
    }

    /// The callee refuses a ringing invitation.
    fn answer(
        &mut self,
        user: &UserName,
        id: InviteId,
        state: InviteState,
        reason: Option<String>,
    ) -> Reply {
        if let Some(r) = &reason {
            check_len("reason", r, MAX_FIELD)?;
        }
        let inv = self.party_invite(user, id, false)?;
        if !matches!(inv.state, InviteState::Invited | InviteState::Ringing) {
            return Err(Fail::new(
                ErrorCode::NotAllowed,
                "the invitation was already answered; hang up instead",
            ));
        }
        self.finish(id, state, reason);
        Ok(None)
    }

    pub(super) fn cancel(&mut self, user: &UserName, id: InviteId) -> Reply {
        match self.invites.get(&id) {
            Some(i) if &i.caller == user => {
                if i.state == InviteState::Accepted {
                    return Err(Fail::new(
                        ErrorCode::NotAllowed,
                        "the invitation was accepted; hang up instead",
                    ));
                }
                self.finish(id, InviteState::Cancelled, None);
                Ok(None)
            }
            _ => Err(no_such(id)),
        }
    }

    pub(super) fn hangup(
        &mut self,
        user: &UserName,
        id: InviteId,
        reason: Option<String>,
    ) -> Reply {
        if let Some(r) = &reason {
            check_len("reason", r, MAX_FIELD)?;
        }
        let inv = self.party_invite(user, id, true)?;
        let state = match (inv.state, &inv.caller == user) {
            (InviteState::Accepted, _) => InviteState::HungUp,
            (_, true) => InviteState::Cancelled,
            (_, false) => InviteState::Declined,
        };
        self.finish(id, state, reason);
        Ok(None)
    }

    pub(super) fn signal(&mut self, user: &UserName, id: InviteId, signal: Value) -> Reply {
        let inv = self.party_invite(user, id, true)?;
        if !matches!(inv.state, InviteState::Ringing | InviteState::Accepted) {
            return Err(Fail::new(
                ErrorCode::NotAllowed,
                "signals flow only once the invitation rings",
            ));
        }
        let other = if &inv.caller == user {
            inv.callee.clone()
        } else {
            inv.caller.clone()
        };
        if !self.send_user(
            &other,
            ServerMessage::Signal {
                from: user.clone(),
                call: id,
                signal,
            },
        ) {
            return Err(Fail::new(
                ErrorCode::PeerOffline,
                format!("{other} is not connected"),
            ));
        }
        Ok(None)
    }

    /// Ends an invitation and tells both parties (the callee only if it ever saw it).
    fn finish(&mut self, id: InviteId, state: InviteState, reason: Option<String>) {
        let Some(inv) = self.invites.remove(&id) else {
            return;
        };
        let msg = ServerMessage::InviteState { id, state, reason };
        self.send_user(&inv.caller, msg.clone());
        if !inv.hidden {
            self.send_user(&inv.callee, msg);
        }
    }

    pub(super) fn invite_timeout(&mut self, now: Instant, id: InviteId) {
        let Some(inv) = self.invites.get(&id) else {
            return;
        };
        if inv.deadline.is_none_or(|d| d > now) {
            return;
        }
        if inv.state == InviteState::Accepted {
            self.finish(id, InviteState::HungUp, Some("connection lost".into()));
        } else {
            self.finish(id, InviteState::Expired, None);
        }
    }

    /// At login: shows `user` the invitations it is party to, and stops the grace timers of its calls.
    pub(super) fn resume_invites(&mut self, now: Instant, user: &UserName) {
        let mut msgs = Vec::new();
        for (id, inv) in self.invites.iter_mut() {
            let is_callee = &inv.callee == user && !inv.hidden;
            if &inv.caller != user && !is_callee {
                continue;
            }
            match inv.state {
                InviteState::Invited | InviteState::Ringing if is_callee => {
                    let left = inv
                        .deadline
                        .map_or(Duration::ZERO, |d| d.saturating_duration_since(now));
                    let expires_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
                    let from = inv.caller.clone();
                    msgs.push((
                        *id,
                        ServerMessage::Invitation {
                            from,
                            id: *id,
                            invitation: inv.invitation.clone(),
                            expires_ms,
                        },
                    ));
                }
                InviteState::Accepted => {
                    let other = if &inv.caller == user {
                        &inv.callee
                    } else {
                        &inv.caller
                    };
                    if self.sessions.contains_key(other) {
                        inv.deadline = None;
                    }
                    msgs.push((
                        *id,
                        ServerMessage::InviteState {
                            id: *id,
                            state: inv.state,
                            reason: None,
                        },
                    ));
                }
                state => msgs.push((
                    *id,
                    ServerMessage::InviteState {
                        id: *id,
                        state,
                        reason: None,
                    },
                )),
            }
        }
        msgs.sort_by_key(|(id, _)| *id);
        for (_, msg) in msgs {
            self.send_user(user, msg);
        }
    }

    /// Ends every invitation between `a` and `b` (the relationship that allowed it ended, by
    /// `by`'s doing): accepted ones are hung up, others cancelled by `by` if it invited, else
    /// declined. No reason is given, so a block looks like any other end.
    pub(super) fn end_invites_between(&mut self, a: &UserName, b: &UserName, by: &UserName) {
        let mut ids: Vec<(InviteId, InviteState)> = self
            .invites
            .iter()
            .filter(|(_, i)| {
                (&i.caller == a && &i.callee == b) || (&i.caller == b && &i.callee == a)
            })
            .map(|(id, i)| {
                let state = match (i.state, &i.caller == by) {
                    (InviteState::Accepted, _) => InviteState::HungUp,
                    (_, true) => InviteState::Cancelled,
                    (_, false) => InviteState::Declined,
                };
                (*id, state)
            })
            .collect();
        ids.sort_by_key(|(id, _)| *id);
        for (id, state) in ids {
            self.finish(id, state, None);
        }
    }

    /// At logout: accepted invitations of `user` will be hung up unless it is back in time.
    pub(super) fn party_gone(&mut self, now: Instant, user: &UserName) {
        let deadline = now + self.config.call_grace;
        for (id, inv) in self.invites.iter_mut() {
            if inv.state == InviteState::Accepted && (&inv.caller == user || &inv.callee == user) {
                inv.deadline = Some(deadline);
                self.timers.push(Reverse((deadline, Timer::Invite(*id))));
            }
        }
    }
}
