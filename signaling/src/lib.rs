//! duet's signaling service: the small server that lets contacts find each other.
//!
//! It carries accounts, contact lists and presence, chat (with acks, delivery receipts, typing,
//! nudges, and store-and-forward for offline contacts), and invitations (calls, file offers,
//! shared folders) with the call signals (SDP, ICE) of their two parties. Media never passes
//! through it, and call signals are opaque JSON to it.
//!
//! ```text
//!  SignalingClient --ws--> server (axum shell) --> Hub (sans-IO: routing, presence, invitations, timers)
//!                                                   '--> Store (SQLite: accounts, contacts, kept messages)
//! ```
//!
//! - [`protocol`]: the JSON messages (documented with examples in signaling/PROTOCOL.md).
//! - [`hub`]: the state machine. It never reads a clock or touches a socket: tests drive it with
//!   simulated time.
//! - [`store`]: what survives a restart. Accounts keep a SHA-256 of their token, never the token.
//! - [`server`]: the WebSocket shell: authentication first, frame size and rate limits, bounded
//!   per-connection queues (a slow client is disconnected, never allowed to stall others).
//! - [`client`]: an async client that reconnects, logs in again and resumes.
//! - [`tls`]: `wss://` for both: the server's TLS listener, the client's certificate checks.
//! - [`web`]: the web client and `duet.js` for browsers, served on the same port, with a
//!   Content-Security-Policy and a same-origin check on WebSocket upgrades.
//!
//! The server, never the client, decides who a message is from.
//!
//! ```
//! use std::time::Instant;
//! use duet_signaling::hub::{ConnId, Hub, HubConfig, Output};
//! use duet_signaling::protocol::{ServerMessage, UserName};
//! use duet_signaling::store::{MemoryStore, Store};
//!
//! let mut hub = Hub::new(MemoryStore::default(), HubConfig::default())?;
//! let token = hub.store_mut().create_user(&UserName::new("alice")?)?;
//! let now = Instant::now();
//! hub.connect(now, ConnId(1), "127.0.0.1".parse().unwrap());
//! hub.handle_text(now, ConnId(1), &format!(r#"{{"type":"hello","version":1,"user":"alice","token":"{token}"}}"#));
//! let Some(Output::Send(ConnId(1), ServerMessage::Welcome { user, .. })) = hub.poll_output() else { panic!() };
//! assert_eq!(user.as_str(), "alice");
//! # Ok::<(), duet_signaling::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod client;
mod code;
mod error;
mod handshake;
pub mod hub;
pub mod ice;
pub mod limit;
pub mod protocol;
pub mod server;
pub mod store;
pub mod tls;
pub mod web;

pub use client::{ClientConfig, Event, SignalingClient};
pub use error::Error;
pub use hub::{Hub, HubConfig};
pub use protocol::{ClientMessage, ServerMessage, UserName};
pub use server::{Server, ServerConfig};
pub use store::{SqliteStore, Store};
