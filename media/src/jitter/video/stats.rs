//! Counters of the video jitter buffer, named after W3C webrtc-stats, with the freeze detector
//! and the frame jitter estimate behind them.

use std::time::{Duration, Instant};

/// What a [`VideoJitterBuffer`](super::VideoJitterBuffer) has seen and done, named as in
/// W3C webrtc-stats (`RTCInboundRtpStreamStats`) where a name exists there.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VideoJitterStats {
    /// Packets inserted, duplicates and late ones included.
    pub packets_received: u64,
    /// Packets given up on (never arrived in time); one that arrives later is subtracted again.
    pub packets_lost: u64,
    /// Duplicates and packets arriving after their frame was handed out or dropped.
    pub packets_discarded: u64,
    /// Packets that filled a hole after a NACK had asked for them.
    pub retransmitted_packets_received: u64,
    /// Frames whose packets all arrived (`framesReceived`).
    pub frames_received: u64,
    /// Frames handed out to be decoded (`framesDecoded`).
    pub frames_decoded: u64,
    /// Keyframes among them (`keyFramesDecoded`).
    pub key_frames_decoded: u64,
    /// Frames dropped before decoding: incomplete, malformed, or missing a reference
    /// (`framesDropped`).
    pub frames_dropped: u64,
    /// Complete frames whose payloads could not be depacketized (also in `frames_dropped`).
    pub frames_malformed: u64,
    /// Output gaps long enough to be freezes, as WebRTC statistics count them (`freezeCount`).
    pub freeze_count: u64,
    /// Sum of those gaps (`totalFreezesDuration`).
    pub total_freezes_duration: Duration,
    /// NACK messages emitted (`nackCount`).
    pub nack_count: u64,
    /// Sequence numbers asked for over all NACK messages.
    pub nacked_packets: u64,
    /// Keyframe requests emitted (`pliCount`).
    pub pli_count: u64,
    /// Interarrival jitter of whole frames (RFC 3550 estimator over frame completion times).
    pub frame_jitter: Duration,
}

/// Frame-gap statistics used for freeze detection: the last 30 gaps between handed-out frames.
///
/// As webrtc-stats defines it, a gap is a freeze when it is at least
/// `max(3 * average, average + 150 ms)`, the average taken over the previous 30 gaps (and
/// only once 5 are known). A gap of more than 5 s is a pause (`pauseCount`,
/// `totalPausesDuration`), not a freeze, and does not enter the average.
#[derive(Debug, Clone, Default)]
pub(crate) struct FreezeDetector {
    gaps: [Duration; WINDOW],
    len: usize,
    next: usize,
    sum: Duration,
    last: Option<Instant>,
    pauses: u64,
    paused: Duration,
}

const WINDOW: usize = 30;
const MIN_GAPS: usize = 5;
/// A gap longer than this between two frames is a pause (webrtc-stats `pauseCount`).
pub(crate) const PAUSE: Duration = Duration::from_secs(5);

impl FreezeDetector {
    /// Pauses so far, and their total duration.
    pub fn pauses(&self) -> (u64, Duration) {
        (self.pauses, self.paused)
    }

    /// Records a frame handed out at `now`; returns the gap if it was a freeze.
    pub fn on_frame(&mut self, now: Instant) -> Option<Duration> {
        let last = self.last.replace(now)?;
        let gap = now.saturating_duration_since(last);
        if gap > PAUSE {
            self.pauses += 1;
            self.paused += gap;
            return None;
        }
        let mut freeze = None;
        if self.len >= MIN_GAPS {
            let average = self.sum / self.len as u32;
            if gap >= (average * 3).max(average + Duration::from_millis(150)) {
                freeze = Some(gap);
            }
        }
        if self.len == WINDOW {
            self.sum -= self.gaps[self.next];
        } else {
            self.len += 1;
        }
        self.gaps[self.next] = gap;
        self.sum += gap;
        self.next = (self.next + 1) % WINDOW;
        freeze
    }
}

/// RFC 3550 interarrival jitter over frames: how much the arrival of frames' last packets
/// varies against their RTP timestamps (90 kHz).
#[derive(Debug, Clone, Default)]
pub(crate) struct FrameJitter {
    last: Option<(Instant, u64)>,
    jitter_s: f64,
}

impl FrameJitter {
    /// Records that the last packet of the frame with extended timestamp `ts` arrived at `now`.
    pub fn on_frame(&mut self, now: Instant, ts: u64) {
        if let Some((at, last_ts)) = self.last {
            if ts <= last_ts {
                return;
            }
            let arrival = now.saturating_duration_since(at).as_secs_f64()
                - at.saturating_duration_since(now).as_secs_f64();
            let media = (ts - last_ts) as f64 / 90_000.0;
            let d = (arrival - media).abs().min(10.0);
            self.jitter_s += (d - self.jitter_s) / 16.0;
        }
        self.last = Some((now, ts));
    }

    /// The estimate so far.
    pub fn get(&self) -> Duration {
        Duration::from_secs_f64(self.jitter_s.clamp(0.0, 10.0))
    }

    /// Forgets the last frame (a new stream starts).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_gap_after_steady_frames_is_a_freeze() {
        let t0 = Instant::now();
        let mut d = FreezeDetector::default();
        let mut t = t0;
        for _ in 0..10 {
            assert_eq!(d.on_frame(t), None);
            t += Duration::from_millis(33);
        }
        // 33 ms average: a freeze needs max(99, 183) ms.
        t += Duration::from_millis(150 - 33);
        assert_eq!(d.on_frame(t), None);
        t += Duration::from_millis(200);
        assert_eq!(d.on_frame(t), Some(Duration::from_millis(200)));
        assert_eq!(d.pauses(), (0, Duration::ZERO));
    }

    #[test]
    fn a_gap_over_five_seconds_is_a_pause_not_a_freeze() {
        let t0 = Instant::now();
        let mut d = FreezeDetector::default();
        let mut t = t0;
        for _ in 0..10 {
            assert_eq!(d.on_frame(t), None);
            t += Duration::from_millis(33);
        }
        t += Duration::from_secs(6);
        assert_eq!(d.on_frame(t), None);
        assert_eq!(d.pauses(), (1, Duration::from_millis(6033)));
        // The pause did not enter the average: a 200 ms gap is still a freeze.
        t += Duration::from_millis(200);
        assert_eq!(d.on_frame(t), Some(Duration::from_millis(200)));
    }

    #[test]
    fn jitter_grows_with_irregular_arrival_and_not_with_steady_arrival() {
        let t0 = Instant::now();
        let mut steady = FrameJitter::default();
        let mut shaky = FrameJitter::default();
        for i in 0..100u64 {
            steady.on_frame(t0 + Duration::from_millis(33 * i), 2970 * i);
            let wobble = if i % 2 == 0 { 0 } else { 20 };
            shaky.on_frame(t0 + Duration::from_millis(33 * i + wobble), 2970 * i);
        }
        assert!(steady.get() < Duration::from_millis(1));
        assert!(shaky.get() > Duration::from_millis(15), "{:?}", shaky.get());
    }
}
