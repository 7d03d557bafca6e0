//! Keyframe policy on both ends of a video stream: how often a receiver may ask for a keyframe,
//! and how often a sender answers with one.
//!
//! A receiver that cannot go on (a packet lost for good, a frame the decoder rejects) asks for
//! a keyframe with a PLI. Every lost packet of a burst, and every undecodable frame after it,
//! would ask again; [`KeyframeRequests`] lets one request through per round trip at most (an
//! earlier second request cannot have been answered yet), with a floor for very short round
//! trips. A keyframe is several times the size of a delta frame: a sender that answered every
//! request at once could itself overflow the queue whose loss caused the request.
//! [`KeyframePacer`] answers the first request at once and the next one no sooner than its
//! interval after the last keyframe; requests in between are merged into that one.
//!
//! Both are sans-IO: the time is an argument.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use duet_media::keyframe::{KeyframePacer, KeyframeRequests};
//!
//! let t0 = Instant::now();
//! let rtt = Duration::from_millis(80);
//! let mut requests = KeyframeRequests::new(Duration::from_millis(20));
//! assert!(requests.request(t0, rtt));
//! assert!(!requests.request(t0 + Duration::from_millis(50), rtt)); // within a round trip
//! assert!(requests.request(t0 + Duration::from_millis(80), rtt));
//!
//! let mut pacer = KeyframePacer::new(Duration::from_millis(300));
//! pacer.on_request(t0);
//! assert!(pacer.poll(t0)); // the first is answered at once
//! pacer.on_request(t0 + Duration::from_millis(100));
//! assert!(!pacer.poll(t0 + Duration::from_millis(100)));
//! assert_eq!(pacer.poll_timeout(), Some(t0 + Duration::from_millis(300)));
//! assert!(pacer.poll(t0 + Duration::from_millis(300)));
//! ```

use std::time::{Duration, Instant};

/// Lets a receiver's keyframe requests through at most once per round trip.
#[derive(Debug, Clone)]
pub struct KeyframeRequests {
    floor: Duration,
    last: Option<Instant>,
    sent: u64,
    suppressed: u64,
}

impl KeyframeRequests {
    /// A gate whose interval is the round trip, but never under `floor`.
    pub fn new(floor: Duration) -> Self {
        Self {
            floor,
            last: None,
            sent: 0,
            suppressed: 0,
        }
    }

    /// Asks to send a keyframe request at `now`, the round trip being `rtt`: true when it
    /// should go out (and it is counted as sent), false when one went out less than a round
    /// trip ago (counted as suppressed).
    pub fn request(&mut self, now: Instant, rtt: Duration) -> bool {
        let interval = rtt.max(self.floor);
        if self.last.is_some_and(|t| now < t + interval) {
            self.suppressed += 1;
            return false;
        }
        self.last = Some(now);
        self.sent += 1;
        true
    }

    /// Requests let through so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Requests held back because one had gone out less than a round trip before.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

/// Paces a sender's keyframes: a request is answered at once when the last keyframe is at
/// least the interval old, else at the end of the interval; requests in between merge.
#[derive(Debug, Clone)]
pub struct KeyframePacer {
    interval: Duration,
    last: Option<Instant>,
    /// When the request not yet answered came.
    pending: Option<Instant>,
    merged: u64,
}

impl KeyframePacer {
    /// A pacer allowing one keyframe per `interval` at most.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            pending: None,
            merged: 0,
        }
    }

    /// The peer (or the session) asked for a keyframe at `now`.
    pub fn on_request(&mut self, now: Instant) {
        if self.pending.is_some() {
            self.merged += 1;
        } else {
            self.pending = Some(now);
        }
    }

    /// True when the next frame encoded at `now` should be a keyframe; the pending request is
    /// then taken. Call once per frame, before encoding it.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.poll_timeout().is_none_or(|t| now < t) {
            return false;
        }
        self.pending = None;
        self.last = Some(now);
        true
    }

    /// Records a keyframe the encoder made on its own (its periodic keyframe, or a restart at
    /// a new size): the interval runs from it too.
    pub fn on_keyframe(&mut self, now: Instant) {
        self.last = Some(now);
    }

    /// When a pending request may be answered; `None` when none is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let asked = self.pending?;
        Some(self.last.map_or(asked, |t| asked.max(t + self.interval)))
    }

    /// Requests that arrived while one was already pending and were answered by it.
    pub fn merged(&self) -> u64 {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_burst_of_requests_sends_one_per_round_trip() {
        let t0 = Instant::now();
        let mut gate = KeyframeRequests::new(MS(20));
        let rtt = MS(100);
        // A request every 10 ms for one second: ten get through, one per round trip.
        let through = (0..100)
            .filter(|i| gate.request(t0 + MS(10 * i), rtt))
            .count();
        assert_eq!(through, 10);
        assert_eq!(gate.sent(), 10);
        assert_eq!(gate.suppressed(), 90);
    }

    #[test]
    fn the_floor_holds_on_a_very_short_round_trip() {
        let t0 = Instant::now();
        let mut gate = KeyframeRequests::new(MS(20));
        assert!(gate.request(t0, MS(1)));
        assert!(!gate.request(t0 + MS(19), MS(1)));
        assert!(gate.request(t0 + MS(20), MS(1)));
    }

    #[test]
    fn the_pacer_answers_at_once_then_merges_requests_within_its_interval() {
        let t0 = Instant::now();
        let mut pacer = KeyframePacer::new(MS(300));
        assert!(!pacer.poll(t0), "no request, no keyframe");
        pacer.on_request(t0);
        assert!(pacer.poll(t0));
        assert!(!pacer.poll(t0 + MS(1)), "a request is answered once");
        // Three requests while the last keyframe is young: one keyframe, at 300 ms.
        for at in [50, 120, 250] {
            pacer.on_request(t0 + MS(at));
            assert!(!pacer.poll(t0 + MS(at)));
        }
        assert_eq!(pacer.poll_timeout(), Some(t0 + MS(300)));
        assert!(!pacer.poll(t0 + MS(299)));
        assert!(pacer.poll(t0 + MS(300)));
        assert!(!pacer.poll(t0 + MS(900)));
        assert_eq!(pacer.merged(), 2);
    }

    #[test]
    fn an_encoder_keyframe_restarts_the_interval() {
        let t0 = Instant::now();
        let mut pacer = KeyframePacer::new(MS(300));
        pacer.on_keyframe(t0);
        pacer.on_request(t0 + MS(100));
        assert!(!pacer.poll(t0 + MS(100)));
        assert!(pacer.poll(t0 + MS(300)));
    }
}
