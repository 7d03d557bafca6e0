//! Measurements of an echo canceller and a noise suppressor from their signals: echo return
//! loss enhancement per frame, and signal-to-noise ratios of short-time magnitude spectra.
//!
//! Audio processing such as WebRTC's does not keep the waveform: its band-splitting filters
//! change the phase, so comparing samples with a clean reference fails even when nothing else
//! happened. These measures compare what a listener hears instead: the magnitude of each
//! frequency in each 20 ms window (Hann, 10 ms hop). They take 48 kHz mono `f32` samples.

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

/// Samples per analysis window: 20 ms at 48 kHz.
pub const WINDOW: usize = 960;

/// Samples between the starts of two windows: 10 ms at 48 kHz.
pub const HOP: usize = 480;

/// Mean power of `x` in dB relative to full scale (a full-scale square wave is 0 dB);
/// `-inf` for silence.
pub fn power_db(x: &[f32]) -> f64 {
    if x.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = x.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    10.0 * (sum / x.len() as f64).log10()
}

/// Echo return loss enhancement of each `frame`-sample frame, in dB: the power of the echo
/// that reached the microphone (`echo`) over the power of what came out (`out`, already
/// aligned with `echo`). Frames whose echo is below `floor_db` (dBFS) are `None`: there the
/// figure would measure noise, not echo.
pub fn erle_per_frame(echo: &[f32], out: &[f32], frame: usize, floor_db: f64) -> Vec<Option<f64>> {
    echo.chunks_exact(frame.max(1))
        .zip(out.chunks_exact(frame.max(1)))
        .map(|(e, o)| {
            let pe = power_db(e);
            (pe >= floor_db).then(|| pe - power_db(o).max(-200.0))
        })
        .collect()
}

/// The median of the known values, `None` if there are none.
pub fn median(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let mut v: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|x| !x.is_nan())
        .collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// Short-time magnitude spectra of `x`: one row of `WINDOW / 2 + 1` magnitudes per hop.
pub fn magnitude_spectra(x: &[f32]) -> Vec<Vec<f32>> {
    let mut planner = FftPlanner::<f32>::new();
    let fft = planner.plan_fft_forward(WINDOW);
    let window: Vec<f32> = (0..WINDOW)
        .map(|i| {
            let phase = std::f32::consts::TAU * i as f32 / WINDOW as f32;
            0.5 - 0.5 * phase.cos()
        })
        .collect();
    let mut buffer = vec![Complex::default(); WINDOW];
    let mut rows = Vec::new();
    let mut start = 0;
    while start + WINDOW <= x.len() {
        for ((b, &s), &w) in buffer.iter_mut().zip(&x[start..]).zip(&window) {
            *b = Complex::new(s * w, 0.0);
        }
        fft.process(&mut buffer);
        rows.push(buffer[..=WINDOW / 2].iter().map(|c| c.norm()).collect());
        start += HOP;
    }
    rows
}

/// Per-window energies of the reference's magnitudes and of the difference of magnitudes,
/// over the frequencies from `min_hz` up.
fn window_energies(reference: &[f32], test: &[f32], min_hz: f64) -> Vec<(f64, f64)> {
    let r = magnitude_spectra(reference);
    let t = magnitude_spectra(test);
    let first = (min_hz.max(0.0) * WINDOW as f64 / 48_000.0).ceil() as usize;
    r.iter()
        .zip(&t)
        .map(|(r, t)| {
            let (r, t) = (
                r.get(first..).unwrap_or_default(),
                t.get(first..).unwrap_or_default(),
            );
            r.iter().zip(t).fold((0.0, 0.0), |(sig, err), (&a, &b)| {
                let d = f64::from(a) - f64::from(b);
                (sig + f64::from(a) * f64::from(a), err + d * d)
            })
        })
        .collect()
}

/// Signal-to-noise ratio of `test` against `reference` over their short-time magnitude
/// spectra, in dB: the energy of the reference's magnitudes over the energy of the
/// differences, summed over all windows and frequencies. The signals must already be aligned.
pub fn spectral_snr_db(reference: &[f32], test: &[f32]) -> f64 {
    spectral_snr_above_db(reference, test, 0.0)
}

/// [`spectral_snr_db`] over the frequencies from `min_hz` up only: what a high-pass filter
/// removes on purpose below its cut-off is left out.
pub fn spectral_snr_above_db(reference: &[f32], test: &[f32], min_hz: f64) -> f64 {
    let (sig, err) = window_energies(reference, test, min_hz)
        .into_iter()
        .fold((0.0, 0.0), |(s, e), (a, b)| (s + a, e + b));
    10.0 * (sig / err.max(1e-20)).log10()
}

/// Segmental signal-to-noise ratio of `test` against `reference` over short-time magnitude
/// spectra, in dB: the mean, over the windows where the reference is active (within 40 dB of
/// its loudest window), of each window's ratio, each clamped to -10..35 dB as is usual for
/// segmental SNR. The signals must already be aligned.
pub fn segmental_spectral_snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let windows = window_energies(reference, test, 0.0);
    let loudest = windows.iter().map(|w| w.0).fold(0.0, f64::max);
    let active: Vec<f64> = windows
        .iter()
        .filter(|w| w.0 > 0.0 && w.0 >= loudest * 1e-4)
        .map(|(sig, err)| (10.0 * (sig / err.max(1e-20)).log10()).clamp(-10.0, 35.0))
        .collect();
    if active.is_empty() {
        return f64::NAN;
    }
    active.iter().sum::<f64>() / active.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64, amp: f32) -> Vec<f32> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        (0..n).map(|_| amp * rng.next_gaussian() as f32).collect()
    }

    #[test]
    fn erle_is_the_power_ratio_per_frame() {
        let echo = vec![0.1f32; 960];
        let out: Vec<f32> = echo.iter().map(|x| x * 0.01).collect();
        let erle = erle_per_frame(&echo, &out, 480, -60.0);
        assert_eq!(erle.len(), 2);
        assert!((erle[0].unwrap() - 40.0).abs() < 1e-6);
        assert_eq!(erle_per_frame(&echo, &out, 480, 0.0), vec![None, None]);
        assert_eq!(median([Some(3.0), None, Some(1.0), Some(2.0)]), Some(2.0));
        assert_eq!(median([None]), None);
    }

    #[test]
    fn spectral_snr_follows_added_noise_and_ignores_phase() {
        let clean = noise(48_000, 1, 0.1);
        // Noise 20 dB below the signal: the magnitude SNR is finite and around that level.
        let extra = noise(48_000, 2, 0.01);
        let noisy: Vec<f32> = clean.iter().zip(&extra).map(|(a, b)| a + b).collect();
        let snr = spectral_snr_db(&clean, &noisy);
        assert!((15.0..30.0).contains(&snr), "{snr}");
        let seg = segmental_spectral_snr_db(&clean, &noisy);
        assert!((15.0..30.0).contains(&seg), "{seg}");
        // A sign flip changes every sample and no magnitude.
        let flipped: Vec<f32> = clean.iter().map(|x| -x).collect();
        assert!(spectral_snr_db(&clean, &flipped) > 100.0);
    }
}
