use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::Snapshot;
use crate::config::{InvalidConfig, Limits};
use crate::engine::{Engine, Sharing};
use crate::service::RateLimit;
use crate::shared::SharingStats;
use crate::shared::{OnStoreFailure, SharedOptions, SharedStore};

/// Applies [`Limits`] to a service; see the [crate docs](crate) for an example.
///
/// # Clone
///
/// Clones of the layer, and every service it makes, share the same quotas.
#[derive(Clone)]
pub struct RateLimitLayer {
    engine: Arc<Engine>,
}

impl RateLimitLayer {
    /// A layer enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RateLimitLayer {
            engine: Arc::new(Engine::new(limits, None)),
        }
    }

    /// A layer whose quotas are shared with other processes through `store`
    /// (see [`shared`](crate::shared)): the same limits, decided by the store,
    /// queued and held locally.
    pub fn shared(
        limits: Limits,
        store: Arc<dyn SharedStore>,
        options: SharedOptions,
    ) -> Result<Self, InvalidConfig> {
        if let OnStoreFailure::LocalShare(share) = options.on_failure
            && !(share > 0.0 && share <= 1.0)
        {
            return Err(InvalidConfig::new(
                "shared.on_failure",
                format!("a local share of {share} is outside (0, 1]"),
            ));
        }
        Ok(RateLimitLayer {
            engine: Arc::new(Engine::new(limits, Some(Sharing { store, options }))),
        })
    }

    /// The state of the quotas now, for metrics.
    pub fn snapshot(&self) -> Snapshot {
        self.engine.snapshot()
    }

    /// Starts a learning quota's cell at `per_second` units per second, for
    /// a pace remembered from an earlier run (source
    /// [`PaceSource::Saved`](crate::PaceSource::Saved)); it learns on from
    /// there. `key` names the cell of a keyed quota. Returns false (and
    /// does nothing) when no learning quota has that name or the key has a
    /// static override. The pace is kept within the quota's bounds.
    pub fn seed_pace(&self, quota: &str, key: Option<&str>, per_second: f64) -> bool {
        self.engine.seed_pace(quota, key, per_second)
    }

    /// How decisions went with the shared store (`None` without one): how
    /// many were asked of it, how many were made locally while it failed.
    pub fn sharing_stats(&self) -> Option<SharingStats> {
        self.engine.sharing_stats()
    }

    /// The limits this layer enforces.
    pub fn limits(&self) -> &Limits {
        &self.engine.limits
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limits", &self.engine.limits)
            .field("shared", &self.engine.shared().map(|s| &s.store))
            .finish()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::from_engine(inner, self.engine.clone())
    }
}
