//! The sequence numbers a video jitter buffer is missing: when each went missing, how often it
//! was asked for again (generic NACK, RFC 4585) and whether the wait for it is over; and the
//! estimates that pace the requests: how late reordered packets come, and how often packets
//! are really lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One missing sequence number.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// When the gap was seen.
    pub detected: Instant,
    /// NACKs sent for it.
    pub sent: u32,
    /// When the first NACK for it was sent.
    pub first_sent: Option<Instant>,
    /// When the last NACK for it was sent.
    pub last_sent: Option<Instant>,
    /// The wait is over: it counts as lost and is no longer asked for.
    pub lost: bool,
}

/// When to ask for missing packets and when to stop waiting for them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    /// Ask for a packet this long after it went missing (it may only be reordered).
    pub first: Duration,
    /// Ask for a packet again this long after the last request.
    pub retry: Duration,
    /// Ask at most this many times.
    pub max_retries: u32,
    /// Give a packet up this long after it went missing.
    pub wait: Duration,
    /// Whether NACKs are sent at all.
    pub nack: bool,
}

impl Entry {
    fn next_nack(&self, timing: &Timing) -> Option<Instant> {
        if !timing.nack || self.lost || self.sent >= timing.max_retries {
            return None;
        }
        Some(
            self.last_sent
                .map_or(self.detected + timing.first, |t| t + timing.retry),
        )
    }
}

/// Missing extended sequence numbers, in order.
#[derive(Debug, Default)]
pub(super) struct Missing {
    entries: BTreeMap<u64, Entry>,
}

impl Missing {
    /// Records `from..to` as missing since `now`.
    pub fn add_range(&mut self, from: u64, to: u64, now: Instant) {
        for seq in from..to {
            self.entries.insert(
                seq,
                Entry {
                    detected: now,
                    sent: 0,
                    first_sent: None,
                    last_sent: None,
                    lost: false,
                },
            );
        }
    }

    /// Forgets `seq` (it arrived), returning what was known of it.
    pub fn remove(&mut self, seq: u64) -> Option<Entry> {
        self.entries.remove(&seq)
    }

    /// The entry for `seq`, if it is missing.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        self.entries.get(&seq)
    }

    /// Forgets every entry below `seq`; returns how many were still awaited (now lost).
    pub fn drop_below(&mut self, seq: u64) -> u64 {
        let kept = self.entries.split_off(&seq);
        let dropped = std::mem::replace(&mut self.entries, kept);
        dropped.values().filter(|e| !e.lost).count() as u64
    }

    /// Forgets everything; returns how many were still awaited.
    pub fn clear(&mut self) -> u64 {
        self.drop_below(u64::MAX)
    }

    /// Marks entries whose wait is over as lost; returns how many.
    pub fn give_up(&mut self, now: Instant, timing: &Timing) -> u64 {
        let mut count = 0;
        for entry in self.entries.values_mut() {
            if !entry.lost && now >= entry.detected + timing.wait {
                entry.lost = true;
                count += 1;
            }
        }
        count
    }

    /// The 16-bit sequence numbers due for a NACK at `now`, marked as sent; `None` when no
    /// request is due.
    pub fn due(&mut self, now: Instant, timing: &Timing) -> Option<Vec<u16>> {
        let mut due: Option<Vec<u16>> = None;
        for (&seq, entry) in self.entries.iter_mut() {
            if entry.next_nack(timing).is_some_and(|t| t <= now) {
                entry.sent += 1;
                entry.first_sent.get_or_insert(now);
                entry.last_sent = Some(now);
                due.get_or_insert_with(Vec::new).push(seq as u16);
            }
        }
        due
    }

    /// The earliest moment a NACK is due or a wait ends.
    pub fn next_deadline(&self, timing: &Timing) -> Option<Instant> {
        self.entries
            .values()
            .filter(|e| !e.lost)
            .flat_map(|e| [e.next_nack(timing), Some(e.detected + timing.wait)])
            .flatten()
            .min()
    }
}

/// How long after a gap appears its packet still turns up on its own (reordering): a decaying
/// histogram of those delays in 2 ms steps, read at its median (as libwebrtc waits for the
/// median reordering distance before its first NACK): half the reordered packets still draw
/// a needless NACK, the other half of the wait is saved on every real loss.
#[derive(Debug, Clone)]
pub(super) struct ReorderDelay {
    weights: [f32; 64],
    total: f32,
}

impl Default for ReorderDelay {
    fn default() -> Self {
        Self {
            weights: [0.0; 64],
            total: 0.0,
        }
    }
}

impl ReorderDelay {
    const STEP_MS: u64 = 2;
    /// Each sample weighs this much less than the one after it (a memory of ~50 samples).
    const DECAY: f32 = 0.98;

    /// Records a packet that arrived `late` after its gap was seen, unasked.
    pub fn record(&mut self, late: Duration) {
        for w in &mut self.weights {
            *w *= Self::DECAY;
        }
        let bucket = (late.as_millis() as u64 / Self::STEP_MS).min(63) as usize;
        if let Some(w) = self.weights.get_mut(bucket) {
            *w += 1.0;
        }
        self.total = self.total * Self::DECAY + 1.0;
    }

    /// The delay within which half the reordered packets arrived (zero without reordering).
    pub fn get(&self) -> Duration {
        if self.total < 0.5 {
            return Duration::ZERO;
        }
        let mut sum = 0.0;
        for (i, w) in self.weights.iter().enumerate() {
            sum += w;
            if sum >= 0.5 * self.total {
                return Duration::from_millis((i as u64 + 1) * Self::STEP_MS);
            }
        }
        Duration::from_millis(64 * Self::STEP_MS)
    }
}

/// Share of packets lost on their first sending (repaired or not), over about the last 150.
#[derive(Debug, Clone, Default)]
pub(super) struct LossRate {
    rate: f64,
}

impl LossRate {
    const WINDOW: f64 = 150.0;

    /// `count` new sequence numbers were seen.
    pub fn advance(&mut self, count: u64) {
        self.rate *= (1.0 - 1.0 / Self::WINDOW).powi(count.min(4096) as i32);
    }

    /// `count` of them turned out lost.
    pub fn lost(&mut self, count: u64) {
        self.rate = (self.rate + count as f64 / Self::WINDOW).min(1.0);
    }

    /// The estimate, 0 to 1.
    pub fn get(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asks_again_every_retry_until_the_wait_ends() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let timing = Timing {
            first: ms(0),
            retry: ms(20),
            max_retries: 3,
            wait: ms(100),
            nack: true,
        };
        let mut missing = Missing::default();
        missing.add_range(10, 12, t0);
        assert_eq!(missing.due(t0, &timing), Some(vec![10, 11]));
        assert_eq!(missing.due(t0 + ms(19), &timing), None);
        assert_eq!(missing.next_deadline(&timing), Some(t0 + ms(20)));
        assert_eq!(missing.remove(11).map(|e| e.sent), Some(1));
        assert_eq!(missing.due(t0 + ms(20), &timing), Some(vec![10]));
        assert_eq!(missing.due(t0 + ms(40), &timing), Some(vec![10]));
        // Three requests sent: only the end of the wait is left.
        assert_eq!(missing.next_deadline(&timing), Some(t0 + ms(100)));
        assert_eq!(missing.give_up(t0 + ms(99), &timing), 0);
        assert_eq!(missing.give_up(t0 + ms(100), &timing), 1);
        assert_eq!(missing.next_deadline(&timing), None);
        missing.add_range(20, 23, t0);
        assert_eq!(missing.drop_below(21), 1);
        assert_eq!(missing.clear(), 2);
    }

    #[test]
    fn reorder_delay_follows_the_typical_reordering() {
        let mut delay = ReorderDelay::default();
        assert_eq!(delay.get(), Duration::ZERO);
        for i in 0..100u64 {
            delay.record(Duration::from_millis(if i % 5 == 0 { 40 } else { 3 }));
        }
        assert_eq!(delay.get(), Duration::from_millis(4));
        // The memory is short: once packets come 40 ms late, so does the first NACK.
        for _ in 0..100 {
            delay.record(Duration::from_millis(40));
        }
        assert_eq!(delay.get(), Duration::from_millis(42));
    }

    #[test]
    fn loss_rate_tracks_the_share_of_lost_packets() {
        let mut loss = LossRate::default();
        for i in 0..5000 {
            loss.advance(1);
            if i % 10 == 0 {
                loss.lost(1);
            }
        }
        assert!((loss.get() - 0.1).abs() < 0.01, "{}", loss.get());
    }
}
