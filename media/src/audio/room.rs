//! A simulated room: a speaker and a microphone whose signal is a near-end source plus the
//! speaker's output carried by an echo path (a delay, a gain, a decaying impulse response)
//! and, optionally, a microphone clock that runs a little fast or slow.
//!
//! [`Room`] is a sans-IO model with no clock of its own: [`Room::play`] is told what the speaker
//! plays and [`Room::capture`] returns what the microphone hears, both at 48 kHz mono. Its
//! impulse response and noise come from a seed, so a test run is the same everywhere.
//!
//! ```
//! use std::time::Duration;
//! use duet_media::audio::room::{Room, RoomConfig};
//!
//! let mut room = Room::new(RoomConfig::default())?;
//! let far = vec![0.5f32; 480];
//! let near = vec![0.0f32; 480];
//! let mut mic = vec![0.0f32; 480];
//! for _ in 0..20 {
//!     room.play(&far);
//!     room.capture(&near, &mut mic, None);
//! }
//! // 200 ms in, the echo of the first frames (80 ms away) has reached the microphone.
//! assert!(mic.iter().any(|s| s.abs() > 0.01));
//! # Ok::<(), duet_media::Error>(())
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use crate::error::Error;
use crate::frame::SAMPLE_RATE;
use crate::rng::SplitMix64;

/// Samples per convolution block: 10 ms. The echo path's delay must be at least this long.
const BLOCK: usize = (SAMPLE_RATE / 100) as usize;

/// Samples the drift interpolator reads ahead of a position.
const LOOKAHEAD: usize = 2;

/// The acoustics between a speaker and a microphone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoomConfig {
    /// From the speaker playing a sample to the microphone hearing its direct sound: at least
    /// 10 ms (device buffers and distance).
    pub delay: Duration,
    /// Energy gain of the echo path in dB (`-6.0`: the echo of white noise is 6 dB quieter than
    /// what the speaker plays, an echo return loss of 6 dB).
    pub echo_gain_db: f64,
    /// Reverberation time: the impulse response's tail decays by 60 dB over this long. Zero
    /// leaves the direct sound alone.
    pub rt60: Duration,
    /// Energy of the direct sound over that of the reverberant tail, in dB.
    pub direct_to_reverberant_db: f64,
    /// How much faster the microphone's clock runs than the speaker's, in parts per million
    /// (negative: slower).
    pub drift_ppm: f64,
    /// The microphone's own white noise, RMS in dB full scale; `None` for none.
    pub noise_dbfs: Option<f64>,
    /// Seeds the impulse response's tail and the noise.
    pub seed: u64,
}

impl Default for RoomConfig {
    /// An office: 80 ms, -6 dB, RT60 of 300 ms, direct sound 3 dB above the tail, no drift,
    /// microphone noise at -75 dBFS.
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(80),
            echo_gain_db: -6.0,
            rt60: Duration::from_millis(300),
            direct_to_reverberant_db: 3.0,
            drift_ppm: 0.0,
            noise_dbfs: Some(-75.0),
            seed: 1,
        }
    }
}

/// A speaker and a microphone in a room. See the [module docs](self).
pub struct Room {
    config: RoomConfig,
    response: Vec<f32>,
    convolver: Convolver,
    /// Speaker samples waiting for a whole convolution block.
    pending: Vec<f32>,
    /// The echo at the microphone's position, indexed by the speaker's clock: `echo[0]` is
    /// speaker sample `echo_start`, before the path's delay.
    echo: VecDeque<f32>,
    echo_start: u64,
    /// Microphone samples captured so far.
    captured: u64,
    delay_samples: f64,
    noise: SplitMix64,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("config", &self.config)
            .field("response_len", &self.response.len())
            .field("captured", &self.captured)
            .finish_non_exhaustive()
    }
}

impl Room {
    /// A room with `config`'s acoustics. A delay under 10 ms or a gain or time that is not
    /// finite is refused.
    pub fn new(config: RoomConfig) -> Result<Self, Error> {
        let delay_samples = delay_samples(config.delay)?;
        if !config.echo_gain_db.is_finite()
            || !config.direct_to_reverberant_db.is_finite()
            || !config.drift_ppm.is_finite()
            || config.drift_ppm.abs() >= 1e5
            || config.noise_dbfs.is_some_and(|n| !n.is_finite())
        {
            return Err(Error::Config(format!(
                "room: gains, drift and noise must be finite numbers (drift under 10%): {config:?}"
            )));
        }
        let response = impulse_response(&config);
        let mut seeds = SplitMix64::new(config.seed ^ 0x6e6f_6973_6500);
        Ok(Self {
            convolver: Convolver::new(&response),
            response,
            pending: Vec::with_capacity(BLOCK),
            echo: VecDeque::new(),
            echo_start: 0,
            captured: 0,
            delay_samples,
            noise: SplitMix64::new(seeds.next_u64()),
            config,
        })
    }

    /// The room's acoustics.
    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    /// The echo path's impulse response, without its delay.
    pub fn impulse_response(&self) -> &[f32] {
        &self.response
    }

    /// Moves the speaker: from now on the direct sound arrives after `delay` (at least 10 ms).
    pub fn set_delay(&mut self, delay: Duration) -> Result<(), Error> {
        self.delay_samples = delay_samples(delay)?;
        self.config.delay = delay;
        Ok(())
    }

    /// The speaker plays `samples` (48 kHz mono, full scale ±1.0) after what it played before.
    pub fn play(&mut self, samples: &[f32]) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (BLOCK - self.pending.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            self.pending.extend_from_slice(now);
            rest = later;
            if self.pending.len() == BLOCK {
                let out = self.convolver.process(&self.pending);
                self.echo.extend(out.iter().copied());
                self.pending.clear();
            }
        }
    }

    /// The microphone captures `near.len()` samples: `near` (the talker in the room) plus the
    /// echo of what the speaker played plus the microphone's noise, into `mic`. The echo alone
    /// is written to `echo` when given. Echo the speaker has not played yet is silence.
    pub fn capture(&mut self, near: &[f32], mic: &mut [f32], mut echo: Option<&mut [f32]>) {
        let ratio = 1.0 / (1.0 + self.config.drift_ppm * 1e-6);
        let noise = self
            .config
            .noise_dbfs
            .map_or(0.0, |db| 10f64.powf(db / 20.0));
        for (i, (m, &n)) in mic.iter_mut().zip(near).enumerate() {
            let position = (self.captured + i as u64) as f64 * ratio - self.delay_samples;
            let e = self.echo_at(position);
            if let Some(slot) = echo.as_deref_mut().and_then(|e| e.get_mut(i)) {
                *slot = e;
            }
            let hiss = if noise > 0.0 {
                (noise * self.noise.next_gaussian()) as f32
            } else {
                0.0
            };
            *m = n + e + hiss;
        }
        self.captured += near.len().min(mic.len()) as u64;
        // Forget the echo no later read can reach (delays only grow by set_delay, which
        // restarts from what is still kept).
        let oldest = (self.captured as f64 * ratio - self.delay_samples - 4.0).max(0.0) as u64;
        let maximum_delay = (SAMPLE_RATE as u64) * 2;
        let keep_from = oldest.saturating_sub(maximum_delay);
        while self.echo_start < keep_from && self.echo.pop_front().is_some() {
            self.echo_start += 1;
        }
    }

    /// The echo at fractional speaker position `p`, by cubic (Catmull-Rom) interpolation.
    fn echo_at(&self, p: f64) -> f32 {
        if p < 0.0 {
            return 0.0;
        }
        let base = p.floor();
        let t = (p - base) as f32;
        let k = base as u64;
        let at = |j: i64| -> f32 {
            let idx = k as i64 + j - self.echo_start as i64;
            usize::try_from(idx)
                .ok()
                .and_then(|i| self.echo.get(i))
                .copied()
                .unwrap_or(0.0)
        };
        if t == 0.0 {
            return at(0);
        }
        let (y0, y1, y2, y3) = (at(-1), at(0), at(1), at(LOOKAHEAD as i64));
        let a = -0.5 * y0 + 1.5 * y1 - 1.5 * y2 + 0.5 * y3;
        let b = y0 - 2.5 * y1 + 2.0 * y2 - 0.5 * y3;
        let c = -0.5 * y0 + 0.5 * y2;
        ((a * t + b) * t + c) * t + y1
    }
}

fn delay_samples(delay: Duration) -> Result<f64, Error> {
    let samples = delay.as_secs_f64() * f64::from(SAMPLE_RATE);
    if samples < (BLOCK + LOOKAHEAD) as f64 || delay > Duration::from_secs(2) {
        return Err(Error::Config(format!(
            "room: an echo delay of {delay:?} is outside 10.1 ms..2 s"
        )));
    }
    Ok(samples)
}

/// The echo path: a direct tap, then a tail of seeded Gaussian noise under an exponential
/// envelope that loses 60 dB over RT60, scaled to the configured energy gain.
fn impulse_response(config: &RoomConfig) -> Vec<f32> {
    let rate = f64::from(SAMPLE_RATE);
    let len = ((config.rt60.as_secs_f64() * rate) as usize).max(1);
    let mut rng = SplitMix64::new(config.seed);
    let mut h = vec![0.0f64; len];
    let decay = 3.0 * std::f64::consts::LN_10 / (config.rt60.as_secs_f64() * rate).max(1.0);
    let mut tail_energy = 0.0;
    for (k, tap) in h.iter_mut().enumerate().skip(1) {
        *tap = rng.next_gaussian() * (-decay * k as f64).exp();
        tail_energy += *tap * *tap;
    }
    if tail_energy > 0.0 {
        let scale = (10f64.powf(-config.direct_to_reverberant_db / 10.0) / tail_energy).sqrt();
        for tap in h.iter_mut().skip(1) {
            *tap *= scale;
        }
    }
    if let Some(first) = h.first_mut() {
        *first = 1.0;
    }
    let energy: f64 = h.iter().map(|x| x * x).sum();
    let gain = (10f64.powf(config.echo_gain_db / 10.0) / energy).sqrt();
    h.iter().map(|x| (x * gain) as f32).collect()
}

/// The spectrum of one block (bins 0 to [`BLOCK`]), real and imaginary parts apart so the
/// multiply-accumulate at the heart of the convolution is plain arithmetic on floats.
struct Spectrum {
    re: Vec<f32>,
    im: Vec<f32>,
}

impl Spectrum {
    fn zero() -> Self {
        Self {
            re: vec![0.0; BLOCK + 1],
            im: vec![0.0; BLOCK + 1],
        }
    }

    fn set(&mut self, bins: &[Complex<f32>]) {
        for ((re, im), b) in self.re.iter_mut().zip(self.im.iter_mut()).zip(bins) {
            *re = b.re;
            *im = b.im;
        }
    }
}

/// Uniformly partitioned overlap-save convolution in blocks of [`BLOCK`] samples, by real
/// FFTs of twice that.
struct Convolver {
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
    /// The spectra of the response's partitions.
    partitions: Vec<Spectrum>,
    /// The spectra of the last inputs; `history[newest]` is the latest.
    history: Vec<Spectrum>,
    newest: usize,
    /// The previous input block, then the current one.
    time: Vec<f32>,
    previous: Vec<f32>,
    bins: Vec<Complex<f32>>,
    sum: Spectrum,
    scratch: Vec<Complex<f32>>,
    out: Vec<f32>,
}

impl Convolver {
    fn new(response: &[f32]) -> Self {
        let size = 2 * BLOCK;
        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(size);
        let inverse = planner.plan_fft_inverse(size);
        let scratch =
            vec![Complex::default(); forward.get_scratch_len().max(inverse.get_scratch_len())];
        let mut time = vec![0.0; size];
        let mut bins = vec![Complex::default(); BLOCK + 1];
        let mut scratch_for_plan = scratch.clone();
        let partitions: Vec<Spectrum> = response
            .chunks(BLOCK)
            .map(|part| {
                time.fill(0.0);
                time[..part.len()].copy_from_slice(part);
                // The lengths are the planner's own: this cannot fail.
                let _ = forward.process_with_scratch(&mut time, &mut bins, &mut scratch_for_plan);
                let mut spectrum = Spectrum::zero();
                spectrum.set(&bins);
                spectrum
            })
            .collect();
        let history = (0..partitions.len().max(1))
            .map(|_| Spectrum::zero())
            .collect();
        Self {
            forward,
            inverse,
            partitions,
            history,
            newest: 0,
            time,
            previous: vec![0.0; BLOCK],
            bins,
            sum: Spectrum::zero(),
            scratch,
            out: vec![0.0; BLOCK],
        }
    }

    /// Convolves the next [`BLOCK`] input samples, returning as many output samples.
    fn process(&mut self, input: &[f32]) -> &[f32] {
        let (old, new) = self.time.split_at_mut(BLOCK);
        old.copy_from_slice(&self.previous);
        new.copy_from_slice(input);
        self.previous.copy_from_slice(input);
        let _ =
            self.forward
                .process_with_scratch(&mut self.time, &mut self.bins, &mut self.scratch);
        let count = self.history.len();
        self.newest = (self.newest + 1) % count;
        if let Some(h) = self.history.get_mut(self.newest) {
            h.set(&self.bins);
        }
        let (sum_re, sum_im) = (&mut self.sum.re[..], &mut self.sum.im[..]);
        sum_re.fill(0.0);
        sum_im.fill(0.0);
        for (age, part) in self.partitions.iter().enumerate() {
            let Some(x) = self.history.get((self.newest + count - age) % count) else {
                continue;
            };
            multiply_add(&x.re, &x.im, &part.re, &part.im, sum_re, sum_im);
        }
        for ((b, &re), &im) in self.bins.iter_mut().zip(sum_re.iter()).zip(sum_im.iter()) {
            *b = Complex::new(re, im);
        }
        let _ =
            self.inverse
                .process_with_scratch(&mut self.bins, &mut self.time, &mut self.scratch);
        let norm = 1.0 / (2 * BLOCK) as f32;
        for (o, &y) in self.out.iter_mut().zip(&self.time[BLOCK..]) {
            *o = y * norm;
        }
        &self.out
    }
}

/// `sum += x * h`, bin by bin, on spectra held as real and imaginary parts.
fn multiply_add(
    x_re: &[f32],
    x_im: &[f32],
    h_re: &[f32],
    h_im: &[f32],
    sum_re: &mut [f32],
    sum_im: &mut [f32],
) {
    let n = x_re
        .len()
        .min(x_im.len())
        .min(h_re.len())
        .min(h_im.len())
        .min(sum_re.len())
        .min(sum_im.len());
    let (x_re, x_im, h_re, h_im) = (&x_re[..n], &x_im[..n], &h_re[..n], &h_im[..n]);
    let (sum_re, sum_im) = (&mut sum_re[..n], &mut sum_im[..n]);
    for k in 0..n {
        let (a, b, c, d) = (x_re[k], x_im[k], h_re[k], h_im[k]);
        sum_re[k] += a * c - b * d;
        sum_im[k] += a * d + b * c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn direct(response: &[f32], x: &[f32]) -> Vec<f32> {
        (0..x.len())
            .map(|n| {
                (0..=n)
                    .filter_map(|k| Some(response.get(k)? * x[n - k]))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn block_convolution_matches_the_direct_sum() {
        let mut rng = SplitMix64::new(3);
        let response: Vec<f32> = (0..1000)
            .map(|_| rng.next_gaussian() as f32 * 0.1)
            .collect();
        let x: Vec<f32> = (0..4 * BLOCK).map(|_| rng.next_gaussian() as f32).collect();
        let mut conv = Convolver::new(&response);
        let mut fast = Vec::new();
        for block in x.chunks(BLOCK) {
            fast.extend_from_slice(conv.process(block));
        }
        let slow = direct(&response, &x);
        for (a, b) in fast.iter().zip(&slow) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    #[test]
    fn response_has_the_configured_energy_and_decay() {
        let config = RoomConfig::default();
        let room = Room::new(config).unwrap();
        let h = room.impulse_response();
        assert_eq!(h.len(), 14_400);
        let energy: f64 = h.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        assert!((10.0 * energy.log10() + 6.0).abs() < 0.01, "{energy}");
        // The last 10 ms of the tail are about 55 dB below its first 10 ms.
        let e = |r: std::ops::Range<usize>| -> f64 { h[r].iter().map(|&x| f64::from(x * x)).sum() };
        let drop = 10.0 * (e(1..481) / e(13_920..14_400)).log10();
        assert!((50.0..62.0).contains(&drop), "tail drop {drop} dB");
    }

    #[test]
    fn echo_arrives_after_the_delay_and_moves_with_it() {
        let mut room = Room::new(RoomConfig {
            rt60: Duration::ZERO,
            echo_gain_db: 0.0,
            noise_dbfs: None,
            ..RoomConfig::default()
        })
        .unwrap();
        let mut impulse = vec![0.0f32; BLOCK];
        impulse[0] = 1.0;
        let silence = vec![0.0f32; BLOCK];
        let mut mic = vec![0.0f32; BLOCK];
        let mut heard = Vec::new();
        for i in 0..20 {
            room.play(if i == 0 { &impulse } else { &silence });
            room.capture(&silence, &mut mic, None);
            heard.extend_from_slice(&mic);
        }
        let peak = heard.iter().position(|&s| s > 0.5).unwrap();
        assert_eq!(peak, 80 * 48);
        room.set_delay(Duration::from_millis(150)).unwrap();
        assert!(room.set_delay(Duration::from_millis(5)).is_err());
    }

    #[test]
    fn a_fast_microphone_clock_stretches_the_echo() {
        let mut room = Room::new(RoomConfig {
            rt60: Duration::ZERO,
            echo_gain_db: 0.0,
            noise_dbfs: None,
            drift_ppm: 1000.0,
            ..RoomConfig::default()
        })
        .unwrap();
        let silence = vec![0.0f32; BLOCK];
        let mut click = vec![0.0f32; BLOCK];
        click[0] = 1.0;
        let mut mic = vec![0.0f32; BLOCK];
        let mut heard = Vec::new();
        // Clicks every second for 3 s: on the microphone they land 48 samples later each time.
        for i in 0..300 {
            room.play(if i % 100 == 0 { &click } else { &silence });
            room.capture(&silence, &mut mic, None);
            heard.extend_from_slice(&mic);
        }
        let peaks: Vec<usize> = heard
            .windows(3)
            .enumerate()
            .filter(|(_, w)| w[1] > 0.3 && w[1] >= w[0] && w[1] > w[2])
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(peaks.len(), 3, "{peaks:?}");
        assert_eq!(peaks[1] - peaks[0], 48_048);
        assert_eq!(peaks[2] - peaks[1], 48_048);
    }
}
