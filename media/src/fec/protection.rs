//! How much video FEC to send: a protection level from the measured loss and round trip
//! ([`FecPolicy`]), and the grouping of sent packets into FEC groups ([`FecGrouper`]).
//!
//! FEC costs its bytes on every packet, lost or not, while a retransmission costs only what
//! was lost but a round trip of waiting, and fails when the request or the answer is lost
//! too. So the policy sends none on a clean link (overhead exactly 0) and turns on when the
//! smoothed loss is high enough to pay for itself: from 3% loss without retransmissions (or
//! with a round trip of 100 ms or more), from 10% when the peer takes retransmissions (RTX)
//! and the round trip is 20 ms or less, since a retransmission then arrives in time and
//! costs less; linearly between. It turns off again at half that loss. Once on, the
//! protection factor (FEC packets per media packet) is three times the loss, between 0.1 and
//! 0.6, so higher loss gets more.
//!
//! ```
//! use std::time::Duration;

use std::time::Duration;

use super::ulpfec::MAX_PROTECTED;

/// Smoothed loss at which FEC turns on: without retransmissions or far away, and with
/// retransmissions near; it turns off at half of it.
const ON_FAR: f64 = 0.03;
const ON_NEAR: f64 = 0.10;
/// Smoothing of the reported loss, rising and falling.
const RISE: f64 = 0.5;
const FALL: f64 = 0.2;
/// The factor is this many times the loss, within these bounds.
const PER_LOSS: f64 = 3.0;
const MIN_FACTOR: f64 = 0.1;
const MAX_FACTOR: f64 = 0.6;
/// With retransmissions, the round trips under which they are preferred up to
/// [`ON_NEAR`], and from which FEC turns on at [`ON_FAR`].
const NEAR_RTT: Duration = Duration::from_millis(20);
const FAR_RTT: Duration = Duration::from_millis(100);
/// A FEC group spans at most this many frames: its FEC is sent after the last of them, so
/// this bounds how long a loss in the first waits for its repair.
pub const MAX_GROUP_FRAMES: usize = 3;
/// Keyframes, whose loss costs a freeze until the next one, get this much more protection.
const KEYFRAME_BOOST: f64 = 1.5;

/// Decides the protection factor from receiver reports. See the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct FecPolicy {
    smoothed: f64,
    on: bool,
    factor: f64,
}

impl FecPolicy {
    /// A policy that sends no FEC until loss calls for it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one receiver report on the video stream: the fraction lost (0 to 1), the round
    /// trip when known, and whether the peer takes retransmissions in RTX. Returns the
    /// protection factor now in force: FEC packets per media packet, 0 for none.
    pub fn on_report(&mut self, fraction_lost: f64, rtt: Option<Duration>, rtx: bool) -> f64 {
        let loss = if fraction_lost.is_finite() {
            fraction_lost.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let alpha = if loss > self.smoothed { RISE } else { FALL };
        self.smoothed += alpha * (loss - self.smoothed);
        let on_at = on_threshold(rtt, rtx);
        self.on = if self.on {
            self.smoothed >= on_at / 2.0
        } else {
            self.smoothed >= on_at
        };
        self.factor = if self.on {
            (PER_LOSS * self.smoothed).clamp(MIN_FACTOR, MAX_FACTOR)
        } else {
            0.0
        };
        self.factor
    }

    /// The protection factor in force.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The smoothed loss the factor follows, 0 to 1.
    pub fn smoothed_loss(&self) -> f64 {
        self.smoothed
    }
}

/// The smoothed loss at which FEC turns on: [`ON_FAR`] without retransmissions or with an
/// unknown round trip.
fn on_threshold(rtt: Option<Duration>, rtx: bool) -> f64 {
    match (rtx, rtt) {
        (true, Some(rtt)) => {
            let span = (FAR_RTT - NEAR_RTT).as_secs_f64();
            let x = (rtt.saturating_sub(NEAR_RTT).as_secs_f64() / span).min(1.0);
            ON_NEAR + (ON_FAR - ON_NEAR) * x
        }
        _ => ON_FAR,
    }
}

/// One group of media packets to protect: `media` packets from sequence number `base`, with
/// `fec` FEC packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecGroup {
    /// Sequence number of the group's first media packet.
    pub base: u16,
    /// Media packets in the group (1 to [`MAX_PROTECTED`]).
    pub media: usize,
    /// FEC packets to send after them (1 to `media`).
    pub fec: usize,
}

/// Gathers the packets a sender sends, frame by frame, into FEC groups: a group closes when
/// its FEC packets come to at least one (protection factor times its packets), after a
/// keyframe, after [`MAX_GROUP_FRAMES`] frames, or at [`MAX_PROTECTED`] packets. With the
/// factor at 0 nothing is grouped (an open group is closed after the next frame).
#[derive(Debug, Clone, Default)]
pub struct FecGrouper {
    factor: f64,
    base: u16,
    packets: usize,
    frames: usize,
    keyframe: bool,
}

impl FecGrouper {
    /// A grouper with a factor of 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the protection factor (see [`FecPolicy`]); it applies from the next group.
    pub fn set_factor(&mut self, factor: f64) {
        self.factor = if factor.is_finite() {
            factor.clamp(0.0, 1.0)
        } else {
            0.0
        };
    }

    /// The protection factor in force.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// True when the next frame's packets are protected (and so travel in RED).
    pub fn protecting(&self) -> bool {
        self.factor > 0.0 || self.packets > 0
    }

    /// A frame of `count` packets from sequence number `first` was sent (call only when
    /// [`protecting`](Self::protecting) was true before it): pushes onto `out` the groups
    /// that close, whose FEC packets go out next, in order.
    pub fn on_frame(&mut self, first: u16, count: usize, keyframe: bool, out: &mut Vec<FecGroup>) {
        let mut seq = first;
        let mut left = count;
        while left > 0 {
            if self.packets == 0 {
                self.base = seq;
            }
            let take = left.min(MAX_PROTECTED - self.packets);
            self.packets += take;
            self.keyframe |= keyframe;
            seq = seq.wrapping_add(take as u16);
            left -= take;
            if self.packets == MAX_PROTECTED {
                self.close(out);
            }
        }
        self.frames += 1;
        if self.packets == 0 {
            self.frames = 0;
            return;
        }
        let factor = self.effective();
        let due = (self.packets as f64 * factor).floor() >= 1.0;
        if due || self.factor == 0.0 || self.keyframe || self.frames >= MAX_GROUP_FRAMES {
            self.close(out);
        }
    }

    fn effective(&self) -> f64 {
        if self.keyframe {
            (self.factor * KEYFRAME_BOOST).min(1.0)
        } else {
            self.factor
        }
    }

    fn close(&mut self, out: &mut Vec<FecGroup>) {
        let media = self.packets;
        let fec = ((media as f64 * self.effective()).round() as usize).clamp(1, media);
        out.push(FecGroup {
            base: self.base,
            media,
            fec,
        });
        self.packets = 0;
        self.frames = 0;
        self.keyframe = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_clean_link_gets_no_fec_and_high_loss_gets_more() {
        let mut p = FecPolicy::new();
        for _ in 0..20 {
            assert_eq!(p.on_report(0.0, Some(MS(50)), false), 0.0);
        }
        // 2% never turns it on.
        for _ in 0..20 {
            assert_eq!(p.on_report(0.02, Some(MS(50)), false), 0.0);
        }
        let at = |loss| {
            let mut p = FecPolicy::new();
            (0..20)
                .map(|_| p.on_report(loss, Some(MS(150)), true))
                .last()
                .unwrap()
        };
        let (five, ten, twenty) = (at(0.05), at(0.10), at(0.20));
        assert!(
            five >= 0.1 && five < ten && ten < twenty,
            "{five} {ten} {twenty}"
        );
        assert!(twenty <= MAX_FACTOR);
    }

    #[test]
    fn it_turns_off_with_hysteresis_when_the_loss_ends() {
        let mut p = FecPolicy::new();
        for _ in 0..10 {
            p.on_report(0.1, None, false);
        }
        assert!(p.factor() > 0.0);
        // One clean report does not turn it off; a run of them does.
        assert!(p.on_report(0.0, None, false) > 0.0);
        for _ in 0..30 {
            p.on_report(0.0, None, false);
        }
        assert_eq!(p.factor(), 0.0);
    }

    #[test]
    fn retransmission_at_a_short_round_trip_takes_over_moderate_loss() {
        let run = |loss, rtt, rtx| {
            let mut p = FecPolicy::new();
            (0..20)
                .map(|_| p.on_report(loss, Some(rtt), rtx))
                .last()
                .unwrap()
        };
        assert_eq!(run(0.06, MS(5), true), 0.0, "RTX answers in time");
        assert!(run(0.06, MS(5), false) > 0.0, "no RTX: FEC it is");
        assert!(run(0.06, MS(200), true) > 0.0, "too far for RTX alone");
        assert_eq!(run(0.06, MS(60), true), 0.0, "on from 6.5% at 60 ms");
        assert!(run(0.07, MS(60), true) > 0.0);
        assert!(run(0.2, MS(5), true) > 0.5, "too much loss for RTX alone");
    }

    #[test]
    fn bad_reports_count_as_no_loss() {
        let mut p = FecPolicy::new();
        assert_eq!(p.on_report(f64::NAN, None, false), 0.0);
        assert_eq!(p.on_report(-1.0, None, false), 0.0);
    }

    #[test]
    fn groups_close_when_their_fec_is_due_and_cover_every_packet() {
        let mut g = FecGrouper::new();
        assert!(!g.protecting());
        g.set_factor(0.25);
        let mut out = Vec::new();
        // Two packets a frame: a quarter of four packets is one FEC packet, every 2 frames.
        let mut seq = 65_530u16;
        for _ in 0..6 {
            assert!(g.protecting());
            g.on_frame(seq, 2, false, &mut out);
            seq = seq.wrapping_add(2);
        }
        assert_eq!(out.len(), 3);
        for (i, group) in out.iter().enumerate() {
            assert_eq!(group.base, 65_530u16.wrapping_add(4 * i as u16));
            assert_eq!((group.media, group.fec), (4, 1));
        }
    }

    #[test]
    fn a_low_factor_still_closes_after_three_frames_and_keyframes_close_at_once() {
        let mut g = FecGrouper::new();
        g.set_factor(0.1);
        let mut out = Vec::new();
        g.on_frame(0, 2, false, &mut out);
        g.on_frame(2, 2, false, &mut out);
        assert!(out.is_empty());
        g.on_frame(4, 2, false, &mut out);
        assert_eq!(
            out,
            [FecGroup {
                base: 0,
                media: 6,
                fec: 1
            }]
        );
        out.clear();
        g.on_frame(6, 30, true, &mut out);
        // 30 * 0.1 * 1.5 = 4.5, rounded.
        assert_eq!(
            out,
            [FecGroup {
                base: 6,
                media: 30,
                fec: 5
            }]
        );
    }

    #[test]
    fn a_frame_longer_than_a_mask_splits_into_groups() {
        let mut g = FecGrouper::new();
        g.set_factor(0.5);
        let mut out = Vec::new();
        g.on_frame(100, 100, true, &mut out);
        let media: usize = out.iter().map(|g| g.media).sum();
        assert_eq!(media, 100);
        assert!(out
            .iter()
            .all(|g| g.media <= MAX_PROTECTED && g.fec <= g.media));
        assert_eq!(out[1].base, 100 + MAX_PROTECTED as u16);
    }

    #[test]
    fn turning_off_closes_the_open_group_after_the_next_frame() {
        let mut g = FecGrouper::new();
        g.set_factor(0.1);
        let mut out = Vec::new();
        g.on_frame(0, 2, false, &mut out);
        assert!(out.is_empty());
        g.set_factor(0.0);
        assert!(g.protecting(), "the open group still protects");
        g.on_frame(2, 2, false, &mut out);
        assert_eq!(
            out,
            [FecGroup {
                base: 0,
                media: 4,
                fec: 1
            }]
        );
        assert!(!g.protecting());
    }
}
