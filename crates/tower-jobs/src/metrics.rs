//! Metric handles (feature `metrics`): see the crate docs' table.

/// One job kind's handles, registered when the layer is built.
#[derive(Debug, Clone, Default)]
pub(crate) struct KindMetrics {
    #[cfg(feature = "metrics")]
    handles: Option<(metrics::Gauge, metrics::Counter)>,
}

impl KindMetrics {
    pub(crate) fn new(kind: &str) -> Self {
        #[cfg(feature = "metrics")]
        {
            let in_use = metrics::gauge!("tower_jobs_slots_in_use", "kind" => kind.to_owned());
            let absorbed =
                metrics::counter!("tower_jobs_conflicts_absorbed_total", "kind" => kind.to_owned());
            KindMetrics {
                handles: Some((in_use, absorbed)),
            }
        }
        #[cfg(not(feature = "metrics"))]
        {
            let _ = kind;
            KindMetrics::default()
        }
    }

    /// `n` slots are in use now.
    pub(crate) fn in_use(&self, n: usize) {
        #[cfg(feature = "metrics")]
        if let Some((gauge, _)) = &self.handles {
            gauge.set(n as f64);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = n;
    }

    /// A conflict (the server's cap reached) absorbed by waiting.
    pub(crate) fn absorbed(&self) {
        #[cfg(feature = "metrics")]
        if let Some((_, counter)) = &self.handles {
            counter.increment(1);
        }
    }
}
