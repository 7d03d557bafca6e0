//! Audio measurements: delay between two signals, SNR after alignment, a tone's frequency, RMS.
//!
//! They take 48 kHz mono i16 samples (deinterleave stereo first) and are meant for whole
//! recordings of tens of seconds: cross-correlation and spectra go through an FFT, and the
//! sums are kept in exact integers where they can be.

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

/// Shortest signal (in samples) the delay and frequency estimates accept.
const MIN_SAMPLES: usize = 64;

/// Where a received signal lines up with its reference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// Samples by which `received` lags `reference`: `received[i + lag]` matches `reference[i]`.
    pub lag: usize,
    /// Normalised cross-correlation at that lag, 0 (unrelated) to 1 (same shape).
    pub correlation: f64,
    /// The best normalised score at any lag more than [`AMBIGUITY_SEPARATION`] samples from
    /// `lag`. Close to `correlation` for a periodic signal such as a pure tone, whose delay
    /// is then only known modulo its period.
    pub runner_up: f64,
}

/// How far (in samples, 1 ms at 48 kHz) another peak must be from the best one to count as a
/// rival in [`Alignment::runner_up`].
pub const AMBIGUITY_SEPARATION: usize = 48;

impl Alignment {
    /// True when a rival lag matches almost as well as the best one (within `margin` of
    /// normalised correlation): the alignment cannot be trusted.
    pub fn is_ambiguous(&self, margin: f64) -> bool {
        self.runner_up >= self.correlation - margin
    }
}

/// Finds the lag in `0..=max_lag` at which `received` best matches `reference`.
///
/// The lag maximises the normalised cross-correlation over the overlapping samples, computed
/// for every lag at once with an FFT; lags leaving less than half of the shorter signal
/// overlapping are not considered. None when either signal is silent or shorter than 64
/// samples.
pub fn estimate_delay(reference: &[i16], received: &[i16], max_lag: usize) -> Option<Alignment> {
    let (n_ref, n_rec) = (reference.len(), received.len());
    if n_ref.min(n_rec) < MIN_SAMPLES || is_silent(reference) || is_silent(received) {
        return None;
    }
    let min_overlap = (n_ref.min(n_rec) / 2).max(MIN_SAMPLES);
    let max_lag = max_lag.min(n_rec - min_overlap);
    let corr = cross_correlation(reference, received, max_lag);

    // Energies of the overlapping parts, updated exactly as the lag grows.
    let overlap = |lag: usize| n_ref.min(n_rec - lag);
    let mut len = overlap(0);
    let mut e_ref: u64 = energy(&reference[..len]);
    let mut e_rec: u64 = energy(&received[..len]);
    let mut best: Option<(usize, f64)> = None;
    let mut scores = vec![f64::NEG_INFINITY; max_lag + 1];
    for (lag, &c) in corr.iter().enumerate().take(max_lag + 1) {
        if lag > 0 {
            let next = overlap(lag);
            e_rec -= square(received[lag - 1]);
            if next == len {
                e_rec += square(received[lag + len - 1]);
            } else {
                e_ref -= square(reference[len - 1]);
                len = next;
            }
        }
        if e_ref == 0 || e_rec == 0 {
            continue;
        }
        let score = f64::from(c) / ((e_ref as f64) * (e_rec as f64)).sqrt();
        scores[lag] = score;
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((lag, score));
        }
    }
    let (lag, _) = best?;
    let runner_up = scores
        .iter()
        .enumerate()
        .filter(|(l, _)| l.abs_diff(lag) > AMBIGUITY_SEPARATION)
        .map(|(_, &s)| s)
        .fold(f64::NEG_INFINITY, f64::max)
        .clamp(-1.0, 1.0);
    let len = overlap(lag);
    let (r, x) = (&reference[..len], &received[lag..lag + len]);
    let (e_ref, e_rec, cross) = (energy(r), energy(x), dot(r, x));
    let correlation = cross as f64 / ((e_ref as f64) * (e_rec as f64)).sqrt();
    Some(Alignment {
        lag,
        correlation: correlation.clamp(0.0, 1.0),
        runner_up,
    })
}

/// Signal-to-noise ratio in dB of `received` against `reference`, with `received[i + lag]`
/// compared to `reference[i]` over the samples both have.
///
/// The reference is first scaled by the least-squares gain, so a level change is not counted
/// as noise. +inf when the two match exactly; -inf when they share nothing (no overlap, a silent
/// reference, or no correlation).
pub fn snr_db(reference: &[i16], received: &[i16], lag: usize) -> f64 {
    let len = reference.len().min(received.len().saturating_sub(lag));
    let r = &reference[..len];
    let x = received.get(lag..lag + len).unwrap_or(&[]);
    let (e_ref, e_rec, cross) = (energy(r), energy(x), dot(r, x));
    // With g = cross / e_ref the fitted signal has energy cross^2 / e_ref and the residual
    // e_rec - cross^2 / e_ref; their ratio is exact in integers.
    let signal = i128::from(cross) * i128::from(cross);
    let noise = i128::from(e_rec) * i128::from(e_ref) - signal;
    if signal == 0 {
        f64::NEG_INFINITY
    } else if noise <= 0 {
        f64::INFINITY
    } else {
        10.0 * (signal as f64 / noise as f64).log10()
    }
}

/// The frequency in Hz of the strongest spectral peak of `samples`, taken at `sample_rate`.
///
/// A Hann-windowed FFT finds the peak bin and a Gaussian fit through its neighbours places it
/// between bins: a one-second tone is located to well under 1 Hz. None when the signal is silent
/// or shorter than 64 samples.
pub fn dominant_frequency(samples: &[i16], sample_rate: u32) -> Option<f64> {
    let n = samples.len();
    if n < MIN_SAMPLES || sample_rate == 0 {
        return None;
    }
    let mean = samples.iter().map(|&s| i64::from(s)).sum::<i64>() as f64 / n as f64;
    let size = n.next_power_of_two();
    let mut buf = vec![Complex::new(0.0f32, 0.0); size];
    let step = std::f64::consts::TAU / n as f64;
    for (i, (slot, &s)) in buf.iter_mut().zip(samples).enumerate() {
        let window = 0.5 - 0.5 * (step * i as f64).cos();
        slot.re = ((f64::from(s) - mean) * window) as f32;
    }
    FftPlanner::new().plan_fft_forward(size).process(&mut buf);

    let half = size / 2;
    let power = |k: usize| f64::from(buf[k].norm_sqr());
    let peak = (1..half).max_by(|&a, &b| power(a).total_cmp(&power(b)))?;
    if power(peak) <= 0.0 {
        return None;
    }
    let (a, b, c) = (
        power(peak - 1).max(f64::MIN_POSITIVE).ln(),
        power(peak).ln(),
        power(peak + 1).max(f64::MIN_POSITIVE).ln(),
    );
    let curvature = a - 2.0 * b + c;
    let offset = if curvature < 0.0 {
        (0.5 * (a - c) / curvature).clamp(-0.5, 0.5)
    } else {
        0.0
    };
    Some((peak as f64 + offset) * f64::from(sample_rate) / size as f64)
}

/// Root mean square of `samples`, in sample units (full scale is 32767); 0 when empty.
pub fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    (energy(samples) as f64 / samples.len() as f64).sqrt()
}

/// `c[lag] = sum_i reference[i] * received[i + lag]` for every lag in `0..=max_lag`, through one
/// forward and one inverse FFT: both real signals travel in one complex buffer.
fn cross_correlation(reference: &[i16], received: &[i16], max_lag: usize) -> Vec<f32> {
    // No circular wrap-around for the lags wanted: size >= len(reference) + max_lag, and
    // received samples past that never meet the reference at those lags.
    let size = (reference.len() + max_lag).next_power_of_two();
    let mut buf = vec![Complex::new(0.0f32, 0.0); size];
    for (slot, &s) in buf.iter_mut().zip(reference) {
        slot.re = f32::from(s);
    }
    for (slot, &s) in buf.iter_mut().zip(received) {
        slot.im = f32::from(s);
    }
    let mut planner = FftPlanner::new();
    planner.plan_fft_forward(size).process(&mut buf);
    // Split the spectrum into the reference's (A) and the received's (B), and form
    // conj(A) * B; bin size-k is the conjugate of bin k because the result is real.
    for k in 0..=size / 2 {
        let j = (size - k) % size;
        let (xk, xj) = (buf[k], buf[j].conj());
        let a = (xk + xj) * 0.5;
        let b = (xk - xj) * Complex::new(0.0, -0.5);
        let c = a.conj() * b;
        buf[k] = c;
        buf[j] = c.conj();
    }
    planner.plan_fft_inverse(size).process(&mut buf);
    let scale = 1.0 / size as f32;
    buf.iter().take(max_lag + 1).map(|c| c.re * scale).collect()
}

fn is_silent(samples: &[i16]) -> bool {
    samples.iter().all(|&s| s == 0)
}

fn square(s: i16) -> u64 {
    let s = u64::from(s.unsigned_abs());
    s * s
}

fn energy(samples: &[i16]) -> u64 {
    samples.iter().map(|&s| square(s)).sum()
}

fn dot(a: &[i16], b: &[i16]) -> i64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i64::from(x) * i64::from(y))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pure_tone_aligns_ambiguously_and_noise_does_not() {
        let tone: Vec<i16> = (0..9600)
            .map(|i| {
                ((i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 48_000.0).sin() * 10_000.0) as i16
            })
            .collect();
        let mut delayed = vec![0i16; 300];
        delayed.extend_from_slice(&tone);
        let al = estimate_delay(&tone[..4800], &delayed, 1000).expect("aligned");
        assert!(al.is_ambiguous(0.02), "{al:?}");

        let n = noise(9600, 8000, 7);
        let mut delayed = vec![0i16; 300];
        delayed.extend_from_slice(&n);
        let al = estimate_delay(&n[..4800], &delayed, 1000).expect("aligned");
        assert_eq!(al.lag, 300);
        assert!(!al.is_ambiguous(0.02), "{al:?}");
        assert!(al.runner_up < 0.2, "{al:?}");
    }

    /// Seeded white noise in -amp..=amp.
    fn noise(len: usize, amp: i16, seed: u64) -> Vec<i16> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
                ((unit * 2.0 - 1.0) * f64::from(amp)).round() as i16
            })
            .collect()
    }

    fn tone(len: usize, freq: f64, amp: f64) -> Vec<i16> {
        (0..len)
            .map(|k| {
                (amp * (std::f64::consts::TAU * freq * k as f64 / 48_000.0).sin()).round() as i16
            })
            .collect()
    }

    #[test]
    fn delay_of_a_scaled_noisy_copy_is_found_exactly() {
        let reference = noise(48_000, 8_000, 1);
        let hiss = noise(48_137, 200, 2);
        let received: Vec<i16> = std::iter::repeat_n(0, 137)
            .chain(reference.iter().map(|&s| s / 2))
            .zip(&hiss)
            .map(|(s, &h)| s + h)
            .collect();
        let found = estimate_delay(&reference, &received, 2_000).unwrap();
        assert_eq!(found.lag, 137);
        // Signal rms ~2300 against hiss rms ~115: correlation ~0.9988.
        assert!(found.correlation > 0.995, "{found:?}");

        let same = estimate_delay(&reference, &reference, 500).unwrap();
        assert_eq!(same.lag, 0);
        assert!((same.correlation - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_lag_beyond_max_lag_is_not_reported_and_unrelated_signals_correlate_little() {
        let reference = noise(24_000, 8_000, 3);
        let mut received = vec![0; 900];
        received.extend_from_slice(&reference);
        let found = estimate_delay(&reference, &received, 400).unwrap();
        assert!(found.lag <= 400);
        assert!(found.correlation < 0.05, "{found:?}");
        assert_eq!(
            estimate_delay(&reference, &received, 1_000).unwrap().lag,
            900
        );
    }

    #[test]
    fn delay_needs_sound_in_both_signals() {
        let reference = noise(4_800, 8_000, 4);
        assert_eq!(estimate_delay(&reference, &[0; 4_800], 100), None);
        assert_eq!(estimate_delay(&[0; 4_800], &reference, 100), None);
        assert_eq!(estimate_delay(&reference[..10], &reference, 100), None);
        assert_eq!(estimate_delay(&reference, &[], 100), None);
    }

    #[test]
    fn snr_matches_the_noise_added_and_ignores_gain() {
        let reference = noise(48_000, 10_000, 5);
        let hiss = noise(48_000 + 50, 100, 6);
        // Uniform noise: rms = amp / sqrt(3), so the ratio is 40 dB for both.
        let received: Vec<i16> = std::iter::repeat_n(0, 50)
            .chain(
                reference
                    .iter()
                    .map(|&s| (f64::from(s) * 0.6).round() as i16),
            )
            .zip(&hiss)
            .map(|(s, &h)| s + h)
            .collect();
        // 0.6 gain: 40 dB - 20 log10(1 / 0.6) = 35.56 dB.
        let snr = snr_db(&reference, &received, 50);
        assert!((snr - 35.56).abs() < 0.3, "{snr}");
        // Misaligned by one sample, white noise shares nothing with itself.
        assert!(snr_db(&reference, &received, 51) < 0.1);
    }

    #[test]
    fn snr_edge_cases() {
        let reference = noise(1_000, 5_000, 7);
        assert_eq!(snr_db(&reference, &reference, 0), f64::INFINITY);
        assert_eq!(snr_db(&reference, &reference, 2_000), f64::NEG_INFINITY);
        assert_eq!(snr_db(&[0; 100], &reference, 0), f64::NEG_INFINITY);
        assert_eq!(snr_db(&[], &[], 0), f64::NEG_INFINITY);
    }

    #[test]
    fn dominant_frequency_is_within_a_tenth_of_a_hertz() {
        for freq in [440.0, 1000.3, 3_217.7] {
            let found = dominant_frequency(&tone(48_000, freq, 12_000.0), 48_000).unwrap();
            assert!((found - freq).abs() < 0.1, "{freq}: {found}");
        }
        // A quarter second with noise on top still lands within a hertz.
        let hiss = noise(12_000, 2_000, 8);
        let noisy: Vec<i16> = tone(12_000, 523.25, 8_000.0)
            .iter()
            .zip(&hiss)
            .map(|(&t, &h)| t + h)
            .collect();
        let found = dominant_frequency(&noisy, 48_000).unwrap();
        assert!((found - 523.25).abs() < 1.0, "{found}");
        assert_eq!(dominant_frequency(&[0; 4_800], 48_000), None);
        assert_eq!(dominant_frequency(&[5; 10], 48_000), None);
    }

    #[test]
    fn rms_of_known_shapes() {
        assert_eq!(rms(&[]), 0.0);
        assert_eq!(rms(&[1_000, -1_000, 1_000, -1_000]), 1_000.0);
        let sine = rms(&tone(48_000, 1_000.0, 10_000.0));
        assert!((sine - 10_000.0 / 2f64.sqrt()).abs() < 0.5, "{sine}");
        assert!((rms(&[i16::MIN; 8]) - 32_768.0).abs() < 1e-9);
    }
}
