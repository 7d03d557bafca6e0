//! The WebSocket shell around the [`Hub`]: an axum server that feeds it frames and the time, and
//! sends what it outputs.
//!
//! Each connection is one task that reads frames (size-limited, rate-limited, pings included) and
//! writes its own bounded queue. The hub sits behind one mutex, held only for the synchronous work
//! of a frame: parsing, routing, and the store's SQLite calls (tens of microseconds in WAL mode,
//! except that a chat message waits for one flush of the disk before its ack). When a
//! connection's queue is full, or one frame cannot be sent within [`Limits::send_timeout`] (a
//! client that does not read), the connection is closed: nobody else ever waits for it.
//!
//! Measured on a 2-core machine (`signaling_load` in bench/): 10,000 idle authenticated
//! connections cost the server about 9 KiB each. Chat throughput is bounded by the disk's flush
//! rate, since each message is flushed before its ack: 65 to 170 messages a second each way
//! between two clients on a disk that takes about 5 ms per flush
//! (`cargo test -p duet --test chat sigkill -- --nocapture`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use axum::Router;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::hub::{ConnId, Hub, HubConfig, Output};
use crate::limit::{RateConfig, RateLimiter, Verdict};
use crate::protocol::ErrorCode;
use crate::store::SqliteStore;
use crate::tls::{self, ServerTls};
use crate::Error;

/// Limits on each connection.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame (and message) accepted, in bytes; a larger one closes the connection.
    pub max_frame: usize,
    /// Messages queued for one connection before it counts as too slow and is closed.
    pub queue: usize,
    /// Incoming frame rate.
    pub rate: RateConfig,
    /// A connection that sends nothing (not even a ping) for this long is closed.
    pub idle_timeout: Duration,
    /// Connections at once; more are refused with 503.
    pub max_connections: usize,
    /// How long a new socket may take to send its WebSocket request; slower ones are dropped.
    pub upgrade_timeout: Duration,
    /// How long sending one frame to a client may take; a client that does not read for this
    /// long is disconnected (and shown offline).
    pub send_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 64 * 1024,
            queue: 256,
            rate: RateConfig::default(),
            idle_timeout: Duration::from_secs(90),
            max_connections: 50_000,
            send_timeout: Duration::from_secs(10),
            upgrade_timeout: Duration::from_secs(10),
        }
    }
}

/// How to run a server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (port 0: any free port; see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// The SQLite file (created if missing); `None` keeps everything in memory.
    pub db: Option<PathBuf>,
    /// The hub's timings and limits.
    pub hub: HubConfig,
    /// Per-connection limits.
    pub limits: Limits,
    /// Serve `wss://` with this certificate; `None` serves plain `ws://`.
    pub tls: Option<ServerTls>,
}

impl ServerConfig {
    /// Defaults for a server on `listen` with its store at `db`.
    pub fn new(listen: SocketAddr, db: Option<PathBuf>) -> Self {
        Self {
            listen,
            db,
            hub: HubConfig::default(),
            limits: Limits::default(),
            tls: None,
        }
    }
}

enum Outbound {
    Text(Utf8Bytes),
    Close,
}

struct ConnHandle {
    tx: mpsc::Sender<Outbound>,
    /// Ends the connection's task; `true` asks it to say goodbye with a close frame.
    kill: Option<oneshot::Sender<bool>>,
}

struct Inner {
    /// `None` once the server has shut down.
    hub: Option<Hub<SqliteStore>>,
    conns: HashMap<ConnId, ConnHandle>,
    /// The deadline the timer task sleeps until.
    armed: Option<Instant>,
}

struct Shared {
    inner: Mutex<Inner>,
    limits: Limits,
    timer: Notify,
    next_conn: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The hub never panics on input; if it ever did, its state is still the best there is.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the hub with the current time, then routes what it output.
    fn with_hub(&self, f: impl FnOnce(&mut Hub<SqliteStore>, Instant)) {
        let now = Instant::now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        let Some(hub) = inner.hub.as_mut() else {
            return;
        };
        f(hub, now);
        route(hub, &mut inner.conns, now);
        let next = hub.poll_timeout();
        if next.is_some() && (inner.armed.is_none() || next < inner.armed) {
            inner.armed = next;
            self.timer.notify_one();
        }
    }
}

/// Sends the hub's outputs to the connections' queues; closes connections whose queue is full.
fn route(hub: &mut Hub<SqliteStore>, conns: &mut HashMap<ConnId, ConnHandle>, now: Instant) {
    while let Some(out) = hub.poll_output() {
        let (conn, item) = match out {
            Output::Send(conn, msg) => (conn, Outbound::Text(msg.to_json().into())),
            Output::Close(conn) => (conn, Outbound::Close),
        };
        let Some(handle) = conns.get_mut(&conn) else {
            continue;
        };
        let queued = handle.tx.try_send(item).is_ok();
        if !queued {
            tracing::warn!(
                "signaling: closing connection {}: it does not read fast enough",
                conn.0
            );
            if let Some(kill) = handle.kill.take() {
                let _ = kill.send(false);
            }
        }
        if !queued {
            conns.remove(&conn);
            hub.disconnect(now, conn);
        }
        // A queued close keeps the handle until the connection's task ends and removes it.
    }
}

/// A running signaling server.
pub struct Server {
    addr: SocketAddr,
    secure: bool,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    serve: JoinHandle<std::io::Result<()>>,
    timers: JoinHandle<()>,
}

impl Server {
    /// Opens the store, binds the address and starts serving in the background.
    pub async fn start(config: ServerConfig) -> Result<Server, Error> {
        let store = match &config.db {
            Some(path) => SqliteStore::open(path)?,
            None => SqliteStore::open_in_memory()?,
        };
        let hub = Hub::new(store, config.hub.clone())?;
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                hub: Some(hub),
                conns: HashMap::new(),
                armed: None,
            }),
            limits: config.limits.clone(),
            timer: Notify::new(),
            next_conn: AtomicU64::new(1),
        });
        let app = Router::new()
            .fallback(upgrade)
            .layer(axum::middleware::from_fn(crate::web::front))
            .with_state(shared.clone());
        let secure = config.tls.is_some();
        // TLS (when asked) first, then a deadline on the WebSocket request; nodelay is set on
        // each accepted socket, and the peer's address comes through the tap.
        let listener = crate::handshake::HandshakeDeadline {
            inner: tls::Listener::new(listener, config.tls.clone())?,
            timeout: config.limits.upgrade_timeout,
        };
        let listener = listener.tap_io(|_| {});
        let (stop, stopped) = oneshot::channel::<()>();
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        let serve = tokio::spawn(async move { serve.await });
        let timers = tokio::spawn(run_timers(shared.clone()));
        tracing::info!("signaling: listening on {addr}");
        Ok(Server {
            addr,
            secure,
            shared,
            stop: Some(stop),
            serve,
            timers,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients connect to: `wss://` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.secure { "wss" } else { "ws" };
        format!("{scheme}://{}/", self.addr)
    }

    /// Open WebSocket connections, authenticated or not.
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// Stops accepting, closes every connection (their unconfirmed messages are kept in the
    /// store), and closes the store. Waits at most a few seconds.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let now = Instant::now();
        {
            let mut guard = self.shared.lock();
            let inner = &mut *guard;
            let ids: Vec<ConnId> = inner.conns.keys().copied().collect();
            for id in ids {
                if let Some(mut h) = inner.conns.remove(&id) {
                    if let Some(kill) = h.kill.take() {
                        let _ = kill.send(true);
                    }
                }
                if let Some(hub) = inner.hub.as_mut() {
                    hub.disconnect(now, id);
                }
            }
            // Dropping the hub closes the database.
            inner.hub = None;
        }
        self.timers.abort();
        match tokio::time::timeout(Duration::from_secs(5), &mut self.serve).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {}
            Err(_) => self.serve.abort(),
        }
        Ok(())
    }
}

async fn run_timers(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut inner = shared.lock();
            let next = inner.hub.as_ref().and_then(Hub::poll_timeout);
            inner.armed = next;
            next
        };
        match next {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    _ = shared.timer.notified() => continue,
                }
            }
            None => {
                shared.timer.notified().await;
                continue;
            }
        }
        shared.with_hub(|hub, now| hub.handle_timeout(now));
    }
}

async fn upgrade(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "duet signaling: connect with a WebSocket\n",
        )
            .into_response();
    };
    if shared.lock().conns.len() >= shared.limits.max_connections {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    }
    let max = shared.limits.max_frame;
    // Small buffers: an idle connection should cost a few KiB, not the default 128 KiB.
    ws.read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(max * 4)
        .max_frame_size(max)
        .max_message_size(max)
        .on_upgrade(move |socket| serve_conn(shared, socket, peer))
}

async fn serve_conn(shared: Arc<Shared>, mut ws: WebSocket, peer: SocketAddr) {
    let id = ConnId(shared.next_conn.fetch_add(1, Ordering::Relaxed));
    let (tx, mut rx) = mpsc::channel(shared.limits.queue.max(1));
    let (kill, mut killed) = oneshot::channel();
    {
        let mut inner = shared.lock();
        if inner.hub.is_none() {
            return;
        }
        inner.conns.insert(
            id,
            ConnHandle {
                tx,
                kill: Some(kill),
            },
        );
    }
    shared.with_hub(|hub, now| hub.connect(now, id, peer.ip()));
    let mut limiter = RateLimiter::new(Instant::now(), shared.limits.rate);
    let idle = shared.limits.idle_timeout;
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let reason = loop {
        tokio::select! {
            biased;
            goodbye = &mut killed => break goodbye.unwrap_or(false).then_some("server shutting down"),
            out = rx.recv() => match out {
                Some(Outbound::Text(text)) => {
                    let send = tokio::time::timeout(shared.limits.send_timeout, ws.send(Message::Text(text)));
                    tokio::select! {
                        biased;
                        _ = &mut killed => break None,
                        sent = send => match sent {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break None,
                            Err(_) => {
                                tracing::warn!("signaling: closing connection {}: it does not read", id.0);
                                break None;
                            }
                        },
                    }
                }
                Some(Outbound::Close) | None => break Some("closed by the server"),
            },
            frame = ws.recv() => {
                idle_timer.as_mut().reset(tokio::time::Instant::now() + idle);
                match frame {
                    None | Some(Ok(Message::Close(_))) => break None,
                    Some(Err(e)) => {
                        if is_too_large(e) {
                            let message = format!("frame larger than {} bytes", shared.limits.max_frame);
                            shared.with_hub(|hub, _| hub.reject(id, None, ErrorCode::TooLarge, &message));
                            break Some("frame too large");
                        }
                        break None;
                    }
                    // Pings and pongs count against the rate like any frame.
                    Some(Ok(msg)) => match limiter.check(Instant::now()) {
                        Verdict::Pass => match msg {
                            Message::Ping(_) | Message::Pong(_) => {}
                            Message::Text(text) => shared.with_hub(|hub, now| hub.handle_text(now, id, text.as_str())),
                            _ => {
                                let message = "binary frames are not used; send JSON text";
                                shared.with_hub(|hub, _| hub.reject(id, None, ErrorCode::Malformed, message));
                            }
                        },
                        Verdict::Drop { notify } => {
                            // A dropped request is answered by its id, so that its sender knows
                            // to send it again; other frames get one notice per run of drops.
                            // Either way no more goes out than came in, and a client that keeps
                            // going is closed.
                            let rid = match &msg {
                                Message::Text(text) => request_id(text.as_str()),
                                _ => None,
                            };
                            if rid.is_some() || notify {
                                let message = "too many messages; dropping them";
                                shared.with_hub(|hub, _| hub.reject(id, rid, ErrorCode::RateLimited, message));
                            }
                        }
                        Verdict::Disconnect => {
                            let message = "flooding; closing the connection";
                            shared.with_hub(|hub, _| hub.reject(id, None, ErrorCode::RateLimited, message));
                            break Some("rate limit");
                        }
                    },
                }
            }
            _ = &mut idle_timer => break Some("idle"),
        }
    };
    {
        let mut inner = shared.lock();
        inner.conns.remove(&id);
    }
    shared.with_hub(|hub, now| hub.disconnect(now, id));
    if let Some(reason) = reason {
        // Best effort: what was queued (such as the error that explains the close), then a close frame.
        let flush = async {
            while let Ok(Outbound::Text(text)) = rx.try_recv() {
                ws.send(Message::Text(text)).await?;
            }
            let code = match reason {
                "frame too large" => 1009,
                "server shutting down" => 1001,
                _ => 1000,
            };
            ws.send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), flush).await;
        // Read (and discard) until the client closes too: closing a socket with unread input
        // resets it, and the client would lose the explanation sent above.
        let linger = async { while let Some(Ok(_)) = ws.recv().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
    }
}

fn is_too_large(e: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    match e.into_inner().downcast::<WsError>() {
        Ok(e) => matches!(*e, WsError::Capacity(CapacityError::MessageTooLong { .. })),
        Err(_) => false,
    }
}

/// The request id of a text frame, if it is a JSON object with a numeric `rid`; the rest of
/// the frame is not looked at.
fn request_id(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Rid {
        #[serde(default)]
        rid: Option<u64>,
    }
    serde_json::from_str::<Rid>(text).ok()?.rid
}

#[cfg(test)]
mod tests {
    use super::request_id;

    #[test]
    fn a_dropped_frame_is_named_by_its_request_id_when_it_has_one() {
        assert_eq!(
            request_id(r#"{"type":"chat","rid":7,"to":"bob","id":"x","text":"hi"}"#),
            Some(7)
        );
        assert_eq!(request_id(r#"{"type":"ping"}"#), None);
        assert_eq!(request_id(r#"{"type":"ping","rid":-1}"#), None);
        assert_eq!(request_id("not json"), None);
        assert_eq!(request_id("[1,2]"), None);
    }
}
