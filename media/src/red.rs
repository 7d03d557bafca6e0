//! Audio redundancy in RTP payloads (RFC 2198), as libwebrtc negotiates it for Opus
//! (`a=rtpmap:63 red/48000/2`, `a=fmtp:63 111/111`).
//!
//! A RED payload carries the current Opus packet (the primary) and copies of up to
//! [`MAX_DISTANCE`] earlier ones, each behind a small header that gives its payload type and how
//! far back its timestamp lies. A receiver that lost the earlier packets takes the copies instead
//! of concealing. [`RedEncoder`] builds payloads without allocating once warm; [`RedPayload`]
//! reads them without copying, and refuses malformed ones with an error.
//!
//! ```
//! use duet_media::red::{RedEncoder, RedPayload};
//!
//! let mut red = RedEncoder::new(111);
//! red.set_distance(1);
//! let mut out = Vec::new();
//! red.encode(0, &[1, 2, 3], &mut out)?;
//! red.encode(960, &[4, 5], &mut out)?;
//! let payload = RedPayload::parse(&out)?;
//! let blocks: Vec<_> = payload.blocks().collect();
//! assert_eq!(blocks.len(), 2);
//! assert_eq!((blocks[0].timestamp_offset, blocks[0].data), (960, &[1u8, 2, 3][..]));
//! assert_eq!((blocks[1].timestamp_offset, blocks[1].data), (0, &[4u8, 5][..]));
//! # Ok::<(), duet_media::Error>(())
//! ```

use crate::error::{CodecError, Error};

/// The most earlier packets one payload carries.
pub const MAX_DISTANCE: usize = 2;

/// The largest block a redundant header can describe (10-bit length).
const MAX_BLOCK_LEN: usize = (1 << 10) - 1;

/// The largest timestamp offset a redundant header can describe (14 bits).
const MAX_OFFSET: u32 = (1 << 14) - 1;

/// The largest Opus packet (RFC 6716): the history is sized for it up front.
const MAX_OPUS_PACKET: usize = 1275;

/// The most blocks [`RedPayload::parse`] accepts in one payload, primary included.
pub const MAX_BLOCKS: usize = 8;

/// One earlier packet kept for redundancy.
#[derive(Debug, Clone)]
struct Kept {
    timestamp: u32,
    data: Vec<u8>,
}

/// Builds RED payloads around Opus packets, with a redundancy distance its owner adapts to loss.
#[derive(Debug, Clone)]
pub struct RedEncoder {
    payload_type: u8,
    distance: usize,
    /// Earlier packets, oldest first; at most `MAX_DISTANCE`.
    history: [Kept; MAX_DISTANCE],
    kept: usize,
}

/// What one [`RedEncoder::encode`] call put in its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedEncoded {
    /// Earlier packets carried again.
    pub redundant_blocks: usize,
    /// Bytes spent on them, headers included: the redundancy's overhead in this payload.
    pub redundant_bytes: usize,
}

impl RedEncoder {
    /// An encoder for the Opus payload type `payload_type`, with a redundancy distance of 0.
    pub fn new(payload_type: u8) -> Self {
        let kept = || Kept {
            timestamp: 0,
            data: Vec::with_capacity(MAX_OPUS_PACKET),
        };
        Self {
            payload_type: payload_type & 0x7f,
            distance: 0,
            history: [kept(), kept()],
            kept: 0,
        }
    }

    /// How many earlier packets each payload carries, from 0 to [`MAX_DISTANCE`] (larger values
    /// are clamped).
    pub fn set_distance(&mut self, distance: usize) {
        self.distance = distance.min(MAX_DISTANCE);
    }

    /// The redundancy distance in force.
    pub fn distance(&self) -> usize {
        self.distance
    }

    /// Writes into `out` (cleared first) a RED payload for the Opus packet `primary` of RTP
    /// timestamp `timestamp`, carrying as many earlier packets as the distance asks and the format
    /// allows (an earlier packet over 1,023 bytes, or more than 16,383 samples back, is left out).
    /// The packet is then kept for the payloads that follow.
    pub fn encode(
        &mut self,
        timestamp: u32,
        primary: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<RedEncoded, Error> {
        if primary.is_empty() || primary.len() > MAX_OPUS_PACKET {
            return Err(Error::Config(format!(
                "a RED primary block holds 1 to {MAX_OPUS_PACKET} bytes, not {}",
                primary.len()
            )));
        }
        out.clear();
        let first = self.kept - self.kept.min(self.distance);
        let carried = |k: &Kept| {
            let offset = timestamp.wrapping_sub(k.timestamp);
            (offset > 0 && offset <= MAX_OFFSET && k.data.len() <= MAX_BLOCK_LEN).then_some(offset)
        };
        let mut encoded = RedEncoded::default();
        for k in &self.history[first..self.kept] {
            if let Some(offset) = carried(k) {
                let len = k.data.len() as u32;
                out.push(0x80 | self.payload_type);
                out.push((offset >> 6) as u8);
                out.push((((offset & 0x3f) << 2) | (len >> 8)) as u8);
                out.push(len as u8);
                encoded.redundant_blocks += 1;
                encoded.redundant_bytes += 4 + k.data.len();
            }
        }
        out.push(self.payload_type);
        for k in &self.history[first..self.kept] {
            if carried(k).is_some() {
                out.extend_from_slice(&k.data);
            }
        }
        out.extend_from_slice(primary);
        self.keep(timestamp, primary);
        Ok(encoded)
    }

    /// Forgets the earlier packets (after a gap in the stream or a change of encoder).
    pub fn reset(&mut self) {
        self.kept = 0;
    }

    fn keep(&mut self, timestamp: u32, data: &[u8]) {
        if self.kept == MAX_DISTANCE {
            self.history.rotate_left(1);
            self.kept -= 1;
        }
        let slot = &mut self.history[self.kept];
        slot.timestamp = timestamp;
        slot.data.clear();
        slot.data.extend_from_slice(data);
        self.kept += 1;
    }
}

/// The redundancy distance for a measured fraction of packets lost (0.0 to 1.0): none on a clean
/// link, one earlier packet from 1% loss, two from 10%. `current` is the distance in force, so
/// that a loss figure near a threshold does not flip it back and forth.
pub fn distance_for_loss(fraction_lost: f64, current: usize) -> usize {
    // Up at the threshold, down only well below it.
    let (up1, down1, up2, down2) = (0.01, 0.005, 0.10, 0.07);
    let wanted = if fraction_lost >= up2 || (current >= 2 && fraction_lost >= down2) {
        2
    } else if fraction_lost >= up1 || (current >= 1 && fraction_lost >= down1) {
        1
    } else {
        0
    };
    wanted.min(MAX_DISTANCE)
}

/// Smoothing of the reported loss, rising faster than it falls, so that one clean report
/// after lossy ones does not drop the redundancy. A report covers about a second of audio
/// (50 packets), so one report alone says little: at 5% loss single reports of 10% are common.
const LOSS_RISE: f64 = 0.3;
const LOSS_FALL: f64 = 0.1;

/// Decides the redundancy distance from the loss the peer reports (RTCP receiver reports):
/// the reported fractions are smoothed, then [`distance_for_loss`] picks the distance with its
/// hysteresis.
///
/// ```
/// use duet_media::red::RedControl;
///
/// let mut control = RedControl::default();
/// assert_eq!(control.on_report(0.0), 0);
/// assert_eq!(control.on_report(0.2), 1);
/// assert_eq!(control.on_report(0.2), 2);
/// // One clean report does not take the redundancy away.
/// assert_eq!(control.on_report(0.0), 2);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RedControl {
    smoothed: f64,
    distance: usize,
}

impl RedControl {
    /// Takes the fraction lost of one receiver report (0 to 1; out of range is clamped) and
    /// returns the distance to use from now on.
    pub fn on_report(&mut self, fraction_lost: f64) -> usize {
        let loss = if fraction_lost.is_finite() {
            fraction_lost.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let alpha = if loss > self.smoothed {
            LOSS_RISE
        } else {
            LOSS_FALL
        };
        self.smoothed += alpha * (loss - self.smoothed);
        self.distance = distance_for_loss(self.smoothed, self.distance);
        self.distance
    }

    /// The distance in force.
    pub fn distance(&self) -> usize {
        self.distance
    }

    /// The smoothed loss it decides on, 0 to 1.
    pub fn smoothed_loss(&self) -> f64 {
        self.smoothed
    }
}

/// One block of a RED payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedBlock<'a> {
    /// The block's payload type (Opus's, in duet's use).
    pub payload_type: u8,
    /// How many samples (RTP timestamp units) before the packet's timestamp this block starts:
    /// 0 for the primary.
    pub timestamp_offset: u32,
    /// The block itself (an Opus packet).
    pub data: &'a [u8],
    /// True for the primary block, false for a redundant copy.
    pub primary: bool,
}

/// A parsed RED payload: its blocks, earliest first, primary last.
#[derive(Debug, Clone, Copy)]
pub struct RedPayload<'a> {
    headers: &'a [u8],
    data: &'a [u8],
    redundant: usize,
}

impl<'a> RedPayload<'a> {
    /// Reads the headers of `payload` and checks that the blocks they describe are there. A
    /// payload with no final header, more than [`MAX_BLOCKS`] blocks, block lengths that run past
    /// its end, or an empty primary is an error (the packet is dropped and counted by its caller).
    pub fn parse(payload: &'a [u8]) -> Result<Self, Error> {
        let mut at = 0;
        let mut redundant = 0;
        let mut lengths = 0usize;
        loop {
            let Some(&first) = payload.get(at) else {
                return Err(malformed("header runs past the payload's end"));
            };
            if first & 0x80 == 0 {
                at += 1;
                break;
            }
            let Some(h) = payload.get(at..at + 4) else {
                return Err(malformed("header runs past the payload's end"));
            };
            redundant += 1;
            if redundant + 1 > MAX_BLOCKS {
                return Err(malformed(
                    "more blocks than a RED payload of duet's carries",
                ));
            }
            lengths += (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
            at += 4;
        }
        let data = &payload[at..];
        if lengths >= data.len() {
            return Err(malformed(
                "blocks run past the payload's end or leave no primary",
            ));
        }
        Ok(Self {
            headers: &payload[..at],
            data,
            redundant,
        })
    }

    /// How many redundant blocks the payload carries.
    pub fn redundant_blocks(&self) -> usize {
        self.redundant
    }

    /// The blocks, earliest first, the primary last.
    pub fn blocks(&self) -> impl Iterator<Item = RedBlock<'a>> + 'a {
        let (headers, data, redundant) = (self.headers, self.data, self.redundant);
        let mut start = 0;
        (0..=redundant).map(move |i| {
            let h = &headers[i * 4..];
            if i == redundant {
                return RedBlock {
                    payload_type: h[0] & 0x7f,
                    timestamp_offset: 0,
                    data: &data[start..],
                    primary: true,
                };
            }
            let offset = (u32::from(h[1]) << 6) | u32::from(h[2] >> 2);
            let len = (usize::from(h[2] & 0x03) << 8) | usize::from(h[3]);
            let block = RedBlock {
                payload_type: h[0] & 0x7f,
                timestamp_offset: offset,
                data: &data[start..start + len],
                primary: false,
            };
            start += len;
            block
        })
    }
}

fn malformed(reason: &str) -> Error {
    CodecError::Decode {
        codec: "red",
        reason: format!("RED payload: {reason}"),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_all(distance: usize, packets: &[(u32, Vec<u8>)]) -> Vec<Vec<u8>> {
        let mut red = RedEncoder::new(111);
        red.set_distance(distance);
        packets
            .iter()
            .map(|(ts, p)| {
                let mut out = Vec::new();
                red.encode(*ts, p, &mut out).unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn distance_zero_costs_one_byte() {
        let payloads = encode_all(0, &[(0, vec![7; 40]), (960, vec![8; 40])]);
        assert_eq!(payloads[1].len(), 41);
        assert_eq!(payloads[1][0], 111);
    }

    #[test]
    fn each_payload_carries_the_packets_before_it_earliest_first() {
        let packets: Vec<_> = (0..5u32)
            .map(|i| (i * 960, vec![i as u8; 30 + i as usize]))
            .collect();
        let payloads = encode_all(2, &packets);
        for (i, p) in payloads.iter().enumerate() {
            let parsed = RedPayload::parse(p).unwrap();
            let blocks: Vec<_> = parsed.blocks().collect();
            assert_eq!(blocks.len(), i.min(2) + 1, "payload {i}");
            for b in &blocks {
                let ts = packets[i].0 - b.timestamp_offset;
                let original = packets.iter().find(|(t, _)| *t == ts).unwrap();
                assert_eq!(b.data, &original.1[..]);
                assert_eq!(b.payload_type, 111);
            }
            assert!(blocks.last().unwrap().primary);
            assert!(blocks
                .windows(2)
                .all(|w| w[0].timestamp_offset > w[1].timestamp_offset));
        }
    }

    #[test]
    fn blocks_the_headers_cannot_describe_are_left_out() {
        // Too long for a 10-bit length, then too far back for a 14-bit offset.
        let payloads = encode_all(
            2,
            &[
                (0, vec![1; 1100]),
                (960, vec![2; 20]),
                (40_000, vec![3; 20]),
            ],
        );
        assert_eq!(
            RedPayload::parse(&payloads[1]).unwrap().redundant_blocks(),
            0
        );
        assert_eq!(
            RedPayload::parse(&payloads[2]).unwrap().redundant_blocks(),
            0
        );
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let bad: [&[u8]; 5] = [
            &[],
            &[0x80 | 111, 0, 4],                 // header cut short
            &[0x80 | 111, 15, 0, 10, 111, 1],    // block longer than the data
            &[0x80 | 111, 15, 0, 1, 111, 1],     // no primary left
            &[0x80 | 111, 15, 0, 1, 0x80, 0, 0], // no final header
        ];
        for b in bad {
            assert!(RedPayload::parse(b).is_err(), "{b:?}");
        }
        let many: Vec<u8> = std::iter::repeat_n([0x80 | 111, 0, 4, 0], MAX_BLOCKS)
            .flatten()
            .chain([111, 1])
            .collect();
        assert!(RedPayload::parse(&many).is_err());
    }

    #[test]
    fn distance_follows_loss_with_hysteresis() {
        assert_eq!(distance_for_loss(0.0, 0), 0);
        assert_eq!(distance_for_loss(0.02, 0), 1);
        assert_eq!(distance_for_loss(0.008, 1), 1);
        assert_eq!(distance_for_loss(0.003, 1), 0);
        assert_eq!(distance_for_loss(0.2, 0), 2);
        assert_eq!(distance_for_loss(0.08, 2), 2);
        assert_eq!(distance_for_loss(0.05, 2), 1);
    }

    #[test]
    fn control_rises_fast_and_falls_slowly() {
        let mut c = RedControl::default();
        assert_eq!(c.on_report(0.0), 0);
        assert_eq!(c.on_report(0.05), 1);
        let mut d = 0;
        for _ in 0..3 {
            d = c.on_report(0.25);
        }
        assert_eq!(d, 2);
        // Clean reports bring it down step by step, not at once.
        let steps: Vec<usize> = (0..40).map(|_| c.on_report(0.0)).collect();
        assert_eq!(steps[0], 2);
        assert!(steps.windows(2).all(|w| w[1] <= w[0]));
        assert!(steps.contains(&1));
        assert_eq!(*steps.last().unwrap(), 0);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Ok(p) = RedPayload::parse(&bytes) {
                let total: usize = p.blocks().map(|b| b.data.len()).sum();
                proptest::prop_assert!(total < bytes.len());
                proptest::prop_assert!(p.blocks().last().is_some_and(|b| b.primary && !b.data.is_empty()));
            }
        }
    }
}
