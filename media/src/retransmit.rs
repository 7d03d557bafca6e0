//! Answering NACKs: a send history of one video stream and the rules for sending a packet
//! again, in an RTX stream (RFC 4588) when one was negotiated.
//!
//! A packet asked for is sent again only when it is still worth it and the path can take it:
//!
//! - **once per round trip**: a NACK repeated within a round trip of the last answer crossed
//!   that answer on the way, and answering it again only doubles the load;
//! - **not too old**: a packet older than [`RetransmitConfig::max_age`] would reach the peer
//!   after its jitter buffer gave it up;
//! - **within the budget**: retransmissions draw on a token bucket filled at
//!   [`RetransmitConfig::budget_share`] of the congestion controller's estimate, so that a
//!   lossy stretch cannot send more than the path was judged to carry. Bitrate adaptation
//!   takes what is resent off the encoder's share.
//!
//! An RTX packet carries the original sequence number in its first two bytes, then the
//! original payload, on its own SSRC, payload type and sequence numbers, with the original
//! timestamp and marker. [`Retransmitter`] is sans-IO: the time is an argument.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use duet_media::retransmit::{RetransmitConfig, Retransmitter, Rtx};
//! use rtc::rtp::{header::Header, Packet};
//!
//! let t0 = Instant::now();
//! let rtx = Rtx { ssrc: 0x5678, payload_type: 103 };
//! let mut history = Retransmitter::new(RetransmitConfig::default(), Some(rtx))?;
//! history.set_rtt(Duration::from_millis(50));
//! let header = Header { version: 2, payload_type: 102, sequence_number: 7, ssrc: 0x1234, ..Default::default() };
//! history.on_sent(t0, &Packet { header, payload: Bytes::from_static(b"frame") });
//!
//! let resent = history.on_nack(t0 + Duration::from_millis(30), 7).expect("in the history");
//! assert_eq!((resent.header.ssrc, resent.header.payload_type), (0x5678, 103));
//! assert_eq!(&resent.payload[..], b"\x00\x07frame");
//! // Asked again within the round trip: not sent twice.
//! assert!(history.on_nack(t0 + Duration::from_millis(40), 7).is_none());
//! # Ok::<(), duet_media::Error>(())
//! ```

use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use rtc::rtp;

use crate::error::Error;

/// The repair stream a [`Retransmitter`] sends in (RFC 4588 session multiplexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rtx {
    /// SSRC of the RTX stream (announced with `a=ssrc-group:FID`).
    pub ssrc: u32,
    /// The negotiated `rtx` payload type whose `apt` is the media's.
    pub payload_type: u8,
}

/// Settings of a [`Retransmitter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetransmitConfig {
    /// Packets remembered (a power of two, 64 to 32768).
    pub history: usize,
    /// A packet older than this is not sent again: the receiver has given it up by then.
    pub max_age: Duration,
    /// The least time between two answers for one packet, when the round trip is shorter.
    pub min_interval: Duration,
    /// The round trip assumed until [`Retransmitter::set_rtt`] is called.
    pub initial_rtt: Duration,
    /// Share of the congestion controller's estimate that retransmissions may use (0 to 1).
    pub budget_share: f64,
    /// The estimate assumed until [`Retransmitter::set_target_bps`] is called, bit/s.
    pub initial_target_bps: u64,
    /// How much unused budget may be saved up, as time at the budget's rate.
    pub burst: Duration,
}

impl Default for RetransmitConfig {
    /// 1024 packets, 500 ms of age, 5 ms between answers at least, up to the whole estimate
    /// over any 500 ms (as libwebrtc limits its retransmissions).
    fn default() -> Self {
        Self {
            history: 1024,
            max_age: Duration::from_millis(500),
            min_interval: Duration::from_millis(5),
            initial_rtt: Duration::from_millis(100),
            budget_share: 1.0,
            initial_target_bps: 300_000,
            burst: Duration::from_millis(500),
        }
    }
}

impl RetransmitConfig {
    /// Checks that every value is usable.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.history.is_power_of_two() || !(64..=32768).contains(&self.history) {
            return Err(Error::Config(format!(
                "retransmission history of {} packets: choose a power of two from 64 to 32768",
                self.history
            )));
        }
        if !(0.0..=1.0).contains(&self.budget_share) {
            return Err(Error::Config(format!(
                "retransmission budget share {}: need 0 to 1",
                self.budget_share
            )));
        }
        Ok(())
    }
}

/// What a [`Retransmitter`] did with the packets asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetransmitStats {
    /// Packets sent again (`retransmittedPacketsSent`).
    pub packets: u64,
    /// Their payload bytes, the RTX header's original sequence number not included
    /// (`retransmittedBytesSent`).
    pub bytes: u64,
    /// Requests refused because the packet was sent again less than a round trip before.
    pub too_recent: u64,
    /// Requests refused because the packet was older than the receiver can use.
    pub too_old: u64,
    /// Requests refused because the retransmission budget was spent.
    pub over_budget: u64,
    /// Requests for packets not in the history (never sent, or forgotten).
    pub unknown: u64,
}

#[derive(Debug, Clone)]
struct Sent {
    packet: rtp::Packet,
    at: Instant,
    resent: Option<Instant>,
}

/// A token bucket in bytes.
#[derive(Debug, Clone)]
struct Budget {
    bytes: f64,
    rate_bps: f64,
    last: Option<Instant>,
}

/// The send history of one stream and the rules for answering NACKs (see the module docs).
#[derive(Debug, Clone)]
pub struct Retransmitter {
    config: RetransmitConfig,
    slots: Vec<Option<Sent>>,
    rtx: Option<Rtx>,
    rtx_seq: u16,
    rtt: Duration,
    budget: Budget,
    stats: RetransmitStats,
}

impl Retransmitter {
    /// An empty history; retransmissions go in `rtx` when given, else as copies of the
    /// original packets.
    pub fn new(config: RetransmitConfig, rtx: Option<Rtx>) -> Result<Self, Error> {
        config.validate()?;
        let mut this = Self {
            config,
            slots: vec![None; config.history],
            rtx,
            rtx_seq: rtx.map_or(0, |r| (r.ssrc >> 7) as u16),
            rtt: config.initial_rtt,
            budget: Budget {
                bytes: 0.0,
                rate_bps: 0.0,
                last: None,
            },
            stats: RetransmitStats::default(),
        };
        this.set_target_bps(config.initial_target_bps);
        this.budget.bytes = this.capacity();
        Ok(this)
    }

    /// Counters so far.
    pub fn stats(&self) -> RetransmitStats {
        self.stats
    }

    /// The repair stream, if any.
    pub fn rtx(&self) -> Option<Rtx> {
        self.rtx
    }

    /// Sets the round trip to the receiver (from RTCP receiver reports).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt.min(Duration::from_secs(5));
    }

    /// Sets the congestion controller's estimate, bit/s: the budget is a share of it.
    pub fn set_target_bps(&mut self, bps: u64) {
        self.budget.rate_bps = bps as f64 * self.config.budget_share;
        self.budget.bytes = self.budget.bytes.min(self.capacity());
    }

    fn capacity(&self) -> f64 {
        // Room for one full packet at least, so that a low estimate still repairs.
        (self.budget.rate_bps / 8.0 * self.config.burst.as_secs_f64()).max(1500.0)
    }

    fn refill(&mut self, now: Instant) {
        if let Some(last) = self.budget.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.budget.bytes =
                (self.budget.bytes + elapsed * self.budget.rate_bps / 8.0).min(self.capacity());
        }
        self.budget.last = Some(self.budget.last.map_or(now, |l| l.max(now)));
    }

    /// Remembers a packet of the stream as it leaves at `now`.
    pub fn on_sent(&mut self, now: Instant, packet: &rtp::Packet) {
        let index = usize::from(packet.header.sequence_number) & (self.slots.len() - 1);
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(Sent {
                packet: packet.clone(),
                at: now,
                resent: None,
            });
        }
    }

    /// The peer asked for `seq` at `now`: the packet to send (in the RTX stream when there is
    /// one), or `None` when it is unknown, too old, answered less than a round trip ago, or
    /// over the budget.
    pub fn on_nack(&mut self, now: Instant, seq: u16) -> Option<rtp::Packet> {
        self.refill(now);
        let index = usize::from(seq) & (self.slots.len() - 1);
        let interval = self.rtt.max(self.config.min_interval);
        let (max_age, rtx) = (self.config.max_age, self.rtx);
        let Some(sent) = self
            .slots
            .get_mut(index)
            .and_then(Option::as_mut)
            .filter(|s| s.packet.header.sequence_number == seq)
        else {
            self.stats.unknown += 1;
            return None;
        };
        if now.saturating_duration_since(sent.at) > max_age {
            self.stats.too_old += 1;
            return None;
        }
        if sent.resent.is_some_and(|t| now < t + interval) {
            self.stats.too_recent += 1;
            return None;
        }
        // The payload and a fixed RTP header (the RTX header adds its two bytes, SRTP its tag).
        let size = sent.packet.payload.len() + 12 + 4 * sent.packet.header.csrc.len() + 2;
        if self.budget.bytes < size as f64 {
            self.stats.over_budget += 1;
            return None;
        }
        self.budget.bytes -= size as f64;
        sent.resent = Some(now);
        self.stats.packets += 1;
        self.stats.bytes += sent.packet.payload.len() as u64;
        let Some(rtx) = rtx else {
            return Some(sent.packet.clone());
        };
        let original = &sent.packet;
        let mut payload = BytesMut::with_capacity(2 + original.payload.len());
        payload.put_u16(seq);
        payload.put_slice(&original.payload);
        let header = rtp::header::Header {
            version: 2,
            marker: original.header.marker,
            payload_type: rtx.payload_type,
            sequence_number: self.rtx_seq,
            timestamp: original.header.timestamp,
            ssrc: rtx.ssrc,
            ..Default::default()
        };
        self.rtx_seq = self.rtx_seq.wrapping_add(1);
        Some(rtp::Packet {
            header,
            payload: payload.freeze(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const MS: fn(u64) -> Duration = Duration::from_millis;
    const RTX: Rtx = Rtx {
        ssrc: 0x8000_0010,
        payload_type: 103,
    };

    fn packet(seq: u16, size: usize) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                payload_type: 102,
                sequence_number: seq,
                timestamp: 9000,
                ssrc: 0x10,
                marker: seq % 2 == 1,
                ..Default::default()
            },
            payload: Bytes::from(vec![seq as u8; size]),
        }
    }

    #[test]
    fn an_rtx_packet_carries_the_original_sequence_number_and_payload() {
        let t0 = Instant::now();
        let mut r = Retransmitter::new(RetransmitConfig::default(), Some(RTX)).unwrap();
        for seq in 65_530..=65_535u16 {
            r.on_sent(t0, &packet(seq, 100));
        }
        let first = r.on_nack(t0 + MS(20), 65_535).unwrap();
        let second = r.on_nack(t0 + MS(20), 65_534).unwrap();
        assert_eq!(first.header.ssrc, RTX.ssrc);
        assert_eq!(first.header.payload_type, 103);
        assert_eq!(first.header.timestamp, 9000);
        assert!(first.header.marker);
        assert!(!second.header.marker);
        assert_eq!(&first.payload[..2], &65_535u16.to_be_bytes());
        assert_eq!(&first.payload[2..], &packet(65_535, 100).payload[..]);
        assert_eq!(
            second.header.sequence_number,
            first.header.sequence_number.wrapping_add(1)
        );
        assert_eq!(r.stats().packets, 2);
        assert_eq!(r.stats().bytes, 200);
    }

    #[test]
    fn a_packet_is_resent_at_most_once_per_round_trip() {
        let t0 = Instant::now();
        let mut r = Retransmitter::new(RetransmitConfig::default(), Some(RTX)).unwrap();
        r.set_rtt(MS(80));
        r.on_sent(t0, &packet(1, 100));
        // The receiver asks every 20 ms; the sender answers every 80.
        let answered: Vec<u64> = (1..=10)
            .map(|i| 20 * i)
            .filter(|&at| r.on_nack(t0 + MS(at), 1).is_some())
            .collect();
        assert_eq!(answered, vec![20, 100, 180]);
        assert_eq!(r.stats().too_recent, 7);
    }

    #[test]
    fn a_packet_older_than_the_receiver_can_use_is_not_resent() {
        let t0 = Instant::now();
        let mut r = Retransmitter::new(RetransmitConfig::default(), None).unwrap();
        r.on_sent(t0, &packet(5, 100));
        assert!(r.on_nack(t0 + MS(501), 5).is_none());
        assert_eq!(r.stats().too_old, 1);
        // Unknown and overwritten packets are refused too.
        assert!(r.on_nack(t0, 6).is_none());
        r.on_sent(t0, &packet(5 + 1024, 100));
        assert!(r.on_nack(t0, 5).is_none());
        assert_eq!(r.stats().unknown, 2);
        // Without RTX the copy is the original packet.
        assert_eq!(r.on_nack(t0 + MS(1), 5 + 1024), Some(packet(5 + 1024, 100)));
    }

    #[test]
    fn retransmissions_stay_within_their_share_of_the_estimate() {
        let t0 = Instant::now();
        let config = RetransmitConfig {
            budget_share: 0.5,
            burst: Duration::from_millis(250),
            ..Default::default()
        };
        let mut r = Retransmitter::new(config, Some(RTX)).unwrap();
        r.set_target_bps(400_000);
        // 1000 packets of 1000 bytes sent over 4 s, every one asked for 30 ms later: that
        // would be 2 Mbit/s of retransmissions against a budget of 200 kbit/s.
        let mut resent_bytes = 0u64;
        for i in 0..1000u16 {
            let at = t0 + MS(4 * u64::from(i));
            r.on_sent(at, &packet(i, 1000));
            if let Some(p) = r.on_nack(at + MS(30), i) {
                resent_bytes += p.payload.len() as u64;
            }
        }
        let bps = resent_bytes as f64 * 8.0 / 4.0;
        // The budget (200 kbit/s) plus the burst saved up at the start (250 ms of it).
        assert!(bps <= 200_000.0 * 1.07, "{bps} bit/s resent");
        assert!(bps >= 200_000.0 * 0.9, "{bps} bit/s resent");
        assert!(r.stats().over_budget > 700);
    }

    #[test]
    fn bad_settings_are_refused() {
        let history = RetransmitConfig {
            history: 1000,
            ..Default::default()
        };
        assert!(Retransmitter::new(history, None).is_err());
        let share = RetransmitConfig {
            budget_share: 1.5,
            ..Default::default()
        };
        assert!(Retransmitter::new(share, None).is_err());
    }
}
