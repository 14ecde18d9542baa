//! Quotas shared by many processes: the decision moves to a store (such as
//! Redis, in the `tower-quota-redis` crate) while queueing, holds and
//! feedback stay local.
//!
//! A [`SharedStore`] decides for the head of a local queue whether its cells
//! can be granted now, all or nothing, and if not, how long to wait. When the
//! store fails or times out, the layer falls back as [`OnStoreFailure`] says,
//! and asks the store again after a backoff (a circuit breaker); every change
//! of mode emits a `tracing` event.
//!
//! What a process learns from the server (a learned pace, a hold after a
//! 429) is [shared](SharedStore::share) too: a store that keeps it decides
//! every process's requests at the shared pace and holds them all, and each
//! process follows the shared pace in its own cells.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::BoxError;

/// One limiter cell in a shared decision.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedCell {
    /// A stable name for the cell: the quota's name and, for keyed quotas,
    /// the key (header keys are already hashed). The store adds its own
    /// namespace and the quota parameters.
    pub name: String,
    /// The interval between units (after the safety margin).
    pub interval: Duration,
    /// The burst.
    pub burst: u32,
    /// What this request costs.
    pub cost: u32,
}

impl SharedCell {
    /// A cell named `name` (interval after the margin, burst, this request's cost).
    pub fn new(name: String, interval: Duration, burst: u32, cost: u32) -> Self {
        SharedCell {
            name,
            interval,
            burst,
            cost,
        }
    }
}

/// A shared store's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedDecision {
    /// Every cell granted (and charged).
    Granted,
    /// Nothing charged; the earliest grant is this far away.
    Wait(Duration),
}

/// The future a [`SharedStore`] returns.
pub type DecisionFuture = Pin<Box<dyn Future<Output = Result<SharedDecision, BoxError>> + Send>>;

/// The future of [`SharedStore::share`]: the cell's shared interval after the news, if any.
pub type ShareFuture = Pin<Box<dyn Future<Output = Result<Option<Duration>, BoxError>> + Send>>;

/// How one process's learned pace moved (all as intervals after the safety margin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PaceNews {
    /// The server said so (headers): the shared pace becomes this.
    Set(Duration),
    /// A cut after a 429: the shared pace becomes this unless it is already slower.
    Slower(Duration),
    /// Probing grew the pace from `from`: the shared pace becomes `to`
    /// only if it still is `from` (another process may have cut it meanwhile).
    Faster {
        /// The interval the growth started from.
        from: Duration,
        /// The new interval.
        to: Duration,
    },
}

/// What one process learned about a cell, for [`SharedStore::share`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedNews {
    /// The cell's name, as in [`SharedCell::name`].
    pub name: String,
    /// The pace's move, if it moved.
    pub pace: Option<PaceNews>,
    /// The server asks every caller to hold off this long.
    pub hold: Option<Duration>,
}

impl SharedNews {
    /// No news yet about the cell `name`.
    pub fn new(name: String) -> Self {
        SharedNews {
            name,
            pace: None,
            hold: None,
        }
    }
}

/// Where shared GCRA decisions are made.
///
/// `decide` must be atomic over all the cells: charge every one or none.
/// `catch_up` is the layer's catch-up credit: a head that is late by up to
/// that much may be granted as of when its slot came due.
pub trait SharedStore: Send + Sync + fmt::Debug + 'static {
    /// Decides for one request drawing on `cells`. A store that keeps shared
    /// paces and holds ([`share`](Self::share)) decides at the shared pace
    /// (instead of `interval`) and makes a held cell wait.
    fn decide(&self, cells: Vec<SharedCell>, catch_up: Duration) -> DecisionFuture;

    /// Takes what one process learned about a cell and answers the cell's
    /// shared interval afterwards (which the process then follows). The
    /// default keeps nothing: each process learns alone.
    fn share(&self, news: SharedNews) -> ShareFuture {
        let _ = news;
        Box::pin(async { Ok(None) })
    }
}

/// What the layer does while the shared store is failing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum OnStoreFailure {
    /// Decide locally at this share of each quota (0 < share ≤ 1): with N
    /// processes sharing a quota, `1/N` keeps the total within it.
    LocalShare(f64),
    /// Send requests without limiting.
    FailOpen,
    /// Fail requests with [`StoreUnavailable`](crate::error::StoreUnavailable).
    FailClosed,
}

/// How a layer uses a [`SharedStore`].
///
/// ```
/// # use tower_quota::{OnStoreFailure, SharedOptions};
/// # use std::time::Duration;
/// let options = SharedOptions::default()
///     .timeout(Duration::from_millis(50))
///     .on_failure(OnStoreFailure::LocalShare(0.25));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SharedOptions {
    pub(crate) timeout: Duration,
    pub(crate) on_failure: OnStoreFailure,
    pub(crate) retry_after: Duration,
    pub(crate) max_retry_after: Duration,
}

impl Default for SharedOptions {
    /// 100 ms per call; on failure, half of each quota locally; the store is
    /// tried again after 1 s, doubling to 30 s while it keeps failing.
    fn default() -> Self {
        SharedOptions {
            timeout: Duration::from_millis(100),
            on_failure: OnStoreFailure::LocalShare(0.5),
            retry_after: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl SharedOptions {
    /// The longest a decision may take before it counts as a failure. A
    /// timed-out call counts as spent: the request is then charged locally
    /// too, never sent uncharged.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What to do while the store fails.
    pub fn on_failure(mut self, on_failure: OnStoreFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// How long after a failure the store is tried again (doubling up to `max`).
    pub fn retry_after(mut self, first: Duration, max: Duration) -> Self {
        self.retry_after = first;
        self.max_retry_after = max.max(first);
        self
    }
}

/// How a layer's decisions went with its shared store
/// ([`RateLimitLayer::sharing_stats`](crate::RateLimitLayer::sharing_stats)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SharingStats {
    /// Decisions asked of the store.
    pub asked: u64,
    /// Decisions made locally (the fallback) because the store was failing.
    pub decided_locally: u64,
    /// Whether the store is failing now (not asked until its backoff ends).
    pub store_failing: bool,
}
