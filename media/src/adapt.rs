//! Bitrate adaptation: from what the receiver reports (RTCP fraction lost, round-trip time)
//! and the transport's bandwidth estimate when there is one, the bitrate and picture size of
//! the H.264 encoder and the bitrate and FEC of the Opus encoder.
//!
//! The estimate follows libwebrtc's loss-based `SendSideBandwidthEstimation`: up about 8% a
//! second while the receiver loses under 2%, held between 2% and 10%, multiplied by
//! `1 - loss / 2` above 10%; it stops growing when the round-trip time shows a queue building
//! and backs off when the queue is long, and it never exceeds the transport's own estimate
//! (the `webrtc` crate's congestion controller) when one is fed in.
//!
//! Rebuilding the H.264 encoder costs a keyframe, so the video target changes at most every
//! [`AdaptConfig::reconfigure_interval`] and only by more than [`AdaptConfig::min_change`] or to
//! another picture size; sizes step down under low bitrate (720p from 1.2 Mbps, 480p from
//! 500 kbps, 360p from 250 kbps, else 240p) and step up again only with 20% to spare.
//! Opus settings are cheap to change: FEC turns on above 1% smoothed loss and off below 0.5%,
//! the expected loss follows the smoothed loss, and the audio bitrate grows to pay for FEC.
//! When Opus travels in RED with copies of earlier packets
//! ([`BitrateController::set_audio_redundancy`]), Opus's own bitrate is lowered so that the
//! packet and its copies together stay within [`RED_BUDGET`] times the audio bitrate without
//! loss, and the video's share counts the copies.
//!
//! [`BitrateController`] is sans-IO: time is passed in, and its decisions are drained with
//! [`BitrateController::poll_output`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use duet_media::adapt::{AdaptConfig, BitrateController, Reconfigure};
//!
//! let start = Instant::now();
//! let mut control = BitrateController::new(AdaptConfig::default(), start)?;
//! let first = control.targets();
//! for second in 1..=20 {
//!     let now = start + Duration::from_secs(second);
//!     control.on_receiver_report(now, 0.2, Some(Duration::from_millis(60)));
//!     control.handle_timeout(now);
//!     while let Some(change) = control.poll_output() {
//!         match change {
//!             Reconfigure::Video { bps, size } => { /* encoder.set_bitrate(bps), resize */ }
//!             Reconfigure::Audio { bps, fec, expected_loss_pct } => { /* opus settings */ }
//!         }
//!     }
//! }
//! assert!(control.targets().video_bps < first.video_bps / 2);
//! assert!(control.targets().opus_fec);
//! # Ok::<(), duet_media::Error>(())
//! ```

use std::time::{Duration, Instant};

use crate::error::Error;

/// Below this loss the estimate grows.
const LOW_LOSS: f64 = 0.02;
/// Above this loss the estimate shrinks.
const HIGH_LOSS: f64 = 0.10;
/// Growth per [`INCREASE_INTERVAL`].
const INCREASE_FACTOR: f64 = 1.08;
/// How often the estimate may grow.
const INCREASE_INTERVAL: Duration = Duration::from_secs(1);
/// The least time between two loss-based decreases, to which the RTT is added.
const DECREASE_INTERVAL: Duration = Duration::from_millis(300);
/// Reports or estimates older than this are not acted on.
const FEEDBACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Queueing delay (RTT above its minimum) at which growth stops.
const QUEUE_HOLD: Duration = Duration::from_millis(100);
/// Queueing delay at which the estimate backs off by [`QUEUE_BACKOFF_FACTOR`] a second.
const QUEUE_BACKOFF: Duration = Duration::from_millis(250);
const QUEUE_BACKOFF_FACTOR: f64 = 0.85;
/// The minimum RTT is taken over two windows of this length.
const RTT_WINDOW: Duration = Duration::from_secs(30);
/// Smoothing of the reported loss, rising and falling.
const LOSS_RISE: f64 = 0.5;
const LOSS_FALL: f64 = 0.2;
/// Opus FEC thresholds on the smoothed loss.
const FEC_ON: f64 = 0.01;
const FEC_OFF: f64 = 0.005;
/// With redundancy, Opus and its copies together take at most this many times
/// [`AdaptConfig::audio_bps`].
pub const RED_BUDGET: f64 = 2.0;
/// Opus's bitrate is never lowered below this to make room for redundancy (wideband speech
/// stays clear there).
const RED_MIN_OPUS_BPS: u32 = 12_000;
/// Opus settings (cheap encoder controls) change at most this often.
const AUDIO_INTERVAL: Duration = Duration::from_secs(1);
/// A bigger picture needs this much more than its threshold.
const STEP_UP_MARGIN: f64 = 1.2;
/// The repair rate is smoothed over about this long.
const REPAIR_SMOOTHING: Duration = Duration::from_secs(1);
/// How often [`BitrateController::handle_timeout`] wants to run.
const TICK: Duration = Duration::from_millis(200);
/// Picture heights and the video bitrate each needs.
const RUNGS: [(u32, u32); 5] = [
    (1080, 2_500_000),
    (720, 1_200_000),
    (480, 500_000),
    (360, 250_000),
    (240, 0),
];

/// The limits within which the controller moves.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptConfig {
    /// The least video bitrate, in bits per second.
    pub min_video_bps: u32,
    /// The total (audio and video) bitrate to start from.
    pub start_bps: u32,
    /// The most total bitrate to use.
    pub max_bps: u32,
    /// The capture size: the largest picture the encoder is asked for.
    pub max_size: (u32, u32),
    /// Opus bitrate without loss.
    pub audio_bps: u32,
    /// Opus bitrate at most, with FEC.
    pub audio_max_bps: u32,
    /// The least time between two video reconfigurations.
    pub reconfigure_interval: Duration,
    /// The least relative change of the video bitrate worth a reconfiguration (0.15 = 15%).
    pub min_change: f64,
}

impl Default for AdaptConfig {
    /// 1280x720 capture, 1 Mbps start, 150 kbps to 2.5 Mbps, Opus 32 to 48 kbps, video
    /// reconfigured at most every 3 s by more than 15%.
    fn default() -> Self {
        Self {
            min_video_bps: 100_000,
            start_bps: 1_000_000,
            max_bps: 2_500_000,
            max_size: (1280, 720),
            audio_bps: 32_000,
            audio_max_bps: 48_000,
            reconfigure_interval: Duration::from_secs(3),
            min_change: 0.15,
        }
    }
}

impl AdaptConfig {
    /// Checks that the limits are consistent.
    pub fn validate(&self) -> Result<(), Error> {
        let floor = u64::from(self.min_video_bps) + u64::from(self.audio_bps);
        if self.min_video_bps == 0 || floor > u64::from(self.max_bps) {
            return Err(Error::Config(format!(
                "bitrate limits: video floor {} + audio {} must be above 0 and at most max {}",
                self.min_video_bps, self.audio_bps, self.max_bps
            )));
        }
        if self.audio_bps == 0 || self.audio_max_bps < self.audio_bps {
            return Err(Error::Config(format!(
                "audio bitrate {} must be above 0 and at most audio max {}",
                self.audio_bps, self.audio_max_bps
            )));
        }
        if self.max_size.0 < 2 || self.max_size.1 < 2 {
            return Err(Error::Config(format!(
                "picture size {}x{} is too small",
                self.max_size.0, self.max_size.1
            )));
        }
        if !(0.0..1.0).contains(&self.min_change) {
            return Err(Error::Config(format!(
                "min_change {} must be in [0, 1)",
                self.min_change
            )));
        }
        Ok(())
    }
}

/// What the encoders should be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    /// H.264 bitrate, bits per second.
    pub video_bps: u32,
    /// H.264 picture size (width, height), even numbers.
    pub video_size: (u32, u32),
    /// Opus bitrate, bits per second.
    pub audio_bps: u32,
    /// Opus in-band FEC on.
    pub opus_fec: bool,
    /// Opus expected packet loss, percent.
    pub opus_expected_loss_pct: u8,
}

/// Why the video sent is of lower quality than the source's, as W3C webrtc-stats names it
/// (`RTCQualityLimitationReason` of `qualityLimitationReason`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum QualityLimitation {
    /// The picture is sent at the size it is captured.
    #[default]
    None,
    /// The bitrate the path carries made the controller step the picture size down.
    Bandwidth,
}

impl QualityLimitation {
    /// The W3C name: `"none"` or `"bandwidth"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Bandwidth => "bandwidth",
        }
    }
}

/// A change to apply, drained with [`BitrateController::poll_output`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconfigure {
    /// Rebuild the H.264 encoder at this bitrate and picture size.
    Video {
        /// Bits per second.
        bps: u32,
        /// Width and height.
        size: (u32, u32),
    },
    /// Set the Opus encoder's bitrate, FEC and expected loss.
    Audio {
        /// Bits per second.
        bps: u32,
        /// In-band FEC on.
        fec: bool,
        /// Expected packet loss, percent.
        expected_loss_pct: u8,
    },
}

/// Turns receiver feedback into encoder settings. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct BitrateController {
    config: AdaptConfig,
    ladder: Vec<((u32, u32), u32)>,
    /// The loss-based estimate of the total bitrate.
    estimate: f64,
    /// The transport's estimate and when it came.
    transport: Option<(Instant, f64)>,
    last_report: Option<Instant>,
    last_loss: f64,
    smoothed_loss: f64,
    report_used: bool,
    rtt: Option<Duration>,
    rtt_min: [Option<Duration>; 2],
    rtt_window_start: Instant,
    last_increase: Instant,
    last_decrease: Option<Instant>,
    last_backoff: Option<Instant>,
    applied: Targets,
    rung: usize,
    last_video_change: Instant,
    last_audio_change: Instant,
    pending_video: Option<Reconfigure>,
    pending_audio: Option<Reconfigure>,
    next_tick: Instant,
    /// The latest time passed in.
    latest: Instant,
    /// Repair traffic (retransmissions): the cumulative bytes last fed and when.
    repair_sample: Option<(Instant, u64)>,
    /// Its smoothed rate, bit/s, taken off the video's share.
    repair_bps: f64,
    /// Earlier packets each audio packet carries again (RED), 0 without redundancy.
    red_distance: usize,
}

/// The fraction lost of an RTCP receiver report (an 8-bit fixed-point number) as 0 to 1.
pub fn fraction_lost_from_rtcp(fraction: u8) -> f64 {
    f64::from(fraction) / 256.0
}

impl BitrateController {
    /// A controller starting at `config.start_bps` at time `now`.
    pub fn new(config: AdaptConfig, now: Instant) -> Result<Self, Error> {
        config.validate()?;
        let ladder = ladder(config.max_size);
        let estimate = f64::from(config.start_bps);
        let video_bps = video_share(&config, estimate, config.audio_bps);
        let rung = ladder
            .iter()
            .position(|(_, need)| video_bps >= *need)
            .unwrap_or(ladder.len().saturating_sub(1));
        let applied = Targets {
            video_bps,
            video_size: ladder.get(rung).map_or(config.max_size, |r| r.0),
            audio_bps: config.audio_bps,
            opus_fec: false,
            opus_expected_loss_pct: 0,
        };
        Ok(Self {
            ladder,
            estimate,
            transport: None,
            last_report: None,
            last_loss: 0.0,
            smoothed_loss: 0.0,
            report_used: true,
            rtt: None,
            rtt_min: [None, None],
            rtt_window_start: now,
            last_increase: now,
            last_decrease: None,
            last_backoff: None,
            applied,
            rung,
            last_video_change: now,
            last_audio_change: now,
            pending_video: None,
            pending_audio: None,
            next_tick: now + TICK,
            latest: now,
            repair_sample: None,
            repair_bps: 0.0,
            red_distance: 0,
            config,
        })
    }

    /// Feeds an RTCP receiver report: the fraction of packets lost since the previous report
    /// (0 to 1; see [`fraction_lost_from_rtcp`]) and the round-trip time when known. Values
    /// out of range are clamped.
    pub fn on_receiver_report(&mut self, now: Instant, fraction_lost: f64, rtt: Option<Duration>) {
        let loss = if fraction_lost.is_finite() {
            fraction_lost.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let alpha = if loss > self.smoothed_loss {
            LOSS_RISE
        } else {
            LOSS_FALL
        };
        self.smoothed_loss += alpha * (loss - self.smoothed_loss);
        self.last_loss = loss;
        self.last_report = Some(now);
        self.report_used = false;
        if let Some(rtt) = rtt {
            let rtt = rtt.min(Duration::from_secs(10));
            self.rtt = Some(rtt);
            if now.saturating_duration_since(self.rtt_window_start) >= RTT_WINDOW {
                self.rtt_min = [None, self.rtt_min[0]];
                self.rtt_window_start = now;
            }
            self.rtt_min[0] = Some(self.rtt_min[0].map_or(rtt, |m| m.min(rtt)));
        }
        self.update(now);
    }

    /// Tells the controller how many earlier packets each audio packet carries again (RED,
    /// RFC 2198): Opus's bitrate is then held to a share of [`RED_BUDGET`], and the video's
    /// share of the total leaves room for the copies. Takes effect at the next Opus change.
    pub fn set_audio_redundancy(&mut self, distance: usize) {
        self.red_distance = distance;
    }

    /// Feeds the transport's bandwidth estimate (for instance the `webrtc` crate's
    /// congestion controller), in bits per second. The target never exceeds it while it is
    /// fresh (five seconds).
    pub fn on_estimate(&mut self, now: Instant, bps: u64) {
        self.transport = Some((now, bps as f64));
        self.update(now);
    }

    /// Feeds the repair traffic sent so far (retransmissions), cumulative payload bytes: its
    /// rate, smoothed over about a second, is taken off the video encoder's share, so that
    /// media and repairs together stay within the estimate.
    pub fn on_repair_sent(&mut self, now: Instant, total_bytes: u64) {
        match self.repair_sample {
            Some((at, bytes)) => {
                let elapsed = now.saturating_duration_since(at);
                if elapsed < TICK {
                    return;
                }
                let rate = total_bytes.saturating_sub(bytes) as f64 * 8.0 / elapsed.as_secs_f64();
                let alpha = (elapsed.as_secs_f64() / REPAIR_SMOOTHING.as_secs_f64()).min(1.0);
                self.repair_bps += alpha * (rate - self.repair_bps);
                self.repair_sample = Some((now, total_bytes));
            }
            None => self.repair_sample = Some((now, total_bytes)),
        }
        self.update(now);
    }

    /// The smoothed rate of repair traffic, bit/s.
    pub fn repair_bps(&self) -> u64 {
        self.repair_bps as u64
    }

    /// Runs the periodic part (growth, rate-limited changes). Call it at
    /// [`poll_timeout`](Self::poll_timeout), or more often.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_tick {
            self.next_tick = now + TICK;
        }
        self.update(now);
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    /// The next change to apply to an encoder, video first. Call it after every feed until it
    /// returns `None`. A change returned here is taken as applied.
    pub fn poll_output(&mut self) -> Option<Reconfigure> {
        self.pending_video
            .take()
            .or_else(|| self.pending_audio.take())
    }

    /// The settings as last handed out (at start, the ones to build the encoders with).
    pub fn targets(&self) -> Targets {
        self.applied
    }

    /// The current estimate of the total bitrate the path carries, bits per second.
    pub fn estimate_bps(&self) -> u64 {
        self.capped_estimate(self.latest) as u64
    }

    /// The smoothed fraction of packets lost, 0 to 1.
    pub fn smoothed_loss(&self) -> f64 {
        self.smoothed_loss
    }

    /// Whether the picture size handed out is below the capture size, which only a lack of
    /// bandwidth makes the controller do (it does not act on CPU load).
    pub fn quality_limitation(&self) -> QualityLimitation {
        let (w, h) = self.applied.video_size;
        let (max_w, max_h) = self.config.max_size;
        if w < max_w || h < max_h {
            QualityLimitation::Bandwidth
        } else {
            QualityLimitation::None
        }
    }

    fn capped_estimate(&self, now: Instant) -> f64 {
        match self.transport {
            Some((at, bps)) if now.saturating_duration_since(at) <= FEEDBACK_TIMEOUT => {
                self.estimate.min(bps)
            }
            _ => self.estimate,
        }
    }

    fn queueing(&self) -> Duration {
        let base = self.rtt_min.iter().flatten().min();
        match (self.rtt, base) {
            (Some(rtt), Some(base)) => rtt.saturating_sub(*base),
            _ => Duration::ZERO,
        }
    }

    fn update(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
        self.update_estimate(now);
        let total = self.capped_estimate(now);
        self.update_audio(now);
        self.update_video(now, total);
    }

    fn update_estimate(&mut self, now: Instant) {
        let Some(report) = self.last_report else {
            return;
        };
        if now.saturating_duration_since(report) > FEEDBACK_TIMEOUT {
            return;
        }
        let queueing = self.queueing();
        let rtt = self.rtt.unwrap_or_default();
        if queueing >= QUEUE_BACKOFF
            && self
                .last_backoff
                .is_none_or(|at| now.saturating_duration_since(at) >= INCREASE_INTERVAL)
        {
            self.estimate *= QUEUE_BACKOFF_FACTOR;
            self.last_backoff = Some(now);
            self.last_increase = now;
        } else if self.last_loss < LOW_LOSS {
            if queueing < QUEUE_HOLD
                && now.saturating_duration_since(self.last_increase) >= INCREASE_INTERVAL
            {
                self.estimate = self.estimate * INCREASE_FACTOR + 1000.0;
                self.last_increase = now;
            }
        } else if self.last_loss > HIGH_LOSS
            && !self.report_used
            && self
                .last_decrease
                .is_none_or(|at| now.saturating_duration_since(at) >= DECREASE_INTERVAL + rtt)
        {
            self.estimate *= 1.0 - 0.5 * self.last_loss;
            self.last_decrease = Some(now);
            self.report_used = true;
            self.last_increase = now;
        }
        if self.last_loss >= LOW_LOSS {
            // No growth while losing; the next growth waits a full interval after the loss ends.
            self.last_increase = now;
        }
        let floor = f64::from(self.config.min_video_bps) + f64::from(self.config.audio_bps);
        self.estimate = self.estimate.clamp(floor, f64::from(self.config.max_bps));
    }

    fn update_audio(&mut self, now: Instant) {
        let loss = self.smoothed_loss;
        let fec = if self.applied.opus_fec {
            loss >= FEC_OFF
        } else {
            loss > FEC_ON
        };
        let pct = (loss * 100.0).round().clamp(0.0, 100.0) as u8;
        let pct = if fec { pct.max(1) } else { pct };
        let extra = if fec { (3.0 * loss).min(0.5) } else { 0.0 };
        let bps = (f64::from(self.config.audio_bps) * (1.0 + extra) / 1000.0).round() as u32 * 1000;
        let bps = bps.clamp(self.config.audio_bps, self.config.audio_max_bps);
        let bps = if self.red_distance > 0 {
            let copies = 1.0 + self.red_distance as f64;
            let share = (f64::from(self.config.audio_bps) * RED_BUDGET / copies / 1000.0).floor()
                as u32
                * 1000;
            bps.min(share.max(RED_MIN_OPUS_BPS))
        } else {
            bps
        };
        let a = self.applied;
        let changed = (bps, fec, pct) != (a.audio_bps, a.opus_fec, a.opus_expected_loss_pct);
        if changed && now.saturating_duration_since(self.last_audio_change) >= AUDIO_INTERVAL {
            self.applied.audio_bps = bps;
            self.applied.opus_fec = fec;
            self.applied.opus_expected_loss_pct = pct;
            self.last_audio_change = now;
            self.pending_audio = Some(Reconfigure::Audio {
                bps,
                fec,
                expected_loss_pct: pct,
            });
        }
    }

    fn update_video(&mut self, now: Instant, total: f64) {
        let audio = self
            .applied
            .audio_bps
            .saturating_mul(1 + self.red_distance as u32);
        let bps = video_share(&self.config, total - self.repair_bps, audio);
        let mut rung = self.rung.min(self.ladder.len().saturating_sub(1));
        while rung + 1 < self.ladder.len() && bps < self.ladder[rung].1 {
            rung += 1;
        }
        while rung > 0 && f64::from(bps) >= f64::from(self.ladder[rung - 1].1) * STEP_UP_MARGIN {
            rung -= 1;
        }
        let size = self.ladder.get(rung).map_or(self.config.max_size, |r| r.0);
        let applied = f64::from(self.applied.video_bps.max(1));
        let big = (f64::from(bps) - applied).abs() > self.config.min_change * applied;
        let due = now.saturating_duration_since(self.last_video_change)
            >= self.config.reconfigure_interval;
        if due && (big || size != self.applied.video_size) {
            self.applied.video_bps = bps;
            self.applied.video_size = size;
            self.rung = rung;
            self.last_video_change = now;
            self.pending_video = Some(Reconfigure::Video { bps, size });
        }
    }
}

/// The video part of a total bitrate, within the configured limits.
fn video_share(config: &AdaptConfig, total: f64, audio_bps: u32) -> u32 {
    let max_video = config.max_bps.saturating_sub(config.audio_bps);
    let video = (total - f64::from(audio_bps)).max(0.0) as u32;
    video.clamp(config.min_video_bps, max_video.max(config.min_video_bps))
}

/// Picture sizes from the capture size down, each with the video bitrate it needs.
fn ladder(max: (u32, u32)) -> Vec<((u32, u32), u32)> {
    let (w, h) = max;
    let top_need = RUNGS
        .iter()
        .find(|(height, _)| *height <= h)
        .map_or(0, |(_, need)| *need);
    let mut ladder = vec![(max, top_need)];
    for (height, need) in RUNGS.iter().filter(|(height, _)| *height < h) {
        let width = (u64::from(w) * u64::from(*height) / u64::from(h)) as u32 & !1;
        ladder.push(((width.max(2), *height), *need));
    }
    ladder
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_keeps_the_aspect_and_even_sizes() {
        let l = ladder((1280, 720));
        let sizes: Vec<_> = l.iter().map(|r| r.0).collect();
        assert_eq!(sizes, [(1280, 720), (852, 480), (640, 360), (426, 240)]);
        let l = ladder((640, 480));
        let sizes: Vec<_> = l.iter().map(|r| r.0).collect();
        assert_eq!(sizes, [(640, 480), (480, 360), (320, 240)]);
        assert_eq!(l[0].1, 500_000);
        assert_eq!(ladder((160, 120)), [((160, 120), 0)]);
    }

    #[test]
    fn starts_at_the_rung_the_start_rate_affords() {
        let c = BitrateController::new(AdaptConfig::default(), Instant::now()).unwrap();
        let t = c.targets();
        assert_eq!(t.video_bps, 968_000);
        assert_eq!(t.video_size, (852, 480));
        assert!(!t.opus_fec);
    }

    #[test]
    fn quality_is_limited_by_bandwidth_only_when_the_picture_is_smaller() {
        let start = Instant::now();
        let config = AdaptConfig {
            max_size: (640, 480),
            ..AdaptConfig::default()
        };
        let mut c = BitrateController::new(config, start).unwrap();
        assert_eq!(c.targets().video_size, (640, 480));
        assert_eq!(c.quality_limitation(), QualityLimitation::None);
        for second in 1..=20 {
            let now = start + Duration::from_secs(second);
            c.on_receiver_report(now, 0.3, Some(Duration::from_millis(40)));
            c.handle_timeout(now);
            while c.poll_output().is_some() {}
        }
        assert!(c.targets().video_size.1 < 480, "{:?}", c.targets());
        assert_eq!(c.quality_limitation(), QualityLimitation::Bandwidth);
        assert_eq!(c.quality_limitation().as_str(), "bandwidth");
    }

    #[test]
    fn repairs_are_taken_off_the_video_share() {
        let t0 = Instant::now();
        let config = AdaptConfig {
            reconfigure_interval: Duration::from_millis(500),
            ..AdaptConfig::default()
        };
        let mut with = BitrateController::new(config.clone(), t0).unwrap();
        let mut without = BitrateController::new(config, t0).unwrap();
        // 5% loss holds the estimate; 200 kbit/s of retransmissions go out on one side.
        for i in 1..=50u64 {
            let now = t0 + Duration::from_millis(100 * i);
            for c in [&mut with, &mut without] {
                c.on_estimate(now, 800_000);
                c.on_receiver_report(now, 0.05, Some(Duration::from_millis(40)));
            }
            with.on_repair_sent(now, 2_500 * i);
        }
        assert!(
            (with.repair_bps() as f64 - 200_000.0).abs() < 20_000.0,
            "{}",
            with.repair_bps()
        );
        let (a, b) = (with.targets().video_bps, without.targets().video_bps);
        assert!(
            b > a && (b - a) as f64 > 150_000.0,
            "with repairs {a}, without {b}"
        );
    }

    #[test]
    fn rejects_inconsistent_limits() {
        let bad = AdaptConfig {
            max_bps: 50_000,
            ..AdaptConfig::default()
        };
        assert!(BitrateController::new(bad, Instant::now()).is_err());
    }
}
