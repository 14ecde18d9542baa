//! Retry-After aware retries for HTTP clients built on tower.
//!
//! This crate reads the wait hints servers send (`retry-after-ms`,
//! `retry-after` in every RFC 9110 form, `x-ratelimit-reset`) so that
//! clients wait as long as the server asked, no longer and no shorter.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tower_retry_after::parse_wait_hint;
//!
//! let mut headers = http::HeaderMap::new();
//! headers.insert("retry-after-ms", "1500".parse().unwrap());
//! let hint = parse_wait_hint(&headers, SystemTime::now()).unwrap();
//! assert_eq!(hint.delay, Duration::from_millis(1500));
//! ```
#![forbid(unsafe_code)]

pub mod hint;

pub use hint::{HintSource, WaitHint, parse_wait_hint};
