//! ULPFEC (RFC 5109) over whole RTP packets: an encoder that XORs groups of media packets
//! into FEC packets, and a receiver that rebuilds a lost media packet from a FEC packet and
//! the other packets it protects.
//!
//! Both work on serialized RTP packets, header extensions included, as libwebrtc does: the
//! FEC covers the bits of the first eight header bytes, the length after the fixed twelve
//! bytes and everything after them (CSRCs, extensions, payload). Only level 0 is used, with
//! the 16-bit mask (up to 16 packets) or the 48-bit one (up to [`MAX_PROTECTED`]).
//!
//! A FEC packet travels as the payload of RED (RFC 2198) on the media stream itself, sharing
//! its SSRC and sequence numbers; the media packets it protects are the ones as they would be
//! without RED ([`unwrap_red`]).
//!
//! ```
//! use duet_media::fec::ulpfec::{UlpfecEncoder, UlpfecReceiver};
//!
//! fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
//!     let mut p = vec![0x80, 102, (seq >> 8) as u8, seq as u8, 0, 0, 0, 9, 0, 0, 0, 7];
//!     p.extend_from_slice(payload);
//!     p
//! }
//! let media = [rtp(10, b"first"), rtp(11, b"second"), rtp(12, b"third")];
//! let refs: Vec<&[u8]> = media.iter().map(Vec::as_slice).collect();
//! let mut encoder = UlpfecEncoder::new();
//! let fec = encoder.encode(&refs, 1)?.to_vec();
//!
//! let mut receiver = UlpfecReceiver::new();
//! receiver.on_media(media[0].clone().into());
//! receiver.on_media(media[2].clone().into());
//! receiver.on_fec(7, fec[0].clone().into());
//! assert_eq!(receiver.poll_recovered().as_deref(), Some(&media[1][..]));
//! # Ok::<(), duet_media::Error>(())
//! ```

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::Error;
use crate::rtp::SeqUnwrapper;

/// The most media packets one FEC packet protects (the 48-bit mask).
pub const MAX_PROTECTED: usize = 48;
/// The fixed RTP header.
const RTP_HEADER: usize = 12;
/// The FEC header.
const FEC_HEADER: usize = 10;
/// The level 0 header with the short (16-bit) mask; the long one adds four bytes.
const LEVEL_HEADER_SHORT: usize = 4;
const LEVEL_HEADER_LONG: usize = 8;
/// Media packets the receiver keeps to recover from (a power of two).
const MEDIA_WINDOW: usize = 256;
/// FEC packets the receiver keeps waiting for a recovery.
const FEC_WINDOW: usize = 48;
/// The longest packet taken in: larger ones are not RTP over UDP.
const MAX_PACKET: usize = 1500;

/// Where the payload of a serialized RTP packet starts and how long it is without padding,
/// or `None` when it is not a well-formed RTP packet.
pub fn payload_range(packet: &[u8]) -> Option<(usize, usize)> {
    if packet.len() < RTP_HEADER || packet[0] >> 6 != 2 {
        return None;
    }
    let csrcs = usize::from(packet[0] & 0x0f);
    let mut start = RTP_HEADER + 4 * csrcs;
    if packet[0] & 0x10 != 0 {
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        let pad = usize::from(*packet.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    (start <= end).then_some((start, end))
}

/// The sequence number of a serialized RTP packet (at least 4 bytes long).
fn seq_of(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[2], packet[3]])
}

/// The media packet a single-block RED packet (RFC 2198, as libwebrtc sends video) carries:
/// the same header with the block's payload type, and the block as payload. `None` when the
/// packet is not RTP or its payload is not one primary block.
pub fn unwrap_red(packet: &[u8]) -> Option<Vec<u8>> {
    let (start, end) = payload_range(packet)?;
    let red = *packet.get(start)?;
    if red & 0x80 != 0 || packet[0] & 0x20 != 0 {
        // Redundant blocks (or padding to strip) are not how video travels in RED.
        return None;
    }
    let mut out = Vec::with_capacity(end - 1);
    out.extend_from_slice(&packet[..start]);
    out[1] = (out[1] & 0x80) | (red & 0x7f);
    out.extend_from_slice(&packet[start + 1..end]);
    Some(out)
}

/// Which media packets each of `fec` FEC packets protects, over `media` consecutive packets:
/// bit `i` of a mask stands for the `i`-th media packet.
///
/// The masks interleave: media packet `i` goes to FEC packet `i % fec`. Any burst of up to
/// `fec` consecutive losses then falls in as many different FEC packets and is recovered,
/// and isolated losses are recovered while no two fall in one group of `media / fec`.
/// Bursts are what a congested queue or a radio fade produce, and a frame's packets leave
/// back to back, so this is the shape of loss that matters most.
pub fn interleaved_masks(media: usize, fec: usize, masks: &mut Vec<u64>) {
    masks.clear();
    let media = media.min(MAX_PROTECTED);
    let fec = fec.clamp(1, media.max(1));
    masks.resize(fec, 0);
    for i in 0..media {
        masks[i % fec] |= 1 << i;
    }
}

/// Builds ULPFEC packets (the payloads that go in RED) over groups of media packets.
/// Warm, it allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct UlpfecEncoder {
    masks: Vec<u64>,
    out: Vec<Vec<u8>>,
}

impl UlpfecEncoder {
    /// An encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// `fec` FEC payloads over `media`, serialized RTP packets with consecutive sequence
    /// numbers (1 to [`MAX_PROTECTED`] of them), with [`interleaved_masks`]. `fec` is
    /// clamped to 1..=`media.len()`.
    pub fn encode(&mut self, media: &[&[u8]], fec: usize) -> Result<&[Vec<u8>], Error> {
        if media.is_empty() || media.len() > MAX_PROTECTED {
            return Err(Error::Config(format!(
                "ULPFEC protects 1 to {MAX_PROTECTED} packets, not {}",
                media.len()
            )));
        }
        let base = seq_of_checked(media[0])?;
        for (i, packet) in media.iter().enumerate() {
            if seq_of_checked(packet)? != base.wrapping_add(i as u16) {
                return Err(Error::Config(
                    "ULPFEC protects packets of consecutive sequence numbers".into(),
                ));
            }
            if packet.len() > MAX_PACKET {
                return Err(Error::Config(format!(
                    "a {}-byte packet is too long to protect",
                    packet.len()
                )));
            }
        }
        let mut masks = std::mem::take(&mut self.masks);
        interleaved_masks(media.len(), fec, &mut masks);
        self.out.resize_with(masks.len(), Vec::new);
        for (mask, out) in masks.iter().zip(self.out.iter_mut()) {
            write_fec(media, base, *mask, out);
        }
        let count = masks.len();
        self.masks = masks;
        Ok(&self.out[..count])
    }
}

fn seq_of_checked(packet: &[u8]) -> Result<u16, Error> {
    if payload_range(packet).is_none() {
        return Err(Error::Config("ULPFEC protects RTP packets only".into()));
    }
    Ok(seq_of(packet))
}

/// One FEC payload over the packets of `media` that `mask` names (bit `i`: `media[i]`). SN
/// base is the first packet of the group for every FEC packet of it, as libwebrtc writes it,
/// so a mask may start with zeros.
fn write_fec(media: &[&[u8]], base: u16, mask: u64, out: &mut Vec<u8>) {
    out.clear();
    let long = mask >> 16 != 0;
    let protected = || {
        media
            .iter()
            .enumerate()
            .filter(move |(i, _)| mask & (1 << i) != 0)
            .map(|(_, p)| *p)
    };
    let length = protected().map(|p| p.len() - RTP_HEADER).max().unwrap_or(0);
    let (mut b0, mut b1, mut ts, mut len) = (0u8, 0u8, [0u8; 4], 0u16);
    for p in protected() {
        b0 ^= p[0];
        b1 ^= p[1];
        for (t, b) in ts.iter_mut().zip(&p[4..8]) {
            *t ^= b;
        }
        len ^= (p.len() - RTP_HEADER) as u16;
    }
    out.push(if long { 0x40 } else { 0 } | (b0 & 0x3f));
    out.push(b1);
    out.extend_from_slice(&base.to_be_bytes());
    out.extend_from_slice(&ts);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&(length as u16).to_be_bytes());
    // 16 or 48 bits, most significant first: the top bit is the packet at SN base.
    let field = reverse_bits48(mask);
    if long {
        out.extend_from_slice(&field.to_be_bytes()[2..]);
    } else {
        out.extend_from_slice(&((field >> 32) as u16).to_be_bytes());
    }
    let start = out.len();
    out.resize(start + length, 0);
    for p in protected() {
        for (o, b) in out[start..].iter_mut().zip(&p[RTP_HEADER..]) {
            *o ^= b;
        }
    }
}

/// Mask bits as RFC 5109 lays them out: in a 48-bit field whose most significant bit is the
/// packet at SN base (bit 0 of `relative`).
fn reverse_bits48(relative: u64) -> u64 {
    (relative & ((1 << 48) - 1)).reverse_bits() >> 16
}

/// Counters of a [`UlpfecReceiver`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UlpfecStats {
    /// FEC packets taken in, malformed ones included (W3C `fecPacketsReceived`).
    pub fec_packets_received: u64,
    /// FEC packets that recovered nothing: every packet they protect came (or was recovered
    /// by another), they came too late, or they were malformed (W3C `fecPacketsDiscarded`).
    pub fec_packets_discarded: u64,
    /// Of those, the malformed ones: a header that does not parse, a protection length longer
    /// than the packet, or a recovered packet that is not RTP.
    pub fec_malformed: u64,
    /// Media packets rebuilt from FEC.
    pub recovered: u64,
}

/// One FEC packet waiting for the packets it needs.
#[derive(Debug, Clone)]
struct Pending {
    ssrc: u32,
    /// Extended sequence number of SN base.
    base: u64,
    /// Bit `i`: the packet at `base + i`.
    mask: u64,
    payload: Bytes,
}

impl Pending {
    fn header(&self) -> &[u8] {
        &self.payload[..FEC_HEADER]
    }

    fn level_len(&self) -> usize {
        if self.payload[0] & 0x40 != 0 {
            LEVEL_HEADER_LONG
        } else {
            LEVEL_HEADER_SHORT
        }
    }

    fn protection_length(&self) -> usize {
        usize::from(u16::from_be_bytes([
            self.payload[FEC_HEADER],
            self.payload[FEC_HEADER + 1],
        ]))
    }

    fn block(&self) -> &[u8] {
        let start = FEC_HEADER + self.level_len();
        &self.payload[start..start + self.protection_length()]
    }
}

/// Recovers lost media packets of one stream from the ULPFEC packets sent with it.
///
/// Feed it every media packet received ([`on_media`](Self::on_media), serialized, as it
/// would be without RED: see [`unwrap_red`]) and every FEC payload
/// ([`on_fec`](Self::on_fec)); take what it rebuilt with
/// [`poll_recovered`](Self::poll_recovered). It keeps the last 256 media packets and 48 FEC
/// packets, so its memory is bounded whatever arrives; a malformed FEC packet is dropped and
/// counted.
#[derive(Debug)]
pub struct UlpfecReceiver {
    media: Vec<Option<(u64, Bytes)>>,
    fec: VecDeque<Pending>,
    seqs: SeqUnwrapper,
    highest: Option<u64>,
    recovered: VecDeque<Bytes>,
    scratch: Vec<u8>,
    stats: UlpfecStats,
}

impl Default for UlpfecReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl UlpfecReceiver {
    /// An empty receiver.
    pub fn new() -> Self {
        Self {
            media: vec![None; MEDIA_WINDOW],
            fec: VecDeque::with_capacity(FEC_WINDOW),
            seqs: SeqUnwrapper::default(),
            highest: None,
            recovered: VecDeque::new(),
            scratch: Vec::with_capacity(MAX_PACKET),
            stats: UlpfecStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> UlpfecStats {
        self.stats
    }

    /// A media packet received (or retransmitted), serialized. Not RTP: ignored.
    pub fn on_media(&mut self, packet: Bytes) {
        if payload_range(&packet).is_none() || packet.len() > MAX_PACKET {
            return;
        }
        let seq = self.unwrap(seq_of(&packet));
        if self.has(seq) || self.too_old(seq) {
            return;
        }
        self.keep(seq, packet);
        self.recover();
    }

    /// A FEC payload (the RED block) that came in a packet of `ssrc`. Returns false when it
    /// is malformed (dropped and counted).
    pub fn on_fec(&mut self, ssrc: u32, payload: Bytes) -> bool {
        self.stats.fec_packets_received += 1;
        let Some((base, mask)) = parse_fec(&payload) else {
            self.stats.fec_malformed += 1;
            self.stats.fec_packets_discarded += 1;
            return false;
        };
        let base = self.unwrap(base);
        let pending = Pending {
            ssrc,
            base,
            mask,
            payload,
        };
        if self.too_old(pending.base) {
            self.stats.fec_packets_discarded += 1;
            return true;
        }
        if self.fec.len() == FEC_WINDOW {
            self.fec.pop_front();
            self.stats.fec_packets_discarded += 1;
        }
        self.fec.push_back(pending);
        self.recover();
        true
    }

    /// The next media packet rebuilt, serialized, in the order they were rebuilt.
    pub fn poll_recovered(&mut self) -> Option<Bytes> {
        self.recovered.pop_front()
    }

    fn unwrap(&mut self, seq: u16) -> u64 {
        let ext = self.seqs.unwrap(seq);
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        // FEC packets whose packets have all left the window can never be used.
        let floor = self.floor();
        while let Some(front) = self.fec.front() {
            if front.base >= floor {
                break;
            }
            self.fec.pop_front();
            self.stats.fec_packets_discarded += 1;
        }
        ext
    }

    fn floor(&self) -> u64 {
        self.highest
            .map_or(0, |h| h.saturating_sub(MEDIA_WINDOW as u64 - 1))
    }

    fn too_old(&self, seq: u64) -> bool {
        seq < self.floor()
    }

    fn has(&self, seq: u64) -> bool {
        self.media[seq as usize & (MEDIA_WINDOW - 1)]
            .as_ref()
            .is_some_and(|(s, _)| *s == seq)
    }

    fn get(&self, seq: u64) -> Option<&Bytes> {
        self.media[seq as usize & (MEDIA_WINDOW - 1)]
            .as_ref()
            .filter(|(s, _)| *s == seq)
            .map(|(_, p)| p)
    }

    fn keep(&mut self, seq: u64, packet: Bytes) {
        self.media[seq as usize & (MEDIA_WINDOW - 1)] = Some((seq, packet));
    }

    /// Recovers what the FEC packets held allow, over and over while each recovery lets
    /// another one through. Every pass consumes a FEC packet, so it ends.
    fn recover(&mut self) {
        loop {
            let mut progress = false;
            let mut i = 0;
            while i < self.fec.len() {
                let fec = &self.fec[i];
                let mut missing = None;
                let mut count = 0;
                for bit in 0..MAX_PROTECTED as u64 {
                    if fec.mask & (1 << bit) != 0 && !self.has(fec.base + bit) {
                        count += 1;
                        missing = Some(fec.base + bit);
                    }
                }
                match (count, missing) {
                    (0, _) => {
                        self.fec.remove(i);
                        self.stats.fec_packets_discarded += 1;
                    }
                    (1, Some(seq)) => {
                        let Some(fec) = self.fec.remove(i) else { break };
                        if self.too_old(seq) {
                            self.stats.fec_packets_discarded += 1;
                            continue;
                        }
                        match self.rebuild(&fec, seq) {
                            Some(packet) => {
                                self.stats.recovered += 1;
                                self.keep(seq, packet.clone());
                                self.recovered.push_back(packet);
                                progress = true;
                            }
                            None => {
                                self.stats.fec_malformed += 1;
                                self.stats.fec_packets_discarded += 1;
                            }
                        }
                    }
                    _ => i += 1,
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// The packet at `seq` from `fec` and the others it protects, or `None` when what comes
    /// out is not an RTP packet.
    fn rebuild(&mut self, fec: &Pending, seq: u64) -> Option<Bytes> {
        let header = fec.header();
        let (mut b0, mut b1) = (header[0], header[1]);
        let mut ts = [header[4], header[5], header[6], header[7]];
        let mut len = u16::from_be_bytes([header[8], header[9]]);
        let block = fec.block();
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        out.resize(RTP_HEADER, 0);
        out.extend_from_slice(block);
        for bit in 0..MAX_PROTECTED as u64 {
            let other = fec.base + bit;
            if fec.mask & (1 << bit) == 0 || other == seq {
                continue;
            }
            let p = self.get(other)?;
            b0 ^= p[0];
            b1 ^= p[1];
            for (t, b) in ts.iter_mut().zip(&p[4..8]) {
                *t ^= b;
            }
            len ^= (p.len() - RTP_HEADER) as u16;
            for (o, b) in out[RTP_HEADER..].iter_mut().zip(&p[RTP_HEADER..]) {
                *o ^= b;
            }
        }
        let len = usize::from(len);
        let result = (len <= block.len()).then(|| {
            out.truncate(RTP_HEADER + len);
            out[0] = 0x80 | (b0 & 0x3f);
            out[1] = b1;
            out[2..4].copy_from_slice(&(seq as u16).to_be_bytes());
            out[4..8].copy_from_slice(&ts);
            out[8..12].copy_from_slice(&fec.ssrc.to_be_bytes());
            Bytes::copy_from_slice(&out)
        });
        self.scratch = out;
        result.filter(|p| payload_range(p).is_some())
    }
}

/// The sequence numbers of the FEC packets of the group the FEC packet at `seq` (with RTP
/// marker `marker` and FEC payload `payload`) belongs to, first and last, as duet's sender
/// lays a group out: its media packets, then its FEC packets with [`interleaved_masks`] in
/// order, all with SN base at the group's first packet, the marker on the last one. A packet
/// of another layout gives `None`. What is known is returned: without the marker and with a
/// single protected packet, the run ends at `seq` as far as this packet tells.
///
/// A receiver uses it to know that a sequence number it never got carried FEC, not media.
pub fn fec_run(seq: u16, marker: bool, payload: &[u8]) -> Option<(u16, u16)> {
    let (base, mask) = parse_fec(payload)?;
    let j = mask.trailing_zeros() as u16;
    let after = seq.wrapping_sub(base);
    let media = after.checked_sub(j)?;
    if media == 0 || usize::from(media) > MAX_PROTECTED || mask >> media != 0 {
        return None;
    }
    let rest = mask >> j >> 1;
    let first = seq.wrapping_sub(j);
    if rest == 0 {
        return Some((first, seq));
    }
    let stride = rest.trailing_zeros() as u16 + 1;
    if j >= stride {
        return None;
    }
    let mut expected = 0u64;
    let mut bit = u32::from(j);
    while bit < u32::from(media) {
        expected |= 1 << bit;
        bit += u32::from(stride);
    }
    if expected != mask {
        return None;
    }
    let last = if marker {
        seq
    } else {
        first.wrapping_add(stride - 1)
    };
    Some((first, last))
}

/// SN base and the mask (bit `i`: SN base + `i`) of a FEC payload, or `None` when it is
/// malformed.
fn parse_fec(payload: &[u8]) -> Option<(u16, u64)> {
    if payload.len() < FEC_HEADER + LEVEL_HEADER_SHORT || payload[0] & 0x80 != 0 {
        return None;
    }
    let long = payload[0] & 0x40 != 0;
    let level = if long {
        LEVEL_HEADER_LONG
    } else {
        LEVEL_HEADER_SHORT
    };
    let header = payload.get(FEC_HEADER..FEC_HEADER + level)?;
    let length = usize::from(u16::from_be_bytes([header[0], header[1]]));
    if payload.len() < FEC_HEADER + level + length || length > MAX_PACKET {
        return None;
    }
    let field = if long {
        let mut b = [0u8; 8];
        b[2..].copy_from_slice(&header[2..8]);
        u64::from_be_bytes(b)
    } else {
        u64::from(u16::from_be_bytes([header[2], header[3]])) << 32
    };
    let mask = reverse_bits48(field);
    (mask != 0).then_some((u16::from_be_bytes([payload[2], payload[3]]), mask))
}

#[cfg(test)]
mod tests;
