#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

/// Per-route, per-key GCRA quotas: [`tower_quota`].
#[cfg(feature = "quota")]
pub use tower_quota as quota;

/// Retry-After aware retries: [`tower_retry_after`].
#[cfg(feature = "retry")]
pub use tower_retry_after as retry;

/// Caps on jobs running on the server: [`tower_jobs`].
#[cfg(feature = "jobs")]
pub use tower_jobs as jobs;

/// Quotas shared across processes through Redis: [`tower_quota_redis`] (feature `redis`).
#[cfg(feature = "redis")]
pub use tower_quota_redis as redis;
