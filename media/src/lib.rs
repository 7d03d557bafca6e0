//! duet-media is the call engine of duet: it captures audio and video, encodes them with Opus
//! and H.264, decodes them again and hands them to a sink, measuring what every stage costs.
//!
//! It does not open sockets or talk to a signaling server: sources, codecs and sinks are plain
//! values driven by their caller, who passes the time in. Real-time device callbacks (cpal) only
//! move samples through lock-free rings.
//!
//! ```
//! use std::time::Instant;
//! use duet_media::audio::{synth::Tone, AudioSource};
//! use duet_media::codec::opus::{OpusConfig, OpusDecoder, OpusEncoder};
//! use duet_media::frame::{AudioFormat, AudioFrame, Channels, FrameDuration, Read};
//!
//! let format = AudioFormat { channels: Channels::Mono, frame: FrameDuration::Ms20 };
//! let now = Instant::now();
//! let mut tone = Tone::new(format, 440.0, 0.5, now);
//! let mut encoder = OpusEncoder::new(OpusConfig::voice(format))?;
//! let mut decoder = OpusDecoder::new(format)?;
//!
//! let mut frame = AudioFrame::silent(format, now);
//! let mut packet = Vec::new();
//! let mut decoded = AudioFrame::silent(format, now);
//! assert_eq!(tone.read(now, &mut frame)?, Read::Frame);
//! encoder.encode(&frame, &mut packet)?;
//! decoder.decode(&packet, &mut decoded)?;
//! assert_eq!(decoded.samples.len(), 960);
//! # Ok::<(), duet_media::Error>(())
//! ```
// One audited call into openh264's C API (codec::h264, retuning the bitrate in place) needs
// `unsafe`; everything else is safe code, and any other use is refused.
#![deny(unsafe_code)]

pub mod adapt;
pub mod audio;
pub mod call;
pub mod codec;
pub mod error;
pub mod fec;
pub mod frame;
pub mod ice;
pub mod jitter;
pub mod keyframe;
pub mod link;
pub mod loopback;
pub mod measure;
mod negotiate;
pub mod packetize;
pub mod red;
pub mod retransmit;
pub(crate) mod rng;
pub mod rtp;
pub(crate) mod stage;
pub mod stats;
pub mod transport;
pub mod video;

pub use error::{CodecError, DeviceError, Error, Result, SourceError};
pub use frame::{AudioFormat, AudioFrame, Channels, FrameDuration, Read, VideoFrame, SAMPLE_RATE};
