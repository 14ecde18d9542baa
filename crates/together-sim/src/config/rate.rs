//! Rates (`"600/min"`) and durations (`"500ms"`), read by limit-text.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ConfigError;

/// An amount per period, written `"600/min"`, `"10/s"`, `"180000 tokens/min"`,
/// `"100/10s"`, read by [`limit_text::parse_rate`] as tower-quota reads it.
/// A word between the number and the slash (`tokens`) is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    amount: u64,
    per: Duration,
}

impl Rate {
    /// `amount` per `per`; fails when either is zero.
    pub fn new(amount: u64, per: Duration) -> Result<Self, ConfigError> {
        if amount == 0 || per.is_zero() {
            return Err(ConfigError::new(format!(
                "rate {amount} per {per:?}: amount and period must be above zero"
            )));
        }
        Ok(Self { amount, per })
    }

    /// `amount` per second (at least 1).
    pub fn per_second(amount: u64) -> Self {
        Self {
            amount: amount.max(1),
            per: Duration::from_secs(1),
        }
    }

    /// `amount` per minute (at least 1).
    pub fn per_minute(amount: u64) -> Self {
        Self {
            amount: amount.max(1),
            per: Duration::from_secs(60),
        }
    }

    /// The amount allowed per period.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The enforcement window and the limit inside it.
    ///
    /// With `per_second` (Together's behaviour: "we measure rate limits in
    /// seconds, but display them in minutes") the window is the shortest one
    /// of at least 1 second holding a whole number of requests at the
    /// configured rate: `600/min` is 10 per 1 s, `180000/min` is 3000 per
    /// 1 s, `90/min` is 2 per 1.33 s, and a rate below 1 per second is 1 per
    /// `period / amount` (`9/min`: 1 per 6.67 s). Without `per_second` the
    /// configured period and amount are used as they are.
    pub fn window(&self, per_second: bool) -> (Duration, u64) {
        if !per_second {
            return (self.per, self.amount);
        }
        let per_ns = self.per.as_nanos();
        let amount = u128::from(self.amount);
        let k = (amount * 1_000_000_000).div_ceil(per_ns).max(1);
        let window_ns = per_ns * k / amount;
        (
            Duration::from_nanos(u64::try_from(window_ns).unwrap_or(u64::MAX)),
            u64::try_from(k).unwrap_or(u64::MAX),
        )
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.amount)?;
        limit_text::write_period(f, self.per)
    }
}

impl FromStr for Rate {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rate = limit_text::parse_rate(s).map_err(|e| ConfigError::new(e.to_string()))?;
        Rate::new(rate.amount, rate.period)
    }
}

/// Parses a duration written `"500ms"`, `"2s"`, `"1.5s"`, `"1min"`, `"1h"`
/// (limit-text's reading, the same as tower-quota's).
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    limit_text::parse_duration(s).map_err(|e| ConfigError::new(e.to_string()))
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

pub(crate) mod duration_str {
    use super::parse_duration;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}ms", d.as_millis()))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map_err(serde::de::Error::custom)
    }
}
