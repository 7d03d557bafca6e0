//! duet: calls, chat, files and sharing folders between messenger contacts, peer to peer.
//!
//! [`client::Client`] is the API an app uses: it signs in to a duet signaling server and offers
//! presence, contacts, chat, calls ([`Client::call`](client::Client::call), incoming calls as
//! [`ClientEvent::IncomingCall`](client::ClientEvent::IncomingCall)), file transfers
//! ([`Client::send_file`](client::Client::send_file)) and sharing folders
//! ([`Client::share_folder`](client::Client::share_folder)) as async methods, and everything
//! that happens as one stream of [`ClientEvent`](client::ClientEvent)s. Media travels peer to
//! peer over WebRTC (the `duet-media` crate); files and folders over a WebRTC data channel with
//! the `duet-share` crate's protocols.
//!
//! The rest of this library is the `duet` command line, built on that API: [`cli`], one module
//! per command. [`report`] renders a call's or a loopback's figures as JSON and as a summary,
//! for both; [`getstats`] shapes them as a W3C webrtc-stats report.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use duet::client::{CallOptions, Client, ClientConfig, ClientEvent};
//! use duet_signaling::UserName;
//!
//! let config = ClientConfig::new("ws://127.0.0.1:7878/", UserName::new("bob")?, "token");
//! let (client, mut events) = Client::connect(config).await?;
//! while let Some(event) = events.recv().await {
//!     if let ClientEvent::IncomingCall(call) = event {
//!         let call = call.accept(CallOptions::default()).await?;
//!         let reason = call.ended().await;
//!         println!("{reason}: {}", call.finish().await?.summary());
//!     }
//! }
//! # let _ = client;
//! # Ok(()) }
//! ```
//!
//! ```
//! use duet::cli::spec::{AudioChoice, VideoChoice};
//!
//! assert_eq!("tone".parse::<AudioChoice>().unwrap(), AudioChoice::Tone);
//! assert!("hologram".parse::<VideoChoice>().is_err());
//! ```
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod getstats;
pub mod report;
