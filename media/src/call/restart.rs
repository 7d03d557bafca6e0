//! When a connected call restarts ICE: the path in use has stopped (a NAT forgot its mapping,
//! a relay lost the allocation) and a new one must be found while the call goes on.
//!
//! [`RestartPolicy`] is sans-IO: it is told what the connection does, with the time as an
//! argument, and answers what to do. The path counts as down when nothing at all (no RTP, no
//! RTCP) has come from the peer for [`RestartConfig::down_after`], or when ICE has reported
//! `disconnected` or `failed` for that long. A down path gets an ICE restart; one restart is
//! in flight at a time, and another is made only if the path is still down
//! [`RestartConfig::retry_after`] later. The peer's request for a restart (it hears nothing
//! from this side) is answered the same way: not while a restart made meanwhile is at work. A path down for [`RestartConfig::give_up_after`] is
//! given up: the call ends.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use duet_media::call::restart::{RestartAction, RestartConfig, RestartPolicy};
//!
//! let t0 = Instant::now();
//! let mut policy = RestartPolicy::new(RestartConfig::default(), t0);
//! // Packets arrive until t0; then nothing.
//! assert_eq!(policy.poll(t0 + Duration::from_millis(500), Some(t0)), None);
//! assert_eq!(policy.poll(t0 + Duration::from_secs(2), Some(t0)), Some(RestartAction::Restart));
//! // The restart worked: packets again.
//! let back = t0 + Duration::from_millis(2600);
//! assert_eq!(policy.poll(back, Some(back)), None);
//! assert_eq!(policy.restarts(), 1);
//! assert_eq!(policy.longest_outage(), Some(Duration::from_millis(2600)));
//! ```

use std::time::{Duration, Instant};

/// When to restart ICE and when to give up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartConfig {
    /// The path counts as down after this long without a packet from the peer, or this long
    /// after ICE reported `disconnected` or `failed`. A call carries audio every 20 ms and
    /// RTCP every second, so a second of silence is a path that stopped.
    pub down_after: Duration,
    /// A restart that has not brought packets back after this long is made again.
    pub retry_after: Duration,
    /// A path down this long is given up: the call ends.
    pub give_up_after: Duration,
}

impl Default for RestartConfig {
    /// Down after 1.5 s, a new restart every 4 s, given up after 10 s.
    fn default() -> Self {
        Self {
            down_after: Duration::from_millis(1500),
            retry_after: Duration::from_secs(4),
            give_up_after: Duration::from_secs(10),
        }
    }
}

/// What the policy asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartAction {
    /// Restart ICE now.
    Restart,
    /// The path has been down too long: end the call.
    GiveUp,
}

/// Decides when a connected call restarts ICE. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct RestartPolicy {
    config: RestartConfig,
    /// When the call connected: the start of the first silence if nothing ever arrives.
    connected_at: Instant,
    /// When ICE reported `disconnected` or `failed`, until it reports `connected` again.
    ice_down_since: Option<Instant>,
    /// The current outage: when its last packet before it arrived (or ICE went down).
    outage_since: Option<Instant>,
    /// When the restart in flight (not followed by packets yet) was made.
    in_flight: Option<Instant>,
    /// When the latest restart was made.
    last_restart: Option<Instant>,
    restarts: u64,
    longest: Option<Duration>,
    gave_up: bool,
}

impl RestartPolicy {
    /// A policy for a call that connected at `connected_at`.
    pub fn new(config: RestartConfig, connected_at: Instant) -> Self {
        Self {
            config,
            connected_at,
            ice_down_since: None,
            outage_since: None,
            in_flight: None,
            last_restart: None,
            restarts: 0,
            longest: None,
            gave_up: false,
        }
    }

    /// ICE reported its state at `now`: `up` for `connected` or `completed`, not `up` for
    /// `disconnected` or `failed`. (`checking` during a restart is neither: don't call.)
    pub fn on_ice(&mut self, now: Instant, up: bool) {
        if up {
            self.ice_down_since = None;
        } else if self.ice_down_since.is_none() {
            self.ice_down_since = Some(now);
        }
    }

    /// Looks at the path at `now`, given when the latest packet from the peer arrived
    /// (`None`: none yet). Returns what to do, if anything. Call it regularly (every few
    /// hundred ms) once the call is connected.
    pub fn poll(&mut self, now: Instant, last_heard: Option<Instant>) -> Option<RestartAction> {
        if self.gave_up {
            return None;
        }
        let heard = last_heard.map_or(self.connected_at, |t| t.max(self.connected_at));
        let silent_for = now.saturating_duration_since(heard);
        let ice_down_for = self
            .ice_down_since
            .map(|t| now.saturating_duration_since(t));
        let down = silent_for >= self.config.down_after
            || ice_down_for.is_some_and(|d| d >= self.config.down_after);
        if !down {
            if let Some(since) = self.outage_since.take() {
                // Packets again: the outage lasted from its last packet to this one.
                let lasted = heard.saturating_duration_since(since);
                self.longest = Some(self.longest.map_or(lasted, |l| l.max(lasted)));
            }
            self.in_flight = None;
            return None;
        }
        let since = *self.outage_since.get_or_insert(match self.ice_down_since {
            Some(ice) if silent_for < self.config.down_after => ice,
            Some(ice) => ice.min(heard),
            None => heard,
        });
        if now.saturating_duration_since(since) >= self.config.give_up_after {
            self.gave_up = true;
            return Some(RestartAction::GiveUp);
        }
        match self.last_restart {
            Some(made) if now.saturating_duration_since(made) < self.config.retry_after => None,
            _ => {
                self.in_flight = Some(now);
                self.last_restart = Some(now);
                self.restarts += 1;
                Some(RestartAction::Restart)
            }
        }
    }

    /// The peer asked at `now` for a restart (it hears nothing from us). True if this side
    /// should make it: false once the call has been given up, and while a restart made less
    /// than [`RestartConfig::retry_after`] ago is still the answer (the request crossed it).
    pub fn on_request(&mut self, now: Instant) -> bool {
        if self.gave_up {
            return false;
        }
        if self
            .last_restart
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.retry_after)
        {
            return false;
        }
        self.last_restart = Some(now);
        self.in_flight = Some(now);
        self.restarts += 1;
        true
    }

    /// Restarts asked for so far, by [`poll`](Self::poll) or [`on_request`](Self::on_request).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// True while a restart has been asked for and packets have not come back.
    pub fn restarting(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The longest outage the call recovered from so far: from the last packet before it to
    /// the latest packet seen at the first look after it. `None` before any outage ended.
    pub fn longest_outage(&self) -> Option<Duration> {
        self.longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Polls every 250 ms from `from` to `to`, with packets heard as `heard(t)` says.
    fn run(
        policy: &mut RestartPolicy,
        t0: Instant,
        from: u64,
        to: u64,
        heard: impl Fn(u64) -> Option<u64>,
    ) -> Vec<(u64, RestartAction)> {
        let mut actions = Vec::new();
        let mut t = from;
        while t <= to {
            if let Some(a) = policy.poll(t0 + ms(t), heard(t).map(|h| t0 + ms(h))) {
                actions.push((t, a));
            }
            t += 250;
        }
        actions
    }

    #[test]
    fn a_steady_call_never_restarts() {
        let t0 = Instant::now();
        let mut policy = RestartPolicy::new(RestartConfig::default(), t0);
        let actions = run(&mut policy, t0, 0, 60_000, |t| Some(t.saturating_sub(20)));
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(policy.restarts(), 0);
        assert_eq!(policy.longest_outage(), None);
    }

    #[test]
    fn silence_restarts_once_and_recovery_is_measured() {
        let t0 = Instant::now();
        let mut policy = RestartPolicy::new(RestartConfig::default(), t0);
        // Packets until 5 s, nothing until 7.6 s, packets again after.
        let heard = |t: u64| {
            Some(if t < 5000 {
                t
            } else if t < 7600 {
                5000
            } else {
                t
            })
        };
        let actions = run(&mut policy, t0, 0, 20_000, heard);
        assert_eq!(actions, vec![(6500, RestartAction::Restart)]);
        assert_eq!(policy.restarts(), 1);
        assert!(!policy.restarting());
        // From the last packet (5 s) to the first look that saw packets (7.75 s).
        assert_eq!(policy.longest_outage(), Some(ms(2750)));
    }

    #[test]
    fn one_restart_in_flight_then_retries_then_gives_up() {
        let t0 = Instant::now();
        let mut policy = RestartPolicy::new(RestartConfig::default(), t0);
        let actions = run(&mut policy, t0, 0, 30_000, |t| Some(t.min(1000)));
        assert_eq!(
            actions,
            vec![
                (2500, RestartAction::Restart),
                (6500, RestartAction::Restart),
                (10_500, RestartAction::Restart),
                (11_000, RestartAction::GiveUp),
            ]
        );
        assert_eq!(policy.restarts(), 3);
        assert_eq!(policy.longest_outage(), None);
    }

    #[test]
    fn ice_disconnected_counts_even_while_packets_trickle() {
        let t0 = Instant::now();
        let mut policy = RestartPolicy::new(RestartConfig::default(), t0);
        policy.on_ice(t0 + ms(1000), false);
        assert_eq!(policy.poll(t0 + ms(2000), Some(t0 + ms(1990))), None);
        assert_eq!(
            policy.poll(t0 + ms(2500), Some(t0 + ms(2490))),
            Some(RestartAction::Restart)
        );
        // ICE connected again, packets flowing: the outage is over.
        policy.on_ice(t0 + ms(3000), true);
        assert_eq!(policy.poll(t0 + ms(3100), Some(t0 + ms(3090))), None);
        assert!(!policy.restarting());
        assert_eq!(policy.longest_outage(), Some(ms(2090)));
    }

    #[test]
    fn a_request_that_crosses_our_own_restart_is_not_answered_twice() {
        let t0 = Instant::now();
        let mut policy = RestartPolicy::new(RestartConfig::default(), t0);
        // We hear the peer, the peer does not hear us: its request is answered.
        assert!(policy.on_request(t0 + ms(3000)));
        // Its request again a second later, while that restart is under way: not again.
        assert!(!policy.on_request(t0 + ms(4000)));
        // Our own outage at the same time: the restart already made covers it.
        assert_eq!(policy.poll(t0 + ms(4500), Some(t0 + ms(2900))), None);
        // Still nothing 4 s after the restart: a new one.
        assert_eq!(
            policy.poll(t0 + ms(7000), Some(t0 + ms(2900))),
            Some(RestartAction::Restart)
        );
        assert_eq!(policy.restarts(), 2);
        // Given up: no request is answered.
        assert_eq!(
            policy.poll(t0 + ms(13_000), Some(t0 + ms(2900))),
            Some(RestartAction::GiveUp)
        );
        assert!(!policy.on_request(t0 + ms(20_000)));
    }

    #[test]
    fn nothing_ever_heard_counts_from_the_connection() {
        let t0 = Instant::now();
        let mut policy = RestartPolicy::new(RestartConfig::default(), t0);
        assert_eq!(policy.poll(t0 + ms(1000), None), None);
        assert_eq!(
            policy.poll(t0 + ms(1500), None),
            Some(RestartAction::Restart)
        );
    }
}
