//! One route's limits.

use std::num::NonZeroU32;
use std::time::Duration;

use http::Method;
use tower_quota::Rate;

/// The limits of one route: a method and path, and its rates.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteLimit {
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) requests: Option<Rate>,
    pub(super) tokens: Option<Rate>,
    pub(super) images: Option<Rate>,
    pub(super) max_wait: Option<Duration>,
}

impl RouteLimit {
    /// A route with no rates yet.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        RouteLimit {
            method,
            path: path.into(),
            requests: None,
            tokens: None,
            images: None,
            max_wait: None,
        }
    }

    /// Requests per period (`600/min`), paced with burst 1.
    pub fn requests(mut self, rate: Rate) -> Self {
        self.requests = Some(rate);
        self
    }

    /// Estimated tokens per period (`180000 tokens/min`): input characters / 4
    /// plus `max_tokens` x `n`.
    pub fn tokens(mut self, rate: Rate) -> Self {
        self.tokens = Some(rate.with_unit("tokens"));
        self
    }

    /// Images per period: each request costs its `n` (default 1).
    pub fn images(mut self, rate: Rate) -> Self {
        self.images = Some(rate.with_unit("images"));
        self
    }

    /// Fails fast instead of waiting longer than `wait` for a slot.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = Some(wait);
        self
    }

    /// The request rate, if any.
    pub fn request_rate(&self) -> Option<&Rate> {
        self.requests.as_ref()
    }

    /// The token rate, if any.
    pub fn token_rate(&self) -> Option<&Rate> {
        self.tokens.as_ref()
    }

    /// The image rate, if any.
    pub fn image_rate(&self) -> Option<&Rate> {
        self.images.as_ref()
    }
}

/// `n` as a `NonZeroU32`, 1 for 0: for the presets' literal rates.
pub(super) fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}
