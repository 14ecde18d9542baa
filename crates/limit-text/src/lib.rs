//! How rate limits are written, read in one place: rates (`"600/min"`,
//! `"180000 tokens/min"`), durations (`"1.5s"`, `"6m0s"` is not one: see
//! [`parse_duration`]) and the wait hints servers send ([`hint`]).
//!
//! A leaf crate: tower-quota, tower-retry-after and together-sim read the
//! same text the same way through it, each wrapping the result in its own
//! types.
//!
//! ```
//! use std::time::Duration;
//! use limit_text::{parse_duration, parse_rate};
//!
//! let rate = parse_rate("180000 tokens/min").unwrap();
//! assert_eq!(rate.amount, 180_000);
//! assert_eq!(rate.unit.as_deref(), Some("tokens"));
//! assert_eq!(rate.period, Duration::from_secs(60));
//! assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
//! assert!(parse_rate("600").unwrap_err().to_string().contains("no '/'"));
//! ```

pub mod hint;
mod text;

pub use hint::{HintSource, MAX_PLAUSIBLE_HINT, WaitHint, parse_wait_hint};
pub use text::{ParseError, RateText, parse_duration, parse_rate, write_period};
