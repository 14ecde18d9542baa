//! Metric handles (feature `metrics`): see the crate docs' table.

/// The policy's handles, registered once when it is built.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryMetrics {
    #[cfg(feature = "metrics")]
    handles: Option<Handles>,
}

#[cfg(feature = "metrics")]
#[derive(Debug, Clone)]
struct Handles {
    too_many: metrics::Counter,
    server: metrics::Counter,
    other: metrics::Counter,
    transport: metrics::Counter,
    budget: metrics::Counter,
}

impl RetryMetrics {
    pub(crate) fn new() -> Self {
        #[cfg(feature = "metrics")]
        {
            let retries = |reason: &'static str| metrics::counter!("tower_retry_retries_total", "reason" => reason);
            RetryMetrics {
                handles: Some(Handles {
                    too_many: retries("429"),
                    server: retries("5xx"),
                    other: retries("other"),
                    transport: retries("transport"),
                    budget: metrics::counter!("tower_retry_budget_refusals_total"),
                }),
            }
        }
        #[cfg(not(feature = "metrics"))]
        RetryMetrics::default()
    }

    /// A retry decided, for `status` (`None`: a transport error).
    pub(crate) fn retried(&self, status: Option<http::StatusCode>) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.handles {
            match status {
                Some(s) if s == http::StatusCode::TOO_MANY_REQUESTS => h.too_many.increment(1),
                Some(s) if s.is_server_error() => h.server.increment(1),
                Some(_) => h.other.increment(1),
                None => h.transport.increment(1),
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = status;
    }

    /// A retry the budget refused.
    pub(crate) fn budget_refused(&self) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.handles {
            h.budget.increment(1);
        }
    }
}
