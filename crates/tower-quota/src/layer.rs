use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::Snapshot;
use crate::config::Limits;
use crate::engine::Engine;
use crate::service::RateLimit;

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
            engine: Arc::new(Engine::new(limits)),
        }
    }

    /// The state of the quotas now, for metrics.
    pub fn snapshot(&self) -> Snapshot {
        self.engine.snapshot()
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
            .finish()
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::from_engine(inner, self.engine.clone())
    }
}
