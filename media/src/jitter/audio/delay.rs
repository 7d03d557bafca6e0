//! The target delay, from measured arrival jitter.
//!
//! Each packet's transit (arrival time minus media timestamp, in samples) is compared with the
//! smallest transit of the last two seconds: the difference is how much later than the fastest
//! packet it came. Those relative delays go into a histogram that forgets old entries
//! exponentially, and the target is its 95th percentile, as in libwebrtc's NetEq.
//!
//! As NetEq does, the histogram takes the largest relative delay of each half second rather
//! than every packet's (every packet's only in the stream's first half second, so the target
//! is there from the start). Senders whose timing wanders in bursts (a busy machine, a browser
//! whose capture thread is late now and then) send a late packet or two every so often: per
//! packet, they are under the 5 % the percentile lets go, and each would be concealed; per
//! half second they count, and the target keeps room for them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the fastest packet is looked for.
const WINDOW: Duration = Duration::from_secs(2);
/// Most transits kept for the sliding minimum, whatever the packet rate.
const MAX_WINDOW_ENTRIES: usize = 1024;
/// Width of a histogram bucket, in samples (2 ms at 48 kHz).
const BUCKET: i128 = 96;
/// Share of packets the target delay lets arrive in time.
const QUANTILE: f64 = 0.95;
/// Weight kept by the histogram at each new packet of the stream's first interval.
const FORGET: f64 = 0.983;
/// The histogram takes the largest relative delay of each interval this long.
const INTERVAL: Duration = Duration::from_millis(500);
/// Weight kept by the histogram at each interval: 0.8 forgets with a time constant of 4.5
/// intervals (about 2 s), so late packets a few seconds apart keep their room, and a target
/// raised by a spike of jitter comes down within about 7 s of its end (NetEq, which forgets
/// over tens of seconds, keeps it far longer).
const FORGET_INTERVAL: f64 = 0.8;
/// While the histogram is young, packet n weighs `START_WEIGHT / (n + 1)`, an average that
/// turns into exponential forgetting once that drops below `1 - FORGET`.
const START_WEIGHT: f64 = 2.0;

/// Relative arrival delays, their histogram, and the sliding minimum of transit they need.
#[derive(Debug, Clone)]
pub(crate) struct DelayManager {
    /// (arrival, transit) of the packets that may still be the fastest of the window, their
    /// transits increasing from front to back.
    fastest: VecDeque<(Instant, i128)>,
    buckets: Vec<f64>,
    added: u64,
    /// When the current interval began, and the largest relative delay in it so far.
    interval: Option<(Instant, u64)>,
    /// Intervals completed.
    intervals: u64,
    /// The quantile of relative delay, in samples (the upper edge of its bucket).
    quantile: u64,
}

impl DelayManager {
    /// A manager whose histogram spans relative delays up to `max` samples.
    pub(crate) fn new(max: u64) -> Self {
        let count = usize::try_from(i128::from(max) / BUCKET + 1).unwrap_or(1);
        Self {
            fastest: VecDeque::with_capacity(256),
            buckets: vec![0.0; count.max(1)],
            added: 0,
            interval: None,
            intervals: 0,
            quantile: 0,
        }
    }

    /// Forgets the transits (a new stream has another time base) but keeps the histogram: the
    /// network's jitter has not changed.
    pub(crate) fn restart(&mut self) {
        self.fastest.clear();
    }

    /// Records a packet of extended timestamp `ts` that arrived at `now`, `arrival` samples
    /// after the buffer's epoch. Returns its relative delay in samples.
    pub(crate) fn update(&mut self, now: Instant, arrival: i128, ts: u64) -> u64 {
        let transit = arrival - i128::from(ts);
        while self.fastest.len() > 1
            && self
                .fastest
                .front()
                .is_some_and(|&(at, _)| now.saturating_duration_since(at) > WINDOW)
        {
            self.fastest.pop_front();
        }
        while self.fastest.back().is_some_and(|&(_, t)| t >= transit) {
            self.fastest.pop_back();
        }
        if self.fastest.len() >= MAX_WINDOW_ENTRIES {
            self.fastest.pop_front();
        }
        self.fastest.push_back((now, transit));
        let relative = self.min_transit().map_or(0, |min| transit - min);
        let relative = u64::try_from(relative).unwrap_or(0);
        let (began, largest) = match self.interval {
            Some((began, largest)) if now.saturating_duration_since(began) < INTERVAL => {
                (began, largest.max(relative))
            }
            Some((_, largest)) => {
                self.add(largest, FORGET_INTERVAL, self.intervals);
                self.intervals += 1;
                (now, relative)
            }
            None => (now, relative),
        };
        self.interval = Some((began, largest));
        if self.intervals == 0 {
            self.add(relative, FORGET, self.added);
            self.added = self.added.saturating_add(1);
        }
        relative
    }

    /// The smallest transit of the window (arrival minus timestamp, in samples).
    pub(crate) fn min_transit(&self) -> Option<i128> {
        self.fastest.front().map(|&(_, t)| t)
    }

    /// Capacity of the sliding window, to check that it stops growing.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.fastest.capacity()
    }

    /// The 95th percentile of relative delay, in samples; 0 before any packet. The half second
    /// under way counts at once with its largest delay so far, so the target rises with the
    /// first late packet rather than when the interval closes.
    pub(crate) fn quantile(&self) -> u64 {
        let running = self.interval.map_or(0, |(_, largest)| {
            (largest / BUCKET as u64 + 1) * BUCKET as u64
        });
        self.quantile.max(running)
    }

    /// Adds `relative` to the histogram, which keeps `keep` of its weight, or less while
    /// young: `count` entries of this kind came before.
    fn add(&mut self, relative: u64, keep: f64, count: u64) {
        let forget = (1.0 - START_WEIGHT / (count as f64 + 2.0)).clamp(0.0, keep);
        for b in &mut self.buckets {
            *b *= forget;
        }
        let last = self.buckets.len() - 1;
        let index = usize::try_from(i128::from(relative) / BUCKET).map_or(last, |i| i.min(last));
        if let Some(b) = self.buckets.get_mut(index) {
            *b += 1.0 - forget;
        }

        let total: f64 = self.buckets.iter().sum();
        let mut sum = 0.0;
        let mut found = last;
        for (i, b) in self.buckets.iter().enumerate() {
            sum += b;
            if sum >= QUANTILE * total {
                found = i;
                break;
            }
        }
        self.quantile = (found as u64 + 1) * BUCKET as u64;
    }
}

/// Which of the last 1024 sequence numbers have been received, to tell duplicates.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeenWindow {
    bits: [u64; 16],
    highest: Option<u64>,
}

/// What [`SeenWindow::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// First time: now marked.
    New,
    /// Already received.
    Duplicate,
    /// Too far behind the highest sequence number to tell: treated as too late.
    TooOld,
}

impl SeenWindow {
    const SPAN: u64 = 1024;

    /// Checks extended sequence number `seq` and marks it as received.
    pub(crate) fn check(&mut self, seq: u64) -> Seen {
        match self.highest {
            Some(high) if seq <= high => {
                if high - seq >= Self::SPAN {
                    return Seen::TooOld;
                }
                if self.get(seq) {
                    return Seen::Duplicate;
                }
            }
            Some(high) => {
                if seq - high >= Self::SPAN {
                    self.bits = [0; 16];
                } else {
                    for s in high + 1..seq {
                        self.clear(s);
                    }
                }
                self.highest = Some(seq);
            }
            None => self.highest = Some(seq),
        }
        self.set(seq);
        Seen::New
    }

    fn slot(seq: u64) -> (usize, u64) {
        let i = seq % Self::SPAN;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn get(&self, seq: u64) -> bool {
        let (word, bit) = Self::slot(seq);
        self.bits.get(word).is_some_and(|w| w & bit != 0)
    }

    fn set(&mut self, seq: u64) {
        let (word, bit) = Self::slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
    }

    fn clear(&mut self, seq: u64) {
        let (word, bit) = Self::slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w &= !bit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 48;

    #[test]
    fn relative_delay_is_measured_from_the_fastest_packet() {
        let start = Instant::now();
        let mut d = DelayManager::new(48_000);
        // Packets every 20 ms; the second comes 30 ms late, the third 10 ms late.
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(d.update(at(0), 0, 0), 0);
        assert_eq!(d.update(at(50), 50 * MS, 960), 30 * 48);
        assert_eq!(d.update(at(50), 50 * MS, 1920), 10 * 48);
        // A faster packet becomes the new reference.
        assert_eq!(d.update(at(55), 55 * MS, 2880), 0);
        assert_eq!(d.min_transit(), Some(55 * MS - 2880));
    }

    #[test]
    fn quantile_follows_the_jitter_and_forgets_it() {
        let start = Instant::now();
        let mut d = DelayManager::new(48_000);
        // Every tenth packet 40 ms late: the 95th percentile is 40 ms (bucket edge 42).
        for k in 0..500u64 {
            let late = if k % 10 == 0 { 40 } else { 0 };
            let ms = k * 20 + late;
            d.update(
                start + Duration::from_millis(ms),
                i128::from(ms) * MS,
                k * 960,
            );
        }
        assert_eq!(d.quantile(), 42 * 48);
        // Then a steady stream: 4 s on, the late packets still count (one per interval had
        // been late); 30 s on, they are forgotten.
        let steady = |d: &mut DelayManager, from: u64, to: u64| {
            for k in from..to {
                let ms = k * 20;
                d.update(
                    start + Duration::from_millis(ms),
                    i128::from(ms) * MS,
                    k * 960,
                );
            }
        };
        steady(&mut d, 500, 700);
        assert_eq!(d.quantile(), 42 * 48);
        steady(&mut d, 700, 2000);
        assert_eq!(d.quantile(), 2 * 48);
    }

    #[test]
    fn one_late_packet_in_a_hundred_sets_the_target() {
        let start = Instant::now();
        let mut d = DelayManager::new(48_000);
        // One packet in a hundred 30 ms late: 1 % of packets, but a quarter of the half
        // seconds, so the 95th percentile of the intervals' largest delays is 30 ms.
        for k in 0..1000u64 {
            let late = if k % 100 == 50 { 30 } else { 0 };
            let ms = k * 20 + late;
            d.update(
                start + Duration::from_millis(ms),
                i128::from(ms) * MS,
                k * 960,
            );
        }
        assert_eq!(d.quantile(), 32 * 48, "the upper edge of the 30 ms bucket");
    }

    #[test]
    fn seen_window_tells_duplicates_and_old_packets() {
        let mut w = SeenWindow::default();
        assert_eq!(w.check(5000), Seen::New);
        assert_eq!(w.check(5000), Seen::Duplicate);
        assert_eq!(w.check(4990), Seen::New);
        assert_eq!(w.check(4990), Seen::Duplicate);
        assert_eq!(w.check(6100), Seen::New);
        assert_eq!(w.check(4990), Seen::TooOld);
        // Slots reused after the window moved on are clear again.
        assert_eq!(w.check(6100 - 1024 + 1), Seen::New);
        assert_eq!(w.check(5000 + 1024 * 2), Seen::New);
        assert_eq!(w.check(5000 + 1024 * 2), Seen::Duplicate);
    }
}
