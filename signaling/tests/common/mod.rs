//! A real signaling server on 127.0.0.1 with a temporary SQLite file, and a raw WebSocket peer
//! that speaks the protocol frame by frame. Every wait is bounded.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use duet_signaling::protocol::{ServerMessage, UserName};
use duet_signaling::server::{Server, ServerConfig};
use duet_signaling::store::{SqliteStore, Store};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single wait in a test may take.
pub const WAIT: Duration = Duration::from_secs(3);

pub struct TestServer {
    pub server: Option<Server>,
    pub config: ServerConfig,
    pub db: PathBuf,
    pub tokens: HashMap<String, String>,
    _dir: tempfile::TempDir,
}

pub fn name(s: &str) -> UserName {
    UserName::new(s).unwrap()
}

impl TestServer {
    pub async fn start(users: &[&str]) -> Self {
        Self::start_with(users, |_| {}).await
    }

    pub async fn start_with(users: &[&str], tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("duet.db");
        let mut store = SqliteStore::open(&db).unwrap();
        let tokens = users
            .iter()
            .map(|u| (u.to_string(), store.create_user(&name(u)).unwrap()))
            .collect();
        drop(store);
        let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap(), Some(db.clone()));
        tweak(&mut config);
        let server = Server::start(config.clone()).await.unwrap();
        config.listen = server.local_addr();
        Self {
            server: Some(server),
            config,
            db,
            tokens,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.config.listen
    }

    pub fn token(&self, user: &str) -> String {
        self.tokens[user].clone()
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.unwrap();
        }
    }

    /// Stops the server and starts a new one on the same address and database file.
    pub async fn restart(&mut self) {
        self.stop().await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match Server::start(self.config.clone()).await {
                Ok(s) => {
                    self.server = Some(s);
                    return;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("restart: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot restart: {e}"),
            }
        }
    }
}

pub struct Peer {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub user: String,
}

impl Peer {
    /// A connection that has not logged in.
    pub async fn connect(url: &str) -> Peer {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .unwrap()
            .unwrap();
        Peer {
            ws,
            user: String::new(),
        }
    }

    /// Logs in and reads the welcome and the contact list.
    pub async fn login(ts: &TestServer, user: &str) -> Peer {
        let mut p = Peer::connect(&ts.url()).await;
        p.user = user.to_owned();
        p.send(json!({"type": "hello", "version": 1, "user": user, "token": ts.token(user)}))
            .await;
        assert!(matches!(p.recv().await, ServerMessage::Welcome { .. }));
        assert!(matches!(p.recv().await, ServerMessage::Contacts { .. }));
        p
    }

    pub async fn send(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next message; panics if none comes in time or the connection ends.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.try_recv(WAIT).await {
            Some(m) => m,
            None => panic!("{}: nothing received in time", self.user),
        }
    }

    /// The next message within `wait`, if any.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<ServerMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()??;
            match frame {
                Ok(Message::Text(t)) => return Some(ServerMessage::parse(&t).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Skips messages until one matches.
    pub async fn recv_until(&mut self, pred: impl Fn(&ServerMessage) -> bool) -> ServerMessage {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.try_recv(left).await {
                Some(m) if pred(&m) => return m,
                Some(_) => {}
                None => panic!("{}: the expected message did not come", self.user),
            }
        }
    }

    /// Everything received within `ms` milliseconds.
    pub async fn drain(&mut self, ms: u64) -> Vec<ServerMessage> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(ms);
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return out;
            }
            match self.try_recv(left).await {
                Some(m) => out.push(m),
                None => return out,
            }
        }
    }

    /// Whether the server closes the connection within `WAIT` (reading and discarding until then).
    pub async fn closed_by_server(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return false,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// A ping's round trip works (the connection and the server are alive and responsive).
    pub async fn ping(&mut self, rid: u64) -> Duration {
        let t0 = std::time::Instant::now();
        self.send(json!({"type": "ping", "rid": rid})).await;
        let m = self
            .recv_until(|m| matches!(m, ServerMessage::Pong { .. }))
            .await;
        assert_eq!(m, ServerMessage::Pong { rid: Some(rid) });
        t0.elapsed()
    }
}

/// Makes two logged-in peers contacts, and consumes the notifications.
pub async fn befriend(a: &mut Peer, b: &mut Peer) {
    a.send(json!({"type": "contact_add", "user": b.user, "rid": 90}))
        .await;
    a.recv_until(|m| *m == ServerMessage::Ok { rid: Some(90) })
        .await;
    b.recv_until(|m| matches!(m, ServerMessage::ContactRequest { .. }))
        .await;
    b.send(json!({"type": "contact_accept", "user": a.user, "rid": 91}))
        .await;
    b.recv_until(|m| *m == ServerMessage::Ok { rid: Some(91) })
        .await;
    // Each sees the other's presence last.
    b.recv_until(|m| matches!(m, ServerMessage::Presence { .. }))
        .await;
    a.recv_until(|m| matches!(m, ServerMessage::Presence { .. }))
        .await;
}

pub fn error_code(m: &ServerMessage) -> Option<duet_signaling::protocol::ErrorCode> {
    match m {
        ServerMessage::Error { code, .. } => Some(*code),
        _ => None,
    }
}
