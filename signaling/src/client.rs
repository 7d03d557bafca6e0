//! An async client for the signaling server that reconnects by itself.
//!
//! [`SignalingClient::connect`] logs in and starts a background task that owns the WebSocket.
//! When the connection drops, the task reconnects with backoff, logs in again with the last
//! presence set, and resends the requests that are safe to repeat (chat messages carry their
//! id, so the server drops duplicates). Chat messages and receipts are confirmed to the server
//! (`received`) once handed to [`Events`], and duplicates from redelivery are dropped.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::protocol::{
    ClientMessage, ErrorCode, IceServer, Invitation, InviteId, Request, ServerMessage, Status,
    UserName, PROTOCOL_VERSION,
};
use crate::tls::{self, ClientTls};
use crate::Error;

type Ws = WebSocketStream<tls::Stream>;

/// How long a chat message the server dropped as rate limited waits before it is sent again.
/// The server's bucket refills meanwhile, and one refusal a second stays far below what gets a
/// connection closed as flooding.
pub const RATE_LIMITED_PAUSE: Duration = Duration::from_secs(1);
/// How long a chat message keeps being sent again while the server drops it as rate limited.
pub const RATE_LIMITED_GIVE_UP: Duration = Duration::from_secs(120);

/// How to reach and log in to a server. Its `Debug` output leaves the token out.
#[derive(Clone)]
pub struct ClientConfig {
    /// The server's URL, `wss://host:port/` (or `ws://` to loopback).
    pub url: String,
    /// How the server's certificate is checked, and whether plain `ws://` may leave this machine.
    pub tls: ClientTls,
    /// The account.
    pub user: UserName,
    /// The account's token.
    pub token: String,
    /// Status to log in with (else the one the server remembers).
    pub status: Option<Status>,
    /// Personal message to log in with (else the one the server remembers).
    pub note: Option<String>,
    /// Whether to reconnect after a dropped connection.
    pub reconnect: bool,
    /// First wait before reconnecting; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// Longest wait between reconnection attempts.
    pub backoff_max: Duration,
    /// How long a request waits for its reply.
    pub request_timeout: Duration,
    /// How often to ping an otherwise quiet connection (the server closes idle ones).
    pub keepalive: Duration,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("token", &"<hidden>")
            .field("status", &self.status)
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// Defaults for `user` with `token` at `url`.
    pub fn new(url: impl Into<String>, user: UserName, token: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tls: ClientTls::default(),
            user,
            token: token.into(),
            status: None,
            note: None,
            reconnect: true,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(25),
        }
    }
}

/// What the client tells the application.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Logged in again after a dropped connection.
    Reconnected,
    /// The connection dropped; the client is reconnecting.
    Disconnected {
        /// What happened.
        reason: String,
    },
    /// A message from the server that is not the reply to a request (chat, presence, invitations...).
    Message(ServerMessage),
    /// The client has stopped for good (closed, or the server refused its credentials).
    Closed {
        /// Why.
        reason: String,
    },
}

/// The events of a client, in order. Read them promptly: while 1024 are waiting, the client
/// stops reading from the server, which disconnects a client that falls too far behind.
pub struct Events(mpsc::Receiver<Event>);

impl Events {
    /// The next event; `None` once the client has stopped and everything was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.0.recv().await
    }

    /// An event if one is ready.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.0.try_recv().ok()
    }
}

type ReplyTx = oneshot::Sender<Result<ServerMessage, Error>>;

enum Cmd {
    Request {
        req: Request,
        reply: Option<ReplyTx>,
    },
    Close,
}

/// The ICE servers the server gave, and until when their credentials are good.
#[derive(Clone, Debug)]
struct IceCache {
    servers: Vec<IceServer>,
    /// When they were received and how long they last; `None` for servers without expiry.
    lifetime: Option<(Instant, Duration)>,
}

impl IceCache {
    fn from_message(servers: Vec<IceServer>, expires_ms: Option<u64>) -> IceCache {
        IceCache {
            servers,
            lifetime: expires_ms.map(|ms| (Instant::now(), Duration::from_millis(ms))),
        }
    }

    /// Fresh enough to start a connection with: more than half their lifetime left.
    fn fresh(&self, now: Instant) -> bool {
        match self.lifetime {
            None => true,
            Some((at, lifetime)) => now.saturating_duration_since(at) < lifetime / 2,
        }
    }
}

/// A connection to the signaling server that survives drops. Cheap to clone.
#[derive(Clone)]
pub struct SignalingClient {
    cmds: mpsc::Sender<Cmd>,
    next_rid: Arc<AtomicU64>,
    user: UserName,
    timeout: Duration,
    ice: Arc<Mutex<Option<IceCache>>>,
}

impl SignalingClient {
    /// Connects and logs in. Fails if the first attempt fails (unreachable, refused credentials);
    /// after that, drops are handled in the background and reported as [`Event`]s.
    pub async fn connect(config: ClientConfig) -> Result<(SignalingClient, Events), Error> {
        let ws = tokio::time::timeout(
            config.request_timeout,
            login(&config, config.status, config.note.clone()),
        )
        .await
        .map_err(|_| Error::Timeout("logging in"))??;
        let (cmds, cmd_rx) = mpsc::channel(64);
        let (events, event_rx) = mpsc::channel(1024);
        let client = SignalingClient {
            cmds,
            next_rid: Arc::new(AtomicU64::new(1)),
            user: config.user.clone(),
            timeout: config.request_timeout,
            ice: Arc::new(Mutex::new(None)),
        };
        let task = Task {
            ice: client.ice.clone(),
            presence: (config.status, config.note.clone()),
            config,
            cmds: cmd_rx,
            events,
            pending: BTreeMap::new(),
            seen: Seen::default(),
        };
        tokio::spawn(task.run(ws));
        Ok((client, Events(event_rx)))
    }

    /// The account this client is logged in as.
    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// Sends a request and waits for its reply (`ok`, `ack`, `contacts`, `invited` or `pong`);
    /// an `error` reply becomes [`Error::Rejected`].
    pub async fn request(&self, body: ClientMessage) -> Result<ServerMessage, Error> {
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let req = Request {
            rid: Some(rid),
            body,
        };
        self.cmds
            .send(Cmd::Request {
                req,
                reply: Some(reply),
            })
            .await
            .map_err(|_| closed())?;
        match tokio::time::timeout(self.timeout, answer).await {
            Err(_) => Err(Error::Timeout("waiting for the server's reply")),
            Ok(Err(_)) => Err(closed()),
            Ok(Ok(r)) => r,
        }
    }

    /// Sends a message that needs no reply (typing, ringing...); dropped while disconnected.
    pub async fn send(&self, body: ClientMessage) -> Result<(), Error> {
        self.cmds
            .send(Cmd::Request {
                req: Request { rid: None, body },
                reply: None,
            })
            .await
            .map_err(|_| closed())
    }

    /// Sends a chat message and waits for the server's ack; returns its `seq`.
    pub async fn chat(&self, to: &UserName, text: &str) -> Result<u64, Error> {
        let mut id = [0u8; 12];
        rand::fill(&mut id);
        self.chat_with_id(to, &hex::encode(id), text).await
    }

    /// Sends a chat message with the given id (unique per sender) and waits for the ack.
    ///
    /// A message the server drops for going over its rate limit (a `rate_limited` error with
    /// this request's id) is sent again, with the same id, after a pause that lets the server's
    /// bucket refill ([`RATE_LIMITED_PAUSE`], doubling while refused again): sending lines as
    /// fast as they are acknowledged goes at the server's pace and loses none. It gives up
    /// with that error after [`RATE_LIMITED_GIVE_UP`].
    pub async fn chat_with_id(&self, to: &UserName, id: &str, text: &str) -> Result<u64, Error> {
        let body = ClientMessage::Chat {
            to: to.clone(),
            id: id.to_owned(),
            text: text.to_owned(),
        };
        let started = tokio::time::Instant::now();
        let mut pause = RATE_LIMITED_PAUSE;
        loop {
            match self.request(body.clone()).await {
                Ok(ServerMessage::Ack { seq, .. }) => return Ok(seq),
                Ok(other) => return Err(Error::Protocol(format!("expected ack, got {other:?}"))),
                Err(e)
                    if e.code() == Some(ErrorCode::RateLimited)
                        && started.elapsed() + pause <= RATE_LIMITED_GIVE_UP =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RATE_LIMITED_PAUSE * 8);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Sets status and personal message; kept across reconnections.
    pub async fn set_presence(&self, status: Status, note: Option<String>) -> Result<(), Error> {
        self.request(ClientMessage::Presence { status, note })
            .await
            .map(drop)
    }

    /// Invites a contact; returns the invitation's id.
    pub async fn invite(&self, to: &UserName, invitation: Invitation) -> Result<InviteId, Error> {
        match self
            .request(ClientMessage::Invite {
                to: to.clone(),
                invitation,
                expires_ms: None,
            })
            .await?
        {
            ServerMessage::Invited { id, .. } => Ok(id),
            other => Err(Error::Protocol(format!("expected invited, got {other:?}"))),
        }
    }

    /// The STUN and TURN servers to connect calls, transfers and links through. The ones the
    /// server sent after logging in are used while more than half their lifetime is left;
    /// otherwise fresh ones are asked for. Empty when the server knows none.
    pub async fn ice_servers(&self) -> Result<Vec<IceServer>, Error> {
        let cached = self.ice_lock().clone();
        if let Some(cache) = cached.filter(|c| c.fresh(Instant::now())) {
            return Ok(cache.servers);
        }
        let cache = match self.request(ClientMessage::IceServers).await {
            Ok(ServerMessage::IceServers {
                servers,
                expires_ms,
                ..
            }) => IceCache::from_message(servers, expires_ms),
            // A server that predates ICE servers has none to give.
            Err(Error::Rejected {
                code: ErrorCode::UnknownType,
                ..
            }) => IceCache::from_message(Vec::new(), None),
            Ok(other) => {
                return Err(Error::Protocol(format!(
                    "expected ice_servers, got {other:?}"
                )))
            }
            Err(e) => return Err(e),
        };
        *self.ice_lock() = Some(cache.clone());
        Ok(cache.servers)
    }

    fn ice_lock(&self) -> std::sync::MutexGuard<'_, Option<IceCache>> {
        self.ice.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the connection and stops reconnecting.
    pub async fn close(&self) {
        let _ = self.cmds.send(Cmd::Close).await;
    }
}

fn closed() -> Error {
    Error::Closed("the client has stopped".into())
}

/// Requests that are safe to send again after a reconnection.
fn resendable(body: &ClientMessage) -> bool {
    matches!(
        body,
        ClientMessage::Chat { .. }
            | ClientMessage::Presence { .. }
            | ClientMessage::ContactList
            | ClientMessage::ContactAdd { .. }
            | ClientMessage::ContactBlock { .. }
            | ClientMessage::ContactUnblock { .. }
            | ClientMessage::ContactRemove { .. }
            | ClientMessage::Ping
            | ClientMessage::IceServers
    )
}

/// Opens a WebSocket and logs in; returns once the server has welcomed us.
async fn login(
    config: &ClientConfig,
    status: Option<Status>,
    note: Option<String>,
) -> Result<Ws, Error> {
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(8192)
        .write_buffer_size(0);
    let mut ws = tls::connect(&config.url, &config.tls, ws_config).await?;
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        user: config.user.clone(),
        token: config.token.clone(),
        status,
        note,
    };
    ws.send(Message::text(
        Request {
            rid: None,
            body: hello,
        }
        .to_json(),
    ))
    .await?;
    while let Some(frame) = ws.next().await {
        let Message::Text(text) = frame? else {
            continue;
        };
        match ServerMessage::parse(&text)? {
            ServerMessage::Welcome { .. } => return Ok(ws),
            ServerMessage::Error { code, message, .. } => {
                return Err(Error::Rejected { code, message })
            }
            _ => {}
        }
    }
    Err(Error::Disconnected)
}

/// Chat ids and receipts already handed to the application.
#[derive(Default)]
struct Seen {
    set: HashSet<(bool, UserName, String)>,
    order: VecDeque<(bool, UserName, String)>,
}

impl Seen {
    /// Records a message; false if it was seen already.
    fn first_time(&mut self, receipt: bool, from: &UserName, id: &str) -> bool {
        let key = (receipt, from.clone(), id.to_owned());
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > 4096 {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

struct Task {
    config: ClientConfig,
    cmds: mpsc::Receiver<Cmd>,
    events: mpsc::Sender<Event>,
    /// Requests sent (or to send) and waiting for their reply, by rid.
    pending: BTreeMap<u64, (Request, ReplyTx)>,
    seen: Seen,
    presence: (Option<Status>, Option<String>),
    /// Where ICE servers the server sends unasked are kept.
    ice: Arc<Mutex<Option<IceCache>>>,
}

enum End {
    Closed(String),
    Lost(String),
}

impl Task {
    async fn run(mut self, mut ws: Ws) {
        let mut backoff = self.config.backoff_min;
        loop {
            let end = self.session(&mut ws).await;
            let reason = match end {
                End::Closed(reason) => return self.stop(reason).await,
                End::Lost(reason) if self.config.reconnect => reason,
                End::Lost(reason) => return self.stop(reason).await,
            };
            self.fail_unsendable();
            let _ = self.events.send(Event::Disconnected { reason }).await;
            ws = loop {
                if let Some(reason) = self.wait(backoff).await {
                    return self.stop(reason).await;
                }
                backoff = (backoff * 2).min(self.config.backoff_max);
                let attempt = login(&self.config, self.presence.0, self.presence.1.clone());
                match tokio::time::timeout(self.config.request_timeout, attempt).await {
                    Ok(Ok(ws)) => break ws,
                    Ok(Err(Error::Rejected {
                        code: ErrorCode::BadCredentials | ErrorCode::UnsupportedVersion,
                        message,
                    })) => {
                        return self
                            .stop(format!("the server refused to log in: {message}"))
                            .await;
                    }
                    Ok(Err(e)) => tracing::debug!("signaling client: reconnection failed: {e}"),
                    Err(_) => tracing::debug!("signaling client: reconnection timed out"),
                }
            };
            backoff = self.config.backoff_min;
            let _ = self.events.send(Event::Reconnected).await;
        }
    }

    /// Waits before reconnecting while taking commands; `Some` if the client was closed.
    async fn wait(&mut self, delay: Duration) -> Option<String> {
        let jitter =
            Duration::from_millis(rand::random_range(0..=delay.as_millis() as u64 / 4 + 1));
        let until = tokio::time::Instant::now() + delay + jitter;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return None,
                cmd = self.cmds.recv() => match cmd {
                    None | Some(Cmd::Close) => return Some("closed".into()),
                    Some(Cmd::Request { req, reply }) => self.queue(req, reply),
                },
            }
        }
    }

    /// Keeps a request for the next connection, or fails it now if it cannot be repeated.
    fn queue(&mut self, req: Request, reply: Option<ReplyTx>) {
        if let ClientMessage::Presence { status, note } = &req.body {
            self.presence = (Some(*status), note.clone().or(self.presence.1.take()));
        }
        match (req.rid, reply) {
            (Some(rid), Some(reply)) if resendable(&req.body) => {
                self.pending.retain(|_, (_, r)| !r.is_closed());
                self.pending.insert(rid, (req, reply));
            }
            (_, Some(reply)) => {
                let _ = reply.send(Err(Error::Disconnected));
            }
            (_, None) => {}
        }
    }

    fn fail_unsendable(&mut self) {
        let rids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (req, _))| !resendable(&req.body))
            .map(|(rid, _)| *rid)
            .collect();
        for rid in rids {
            if let Some((_, reply)) = self.pending.remove(&rid) {
                let _ = reply.send(Err(Error::Disconnected));
            }
        }
    }

    async fn stop(mut self, reason: String) {
        for (_, (_, reply)) in std::mem::take(&mut self.pending) {
            let _ = reply.send(Err(Error::Closed(reason.clone())));
        }
        let _ = self.events.send(Event::Closed { reason }).await;
    }

    async fn session(&mut self, ws: &mut Ws) -> End {
        for (req, _) in self.pending.values() {
            if ws.send(Message::text(req.to_json())).await.is_err() {
                return End::Lost("cannot resend".into());
            }
        }
        let mut keepalive = tokio::time::interval(self.config.keepalive);
        keepalive.tick().await;
        loop {
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    None | Some(Cmd::Close) => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                        return End::Closed("closed".into());
                    }
                    Some(Cmd::Request { req, reply }) => {
                        let text = req.to_json();
                        if let ClientMessage::Presence { status, note } = &req.body {
                            self.presence = (Some(*status), note.clone().or(self.presence.1.take()));
                        }
                        if let (Some(rid), Some(reply)) = (req.rid, reply) {
                            self.pending.retain(|_, (_, r)| !r.is_closed());
                            self.pending.insert(rid, (req, reply));
                        }
                        if let Err(e) = ws.send(Message::text(text)).await {
                            return End::Lost(format!("send failed: {e}"));
                        }
                    }
                },
                frame = ws.next() => match frame {
                    None => return End::Lost("connection closed".into()),
                    Some(Err(e)) => return End::Lost(e.to_string()),
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                        return End::Lost(format!("the server closed the connection: {why}"));
                    }
                    Some(Ok(Message::Text(text))) => {
                        if let Some(end) = self.burst(ws, &text).await {
                            return end;
                        }
                    }
                    Some(Ok(_)) => {}
                },
                _ = keepalive.tick() => {
                    if ws.send(Message::Ping(Default::default())).await.is_err() {
                        return End::Lost("keepalive failed".into());
                    }
                }
            }
        }
    }

    /// Handles a frame and whatever else has already arrived, then confirms the last chat
    /// message or receipt among them with one `received`. `Some` ends the session.
    async fn burst(&mut self, ws: &mut Ws, first: &str) -> Option<End> {
        let mut upto = None;
        let mut end = self.incoming(first, &mut upto).await;
        for _ in 0..64 {
            if end.is_some() {
                break;
            }
            match ws.next().now_or_never() {
                None => break,
                Some(Some(Ok(Message::Text(text)))) => end = self.incoming(&text, &mut upto).await,
                Some(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => {
                    end = Some(End::Lost("connection closed".into()))
                }
                Some(Some(Ok(_))) => {}
            }
        }
        if let Some(seq) = upto {
            let received = Request {
                rid: None,
                body: ClientMessage::Received { seq },
            };
            if ws.send(Message::text(received.to_json())).await.is_err() {
                return Some(End::Lost("send failed".into()));
            }
        }
        end
    }

    /// Handles one server frame; records in `upto` the `seq` to confirm. `Some` ends the session.
    async fn incoming(&mut self, text: &str, upto: &mut Option<u64>) -> Option<End> {
        let msg = match ServerMessage::parse(text) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("signaling client: {e}");
                return None;
            }
        };
        if let Some(rid) = msg.rid() {
            if let Some((_, reply)) = self.pending.remove(&rid) {
                let answer = match msg {
                    ServerMessage::Error { code, message, .. } => {
                        Err(Error::Rejected { code, message })
                    }
                    other => Ok(other),
                };
                let _ = reply.send(answer);
                return None;
            }
        }
        let first = match &msg {
            ServerMessage::Chat { from, id, seq, .. } => {
                *upto = Some(*seq);
                self.seen.first_time(false, from, id)
            }
            ServerMessage::Receipt { from, id, seq } => {
                *upto = Some(*seq);
                self.seen.first_time(true, from, id)
            }
            ServerMessage::IceServers {
                servers,
                expires_ms,
                ..
            } => {
                let cache = IceCache::from_message(servers.clone(), *expires_ms);
                *self.ice.lock().unwrap_or_else(|e| e.into_inner()) = Some(cache);
                return None;
            }
            ServerMessage::Error {
                code: ErrorCode::Replaced,
                ..
            } => {
                let _ = self.events.send(Event::Message(msg)).await;
                return Some(End::Closed("logged in elsewhere".into()));
            }
            // The account's token was changed or revoked, or the account deleted: logging in
            // again cannot work.
            ServerMessage::Error {
                code: ErrorCode::BadCredentials,
                rid: None,
                message,
            } => {
                let reason = format!("the server ended the session: {message}");
                let _ = self.events.send(Event::Message(msg.clone())).await;
                return Some(End::Closed(reason));
            }
            _ => true,
        };
        // Redelivered duplicates are confirmed again but not shown twice.
        if first {
            let _ = self.events.send(Event::Message(msg)).await;
        }
        None
    }
}
