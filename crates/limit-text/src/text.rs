//! Rates and durations as people write them.

use std::fmt;
use std::time::Duration;

/// A rate as written: `amount [unit]/period`.
///
/// `"600/min"`, `"10 / s"`, `"180000 tokens/min"`, `"5/10s"`, `"1_000/s"`.
/// The amount is a whole number above zero (`_` separators allowed); the
/// unit is the one word between it and the slash, if any; the period is a
/// [duration](parse_duration), a bare unit meaning one of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateText {
    /// How many per period (above zero).
    pub amount: u64,
    /// The word between the amount and the slash (`tokens`), if any.
    pub unit: Option<String>,
    /// The period (longer than zero).
    pub period: Duration,
}

/// Reads a rate; the error says what is wrong and how to write it.
pub fn parse_rate(text: &str) -> Result<RateText, ParseError> {
    let (left, right) = text.split_once('/').ok_or_else(|| {
        ParseError::new(format!(
            "rate {text:?} has no '/': write it like \"600/min\" or \"180000 tokens/min\""
        ))
    })?;
    let mut words = left.split_whitespace();
    let amount_text = words
        .next()
        .ok_or_else(|| ParseError::new(format!("rate {text:?} has no amount")))?;
    let amount: u64 = amount_text.replace('_', "").parse().map_err(|_| {
        ParseError::new(format!(
            "rate {text:?}: {amount_text:?} is not a whole number"
        ))
    })?;
    if amount == 0 {
        return Err(ParseError::new(format!(
            "rate {text:?}: the amount must be > 0"
        )));
    }
    let unit = words.next().map(str::to_owned);
    if words.next().is_some() {
        return Err(ParseError::new(format!(
            "rate {text:?}: expected \"<amount> [unit]/<period>\""
        )));
    }
    let period = parse_duration(right.trim())
        .map_err(|e| ParseError::new(format!("rate {text:?}: {}", e.message)))?;
    if period.is_zero() {
        return Err(ParseError::new(format!(
            "rate {text:?}: the period must be longer than zero"
        )));
    }
    Ok(RateText {
        amount,
        unit,
        period,
    })
}

/// Reads a duration: `"30s"`, `"500ms"`, `"1.5s"`, `"2min"`, `"1h"`, `"1day"`,
/// or a bare unit (`"min"` is one minute).
///
/// Units: `ms`, `s`/`sec`/`second`, `m`/`min`/`minute`, `h`/`hr`/`hour`,
/// `d`/`day` (plurals too). No sign, no exponent.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(limit_text::parse_duration("500ms").unwrap(), Duration::from_millis(500));
/// assert_eq!(limit_text::parse_duration("min").unwrap(), Duration::from_secs(60));
/// assert!(limit_text::parse_duration("-1s").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let text = text.trim();
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
            .map_err(|_| ParseError::new(format!("{number:?} is not a number")))?
    };
    let unit_secs = match unit {
        "ms" | "millis" | "millisecond" | "milliseconds" => 0.001,
        "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3_600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => {
            return Err(ParseError::new(format!(
                "unknown time unit {unit:?} in {text:?} (use ms, s, min, h or day)"
            )));
        }
    };
    Duration::try_from_secs_f64(count * unit_secs)
        .map_err(|_| ParseError::new(format!("duration {text:?} is out of range")))
}

/// Writes a rate's period the way [`parse_rate`] reads it back: `s`, `min`,
/// `h`, `day`, `10s`, `5min`, `250ms`.
pub fn write_period(f: &mut impl fmt::Write, period: Duration) -> fmt::Result {
    const NAMED: [(u64, &str); 4] = [(86_400, "day"), (3_600, "h"), (60, "min"), (1, "s")];
    if period.subsec_nanos() == 0 {
        for (secs, name) in NAMED {
            if period.as_secs() == secs {
                return f.write_str(name);
            }
        }
        if period.as_secs().is_multiple_of(60) {
            return write!(f, "{}min", period.as_secs() / 60);
        }
        return write!(f, "{}s", period.as_secs());
    }
    write!(f, "{}ms", period.as_millis())
}

/// A rate or duration that could not be read; the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    message: String,
}

impl ParseError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
        }
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_every_accepted_form() {
        let cases = [
            ("600/min", 600, 60_000, None),
            ("10 / s", 10, 1_000, None),
            ("180000 tokens/min", 180_000, 60_000, Some("tokens")),
            ("9/minute", 9, 60_000, None),
            ("5/10s", 5, 10_000, None),
            ("1_000/s", 1_000, 1_000, None),
            ("3/h", 3, 3_600_000, None),
            ("2/1.5m", 2, 90_000, None),
        ];
        for (text, amount, ms, unit) in cases {
            let rate = parse_rate(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(rate.amount, amount, "{text}");
            assert_eq!(rate.period, Duration::from_millis(ms), "{text}");
            assert_eq!(rate.unit.as_deref(), unit, "{text}");
        }
    }

    #[test]
    fn bad_rates_and_durations_say_why() {
        for (text, needle) in [
            ("600", "no '/'"),
            ("0/s", "> 0"),
            ("-1/s", "whole number"),
            ("10/fortnight", "unknown time unit"),
            ("10/0s", "longer than zero"),
            ("/s", "no amount"),
            ("1 2 3/s", "expected"),
        ] {
            let err = parse_rate(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("1e3s").is_err());
    }

    #[test]
    fn periods_write_back_as_they_read() {
        for text in ["s", "min", "h", "day", "10s", "5min", "250ms"] {
            let mut out = String::new();
            write_period(&mut out, parse_duration(text).unwrap()).unwrap();
            assert_eq!(out, text);
        }
    }
}
