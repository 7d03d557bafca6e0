//! duet is a messenger's call engine and the app that shows it off: `duet loopback` runs a call's
//! whole media path in one process and measures every stage; `duet devices` lists what can capture
//! and play.
//!
//! This library is what the `duet` binary is made of: parsing of media choices
//! ([`spec`]) and the loopback report ([`report`]). The media engine itself is the
//! `duet-media` crate.
//!
//! ```
//! use duet::spec::{AudioChoice, VideoChoice};
//!
//! assert_eq!("tone".parse::<AudioChoice>().unwrap(), AudioChoice::Tone);
//! assert!("y4m:clip.y4m".parse::<VideoChoice>().is_ok());
//! assert!("hologram".parse::<VideoChoice>().is_err());
//! ```
#![forbid(unsafe_code)]

pub mod calling;
pub mod client;
pub mod demo;
pub mod files;
pub mod report;
pub mod sharing;
pub mod social;
pub mod spec;
