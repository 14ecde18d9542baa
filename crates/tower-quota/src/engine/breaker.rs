//! The circuit breaker in front of a shared store: after a failure the
//! store is not asked again until a backoff (doubling per failure, capped)
//! has passed; meanwhile cells decide as the options' fallback says.

use std::time::Duration;

use tokio::time::Instant;

use crate::shared::SharedOptions;

#[derive(Debug, Default)]
pub(super) struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Whether the store may be asked at `now`.
    pub(super) fn is_closed(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|t| now >= t)
    }

    /// When the store will be asked again (`now` if it may be asked now).
    pub(super) fn retry_at(&self, now: Instant) -> Instant {
        self.open_until.unwrap_or(now)
    }

    /// The store answered: closes the breaker; whether it had been failing.
    pub(super) fn answered(&mut self) -> bool {
        let was_failing = self.failures > 0;
        *self = Breaker::default();
        was_failing
    }

    /// The store failed at `now`: opens the breaker for the next backoff;
    /// the failures in a row and that backoff.
    pub(super) fn failed(&mut self, now: Instant, options: &SharedOptions) -> (u32, Duration) {
        self.failures = self.failures.saturating_add(1);
        let backoff = options
            .retry_after
            .saturating_mul(1 << (self.failures - 1).min(16))
            .min(options.max_retry_after);
        self.open_until = Some(now + backoff);
        (self.failures, backoff)
    }
}
