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
    pub(crate) fn counter(_: &'static str) -> Counter {
        Counter
    }
}

pub(crate) use imp::Counter;
use imp::{Gauge, Histogram};

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
}

impl CellMetrics {
    /// The handles of cell `key` of `quota` (a header's key is already a hash).
    pub(crate) fn new(quota: &str, key: Option<&str>) -> Self {
        let key = key.unwrap_or("");
        CellMetrics {
            queue: imp::cell_gauge("tower_quota_queue_depth", quota, key),
            holds: imp::cell_histogram("tower_quota_hold_seconds", quota, key),
            pace: imp::cell_gauge("tower_quota_pace", quota, key),
        }
    }
}

/// Decisions made locally (the shared store failing).
pub(crate) fn decided_locally() -> Counter {
    imp::counter("tower_quota_decided_locally_total")
}
