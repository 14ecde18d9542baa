//! Human-readable rates (`"600/min"`, `"10/s"`, `"180000 tokens/min"`) and durations.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// An amount per period: `600/min`, `10/s`, `180000 tokens/min`.
///
/// The amount counts requests unless the text names a unit (`tokens`,
/// `images`, ...): the unit is kept for display and for
/// [`Quota`](crate::Quota) to choose a default cost (a `tokens` rate is
/// charged by estimated tokens).
///
/// ```
/// use std::time::Duration;
/// use tower_quota::Rate;
///
/// let rate: Rate = "180000 tokens/min".parse().unwrap();
/// assert_eq!(rate.amount().get(), 180_000);
/// assert_eq!(rate.period(), Duration::from_secs(60));
/// assert_eq!(rate.unit(), Some("tokens"));
/// assert_eq!(rate.to_string(), "180000 tokens/min");
///
/// assert!("10/fortnight".parse::<Rate>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    amount: NonZeroU32,
    period: Duration,
    unit: Option<String>,
}

impl Rate {
    /// `amount` per `period`. A zero period is rejected.
    pub fn new(amount: NonZeroU32, period: Duration) -> Result<Self, RateParseError> {
        if period.is_zero() {
            return Err(RateParseError::new("the period must be longer than zero"));
        }
        Ok(Rate {
            amount,
            period,
            unit: None,
        })
    }

    /// `amount` per second.
    pub fn per_second(amount: NonZeroU32) -> Self {
        Rate {
            amount,
            period: Duration::from_secs(1),
            unit: None,
        }
    }

    /// `amount` per minute.
    pub fn per_minute(amount: NonZeroU32) -> Self {
        Rate {
            amount,
            period: Duration::from_secs(60),
            unit: None,
        }
    }

    /// Names the unit counted (`"tokens"`); requests when unset.
    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// How many units the period allows.
    pub fn amount(&self) -> NonZeroU32 {
        self.amount
    }

    /// The period the amount is measured over.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The unit counted, if not requests.
    pub fn unit(&self) -> Option<&str> {
        self.unit.as_deref()
    }

    /// Whether the unit is tokens (`tokens` or `token`).
    pub fn counts_tokens(&self) -> bool {
        matches!(self.unit.as_deref(), Some("tokens" | "token"))
    }

    /// The same rate measured per second, as a float (for display and ideal-time maths).
    pub fn per_second_f64(&self) -> f64 {
        f64::from(self.amount.get()) / self.period.as_secs_f64()
    }

    /// The interval between two units at this rate.
    pub fn interval(&self) -> Duration {
        self.period / self.amount.get()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.amount)?;
        if let Some(unit) = &self.unit {
            write!(f, " {unit}")?;
        }
        f.write_str("/")?;
        limit_text::write_period(f, self.period)
    }
}

impl FromStr for Rate {
    type Err = RateParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parsed = limit_text::parse_rate(text)?;
        let amount = u32::try_from(parsed.amount)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                RateParseError::new(format!("rate {text:?}: the amount is too large"))
            })?;
        Ok(Rate {
            amount,
            period: parsed.period,
            unit: parsed.unit,
        })
    }
}

/// Parses a duration like `"30s"`, `"500ms"`, `"2min"`, `"1h"` or a bare unit (`"min"` = 1 minute).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(tower_quota::parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
/// assert_eq!(tower_quota::parse_duration("min").unwrap(), Duration::from_secs(60));
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, RateParseError> {
    limit_text::parse_duration(text)
}

/// A rate or duration that could not be read; the message says which and why.
pub use limit_text::ParseError as RateParseError;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let cases = [
            ("600/min", 600, 60_000, None),
            ("10/s", 10, 1_000, None),
            ("10 / s", 10, 1_000, None),
            ("180000 tokens/min", 180_000, 60_000, Some("tokens")),
            ("9/minute", 9, 60_000, None),
            ("5/10s", 5, 10_000, None),
            ("1_000/s", 1_000, 1_000, None),
            ("60 images/min", 60, 60_000, Some("images")),
        ];
        for (text, amount, ms, unit) in cases {
            let rate: Rate = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(rate.amount().get(), amount, "{text}");
            assert_eq!(rate.period(), Duration::from_millis(ms), "{text}");
            assert_eq!(rate.unit(), unit, "{text}");
        }
    }

    #[test]
    fn rejects_bad_rates_with_a_reason() {
        for (text, needle) in [
            ("600", "no '/'"),
            ("0/s", "> 0"),
            ("-1/s", "whole number"),
            ("ten/s", "whole number"),
            ("10/fortnight", "unknown time unit"),
            ("10/0s", "longer than zero"),
            ("/s", "no amount"),
            ("1 2 3/s", "expected"),
        ] {
            let err = text.parse::<Rate>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["600/min", "10/s", "180000 tokens/min", "5/10s", "3/h"] {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.to_string(), text);
            assert_eq!(rate.to_string().parse::<Rate>().unwrap(), rate);
        }
    }
}
