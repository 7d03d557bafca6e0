//! What sits between a call and the network: for now the seeded impairment layer that duet
//! puts under the real WebRTC stack for tests and for `duet loopback --impair ...`.

mod buffers;
pub mod impair;

pub use buffers::{BufferedRuntime, SOCKET_BUFFER};
pub use impair::{ImpairConfig, ImpairCounters, ImpairStats, ImpairedRuntime};
