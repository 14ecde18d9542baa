//! [`RetryLayer`]: tower's retry middleware driven by a [`RetryPolicy`].

use std::fmt;

use tower_layer::Layer;

use crate::classify::RetryAllErrors;
use crate::policy::RetryPolicy;

/// The service [`RetryLayer`] produces: [`tower::retry::Retry`] with a
/// [`RetryPolicy`]. The inner service must be `Clone`.
pub type Retry<S, C = RetryAllErrors> = tower::retry::Retry<RetryPolicy<C>, S>;

/// Wraps a service in [`tower::retry::Retry`] with a [`RetryPolicy`], as
/// [`tower::retry::RetryLayer`] does with any policy.
///
/// Every service it makes shares the policy's budget and jitter generator.
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct RetryLayer<C = RetryAllErrors> {
    policy: RetryPolicy<C>,
}

impl<C: Clone> RetryLayer<C> {
    /// A layer retrying with `policy`.
    pub fn new(policy: RetryPolicy<C>) -> Self {
        RetryLayer { policy }
    }

    /// The policy the layer's services use.
    pub fn policy(&self) -> &RetryPolicy<C> {
        &self.policy
    }
}

impl Default for RetryLayer {
    /// A layer with [`RetryPolicy::default`].
    fn default() -> Self {
        RetryLayer::new(RetryPolicy::default())
    }
}

impl<S, C: Clone> Layer<S> for RetryLayer<C> {
    type Service = Retry<S, C>;

    fn layer(&self, service: S) -> Self::Service {
        tower::retry::Retry::new(self.policy.clone(), service)
    }
}

impl<C> fmt::Debug for RetryLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryLayer")
            .field("policy", &self.policy)
            .finish()
    }
}
