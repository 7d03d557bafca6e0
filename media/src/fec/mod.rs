//! Forward error correction for video: ULPFEC (RFC 5109) carried in RED (RFC 2198), as
//! Chrome negotiates it (`red/90000` and `ulpfec/90000`).
//!
//! [`ulpfec`] is the sans-IO core: an encoder that XORs groups of media packets into FEC
//! packets, and a receiver that rebuilds lost media packets from them. [`protection`]
//! decides how much to send from the measured loss and round trip: nothing on a clean link,
//! more the higher the loss, less where retransmission answers in time.
//!
//! ```
//! use duet_media::fec::protection::{FecGrouper, FecPolicy};
//!
//! let mut policy = FecPolicy::new();
//! let mut grouper = FecGrouper::new();
//! for _ in 0..5 {
//!     grouper.set_factor(policy.on_report(0.2, None, false));
//! }
//! let mut groups = Vec::new();
//! grouper.on_frame(1000, 10, false, &mut groups);
//! assert_eq!(groups[0].media, 10);
//! assert!(groups[0].fec >= 3);
//! ```

pub mod protection;
pub mod ulpfec;
