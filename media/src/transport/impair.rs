//! A seeded network impairment: random and burst loss, delay, jitter, reordering, duplication
//! and a rate cap, applied to the packets one side sends.
//!
//! Three layers, from the deterministic core to the sockets:
//!
//! ```text
//!  Impairment::send(now, len) -> Fate          decides each packet's fate; sans-IO, seeded
//!  ImpairQueue::push / poll_transmit / poll_timeout   holds packets until their delivery time
//!  ImpairedRuntime (webrtc Runtime)            wraps each UDP socket the WebRTC stack opens
//! ```
//!
//! The same [`ImpairConfig`] (seed included) and the same sequence of calls always give the
//! same fates: tests drive [`Impairment`] or [`ImpairQueue`] with simulated time, faster than
//! real time, and `duet loopback --impair ...` drives the same code under the real stack.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use duet_media::transport::impair::{Fate, ImpairConfig, Impairment};
//!
//! let config: ImpairConfig = "loss=10%,delay=20ms,jitter=10ms,seed=1".parse()?;
//! let now = Instant::now();
//! let mut link = Impairment::new(config)?;
//! for _ in 0..1000 {
//!     if let Fate::Deliver { at, .. } = link.send(now, 1200) {
//!         assert!(at >= now + Duration::from_millis(20) && at <= now + Duration::from_millis(30));
//!     }
//! }
//! let stats = link.stats();
//! assert_eq!(stats.sent, 1000);
//! assert!((60..140).contains(&stats.dropped_loss));
//! # Ok::<(), duet_media::Error>(())
//! ```

mod config;
mod queue;
mod runtime;

use std::time::{Duration, Instant};

pub use config::ImpairConfig;
pub use queue::{Dropped, ImpairQueue};
pub use runtime::{ImpairCounters, ImpairedRuntime};

use crate::error::Error;
use crate::rng::SplitMix64;

/// The extra delay of a packet picked for reordering: drawn uniformly in
/// `REORDER_HOLD..2 * REORDER_HOLD`, on top of its jitter, so that the packets sent right
/// after it overtake it.
pub const REORDER_HOLD: Duration = Duration::from_millis(10);

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Lost on the link (random or burst loss).
    Lost,
    /// Dropped because the rate queue was full.
    QueueFull,
    /// Delivered at `at`; a second copy at `duplicate` if the packet is duplicated.
    Deliver {
        /// When the packet arrives.
        at: Instant,
        /// When its duplicate arrives, right after it.
        duplicate: Option<Instant>,
        /// True when the packet was held back so that later packets overtake it.
        reordered: bool,
    },
}

/// Counters of one impairment, named after what happened to the packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Packets offered to the impairment.
    pub sent: u64,
    /// Packets handed on (duplicates included); only a queue or a socket delivers.
    pub delivered: u64,
    /// Packets lost on the link.
    pub dropped_loss: u64,
    /// Packets dropped by a full rate queue.
    pub dropped_queue: u64,
    /// Packets delivered twice.
    pub duplicated: u64,
    /// Packets held back so that later ones overtake them.
    pub reordered: u64,
}

/// The deterministic core: decides, packet by packet, whether it is lost, when it arrives and
/// whether it comes twice. Time is passed in; nothing reads a clock.
///
/// Each kind of impairment draws from its own seeded stream, so turning one on (say, jitter)
/// does not change the losses the same seed gives.
#[derive(Debug, Clone)]
pub struct Impairment {
    config: ImpairConfig,
    loss_rng: SplitMix64,
    jitter_rng: SplitMix64,
    reorder_rng: SplitMix64,
    dup_rng: SplitMix64,
    /// Gilbert-Elliott probabilities: good to bad, bad to good.
    good_to_bad: f64,
    bad_to_good: f64,
    in_burst: bool,
    /// The latest `now` seen.
    latest: Option<Instant>,
    /// When the rate-limited link finishes sending the last accepted packet.
    link_free: Option<Instant>,
    /// The latest delivery time of a packet that keeps its place in the order.
    last_in_order: Option<Instant>,
    stats: ImpairStats,
}

impl Impairment {
    /// An impairment with `config`, which is validated.
    pub fn new(config: ImpairConfig) -> Result<Self, Error> {
        config.validate()?;
        let mut seeds = SplitMix64::new(config.seed);
        let bad_to_good = 1.0 / config.burst;
        let good_to_bad = if config.burst > 1.0 {
            (config.loss * bad_to_good / (1.0 - config.loss)).min(1.0)
        } else {
            config.loss
        };
        Ok(Self {
            loss_rng: SplitMix64::new(seeds.next_u64()),
            jitter_rng: SplitMix64::new(seeds.next_u64()),
            reorder_rng: SplitMix64::new(seeds.next_u64()),
            dup_rng: SplitMix64::new(seeds.next_u64()),
            good_to_bad,
            bad_to_good,
            in_burst: false,
            latest: None,
            link_free: None,
            last_in_order: None,
            stats: ImpairStats::default(),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ImpairConfig {
        &self.config
    }

    /// The counters so far.
    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    /// Decides the fate of a packet of `len` bytes sent at `now`. Call it once per packet, with
    /// `now` never going backwards (an earlier `now` is taken as the latest one seen).
    ///
    /// The packet first waits for the rate-limited link (or is dropped if it would wait longer
    /// than [`ImpairConfig::queue`]), may then be lost, and arrives after the base delay plus
    /// its jitter, never before a packet sent earlier unless it was picked for reordering.
    pub fn send(&mut self, now: Instant, len: usize) -> Fate {
        self.stats.sent += 1;
        // Time never goes backwards inside the impairment, or the rate queue would too.
        let now = self.latest.map_or(now, |latest| latest.max(now));
        self.latest = Some(now);
        let departure = match self.config.rate_bps {
            Some(rate) => {
                let start = self.link_free.map_or(now, |free| free.max(now));
                if start - now > self.config.queue {
                    self.stats.dropped_queue += 1;
                    return Fate::QueueFull;
                }
                let serialize = Duration::from_secs_f64(len as f64 * 8.0 / rate as f64);
                let done = start + serialize;
                self.link_free = Some(done);
                done
            }
            None => now,
        };
        if self.lose() {
            self.stats.dropped_loss += 1;
            return Fate::Lost;
        }
        let jitter = if self.config.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.config.jitter.mul_f64(self.jitter_rng.next_f64())
        };
        let mut at = departure + self.config.delay + jitter;
        let reordered = self.reorder_rng.chance(self.config.reorder);
        if reordered {
            self.stats.reordered += 1;
            at += REORDER_HOLD + REORDER_HOLD.mul_f64(self.reorder_rng.next_f64());
        } else {
            at = self.last_in_order.map_or(at, |last| at.max(last));
            self.last_in_order = Some(at);
        }
        let duplicate = self.dup_rng.chance(self.config.duplicate).then_some(at);
        if duplicate.is_some() {
            self.stats.duplicated += 1;
        }
        Fate::Deliver {
            at,
            duplicate,
            reordered,
        }
    }

    /// Counts a packet that a queue in front of the impairment refused (it was full).
    pub(crate) fn count_queue_drop(&mut self) {
        self.stats.sent += 1;
        self.stats.dropped_queue += 1;
    }

    /// Counts a packet handed on by a queue or socket.
    pub(crate) fn count_delivered(&mut self) {
        self.stats.delivered += 1;
    }

    /// One step of the loss model: true if this packet is lost.
    fn lose(&mut self) -> bool {
        if self.config.loss == 0.0 {
            return false;
        }
        if self.config.burst <= 1.0 {
            return self.loss_rng.chance(self.config.loss);
        }
        let flip = if self.in_burst {
            self.bad_to_good
        } else {
            self.good_to_bad
        };
        if self.loss_rng.next_f64() < flip {
            self.in_burst = !self.in_burst;
        }
        self.in_burst
    }
}

/// The seed a socket derives from the configured one, so that several sockets under one
/// runtime get different but reproducible fates. Socket 0 keeps the configured seed.
pub fn socket_seed(seed: u64, index: u64) -> u64 {
    if index == 0 {
        seed
    } else {
        SplitMix64::new(seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407)).next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(s: &str) -> Impairment {
        Impairment::new(s.parse().unwrap()).unwrap()
    }

    #[test]
    fn clean_link_delivers_everything_at_once() {
        let mut l = link("");
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(
                l.send(now, 100),
                Fate::Deliver {
                    at: now,
                    duplicate: None,
                    reordered: false
                }
            );
        }
        assert_eq!(l.stats().sent, 100);
    }

    #[test]
    fn burst_loss_reaches_the_configured_rate() {
        let mut l = link("loss=20%,burst=3,seed=5");
        let now = Instant::now();
        let lost = (0..100_000)
            .filter(|_| l.send(now, 100) == Fate::Lost)
            .count();
        assert!((19_000..21_000).contains(&lost), "lost {lost}");
    }

    #[test]
    fn without_reordering_order_is_kept_under_jitter() {
        let mut l = link("jitter=50ms,seed=3");
        let start = Instant::now();
        let mut last = start;
        for i in 0..10_000u32 {
            let now = start + Duration::from_millis(u64::from(i));
            match l.send(now, 100) {
                Fate::Deliver { at, .. } => {
                    assert!(at >= last);
                    assert!(at <= now + Duration::from_millis(50));
                    last = at;
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn socket_seeds_differ_but_repeat() {
        assert_eq!(socket_seed(7, 0), 7);
        assert_eq!(socket_seed(7, 1), socket_seed(7, 1));
        assert_ne!(socket_seed(7, 1), socket_seed(7, 2));
    }
}
