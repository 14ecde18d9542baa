//! Which errors of the stack are worth a retry.

use crate::BoxError;

/// The error classifier of the default retry policy: [`is_transient`] as a type.
///
/// A named type rather than a `fn(&BoxError) -> bool`, so the stack's
/// futures stay provably `Send` and the bare [`Stack`](crate::Stack) can be spawned.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrorFilter;

impl tower_retry_after::ClassifyError<BoxError> for ErrorFilter {
    fn is_retryable(&self, error: &BoxError) -> bool {
        is_transient(error)
    }
}

/// Whether an error from the stack is worth a retry: `false` for the
/// rate limiter's refusals ([`WaitTimeout`](tower_quota::error::WaitTimeout),
/// [`CostTooHigh`](tower_quota::error::CostTooHigh)) and for requests that
/// cannot be built ([`InvalidPath`](crate::service::InvalidPath)), `true`
/// for transport errors.
pub fn is_transient(err: &BoxError) -> bool {
    !(err.is::<tower_quota::error::WaitTimeout>()
        || err.is::<tower_quota::error::CostTooHigh>()
        || err.is::<tower_jobs::InvalidConfig>()
        || err.is::<crate::service::InvalidPath>())
}
