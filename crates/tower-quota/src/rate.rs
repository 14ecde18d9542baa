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
        write_duration_unit(f, self.period)
    }
}

fn write_duration_unit(f: &mut fmt::Formatter<'_>, d: Duration) -> fmt::Result {
    const NAMED: [(u64, &str); 4] = [(86_400, "day"), (3_600, "h"), (60, "min"), (1, "s")];
    if d.subsec_nanos() == 0 {
        for (secs, name) in NAMED {
            if d.as_secs() == secs {
                return f.write_str(name);
            }
        }
        if d.as_secs().is_multiple_of(60) {
            return write!(f, "{}min", d.as_secs() / 60);
        }
        return write!(f, "{}s", d.as_secs());
    }
    write!(f, "{}ms", d.as_millis())
}

impl FromStr for Rate {
    type Err = RateParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (left, right) = text.split_once('/').ok_or_else(|| {
            RateParseError::new(format!(
                "rate {text:?} has no '/': write it like \"600/min\" or \"180000 tokens/min\""
            ))
        })?;
        let mut words = left.split_whitespace();
        let amount_text = words
            .next()
            .ok_or_else(|| RateParseError::new(format!("rate {text:?} has no amount")))?;
        let amount: u32 = amount_text.replace('_', "").parse().map_err(|_| {
            RateParseError::new(format!(
                "rate {text:?}: {amount_text:?} is not a whole number"
            ))
        })?;
        let amount = NonZeroU32::new(amount)
            .ok_or_else(|| RateParseError::new(format!("rate {text:?}: the amount must be > 0")))?;
        let unit = words.next().map(str::to_owned);
        if words.next().is_some() {
            return Err(RateParseError::new(format!(
                "rate {text:?}: expected \"<amount> [unit]/<period>\""
            )));
        }
        let period = parse_duration(right.trim())
            .map_err(|e| RateParseError::new(format!("rate {text:?}: {}", e.message)))?;
        let mut rate = Rate::new(amount, period)
            .map_err(|e| RateParseError::new(format!("rate {text:?}: {}", e.message)))?;
        rate.unit = unit;
        Ok(rate)
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
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit = unit.trim();
    let count: f64 = if number.is_empty() {
        1.0
    } else {
        number
            .parse()
            .map_err(|_| RateParseError::new(format!("{number:?} is not a number")))?
    };
    let unit_secs = match unit {
        "ms" | "millis" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => {
            return Err(RateParseError::new(format!(
                "unknown time unit {unit:?} (use ms, s, min, h or day)"
            )));
        }
    };
    Duration::try_from_secs_f64(count * unit_secs)
        .map_err(|_| RateParseError::new(format!("duration {text:?} is out of range")))
}

/// A rate or duration that could not be read; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateParseError {
    message: String,
}

impl RateParseError {
    fn new(message: impl Into<String>) -> Self {
        RateParseError {
            message: message.into(),
        }
    }
}

impl fmt::Display for RateParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RateParseError {}

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
