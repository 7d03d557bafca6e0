//! Bitrate adaptation with simulated time: receiver reports once a second, the controller
//! polled every 100 ms, its changes recorded.

use std::time::{Duration, Instant};

use duet_media::adapt::{AdaptConfig, BitrateController, Reconfigure};

const STEP: Duration = Duration::from_millis(100);

/// A controller, its clock and every change it asked for.
struct Sim {
    control: BitrateController,
    start: Instant,
    now: Instant,
    changes: Vec<(Instant, Reconfigure)>,
}

impl Sim {
    fn new(config: AdaptConfig) -> Self {
        let start = Instant::now();
        Self {
            control: BitrateController::new(config, start).unwrap(),
            start,
            now: start,
            changes: Vec::new(),
        }
    }

    /// Runs `seconds` with one receiver report a second (`loss`, `rtt`) and, if given, a
    /// transport estimate every 500 ms from `estimate(t)`.
    fn run(
        &mut self,
        seconds: u64,
        loss: impl Fn(u64) -> f64,
        rtt: Duration,
        estimate: Option<&dyn Fn(u64) -> u64>,
    ) {
        for step in 1..=seconds * 10 {
            self.now += STEP;
            if step % 10 == 0 {
                self.control
                    .on_receiver_report(self.now, loss(step / 10), Some(rtt));
            }
            if let (Some(estimate), 0) = (estimate, step % 5) {
                self.control.on_estimate(self.now, estimate(step));
            }
            if self.now >= self.control.poll_timeout() {
                self.control.handle_timeout(self.now);
            }
            while let Some(change) = self.control.poll_output() {
                self.changes.push((self.now, change));
            }
        }
    }

    fn video(&self) -> Vec<(Instant, u32, (u32, u32))> {
        self.changes
            .iter()
            .filter_map(|(at, c)| match c {
                Reconfigure::Video { bps, size } => Some((*at, *bps, *size)),
                Reconfigure::Audio { .. } => None,
            })
            .collect()
    }

    fn fec_toggles(&self) -> usize {
        let mut on = false;
        let mut toggles = 0;
        for (_, c) in &self.changes {
            if let Reconfigure::Audio { fec, .. } = c {
                toggles += usize::from(*fec != on);
                on = *fec;
            }
        }
        toggles
    }

    fn secs(&self, at: Instant) -> f64 {
        (at - self.start).as_secs_f64()
    }
}

const MS: fn(u64) -> Duration = Duration::from_millis;

fn assert_rate_limited(sim: &Sim) {
    let video = sim.video();
    for pair in video.windows(2) {
        assert!(
            pair[1].0 - pair[0].0 >= Duration::from_secs(3),
            "video reconfigured at {:.1}s and {:.1}s",
            sim.secs(pair[0].0),
            sim.secs(pair[1].0)
        );
        let (a, b) = (f64::from(pair[0].1), f64::from(pair[1].1));
        assert!(
            pair[0].2 != pair[1].2 || (b - a).abs() > 0.15 * a,
            "a {a} -> {b} change without a new size"
        );
    }
}

#[test]
fn sustained_loss_lowers_the_bitrate_and_the_picture_then_it_recovers() {
    let mut sim = Sim::new(AdaptConfig::default());
    let first = sim.control.targets();
    assert_eq!((first.video_bps, first.video_size), (968_000, (852, 480)));

    sim.run(30, |_| 0.20, MS(50), None);
    let low = sim.control.targets();
    assert!(
        low.video_bps <= 150_000,
        "video {} after 30 s at 20% loss",
        low.video_bps
    );
    assert_eq!(low.video_size, (426, 240));
    let sizes: Vec<(u32, u32)> = sim.video().iter().map(|v| v.2).collect();
    assert!(sizes.contains(&(640, 360)), "no 360p step: {sizes:?}");
    // Every change under loss went down.
    assert!(sim.video().windows(2).all(|w| w[1].1 < w[0].1));
    assert!(low.opus_fec && low.audio_bps == 48_000);
    assert!((15..=25).contains(&low.opus_expected_loss_pct));
    assert_rate_limited(&sim);

    // Loss stops: back to 480p and at least 800 kbps within 35 s, only going up.
    let clean_from = sim.now;
    let before = sim.video().len();
    sim.run(40, |_| 0.0, MS(50), None);
    let up = &sim.video()[before..];
    assert!(up.windows(2).all(|w| w[1].1 > w[0].1), "not a steady ramp");
    let back = up
        .iter()
        .find(|v| v.1 >= 800_000 && v.2 == (852, 480))
        .unwrap_or_else(|| panic!("never back to 480p at 800 kbps: {up:?}"));
    let took = (back.0 - clean_from).as_secs_f64();
    assert!(took <= 35.0, "recovery took {took:.1} s");
    assert!(!sim.control.targets().opus_fec);
    assert_rate_limited(&sim);
}

#[test]
fn small_changes_do_not_rebuild_the_encoder() {
    let mut sim = Sim::new(AdaptConfig::default());
    // The transport estimate wobbles ±5% around 600 kbps.
    let wobble = |step: u64| {
        if step.is_multiple_of(2) {
            630_000
        } else {
            570_000
        }
    };
    sim.run(60, |_| 0.0, MS(40), Some(&wobble));
    let video = sim.video();
    assert_eq!(video.len(), 1, "{video:?}");
    assert!((530_000..=600_000).contains(&video[0].1));
    assert_eq!(sim.secs(video[0].0).round(), 3.0);
}

#[test]
fn wild_swings_are_rate_limited() {
    let mut sim = Sim::new(AdaptConfig::default());
    let swing = |step: u64| {
        if (step / 5).is_multiple_of(2) {
            300_000
        } else {
            2_000_000
        }
    };
    sim.run(60, |_| 0.0, MS(40), Some(&swing));
    let n = sim.video().len();
    assert!((5..=20).contains(&n), "{n} reconfigurations in 60 s");
    assert_rate_limited(&sim);
}

#[test]
fn the_transport_estimate_caps_the_target() {
    let mut sim = Sim::new(AdaptConfig::default());
    sim.run(20, |_| 0.0, MS(40), Some(&|_| 300_000));
    let t = sim.control.targets();
    assert!(t.video_bps <= 300_000 - 32_000, "video {}", t.video_bps);
    assert_eq!(t.video_size, (640, 360));
    assert_eq!(sim.control.estimate_bps(), 300_000);
}

#[test]
fn fec_follows_loss_with_hysteresis() {
    let mut sim = Sim::new(AdaptConfig::default());
    // Loss hovering between the thresholds never turns FEC on...
    sim.run(20, |s| if s % 2 == 0 { 0.007 } else { 0.009 }, MS(40), None);
    assert_eq!(sim.fec_toggles(), 0);
    // ...3% loss does within a second, with the expected loss and a higher Opus bitrate...
    let from = sim.now;
    sim.run(10, |_| 0.03, MS(40), None);
    let on = sim
        .changes
        .iter()
        .find(|(_, c)| matches!(c, Reconfigure::Audio { fec: true, .. }))
        .expect("FEC never turned on");
    assert!(on.0 - from <= Duration::from_secs(1));
    let t = sim.control.targets();
    assert_eq!(t.opus_expected_loss_pct, 3);
    assert_eq!(t.audio_bps, 35_000);
    // ...hovering again keeps it on...
    sim.run(20, |s| if s % 2 == 0 { 0.007 } else { 0.009 }, MS(40), None);
    assert_eq!(sim.fec_toggles(), 1);
    assert!(sim.control.targets().opus_fec);
    // ...and a clean link turns it off within 15 s.
    let from = sim.now;
    sim.run(15, |_| 0.0, MS(40), None);
    assert_eq!(sim.fec_toggles(), 2);
    let off = sim
        .changes
        .iter()
        .rev()
        .find(|(_, c)| matches!(c, Reconfigure::Audio { fec: false, .. }));
    assert!(off.is_some_and(|(at, _)| *at - from <= Duration::from_secs(15)));
    let t = sim.control.targets();
    assert_eq!((t.audio_bps, t.opus_expected_loss_pct), (32_000, 0));
}

#[test]
fn a_growing_queue_stops_growth_and_backs_off() {
    let mut sim = Sim::new(AdaptConfig::default());
    sim.run(10, |_| 0.0, MS(40), None);
    let grown = sim.control.estimate_bps();
    assert!(grown > 1_800_000, "estimate {grown} after 10 clean seconds");
    // RTT 150 ms above its minimum: hold.
    sim.run(5, |_| 0.0, MS(190), None);
    assert_eq!(sim.control.estimate_bps(), grown);
    // 400 ms above: back off 15% a second.
    sim.run(5, |_| 0.0, MS(440), None);
    let backed = sim.control.estimate_bps();
    assert!(
        backed < grown / 2,
        "estimate {backed} after 5 s of queueing"
    );
}

#[test]
fn garbage_feedback_is_clamped() {
    let mut sim = Sim::new(AdaptConfig::default());
    for (i, loss) in [f64::NAN, -1.0, 7.5, f64::INFINITY, 0.5]
        .into_iter()
        .enumerate()
    {
        let now = sim.start + Duration::from_secs(i as u64 + 1);
        sim.control
            .on_receiver_report(now, loss, Some(Duration::from_secs(3600)));
        sim.control.on_estimate(now, u64::MAX);
        sim.control.handle_timeout(now);
        let smoothed = sim.control.smoothed_loss();
        assert!((0.0..=1.0).contains(&smoothed), "{smoothed}");
    }
    let t = sim.control.targets();
    assert!(t.video_bps >= 100_000 && t.opus_expected_loss_pct <= 100);
}

#[test]
fn redundancy_keeps_opus_and_its_copies_within_the_budget() {
    use duet_media::adapt::RED_BUDGET;
    let config = AdaptConfig::default();
    let base = config.audio_bps;
    let mut sim = Sim::new(config);
    // 20% loss with two copies a packet: Opus gives way so the three fit the budget.
    sim.control.set_audio_redundancy(2);
    sim.run(5, |_| 0.2, MS(40), None);
    let t = sim.control.targets();
    assert!(t.opus_fec, "{t:?}");
    assert!(
        f64::from(t.audio_bps) * 3.0 <= RED_BUDGET * f64::from(base),
        "{t:?}"
    );
    assert!(t.audio_bps >= 12_000, "{t:?}");
    // One copy: Opus keeps the bitrate it has without loss.
    sim.control.set_audio_redundancy(1);
    sim.run(3, |_| 0.05, MS(40), None);
    assert_eq!(sim.control.targets().audio_bps, base);
    // None: FEC's extra bitrate is back.
    sim.control.set_audio_redundancy(0);
    sim.run(3, |_| 0.05, MS(40), None);
    assert!(sim.control.targets().audio_bps > base);
}
