//! Jitter buffers: they turn packets that arrive late, out of order, twice or never into a
//! steady stream of frames, holding each packet only as long as the measured jitter requires.

pub mod audio;
pub mod video;
