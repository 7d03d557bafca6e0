//! What the impairment does to each packet, and its command-line syntax:
//! `loss=5%,burst=2,jitter=30ms,reorder=1%,dup=0.5%,rate=2mbps,queue=200ms,seed=7,delay=20ms`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::Error;

/// The impairment applied to the packets one socket sends.
///
/// Parse it from the command-line syntax with [`str::parse`]; every key is optional and the
/// default is a clean link (`ImpairConfig::default()`), so `"loss=5%"` only adds loss.
///
/// ```
/// use std::time::Duration;
/// use duet_media::transport::impair::ImpairConfig;
///
/// let config: ImpairConfig = "loss=5%,burst=2,jitter=30ms,rate=2mbps,seed=7".parse()?;
/// assert_eq!(config.loss, 0.05);
/// assert_eq!(config.jitter, Duration::from_millis(30));
/// assert_eq!(config.rate_bps, Some(2_000_000));
/// assert!("loss=5x".parse::<ImpairConfig>().is_err());
/// # Ok::<(), duet_media::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ImpairConfig {
    /// Fraction of packets lost on the link, 0 to 1 (`loss=5%` or `loss=0.05`).
    pub loss: f64,
    /// Mean length of a loss burst in packets (Gilbert-Elliott model); 1 means independent
    /// losses (`burst=2`).
    pub burst: f64,
    /// Extra one-way delay drawn uniformly in `0..=jitter` for each packet (`jitter=30ms`).
    pub jitter: Duration,
    /// Base one-way delay (`delay=20ms`).
    pub delay: Duration,
    /// Fraction of packets held back so that later packets overtake them (`reorder=1%`).
    /// When zero, packets leave in the order they were sent, whatever the jitter.
    pub reorder: f64,
    /// Fraction of packets delivered twice (`dup=0.5%`).
    pub duplicate: f64,
    /// Link rate in bits per second (`rate=2mbps`); packets queue behind each other at that rate.
    pub rate_bps: Option<u64>,
    /// The longest a packet may wait in the rate queue; a packet that would wait longer is
    /// dropped, as a full router buffer does (`queue=200ms`). Only used with a rate.
    pub queue: Duration,
    /// Seed of the random fates (`seed=7`): the same seed and the same packets give the same
    /// losses, delays, reorderings and duplicates.
    pub seed: u64,
}

impl Default for ImpairConfig {
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst: 1.0,
            jitter: Duration::ZERO,
            delay: Duration::ZERO,
            reorder: 0.0,
            duplicate: 0.0,
            rate_bps: None,
            queue: Duration::from_millis(200),
            seed: 0,
        }
    }
}

impl ImpairConfig {
    /// Checks that every value is in range; [`str::parse`] already calls it.
    pub fn validate(&self) -> Result<(), Error> {
        for (key, value) in [
            ("loss", self.loss),
            ("reorder", self.reorder),
            ("dup", self.duplicate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(bad(key, &value.to_string(), "must be between 0% and 100%"));
            }
        }
        if !(self.burst >= 1.0 && self.burst.is_finite()) {
            return Err(bad("burst", &self.burst.to_string(), "must be at least 1"));
        }
        // A Gilbert-Elliott chain with mean burst b can only reach a loss rate of b / (1 + b).
        if self.burst > 1.0 && self.loss > self.burst / (1.0 + self.burst) {
            return Err(bad(
                "loss",
                &format!("{}%", self.loss * 100.0),
                &format!(
                    "is more than bursts of {} packets can lose (at most {:.1}%)",
                    self.burst,
                    100.0 * self.burst / (1.0 + self.burst)
                ),
            ));
        }
        if self.rate_bps == Some(0) {
            return Err(bad("rate", "0", "must be above zero"));
        }
        Ok(())
    }

    /// True when the configuration changes nothing: no loss, delay, jitter, reordering,
    /// duplication or rate cap.
    pub fn is_clean(&self) -> bool {
        self.loss == 0.0
            && self.jitter.is_zero()
            && self.delay.is_zero()
            && self.reorder == 0.0
            && self.duplicate == 0.0
            && self.rate_bps.is_none()
    }
}

fn bad(key: &str, value: &str, why: &str) -> Error {
    Error::Config(format!("impairment {key}={value}: {why}"))
}

fn parse_fraction(key: &str, value: &str) -> Result<f64, Error> {
    let (number, scale) = match value.strip_suffix('%') {
        Some(number) => (number, 0.01),
        None => (value, 1.0),
    };
    let parsed: f64 = number.trim().parse().map_err(|_| {
        bad(
            key,
            value,
            "expected a percentage like 5% or a fraction like 0.05",
        )
    })?;
    if scale == 1.0 && parsed > 1.0 {
        return Err(bad(
            key,
            value,
            "a bare number is a fraction; write 5% or 0.05",
        ));
    }
    let fraction = parsed * scale;
    if !(0.0..=1.0).contains(&fraction) {
        return Err(bad(key, value, "must be between 0% and 100%"));
    }
    Ok(fraction)
}

fn parse_duration(key: &str, value: &str) -> Result<Duration, Error> {
    let lower = value.to_ascii_lowercase();
    let (number, unit_secs) = if let Some(n) = lower.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = lower.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = lower.strip_suffix('s') {
        (n, 1.0)
    } else if lower.trim() == "0" {
        ("0", 1.0)
    } else {
        return Err(bad(
            key,
            value,
            "expected a duration like 30ms, 1s or 500us",
        ));
    };
    let parsed: f64 = number
        .trim()
        .parse()
        .map_err(|_| bad(key, value, "expected a duration like 30ms, 1s or 500us"))?;
    let secs = parsed * unit_secs;
    if !(0.0..=60.0).contains(&secs) {
        return Err(bad(key, value, "must be between 0 and 60s"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_rate(key: &str, value: &str) -> Result<u64, Error> {
    let lower = value.to_ascii_lowercase();
    let units = [("gbps", 1e9), ("mbps", 1e6), ("kbps", 1e3), ("bps", 1.0)];
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| lower.strip_suffix(unit).map(|n| (n, *scale)))
        .ok_or_else(|| {
            bad(
                key,
                value,
                "expected a rate like 2mbps, 500kbps or 64000bps",
            )
        })?;
    let parsed: f64 = number.trim().parse().map_err(|_| {
        bad(
            key,
            value,
            "expected a rate like 2mbps, 500kbps or 64000bps",
        )
    })?;
    let bps = parsed * scale;
    if !(1.0..=1e12).contains(&bps) {
        return Err(bad(key, value, "must be between 1bps and 1000gbps"));
    }
    Ok(bps.round() as u64)
}

impl FromStr for ImpairConfig {
    type Err = Error;

    /// Parses `key=value` pairs separated by commas. Keys: `loss`, `burst`, `jitter`, `delay`,
    /// `reorder`, `dup`, `rate`, `queue`, `seed`. An empty string is a clean link.
    fn from_str(s: &str) -> Result<Self, Error> {
        let mut config = ImpairConfig::default();
        let mut seen: Vec<&str> = Vec::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                Error::Config(format!(
                    "impairment {pair:?}: expected key=value, like loss=5%"
                ))
            })?;
            let (key, value) = (key.trim(), value.trim());
            let canonical = if key == "duplicate" { "dup" } else { key };
            if seen.contains(&canonical) {
                return Err(bad(key, value, "the key is given twice"));
            }
            match canonical {
                "loss" => config.loss = parse_fraction(key, value)?,
                "reorder" => config.reorder = parse_fraction(key, value)?,
                "dup" => config.duplicate = parse_fraction(key, value)?,
                "burst" => {
                    config.burst = value
                        .parse()
                        .ok()
                        .filter(|b: &f64| *b >= 1.0 && b.is_finite())
                        .ok_or_else(|| {
                            bad(
                                key,
                                value,
                                "expected a mean burst length of at least 1 packet",
                            )
                        })?
                }
                "jitter" => config.jitter = parse_duration(key, value)?,
                "delay" => config.delay = parse_duration(key, value)?,
                "queue" => config.queue = parse_duration(key, value)?,
                "rate" => config.rate_bps = Some(parse_rate(key, value)?),
                "seed" => {
                    config.seed = value
                        .parse()
                        .map_err(|_| bad(key, value, "expected a whole number"))?
                }
                _ => {
                    return Err(Error::Config(format!(
                        "impairment {pair:?}: unknown key {key:?} (known: loss, burst, jitter, \
                         delay, reorder, dup, rate, queue, seed)"
                    )))
                }
            }
            seen.push(canonical);
        }
        config.validate()?;
        Ok(config)
    }
}

impl fmt::Display for ImpairConfig {
    /// Writes the configuration back in the command-line syntax, every key included and the
    /// fractions as plain numbers (`loss=0.05`), so that it parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "loss={},burst={},jitter={}ms,delay={}ms,reorder={},dup={},",
            self.loss,
            self.burst,
            self.jitter.as_secs_f64() * 1e3,
            self.delay.as_secs_f64() * 1e3,
            self.reorder,
            self.duplicate,
        )?;
        if let Some(rate) = self.rate_bps {
            write!(f, "rate={rate}bps,")?;
        }
        write!(
            f,
            "queue={}ms,seed={}",
            self.queue.as_secs_f64() * 1e3,
            self.seed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(s: &str) -> String {
        match s.parse::<ImpairConfig>() {
            Err(Error::Config(m)) => m,
            other => panic!("{s:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_the_full_syntax() {
        let c: ImpairConfig =
            "loss=5%,burst=2,jitter=30ms,reorder=1%,dup=0.5%,rate=2mbps,seed=7,delay=20ms"
                .parse()
                .unwrap();
        assert_eq!(c.loss, 0.05);
        assert_eq!(c.burst, 2.0);
        assert_eq!(c.jitter, Duration::from_millis(30));
        assert_eq!(c.delay, Duration::from_millis(20));
        assert_eq!(c.reorder, 0.01);
        assert_eq!(c.duplicate, 0.005);
        assert_eq!(c.rate_bps, Some(2_000_000));
        assert_eq!(c.seed, 7);
        assert_eq!(c.queue, Duration::from_millis(200));
        assert!(!c.is_clean());
        let again: ImpairConfig = c.to_string().parse().unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn other_spellings() {
        let c: ImpairConfig = " loss=0.1 , rate=1.5Mbps, queue=0.5s, jitter=0, duplicate=1% "
            .parse()
            .unwrap();
        assert_eq!(c.loss, 0.1);
        assert_eq!(c.rate_bps, Some(1_500_000));
        assert_eq!(c.queue, Duration::from_millis(500));
        assert_eq!(c.duplicate, 0.01);
        assert!("".parse::<ImpairConfig>().unwrap().is_clean());
        assert_eq!(
            "rate=64000bps".parse::<ImpairConfig>().unwrap().rate_bps,
            Some(64_000)
        );
    }

    #[test]
    fn errors_name_the_key_and_value() {
        assert!(message("loss=5x").contains("loss=5x"));
        assert!(message("loss=150%").contains("loss=150%"));
        assert!(message("loss=5").contains("write 5% or 0.05"));
        assert!(message("jitter=30").contains("jitter=30"));
        assert!(message("rate=fast").contains("rate=fast"));
        assert!(message("rate=0mbps").contains("rate=0mbps"));
        assert!(message("burst=0.5").contains("burst=0.5"));
        assert!(message("seed=-1").contains("seed=-1"));
        assert!(message("speed=3").contains("unknown key \"speed\""));
        assert!(message("loss").contains("expected key=value"));
        assert!(message("loss=1%,loss=2%").contains("given twice"));
        assert!(message("loss=90%,burst=2").contains("at most 66.7%"));
    }
}
