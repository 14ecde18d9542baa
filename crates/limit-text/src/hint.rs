//! Reading how long a server asked us to wait.
//!
//! Servers say "come back later" in several ways, and OpenAI-compatible APIs
//! use all of them. [`parse_wait_hint`] reads them in this precedence, the
//! first one that parses wins:
//!
//! 1. `retry-after-ms`: milliseconds, fractional allowed (`"1500"`, `"12.5"`).
//! 2. `retry-after`: delta-seconds (`"2"`, fractional tolerated) or an
//!    HTTP-date in any of RFC 9110's three formats (IMF-fixdate, RFC 850,
//!    asctime). A date in the past means "now" (a zero wait).
//! 3. `x-ratelimit-reset`: seconds to wait (Together's 429 hint), fractional
//!    allowed. A value of a billion or more is read as a Unix timestamp in
//!    seconds, as some other APIs send it.
//!
//! Garbage, negative, non-finite, or implausibly large values (over
//! [`MAX_PLAUSIBLE_HINT`]) are ignored with a `tracing` debug event and the
//! next header in the precedence is tried. Parsing never panics.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use http::HeaderMap;
//! use limit_text::hint::{parse_wait_hint, HintSource};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-ratelimit-reset", "2".parse().unwrap());
//! headers.insert("retry-after", "garbage".parse().unwrap());
//!
//! let hint = parse_wait_hint(&headers, SystemTime::now()).unwrap();
//! assert_eq!(hint.delay, Duration::from_secs(2));
//! assert_eq!(hint.source, HintSource::RateLimitReset);
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The longest wait a hint may ask for before it is treated as garbage (one day).
///
/// A policy's own cap (for example a retry policy's `max_wait_hint`) is
/// applied on top of this; this bound only separates "a long wait" from
/// "a value that cannot be meant".
pub const MAX_PLAUSIBLE_HINT: Duration = Duration::from_secs(24 * 60 * 60);

/// Values at or above this many seconds in `x-ratelimit-reset` are Unix timestamps.
const EPOCH_THRESHOLD_SECS: f64 = 1_000_000_000.0;

/// A wait the server asked for, and which header said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitHint {
    /// How long to wait from the moment the response was read.
    pub delay: Duration,
    /// The header the delay came from.
    pub source: HintSource,
}

/// The header a [`WaitHint`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HintSource {
    /// `retry-after-ms`, in milliseconds.
    RetryAfterMs,
    /// `retry-after`, as delta-seconds.
    RetryAfterSeconds,
    /// `retry-after`, as an HTTP-date.
    RetryAfterDate,
    /// `x-ratelimit-reset`.
    RateLimitReset,
}

impl HintSource {
    /// The header name, for logs.
    pub fn header_name(self) -> &'static str {
        match self {
            HintSource::RetryAfterMs => "retry-after-ms",
            HintSource::RetryAfterSeconds | HintSource::RetryAfterDate => "retry-after",
            HintSource::RateLimitReset => "x-ratelimit-reset",
        }
    }
}

impl fmt::Display for HintSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.header_name())
    }
}

/// Reads the server's wait hint from response headers, `now` being the time
/// the response was read (used for HTTP-dates and timestamps).
///
/// Returns `None` when no header carries a usable hint. See the
/// [module docs](self) for the precedence and what counts as usable.
pub fn parse_wait_hint(headers: &HeaderMap, now: SystemTime) -> Option<WaitHint> {
    if let Some(delay) = header(headers, RETRY_AFTER_MS).and_then(|v| {
        let ms = parse_decimal(v)?;
        seconds_to_duration(ms / 1000.0)
    }) {
        return Some(WaitHint {
            delay,
            source: HintSource::RetryAfterMs,
        });
    }
    if let Some(value) = header(headers, RETRY_AFTER) {
        if let Some(delay) = parse_decimal(value).and_then(seconds_to_duration) {
            return Some(WaitHint {
                delay,
                source: HintSource::RetryAfterSeconds,
            });
        }
        if let Some(delay) = parse_http_date(value, now) {
            return Some(WaitHint {
                delay,
                source: HintSource::RetryAfterDate,
            });
        }
        tracing::debug!(value, "ignoring malformed retry-after header");
    }
    if let Some(delay) = header(headers, X_RATELIMIT_RESET).and_then(|v| {
        let secs = parse_decimal(v)?;
        if secs >= EPOCH_THRESHOLD_SECS {
            let at = UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)?;
            let delay = at.duration_since(now).unwrap_or(Duration::ZERO);
            (delay <= MAX_PLAUSIBLE_HINT).then_some(delay)
        } else {
            seconds_to_duration(secs)
        }
    }) {
        return Some(WaitHint {
            delay,
            source: HintSource::RateLimitReset,
        });
    }
    None
}

/// `retry-after-ms`, named once (a `&str` name is parsed at every lookup).
pub const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
/// `x-ratelimit-reset`.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
/// `x-ratelimit-remaining`.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");

/// Whether `headers` holds any header a wait hint is read from
/// (`retry-after-ms`, `retry-after`, `x-ratelimit-reset`): a cheap test
/// before [`parse_wait_hint`], which also reads the clock.
pub fn has_wait_hint(headers: &HeaderMap) -> bool {
    !headers.is_empty()
        && (headers.contains_key(RETRY_AFTER_MS)
            || headers.contains_key(RETRY_AFTER)
            || headers.contains_key(X_RATELIMIT_RESET))
}

/// The header's value as text, or `None` (with a trace event) when it is absent or not ASCII.
fn header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    let value: &HeaderValue = headers.get(&name)?;
    match value.to_str() {
        Ok(text) => Some(text.trim()),
        Err(_) => {
            tracing::debug!(
                header = name.as_str(),
                "ignoring non-ASCII wait hint header"
            );
            None
        }
    }
}

/// A non-negative decimal number: digits, optionally a dot and more digits.
/// Signs, exponents, `inf` and `NaN` are rejected.
fn parse_decimal(text: &str) -> Option<f64> {
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match frac {
        None => digits(int),
        Some(frac) => (digits(int) || int.is_empty()) && digits(frac),
    };
    if !ok {
        tracing::debug!(
            value = text,
            "ignoring wait hint that is not a non-negative number"
        );
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn seconds_to_duration(secs: f64) -> Option<Duration> {
    match Duration::try_from_secs_f64(secs) {
        Ok(delay) if delay <= MAX_PLAUSIBLE_HINT => Some(delay),
        _ => {
            tracing::debug!(secs, "ignoring implausibly large wait hint");
            None
        }
    }
}

fn parse_http_date(text: &str, now: SystemTime) -> Option<Duration> {
    let at = httpdate::parse_http_date(text).ok()?;
    let delay = at.duration_since(now).unwrap_or(Duration::ZERO);
    if delay > MAX_PLAUSIBLE_HINT {
        tracing::debug!(
            value = text,
            "ignoring retry-after date too far in the future"
        );
        return None;
    }
    Some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn the_cheap_test_knows_every_header_a_hint_is_read_from() {
        for name in ["retry-after-ms", "retry-after", "x-ratelimit-reset"] {
            let map = headers(&[(name, "2")]);
            assert!(has_wait_hint(&map), "{name}");
            assert!(parse_wait_hint(&map, at(0)).is_some(), "{name}");
        }
        for map in [
            HeaderMap::new(),
            headers(&[
                ("x-ratelimit-remaining", "0"),
                ("content-type", "text/plain"),
            ]),
        ] {
            assert!(!has_wait_hint(&map));
            assert!(parse_wait_hint(&map, at(0)).is_none());
        }
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    // 1994-11-06T08:49:37Z, the RFC's example instant.
    const RFC_EXAMPLE: u64 = 784_111_777;

    #[test]
    fn precedence_is_ms_then_retry_after_then_reset() {
        let all = headers(&[
            ("retry-after-ms", "250"),
            ("retry-after", "3"),
            ("x-ratelimit-reset", "7"),
        ]);
        let hint = parse_wait_hint(&all, at(0)).unwrap();
        assert_eq!(hint.delay, Duration::from_millis(250));
        assert_eq!(hint.source, HintSource::RetryAfterMs);

        let two = headers(&[("retry-after", "3"), ("x-ratelimit-reset", "7")]);
        let hint = parse_wait_hint(&two, at(0)).unwrap();
        assert_eq!(hint.delay, Duration::from_secs(3));
        assert_eq!(hint.source, HintSource::RetryAfterSeconds);

        let one = headers(&[("x-ratelimit-reset", "7")]);
        assert_eq!(
            parse_wait_hint(&one, at(0)).unwrap().delay,
            Duration::from_secs(7)
        );
    }

    #[test]
    fn fractional_values() {
        let h = headers(&[("retry-after-ms", "12.5")]);
        assert_eq!(
            parse_wait_hint(&h, at(0)).unwrap().delay,
            Duration::from_micros(12_500)
        );
        let h = headers(&[("x-ratelimit-reset", "0.25")]);
        assert_eq!(
            parse_wait_hint(&h, at(0)).unwrap().delay,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn all_three_http_date_formats() {
        let now = at(RFC_EXAMPLE - 10);
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            let hint = parse_wait_hint(&headers(&[("retry-after", date)]), now)
                .unwrap_or_else(|| panic!("{date} did not parse"));
            assert_eq!(hint.delay, Duration::from_secs(10), "{date}");
            assert_eq!(hint.source, HintSource::RetryAfterDate);
        }
    }

    #[test]
    fn past_date_means_now() {
        let h = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        let hint = parse_wait_hint(&h, at(RFC_EXAMPLE + 100)).unwrap();
        assert_eq!(hint.delay, Duration::ZERO);
    }

    #[test]
    fn garbage_falls_through_to_the_next_header() {
        for bad in [
            "-1",
            "abc",
            "1e3",
            "inf",
            "NaN",
            "+5",
            "",
            "1.",
            "99999999999999999999",
        ] {
            let h = headers(&[("retry-after-ms", bad), ("x-ratelimit-reset", "4")]);
            let hint = parse_wait_hint(&h, at(0)).unwrap();
            assert_eq!(hint.source, HintSource::RateLimitReset, "{bad:?}");
        }
        let h = headers(&[("retry-after", "soon")]);
        assert_eq!(parse_wait_hint(&h, at(0)), None);
    }

    #[test]
    fn reset_as_unix_timestamp() {
        let now = at(1_800_000_000);
        let h = headers(&[("x-ratelimit-reset", "1800000005")]);
        assert_eq!(
            parse_wait_hint(&h, now).unwrap().delay,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn non_ascii_is_ignored() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_bytes(b"\xff1").unwrap());
        assert_eq!(parse_wait_hint(&h, at(0)), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            ms in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            ra in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            reset in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            now in 0u64..4_000_000_000,
        ) {
            let mut h = HeaderMap::new();
            for (name, bytes) in [("retry-after-ms", ms), ("retry-after", ra), ("x-ratelimit-reset", reset)] {
                if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                    h.insert(name, v);
                }
            }
            if let Some(hint) = parse_wait_hint(&h, at(now)) {
                proptest::prop_assert!(hint.delay <= MAX_PLAUSIBLE_HINT);
            }
        }

        #[test]
        fn numeric_text_round_trips(secs in 0u32..86_400) {
            let h = headers(&[("retry-after", &secs.to_string())]);
            let hint = parse_wait_hint(&h, at(0)).unwrap();
            proptest::prop_assert_eq!(hint.delay, Duration::from_secs(secs.into()));
        }
    }
}
