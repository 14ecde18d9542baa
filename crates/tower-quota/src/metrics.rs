//! Metric handles (feature `metrics`): see the crate docs' table.

#[cfg(feature = "metrics")]
mod imp {
    pub(crate) use metrics::{Counter, Gauge, Histogram};

    pub(crate) fn route_counter(name: &'static str, route: &str) -> Counter {
        metrics::counter!(name, "route" => route.to_owned())
    }

    pub(crate) fn refused(route: &str, reason: &'static str) -> Counter {
        metrics::counter!("tower_quota_refused_total", "route" => route.to_owned(), "reason" => reason)
    }

    pub(crate) fn route_histogram(name: &'static str, route: &str) -> Histogram {
        metrics::histogram!(name, "route" => route.to_owned())
    }

    pub(crate) fn cell_gauge(name: &'static str, quota: &str, key: &str) -> Gauge {
        metrics::gauge!(name, "quota" => quota.to_owned(), "key" => key.to_owned())
    }

    pub(crate) fn cell_histogram(name: &'static str, quota: &str, key: &str) -> Histogram {
        metrics::histogram!(name, "quota" => quota.to_owned(), "key" => key.to_owned())
    }

    pub(crate) fn source_gauge(quota: &str, key: &str, source: &'static str) -> Gauge {
        metrics::gauge!("tower_quota_pace_source", "quota" => quota.to_owned(), "key" => key.to_owned(), "source" => source)
    }

    pub(crate) fn counter(name: &'static str) -> Counter {
        metrics::counter!(name)
    }
}

#[cfg(not(feature = "metrics"))]
mod imp {
    /// Nothing, without the `metrics` feature.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Counter;
    impl Counter {
        pub(crate) fn increment(&self, _: u64) {}
    }
    /// Nothing, without the `metrics` feature.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Gauge;
    impl Gauge {
        pub(crate) fn set(&self, _: f64) {}
    }
    /// Nothing, without the `metrics` feature.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Histogram;
    impl Histogram {
        pub(crate) fn record(&self, _: f64) {}
    }
    pub(crate) fn route_counter(_: &'static str, _: &str) -> Counter {
        Counter
    }
    pub(crate) fn refused(_: &str, _: &'static str) -> Counter {
        Counter
    }
    pub(crate) fn route_histogram(_: &'static str, _: &str) -> Histogram {
        Histogram
    }
    pub(crate) fn cell_gauge(_: &'static str, _: &str, _: &str) -> Gauge {
        Gauge
    }
    pub(crate) fn cell_histogram(_: &'static str, _: &str, _: &str) -> Histogram {
        Histogram
    }
    pub(crate) fn source_gauge(_: &str, _: &str, _: &'static str) -> Gauge {
        Gauge
    }
    pub(crate) fn counter(_: &'static str) -> Counter {
        Counter
    }
}

pub(crate) use imp::Counter;
use imp::{Gauge, Histogram};

use crate::PaceSource;

/// One route's handles.
#[derive(Debug, Clone)]
pub(crate) struct RouteMetrics {
    pub(crate) grants: Counter,
    pub(crate) wait: Histogram,
    pub(crate) max_wait: Counter,
    pub(crate) cost_too_high: Counter,
    pub(crate) store_unavailable: Counter,
}

impl RouteMetrics {
    pub(crate) fn new(route: &str) -> Self {
        RouteMetrics {
            grants: imp::route_counter("tower_quota_grants_total", route),
            wait: imp::route_histogram("tower_quota_wait_seconds", route),
            max_wait: imp::refused(route, "max_wait"),
            cost_too_high: imp::refused(route, "cost_too_high"),
            store_unavailable: imp::refused(route, "store_unavailable"),
        }
    }
}

/// One cell's handles.
#[derive(Debug, Clone)]
pub(crate) struct CellMetrics {
    pub(crate) queue: Gauge,
    pub(crate) holds: Histogram,
    pub(crate) pace: Gauge,
    /// 1 on the source of the pace in force, 0 on the others a cell of its
    /// kind can have (a static cell has only `static`).
    sources: Vec<(PaceSource, Gauge)>,
}

impl CellMetrics {
    /// The handles of cell `key` of `quota` (a header's key is already a
    /// hash); a cell that `learns` can take its pace from any source but
    /// `static`.
    pub(crate) fn new(quota: &str, key: Option<&str>, learns: bool) -> Self {
        let key = key.unwrap_or("");
        let sources: &[PaceSource] = if learns {
            &[
                PaceSource::Start,
                PaceSource::Saved,
                PaceSource::Header,
                PaceSource::Probe,
            ]
        } else {
            &[PaceSource::Static]
        };
        CellMetrics {
            queue: imp::cell_gauge("tower_quota_queue_depth", quota, key),
            holds: imp::cell_histogram("tower_quota_hold_seconds", quota, key),
            pace: imp::cell_gauge("tower_quota_pace", quota, key),
            sources: sources
                .iter()
                .map(|&s| (s, imp::source_gauge(quota, key, s.as_str())))
                .collect(),
        }
    }

    /// Says where the pace in force comes from.
    pub(crate) fn show_source(&self, current: PaceSource) {
        for (source, gauge) in &self.sources {
            gauge.set(if *source == current { 1.0 } else { 0.0 });
        }
    }
}

/// Decisions made locally (the shared store failing).
pub(crate) fn decided_locally() -> Counter {
    imp::counter("tower_quota_decided_locally_total")
}
