//! RTP as the jitter buffers see it: packets with 16-bit sequence numbers and 32-bit media
//! timestamps, and unwrappers that extend both to 64 bits so ordering never wraps.

use bytes::Bytes;

/// One received RTP packet, header fields already parsed (by the transport) and payload kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// RTP sequence number (wraps at 2^16).
    pub seq: u16,
    /// RTP media timestamp (wraps at 2^32), in the clock rate of the payload (48 kHz Opus, 90 kHz video).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// The marker bit: last packet of a video frame.
    pub marker: bool,
    /// Payload type negotiated for the codec.
    pub payload_type: u8,
    /// The payload (an Opus packet, or an H.264 RTP payload per RFC 6184).
    pub payload: Bytes,
}

/// Extends 16-bit RTP sequence numbers to a monotonic 64-bit count, accepting reordering
/// of up to half the sequence space.
#[derive(Debug, Clone, Default)]
pub struct SeqUnwrapper {
    last: Option<u64>,
}

impl SeqUnwrapper {
    /// The extended value of `seq`, relative to the sequence numbers seen so far.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let ext = match self.last {
            None => u64::from(seq) + (1 << 16),
            Some(last) => {
                let delta = seq.wrapping_sub(last as u16) as i16;
                last.wrapping_add_signed(i64::from(delta))
            }
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

/// Extends 32-bit RTP timestamps to a monotonic 64-bit count, accepting reordering of up to
/// half the timestamp space.
#[derive(Debug, Clone, Default)]
pub struct TimestampUnwrapper {
    last: Option<u64>,
}

impl TimestampUnwrapper {
    /// The extended value of `ts`.
    pub fn unwrap(&mut self, ts: u32) -> u64 {
        let ext = match self.last {
            None => u64::from(ts) + (1 << 32),
            Some(last) => {
                let delta = ts.wrapping_sub(last as u32) as i32;
                last.wrapping_add_signed(i64::from(delta))
            }
        };
        if self.last.is_none_or(|l| ext > l) {
            self.last = Some(ext);
        }
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_unwrap_across_the_wrap_and_reorder() {
        let mut u = SeqUnwrapper::default();
        let a = u.unwrap(65534);
        let b = u.unwrap(65535);
        let c = u.unwrap(1);
        let d = u.unwrap(0);
        assert_eq!((b - a, c - b, c - d), (1, 2, 1));
    }

    #[test]
    fn timestamps_unwrap_across_the_wrap() {
        let mut u = TimestampUnwrapper::default();
        let a = u.unwrap(u32::MAX - 479);
        let b = u.unwrap(480);
        assert_eq!(b - a, 960);
        assert!(u.unwrap(0) < b);
    }
}
