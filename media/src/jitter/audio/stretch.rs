//! Time-scale changes that cannot be heard: remove or repeat one pitch period.
//!
//! The pitch period `T` is the lag at which the audio best matches itself (normalised
//! cross-correlation of `x[0..T]` with `x[T..2T]`, searched at a quarter of the rate, then
//! refined). Accelerating replaces `x[0..2T]` by a cross-fade from `x[0..T]` into `x[T..2T]`;
//! decelerating inserts a cross-fade from `x[T..2T]` back into `x[0..T]` after `x[0..T]`. Each
//! seam joins samples that already followed each other, so no sample jumps. A region that is
//! neither periodic enough (correlation below 0.9) nor quiet is left alone, as NetEq's
//! accelerate and preemptive expand do.

/// Shortest period searched: 2.5 ms (400 Hz).
pub(crate) const MIN_PERIOD: usize = 120;
/// Longest period searched: 12 ms (83 Hz).
const MAX_PERIOD: usize = 576;
/// The coarse search runs at 12 kHz.
const DECIMATION: usize = 4;
/// Lowest correlation at which a loud region is stretched.
const MIN_CORRELATION: f32 = 0.9;
/// RMS below which a region is quiet and stretched whatever its correlation (about -50 dBFS).
const QUIET_RMS: f32 = 100.0;

/// Finds pitch periods and removes or inserts them in interleaved 16-bit audio.
///
/// Its scratch buffer grows to the longest region it has seen, then nothing is allocated.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimeStretcher {
    coarse: Vec<f32>,
}

impl TimeStretcher {
    /// Removes up to `periods` pitch periods from `buf[start..]` (interleaved, `channels`
    /// channels), at most `max_remove` samples per channel, and returns how many samples per
    /// channel went.
    pub(crate) fn accelerate(
        &mut self,
        buf: &mut Vec<i16>,
        start: usize,
        channels: usize,
        max_remove: usize,
        periods: usize,
    ) -> usize {
        let ch = channels.max(1);
        let mut pos = start;
        let mut removed = 0;
        for _ in 0..periods {
            if removed + MIN_PERIOD > max_remove {
                break;
            }
            let Some(region) = buf.get(pos..) else { break };
            let Some(t) = self.find_period(region, ch, max_remove - removed) else {
                break;
            };
            // x[T + i] becomes a fade from x[i] into x[T + i]; then x[0..T] goes.
            for i in 0..t {
                let w = (i + 1) as f32 / (t + 1) as f32;
                for c in 0..ch {
                    let (a, b) = (pos + i * ch + c, pos + (t + i) * ch + c);
                    if let (Some(&x), Some(&y)) = (buf.get(a), buf.get(b)) {
                        if let Some(s) = buf.get_mut(b) {
                            *s = mix(x, y, w);
                        }
                    }
                }
            }
            buf.copy_within(pos + t * ch.., pos);
            buf.truncate(buf.len() - t * ch);
            removed += t;
            // The next period is taken after the cross-fade just made.
            pos += t * ch;
        }
        removed
    }

    /// Inserts one pitch period into `buf[start..]`, at most `max_insert` samples per channel,
    /// and returns how many samples per channel were added.
    pub(crate) fn decelerate(
        &mut self,
        buf: &mut Vec<i16>,
        start: usize,
        channels: usize,
        max_insert: usize,
    ) -> usize {
        let ch = channels.max(1);
        let Some(region) = buf.get(start..) else {
            return 0;
        };
        let Some(t) = self.find_period(region, ch, max_insert) else {
            return 0;
        };
        let old_len = buf.len();
        buf.resize(old_len + t * ch, 0);
        // x[T..] moves up by T; the gap is a fade from x[T + i] into x[i].
        buf.copy_within(start + t * ch..old_len, start + 2 * t * ch);
        for i in 0..t {
            let w = (i + 1) as f32 / (t + 1) as f32;
            for c in 0..ch {
                let (a, b) = (start + i * ch + c, start + (2 * t + i) * ch + c);
                if let (Some(&x), Some(&y)) = (buf.get(a), buf.get(b)) {
                    if let Some(s) = buf.get_mut(start + (t + i) * ch + c) {
                        *s = mix(y, x, w);
                    }
                }
            }
        }
        t
    }

    /// Capacity of the scratch buffer, to check that it stops growing.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.coarse.capacity()
    }

    /// The pitch period of `region` (at most `max_period`), if the region is periodic or quiet.
    fn find_period(&mut self, region: &[i16], ch: usize, max_period: usize) -> Option<usize> {
        let frames = region.len() / ch;
        let max_t = MAX_PERIOD.min(frames / 2).min(max_period);
        if max_t < MIN_PERIOD {
            return None;
        }
        let mono = |i: usize| -> f32 {
            let s: i32 = region
                .get(i * ch..(i + 1) * ch)
                .map_or(0, |f| f.iter().map(|&x| i32::from(x)).sum());
            s as f32 / ch as f32
        };

        // Coarse search on a 12 kHz mono mix.
        self.coarse.clear();
        for k in 0..2 * max_t / DECIMATION {
            let sum: f32 = (0..DECIMATION).map(|j| mono(k * DECIMATION + j)).sum();
            self.coarse.push(sum / DECIMATION as f32);
        }
        let coarse = &self.coarse;
        let (lo, hi) = (MIN_PERIOD / DECIMATION, max_t / DECIMATION);
        let best_coarse = (lo..=hi)
            .map(|t| (t, correlation(|i| coarse.get(i).copied().unwrap_or(0.0), t)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?
            .0;

        // Refinement at full rate around the coarse lag.
        let centre = best_coarse * DECIMATION;
        let (lo, hi) = (
            centre.saturating_sub(DECIMATION).max(MIN_PERIOD),
            (centre + DECIMATION).min(max_t),
        );
        let (t, corr) = (lo..=hi)
            .map(|t| (t, correlation(mono, t)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;

        let energy: f32 = (0..2 * t).map(|i| mono(i) * mono(i)).sum();
        let quiet = (energy / (2 * t) as f32).sqrt() < QUIET_RMS;
        (corr >= MIN_CORRELATION || quiet).then_some(t)
    }
}

/// Normalised correlation of `x[0..t]` with `x[t..2t]`.
fn correlation(x: impl Fn(usize) -> f32, t: usize) -> f32 {
    let (mut xy, mut xx, mut yy) = (0.0f32, 0.0f32, 0.0f32);
    for i in 0..t {
        let (a, b) = (x(i), x(t + i));
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    if xx <= 0.0 || yy <= 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

/// `from` faded into `to` by weight `w` (0 = all `from`).
fn mix(from: i16, to: i16, w: f32) -> i16 {
    let v = f32::from(from) * (1.0 - w) + f32::from(to) * w;
    v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amplitude: f64, n: usize, channels: usize) -> Vec<i16> {
        (0..n)
            .flat_map(|i| {
                let v = amplitude * (std::f64::consts::TAU * freq * i as f64 / 48_000.0).sin();
                std::iter::repeat_n(v.round() as i16, channels)
            })
            .collect()
    }

    fn max_step(x: &[i16], ch: usize) -> i32 {
        x.windows(ch + 1)
            .step_by(ch)
            .map(|w| (i32::from(w[ch]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn removing_and_inserting_periods_of_a_sine_leaves_no_jump() {
        for ch in [1, 2] {
            let clean = sine(441.0, 12_000.0, 1920, ch);
            let natural = max_step(&clean, ch);
            let mut s = TimeStretcher::default();

            let mut fast = clean.clone();
            let removed = s.accelerate(&mut fast, 0, ch, 480, 1);
            assert!(removed >= MIN_PERIOD, "removed {removed}");
            assert_eq!(fast.len(), clean.len() - removed * ch);
            assert!(max_step(&fast, ch) * 100 <= natural * 105, "{ch} channels");

            let mut slow = clean.clone();
            let inserted = s.decelerate(&mut slow, 0, ch, 480);
            assert!(inserted >= MIN_PERIOD, "inserted {inserted}");
            assert_eq!(slow.len(), clean.len() + inserted * ch);
            assert!(max_step(&slow, ch) * 100 <= natural * 105, "{ch} channels");
        }
    }

    #[test]
    fn loud_noise_is_left_alone_and_quiet_noise_is_not() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = |amp: i32| -> Vec<i16> {
            (0..960)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ((state % (2 * amp as u64 + 1)) as i32 - amp) as i16
                })
                .collect()
        };
        let mut s = TimeStretcher::default();
        let mut loud = noise(10_000);
        assert_eq!(s.accelerate(&mut loud, 0, 1, 480, 1), 0);
        assert_eq!(s.decelerate(&mut loud, 0, 1, 480), 0);
        assert_eq!(loud.len(), 960);
        let mut quiet = noise(50);
        assert!(s.accelerate(&mut quiet, 0, 1, 480, 1) >= MIN_PERIOD);
    }

    #[test]
    fn played_samples_and_short_regions_are_untouched() {
        let clean = sine(441.0, 12_000.0, 1200, 1);
        let mut s = TimeStretcher::default();
        let mut buf = clean.clone();
        let removed = s.accelerate(&mut buf, 600, 1, 480, 4);
        // 600 samples leave room for a period of at most 300.
        assert!((MIN_PERIOD..=300).contains(&removed), "{removed}");
        assert_eq!(buf[..600], clean[..600]);
        let mut short = clean[..200].to_vec();
        assert_eq!(s.decelerate(&mut short, 0, 1, 480), 0);
        assert_eq!(s.accelerate(&mut short, 0, 1, 100, 1), 0);
        assert_eq!(s.accelerate(&mut short, 500, 1, 480, 1), 0);
    }
}
