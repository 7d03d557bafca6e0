//! The signaling hub: a state machine that routes messages between authenticated connections.
//!
//! It does no I/O and reads no clock. The shell tells it about connections ([`Hub::connect`],
//! [`Hub::disconnect`]), hands it every frame ([`Hub::handle_text`] or [`Hub::handle`]) and the
//! time, and then drains [`Hub::poll_output`] until it returns `None`, sending each message on its
//! connection. It also sleeps until [`Hub::poll_timeout`] and calls [`Hub::handle_timeout`].
//! The [`Store`] is called synchronously for accounts, contacts and messages kept for offline users.
//!
//! Every reply to a request comes before anything else the request caused, on every connection.

mod chat;
mod contacts;
mod invite;
mod state;
#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ice::IceConfig;
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::{
    ClientMessage, ErrorCode, InviteId, Request, ServerMessage, Status, UserName, MAX_FIELD,
};
use crate::store::{hash_token, hashes_match, Relation, Store, REVOKED};
use crate::Error;

use state::{Invite, Recent};

/// A connection, numbered by the shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the hub asks the shell to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Send this message on the connection.
    Send(ConnId, ServerMessage),
    /// Close the connection once what was queued before is sent. The hub has already forgotten it.
    Close(ConnId),
}

/// The hub's limits and timings.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// How long an invitation rings unless the caller asks otherwise.
    pub invite_ttl: Duration,
    /// The longest ringing time a caller may ask for.
    pub max_invite_ttl: Duration,
    /// How long a connection may stay unauthenticated.
    pub auth_timeout: Duration,
    /// Connections from one address at once; more are refused and closed.
    pub max_conns_per_ip: usize,
    /// Connections from one address that have not logged in yet, at once; more are refused.
    pub max_pending_per_ip: usize,
    /// Failed logins on one connection before it is closed.
    pub max_failures_per_conn: u32,
    /// Failed logins from one address, within `failure_window`, before it is refused for the rest of it.
    pub max_failures_per_ip: u32,
    /// The window for counting failed logins.
    pub failure_window: Duration,
    /// Least time between two nudges from one user.
    pub nudge_interval: Duration,
    /// Messages sent to a client and not yet confirmed, at most.
    pub delivery_window: usize,
    /// Kept messages read from the store at a time when a user's queue runs dry.
    pub page: usize,
    /// Messages kept for one recipient, at most: more chat messages get a `mailbox_full` error.
    pub mailbox_messages: u64,
    /// Bytes kept for one recipient, at most (same error).
    pub mailbox_bytes: u64,
    /// How often to look for accounts revoked, rotated or deleted by `duet user` while online.
    pub account_check: Duration,
    /// How long an accepted call survives a party's disconnection.
    pub call_grace: Duration,
    /// How long chat message ids are remembered to drop resent duplicates.
    pub dedup_ttl: Duration,
    /// The STUN and TURN servers handed to clients (`None`: none).
    pub ice: Option<IceConfig>,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            invite_ttl: Duration::from_secs(30),
            max_invite_ttl: Duration::from_secs(120),
            auth_timeout: Duration::from_secs(10),
            max_conns_per_ip: 64,
            max_pending_per_ip: 16,
            max_failures_per_conn: 3,
            max_failures_per_ip: 20,
            failure_window: Duration::from_secs(60),
            nudge_interval: Duration::from_secs(5),
            delivery_window: 64,
            page: 256,
            mailbox_messages: 10_000,
            mailbox_bytes: 64 << 20,
            account_check: Duration::from_secs(1),
            call_grace: Duration::from_secs(30),
            dedup_ttl: Duration::from_secs(600),
            ice: None,
        }
    }
}

/// Why a request failed: becomes an `error` reply.
#[derive(Debug)]
pub(crate) struct Fail {
    code: ErrorCode,
    message: String,
}

impl Fail {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        tracing::error!("signaling store failed: {e}");
        Fail::new(
            ErrorCode::Internal,
            "the server's storage failed; try again",
        )
    }
}

type Reply = Result<Option<ServerMessage>, Fail>;

enum Conn {
    Pending { ip: IpAddr, failures: u32 },
    Authed(UserName),
}

/// A message to a user that waits for their `received`. The store keeps it until then.
#[derive(Clone, Debug)]
struct Delivery {
    seq: u64,
    msg: ServerMessage,
    /// The size it takes in the store.
    bytes: u64,
}

/// An authenticated user's state.
struct Session {
    conn: ConnId,
    /// The hash of the token it logged in with (a change in the store closes the session).
    token_hash: [u8; 32],
    status: Status,
    note: String,
    contacts: HashMap<UserName, Relation>,
    /// Kept messages read from the store, waiting for room in the window (at most a page).
    queued: VecDeque<Delivery>,
    /// The highest `seq` read from the store (or added to `queued`) for this session.
    cursor: u64,
    /// Whether the store may keep messages above `cursor`.
    more_in_store: bool,
    in_flight: BTreeMap<u64, Delivery>,
    last_nudge: Option<Instant>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Auth(ConnId),
    Invite(InviteId),
    Accounts,
}

/// Sequence numbers are reserved from the store in blocks, so a restart never reuses one.
const SEQ_BLOCK: u64 = 4096;

/// The signaling hub. See the [module docs](self) for how to drive it.
pub struct Hub<S: Store> {
    store: S,
    config: HubConfig,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<UserName, Session>,
    invites: HashMap<InviteId, Invite>,
    next_invite: u64,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    failures: HashMap<IpAddr, (u32, Instant)>,
    recent: Recent,
    next_seq: u64,
    reserved_seq: u64,
    out: VecDeque<Output>,
    /// What the store keeps for recipients, for those looked up so far.
    mailboxes: HashMap<UserName, crate::store::Mailbox>,
    /// The store's accounts generation last seen.
    accounts_generation: u64,
    /// Whether a [`Timer::Accounts`] is pending.
    accounts_timer: bool,
    /// The address of each connection.
    conn_ips: HashMap<ConnId, IpAddr>,
    /// Connections per address: (all, not logged in).
    per_ip: HashMap<IpAddr, (usize, usize)>,
}

impl<S: Store> Hub<S> {
    /// A hub over `store`, with no connections.
    pub fn new(mut store: S, config: HubConfig) -> Result<Self, Error> {
        let floor = store.seq_floor()?;
        let accounts_generation = store.accounts_generation()?;
        Ok(Self {
            store,
            recent: Recent::new(config.dedup_ttl),
            config,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            invites: HashMap::new(),
            next_invite: 1,
            timers: BinaryHeap::new(),
            failures: HashMap::new(),
            next_seq: floor,
            reserved_seq: floor,
            out: VecDeque::new(),
            mailboxes: HashMap::new(),
            accounts_generation,
            accounts_timer: false,
            conn_ips: HashMap::new(),
            per_ip: HashMap::new(),
        })
    }

    /// The store, e.g. to create accounts in the same process.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Takes the store back; unconfirmed messages of connected users are lost unless every
    /// connection was [disconnected](Hub::disconnect) first.
    pub fn into_store(self) -> S {
        self.store
    }

    /// How many users are connected and authenticated.
    pub fn online(&self) -> usize {
        self.sessions.len()
    }

    /// Call when a connection opens. It must authenticate within [`HubConfig::auth_timeout`].
    /// One address past [`HubConfig::max_conns_per_ip`] or [`HubConfig::max_pending_per_ip`]
    /// gets a `too_many_connections` error and the connection is closed.
    pub fn connect(&mut self, now: Instant, conn: ConnId, ip: IpAddr) {
        let (all, pending) = self.per_ip.get(&ip).copied().unwrap_or((0, 0));
        if all >= self.config.max_conns_per_ip || pending >= self.config.max_pending_per_ip {
            let message = if all >= self.config.max_conns_per_ip {
                format!(
                    "more than {} connections from one address",
                    self.config.max_conns_per_ip
                )
            } else {
                format!(
                    "more than {} connections from one address are logging in",
                    self.config.max_pending_per_ip
                )
            };
            self.send(
                conn,
                ServerMessage::Error {
                    rid: None,
                    code: ErrorCode::TooManyConnections,
                    message,
                },
            );
            self.out.push_back(Output::Close(conn));
            return;
        }
        self.per_ip.insert(ip, (all + 1, pending + 1));
        self.conn_ips.insert(conn, ip);
        self.conns.insert(conn, Conn::Pending { ip, failures: 0 });
        self.timers
            .push(Reverse((now + self.config.auth_timeout, Timer::Auth(conn))));
    }

    /// Forgets a connection's place in the per-address counts (once).
    fn release(&mut self, conn: ConnId, was_pending: bool) {
        let Some(ip) = self.conn_ips.remove(&conn) else {
            return;
        };
        if let Some((all, pending)) = self.per_ip.get_mut(&ip) {
            *all = all.saturating_sub(1);
            if was_pending {
                *pending = pending.saturating_sub(1);
            }
            if *all == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// A connection has logged in: it no longer counts as pending for its address.
    fn logged_in(&mut self, conn: ConnId) {
        if let Some(ip) = self.conn_ips.get(&conn) {
            if let Some((_, pending)) = self.per_ip.get_mut(ip) {
                *pending = pending.saturating_sub(1);
            }
        }
    }

    /// Call with every text frame received on `conn`.
    pub fn handle_text(&mut self, now: Instant, conn: ConnId, text: &str) {
        match Request::parse(text) {
            Ok(req) => self.handle(now, conn, req),
            Err(e) => self.reject(conn, e.rid, e.code, &e.message),
        }
    }

    /// Sends `conn` an error (for problems the shell finds: bad frames, rate limits).
    pub fn reject(&mut self, conn: ConnId, rid: Option<u64>, code: ErrorCode, message: &str) {
        if self.conns.contains_key(&conn) {
            self.send(
                conn,
                ServerMessage::Error {
                    rid,
                    code,
                    message: message.to_owned(),
                },
            );
        }
    }

    /// Call with every request parsed from `conn`.
    pub fn handle(&mut self, now: Instant, conn: ConnId, req: Request) {
        let rid = req.rid;
        let user = match self.conns.get(&conn) {
            None => return,
            Some(Conn::Pending { .. }) => {
                if let ClientMessage::Hello {
                    version,
                    user,
                    token,
                    status,
                    note,
                } = req.body
                {
                    self.hello(now, conn, rid, version, user, &token, status, note);
                } else {
                    let message = "authenticate with hello first";
                    self.send(
                        conn,
                        ServerMessage::Error {
                            rid,
                            code: ErrorCode::Unauthenticated,
                            message: message.into(),
                        },
                    );
                }
                return;
            }
            Some(Conn::Authed(user)) => user.clone(),
        };
        let mark = self.out.len();
        let reply = self.dispatch(now, &user, rid, req.body);
        let reply = match reply {
            Ok(Some(msg)) => Some(msg),
            Ok(None) => rid.map(|rid| ServerMessage::Ok { rid: Some(rid) }),
            Err(f) => Some(ServerMessage::Error {
                rid,
                code: f.code,
                message: f.message,
            }),
        };
        if let Some(msg) = reply {
            self.out
                .insert(mark.min(self.out.len()), Output::Send(conn, msg));
        }
    }

    fn dispatch(
        &mut self,
        now: Instant,
        user: &UserName,
        rid: Option<u64>,
        body: ClientMessage,
    ) -> Reply {
        match body {
            ClientMessage::Hello { .. } => {
                Err(Fail::new(ErrorCode::NotAllowed, "already authenticated"))
            }
            ClientMessage::Presence { status, note } => self.presence(user, status, note),
            ClientMessage::ContactAdd { user: other } => self.contact_add(user, &other),
            ClientMessage::ContactAccept { user: other } => self.contact_accept(user, &other),
            ClientMessage::ContactDecline { user: other } => self.contact_decline(user, &other),
            ClientMessage::ContactBlock { user: other } => self.contact_block(user, &other),
            ClientMessage::ContactUnblock { user: other } => self.contact_unblock(user, &other),
            ClientMessage::ContactRemove { user: other } => self.contact_remove(user, &other),
            ClientMessage::ContactList => Ok(Some(ServerMessage::Contacts {
                rid,
                contacts: self.contact_list(user),
            })),
            ClientMessage::Chat { to, id, text } => self.chat(now, user, rid, &to, id, text),
            ClientMessage::Received { seq } => self.received(now, user, seq),
            ClientMessage::Typing { to, active } => self.typing(user, &to, active),
            ClientMessage::Nudge { to } => self.nudge(now, user, &to),
            ClientMessage::Invite {
                to,
                invitation,
                expires_ms,
            } => self.invite(now, user, rid, &to, invitation, expires_ms),
            ClientMessage::Ringing { id } => self.ringing(user, id),
            ClientMessage::Accept { id } => self.accept(user, id),
            ClientMessage::Decline { id, reason } => self.decline(user, id, reason),
            ClientMessage::Busy { id } => self.busy(user, id),
            ClientMessage::Cancel { id } => self.cancel(user, id),
            ClientMessage::Hangup { id, reason } => self.hangup(user, id, reason),
            ClientMessage::Signal { call, signal } => self.signal(user, call, signal),
            ClientMessage::Ping => Ok(Some(ServerMessage::Pong { rid })),
            ClientMessage::IceServers => Ok(Some(self.ice_servers(now, user, rid))),
        }
    }

    /// Call when a connection has closed (for any reason). Its user goes offline: contacts are
    /// told, accepted calls get a grace period. Unconfirmed messages stay in the store.
    pub fn disconnect(&mut self, now: Instant, conn: ConnId) {
        let removed = self.conns.remove(&conn);
        // A connection replaced by a newer login was already forgotten, and is not pending.
        self.release(conn, matches!(removed, Some(Conn::Pending { .. })));
        let Some(Conn::Authed(user)) = removed else {
            return;
        };
        let Some(session) = self.sessions.remove(&user) else {
            return;
        };
        if session.status != Status::Invisible {
            self.tell_contacts(
                &user,
                &session.contacts,
                crate::protocol::Shown::Offline,
                "",
            );
        }
        self.party_gone(now, &user);
    }

    /// The earliest time [`handle_timeout`](Hub::handle_timeout) has something to do, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// Call at (or after) [`poll_timeout`](Hub::poll_timeout): expires invitations, drops
    /// connections that did not authenticate in time, ends calls whose party did not come back.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, timer))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Auth(conn) => {
                    if matches!(self.conns.get(&conn), Some(Conn::Pending { .. })) {
                        let message = "no hello in time".to_owned();
                        self.send(
                            conn,
                            ServerMessage::Error {
                                rid: None,
                                code: ErrorCode::Unauthenticated,
                                message,
                            },
                        );
                        self.close(now, conn);
                    }
                }
                Timer::Invite(id) => self.invite_timeout(now, id),
                Timer::Accounts => {
                    self.accounts_timer = false;
                    self.check_accounts(now);
                }
            }
        }
    }

    /// The next message for the shell to send, or connection to close.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    #[allow(clippy::too_many_arguments)]
    fn hello(
        &mut self,
        now: Instant,
        conn: ConnId,
        rid: Option<u64>,
        version: u32,
        user: UserName,
        token: &str,
        status: Option<Status>,
        note: Option<String>,
    ) {
        let Some(Conn::Pending { ip, failures }) = self.conns.get(&conn) else {
            return;
        };
        let (ip, failures) = (*ip, *failures);
        let refuse = |code, message: String| ServerMessage::Error { rid, code, message };
        if version != PROTOCOL_VERSION {
            let msg = format!("protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}");
            self.send(conn, refuse(ErrorCode::UnsupportedVersion, msg));
            return self.close(now, conn);
        }
        if self.locked_out(now, ip) {
            self.send(
                conn,
                refuse(
                    ErrorCode::TooManyAttempts,
                    "too many failed logins; try again later".into(),
                ),
            );
            return self.close(now, conn);
        }
        let account = match self.store.account(&user) {
            Ok(a) => a,
            Err(e) => {
                let f = Fail::from(e);
                return self.send(conn, refuse(f.code, f.message));
            }
        };
        // The hash is compared (in constant time) even for an unknown user.
        let given = hash_token(token);
        let expected = account.as_ref().map_or(REVOKED, |a| a.token_hash);
        let matches = hashes_match(&given, &expected) && token.len() <= 128;
        let Some(account) = account.filter(|a| matches && a.token_hash != REVOKED) else {
            self.record_failure(now, ip);
            self.send(
                conn,
                refuse(
                    ErrorCode::BadCredentials,
                    "unknown user or wrong token".into(),
                ),
            );
            if failures + 1 >= self.config.max_failures_per_conn {
                return self.close(now, conn);
            }
            self.conns.insert(
                conn,
                Conn::Pending {
                    ip,
                    failures: failures + 1,
                },
            );
            return;
        };
        if let Err(f) = self.login(now, conn, user, account, status, note) {
            self.send(conn, refuse(f.code, f.message));
        }
    }

    fn locked_out(&self, now: Instant, ip: IpAddr) -> bool {
        self.failures.get(&ip).is_some_and(|(count, start)| {
            now.saturating_duration_since(*start) < self.config.failure_window
                && *count >= self.config.max_failures_per_ip
        })
    }

    fn record_failure(&mut self, now: Instant, ip: IpAddr) {
        let window = self.config.failure_window;
        if self.failures.len() > 10_000 {
            self.failures
                .retain(|_, (_, start)| now.saturating_duration_since(*start) < window);
        }
        let entry = self.failures.entry(ip).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= window {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    /// The ICE servers for `user` at `now`, with TURN credentials made now.
    fn ice_servers(&self, now: Instant, user: &UserName, rid: Option<u64>) -> ServerMessage {
        let Some(ice) = &self.config.ice else {
            return ServerMessage::IceServers {
                rid,
                servers: Vec::new(),
                expires_ms: None,
            };
        };
        let expires_ms = (!ice.turn.is_empty()).then_some(ice.ttl.as_millis() as u64);
        ServerMessage::IceServers {
            rid,
            servers: ice.servers_for(user.as_str(), now),
            expires_ms,
        }
    }

    fn login(
        &mut self,
        now: Instant,
        conn: ConnId,
        user: UserName,
        account: crate::store::Account,
        status: Option<Status>,
        note: Option<String>,
    ) -> Result<(), Fail> {
        if let Some(n) = &note {
            check_len("note", n, MAX_FIELD)?;
        }
        let previous = self.sessions.remove(&user);
        let was_shown = previous.as_ref().map(|s| {
            let note = if s.status == Status::Invisible {
                String::new()
            } else {
                s.note.clone()
            };
            (shown(s.status), note)
        });
        let mut session = match previous {
            Some(mut old) => {
                // The same account on a new connection: the old one is closed, and what it had not
                // confirmed is sent again here, in order.
                let message = "logged in on another connection".to_owned();
                self.send(
                    old.conn,
                    ServerMessage::Error {
                        rid: None,
                        code: ErrorCode::Replaced,
                        message,
                    },
                );
                self.out.push_back(Output::Close(old.conn));
                self.conns.remove(&old.conn);
                // What it had not confirmed is still in the store: read it again from the start.
                old.in_flight.clear();
                old.queued.clear();
                old.cursor = 0;
                old.more_in_store = true;
                old.conn = conn;
                old.token_hash = account.token_hash;
                old
            }
            None => {
                let contacts = self.store.relations(&user)?.into_iter().collect();
                Session {
                    conn,
                    token_hash: account.token_hash,
                    status: account.status,
                    note: account.note.clone(),
                    contacts,
                    queued: VecDeque::new(),
                    cursor: 0,
                    more_in_store: true,
                    in_flight: BTreeMap::new(),
                    last_nudge: None,
                }
            }
        };
        session.status = status.unwrap_or(session.status);
        session.note = note.unwrap_or(session.note);
        if (session.status, session.note.as_str()) != (account.status, account.note.as_str()) {
            self.store
                .set_presence(&user, session.status, &session.note)?;
        }
        let (status, note) = (session.status, session.note.clone());
        self.logged_in(conn);
        self.conns.insert(conn, Conn::Authed(user.clone()));
        self.sessions.insert(user.clone(), session);
        let welcome = ServerMessage::Welcome {
            version: PROTOCOL_VERSION,
            user: user.clone(),
            status,
            note: note.clone(),
        };
        self.send(conn, welcome);
        if self.config.ice.is_some() {
            let servers = self.ice_servers(now, &user, None);
            self.send(conn, servers);
        }
        let contacts = self.contact_list(&user);
        self.send(
            conn,
            ServerMessage::Contacts {
                rid: None,
                contacts,
            },
        );
        let visible_note = if status == Status::Invisible {
            String::new()
        } else {
            note
        };
        let now_shown = (shown(status), visible_note);
        let changed = match was_shown {
            None => status != Status::Invisible,
            Some(before) => before != now_shown,
        };
        if changed {
            self.tell_contacts_from_session(&user, now_shown.0, &now_shown.1);
        }
        self.resume_invites(now, &user);
        self.pump(now, &user);
        if !self.accounts_timer {
            self.accounts_timer = true;
            self.timers
                .push(Reverse((now + self.config.account_check, Timer::Accounts)));
        }
        Ok(())
    }

    /// Closes the sessions of accounts whose token changed (rotated, revoked) or that were
    /// deleted since the last look, and updates the contact lists of everyone else online.
    fn check_accounts(&mut self, now: Instant) {
        if self.sessions.is_empty() {
            return;
        }
        self.accounts_timer = true;
        self.timers
            .push(Reverse((now + self.config.account_check, Timer::Accounts)));
        let generation = match self.store.accounts_generation() {
            Ok(g) => g,
            Err(e) => return tracing::error!("signaling: cannot check accounts: {e}"),
        };
        if generation == self.accounts_generation {
            return;
        }
        self.accounts_generation = generation;
        self.mailboxes.clear();
        let mut users: Vec<UserName> = self.sessions.keys().cloned().collect();
        users.sort();
        let mut gone = Vec::new();
        for user in &users {
            let Some(s) = self.sessions.get(user) else {
                continue;
            };
            let account = match self.store.account(user) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!("signaling: cannot check account {user}: {e}");
                    continue;
                }
            };
            let message = match account {
                None => "the account was deleted",
                Some(a) if a.token_hash != s.token_hash => "the account's token was changed",
                Some(_) => continue,
            };
            let conn = s.conn;
            self.send(
                conn,
                ServerMessage::Error {
                    rid: None,
                    code: ErrorCode::BadCredentials,
                    message: message.into(),
                },
            );
            gone.push(conn);
        }
        for conn in gone {
            self.close(now, conn);
        }
        // Relationships with deleted accounts are gone from the store; tell whoever had one.
        let users: Vec<UserName> = self.sessions.keys().cloned().collect();
        for user in users {
            let Ok(now_rel) = self.store.relations(&user) else {
                continue;
            };
            let now_rel: HashMap<UserName, Relation> = now_rel.into_iter().collect();
            let Some(s) = self.sessions.get_mut(&user) else {
                continue;
            };
            let mut removed: Vec<UserName> = s
                .contacts
                .keys()
                .filter(|o| !now_rel.contains_key(*o))
                .cloned()
                .collect();
            removed.sort();
            s.contacts = now_rel;
            for other in removed {
                self.end_invites_between(&user, &other, &user);
                self.send_user(
                    &user,
                    ServerMessage::ContactUpdate {
                        user: other,
                        change: crate::protocol::ContactChange::Removed,
                    },
                );
            }
        }
    }

    /// Queues a message for a connection.
    fn send(&mut self, conn: ConnId, msg: ServerMessage) {
        self.out.push_back(Output::Send(conn, msg));
    }

    /// Queues a message for a user if connected; says whether it was.
    fn send_user(&mut self, user: &UserName, msg: ServerMessage) -> bool {
        match self.sessions.get(user) {
            Some(s) => {
                let conn = s.conn;
                self.send(conn, msg);
                true
            }
            None => false,
        }
    }

    /// Asks the shell to close `conn` and forgets it.
    fn close(&mut self, now: Instant, conn: ConnId) {
        self.out.push_back(Output::Close(conn));
        self.disconnect(now, conn);
        self.conns.remove(&conn);
    }

    /// How `owner` stands towards `other` (from memory if `owner` is online).
    fn rel(&mut self, owner: &UserName, other: &UserName) -> Result<Option<Relation>, Error> {
        match self.sessions.get(owner) {
            Some(s) => Ok(s.contacts.get(other).copied()),
            None => self.store.relation(owner, other),
        }
    }

    /// Sets how `owner` stands towards `other`, in the store and in memory.
    fn set_rel(
        &mut self,
        owner: &UserName,
        other: &UserName,
        rel: Option<Relation>,
    ) -> Result<(), Error> {
        let rel = rel.filter(|r| r.blocked || r.link != crate::protocol::Link::Stranger);
        self.store.set_relation(owner, other, rel)?;
        if let Some(s) = self.sessions.get_mut(owner) {
            match rel {
                Some(r) => s.contacts.insert(other.clone(), r),
                None => s.contacts.remove(other),
            };
        }
        Ok(())
    }
}

/// What contacts see of a status.
fn shown(status: Status) -> crate::protocol::Shown {
    status.into()
}

/// Refuses a field longer than `max` bytes.
fn check_len(what: &str, value: &str, max: usize) -> Result<(), Fail> {
    if value.len() > max {
        return Err(Fail::new(
            ErrorCode::Invalid,
            format!("{what} is {} bytes; at most {max}", value.len()),
        ));
    }
    Ok(())
}
