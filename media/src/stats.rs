//! Summaries of per-frame measurements: percentiles of a set of samples.

/// The 50th, 95th and 99th percentiles of a set of measurements.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

impl Percentiles {
    /// Percentiles of `values` (nearest-rank); all zero when `values` is empty.
    /// NaNs are ignored.
    pub fn of(values: &[f64]) -> Self {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        Self {
            p50: rank(&v, 0.50),
            p95: rank(&v, 0.95),
            p99: rank(&v, 0.99),
        }
    }
}

impl Percentiles {
    /// Percentiles of `values`, or `None` when there is none (NaNs ignored): a figure that
    /// could not be measured is absent, not zero.
    pub fn measured(values: &[f64]) -> Option<Self> {
        values.iter().any(|x| !x.is_nan()).then(|| Self::of(values))
    }
}

/// Nearest-rank percentile of sorted, non-empty `v`.
fn rank(v: &[f64], q: f64) -> f64 {
    let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}

/// Collects measurements of one stage, without reallocating once `capacity` is reached
/// (the oldest values are overwritten), so a long run keeps steady memory.
#[derive(Debug, Clone)]
pub struct Samples {
    values: Vec<f64>,
    next: usize,
    capacity: usize,
    count: u64,
}

impl Default for Samples {
    /// Keeps the 1,024 most recent values.
    fn default() -> Self {
        Self::with_capacity(1024)
    }
}

impl Samples {
    /// Keeps at most `capacity` (at least 1) most recent values.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            values: Vec::with_capacity(capacity),
            next: 0,
            capacity,
            count: 0,
        }
    }

    /// Adds one value.
    pub fn push(&mut self, value: f64) {
        if self.values.len() < self.capacity {
            self.values.push(value);
        } else {
            self.values[self.next] = value;
        }
        self.next = (self.next + 1) % self.capacity;
        self.count += 1;
    }

    /// Values pushed in all (including those overwritten).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The values kept.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Percentiles of the values kept.
    pub fn percentiles(&self) -> Percentiles {
        Percentiles::of(&self.values)
    }

    /// The `n` most recent values kept, oldest first.
    pub fn recent(&self, n: usize) -> Vec<f64> {
        let len = self.values.len();
        let n = n.min(len);
        // With the ring full, the oldest value sits at `next`; before that, at 0.
        let end = if len < self.capacity {
            len
        } else {
            self.next + len
        };
        (end - n..end).map(|i| self.values[i % len]).collect()
    }

    /// Percentiles of the values kept; `None` when nothing was measured.
    pub fn measured(&self) -> Option<Percentiles> {
        Percentiles::measured(&self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!(p.p50, 50.0);
        assert_eq!(p.p95, 95.0);
        assert_eq!(p.p99, 99.0);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        assert_eq!(Percentiles::of(&[7.0]).p99, 7.0);
    }

    #[test]
    fn samples_keep_the_most_recent() {
        let mut s = Samples::with_capacity(3);
        for i in 0..5 {
            s.push(f64::from(i));
        }
        assert_eq!(s.count(), 5);
        assert_eq!(s.recent(2), vec![3.0, 4.0]);
        assert_eq!(s.recent(9), vec![2.0, 3.0, 4.0]);
        let mut kept = s.values().to_vec();
        kept.sort_by(f64::total_cmp);
        assert_eq!(kept, vec![2.0, 3.0, 4.0]);
    }
}
