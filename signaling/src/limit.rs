//! Per-connection rate limiting, told the time like the hub.

use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(now: Instant, rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What to do with one incoming frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Pass,
    /// Drop it; when `notify`, tell the client (once per run of drops).
    Drop {
        /// Whether this is the first drop since the last frame that passed.
        notify: bool,
    },
    /// The client keeps flooding: close the connection.
    Disconnect,
}

/// The limits of one connection.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateConfig {
    /// Frames a second, sustained.
    pub rate: f64,
    /// Frames allowed at once.
    pub burst: u32,
    /// Frames dropped within `flood_window` that get the connection closed.
    pub flood_drops: u32,
    /// The window over which drops are counted.
    pub flood_window: Duration,
}

impl Default for RateConfig {
    fn default() -> Self {
        Self {
            rate: 50.0,
            burst: 100,
            flood_drops: 200,
            flood_window: Duration::from_secs(10),
        }
    }
}

/// Rate limiting for one connection: a token bucket, and disconnection of a client that keeps going.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    bucket: TokenBucket,
    config: RateConfig,
    dropping: bool,
    drops: u32,
    window_start: Instant,
}

impl RateLimiter {
    /// A limiter starting with a full bucket.
    pub fn new(now: Instant, config: RateConfig) -> Self {
        Self {
            bucket: TokenBucket::new(now, config.rate, config.burst),
            config,
            dropping: false,
            drops: 0,
            window_start: now,
        }
    }

    /// Call for every frame received, with its arrival time.
    pub fn check(&mut self, now: Instant) -> Verdict {
        if now.saturating_duration_since(self.window_start) >= self.config.flood_window {
            self.window_start = now;
            self.drops = 0;
        }
        if self.bucket.try_take(now) {
            self.dropping = false;
            return Verdict::Pass;
        }
        self.drops += 1;
        if self.drops >= self.config.flood_drops {
            return Verdict::Disconnect;
        }
        let notify = !self.dropping;
        self.dropping = true;
        Verdict::Drop { notify }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(t0, 10.0, 5);
        assert_eq!((0..8).filter(|_| b.try_take(t0)).count(), 5);
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(110)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.try_take(later)).count(), 5);
    }

    #[test]
    fn flood_is_dropped_then_disconnected() {
        let t0 = Instant::now();
        let config = RateConfig {
            rate: 10.0,
            burst: 10,
            flood_drops: 30,
            flood_window: Duration::from_secs(10),
        };
        let mut l = RateLimiter::new(t0, config);
        let verdicts: Vec<Verdict> = (0..45).map(|_| l.check(t0)).collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Pass));
        assert_eq!(verdicts[10], Verdict::Drop { notify: true });
        assert!(verdicts[11..39]
            .iter()
            .all(|v| *v == Verdict::Drop { notify: false }));
        assert_eq!(verdicts[39], Verdict::Disconnect);
    }

    #[test]
    fn a_client_within_its_rate_is_never_dropped() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(t0, RateConfig::default());
        for i in 0..10_000u64 {
            // 40 frames a second, under the 50 allowed.
            assert_eq!(
                l.check(t0 + Duration::from_millis(25 * i)),
                Verdict::Pass,
                "frame {i}"
            );
        }
        // After drops, the next allowed frame resets the notification.
        let t = t0 + Duration::from_secs(1000);
        while l.check(t) == Verdict::Pass {}
        assert_eq!(l.check(t + Duration::from_secs(1)), Verdict::Pass);
        let mut l2 = l.clone();
        while l2.check(t + Duration::from_secs(1)) == Verdict::Pass {}
        assert_eq!(
            l2.check(t + Duration::from_secs(1)),
            Verdict::Drop { notify: false }
        );
    }
}
