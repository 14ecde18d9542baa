//! The `metrics` feature: retries by reason and budget refusals, through a
//! recorder that keeps what it is given (run with `--features metrics`; CI does).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tower::retry::budget::Budget;
use tower::{Layer, ServiceExt, service_fn};
use tower_retry_after::{RetryLayer, RetryPolicy};

/// Keeps every counter by `name{label=value,...}`.
#[derive(Default)]
struct Keep(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Recorder for Keep {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(self.0.lock().unwrap().entry(name).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// A budget that never has a retry to give.
struct Broke;

impl Budget for Broke {
    fn deposit(&self) {}

    fn withdraw(&self) -> bool {
        false
    }
}

/// Answers each call's first attempt with `first`, its retry with 200.
fn server(
    first: StatusCode,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = std::io::Error,
    Future = std::future::Ready<Result<Response<String>, std::io::Error>>,
> + Clone {
    let n = Arc::new(AtomicU64::new(0));
    service_fn(move |_: Request<String>| {
        let status = if n.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) {
            first
        } else {
            StatusCode::OK
        };
        let res = Response::builder()
            .status(status)
            .header("retry-after", "0")
            .body(String::new())
            .unwrap();
        std::future::ready(Ok(res))
    })
}

#[tokio::test(start_paused = true)]
async fn retries_are_counted_by_reason_and_budget_refusals_apart() {
    let keep: &'static Keep = Box::leak(Box::default());
    metrics::set_global_recorder(keep).expect("the only recorder of this test binary");
    let policy = RetryPolicy::builder().seed(1).build().unwrap();
    let post = || Request::get("/v1/models").body(String::new()).unwrap();
    for first in [
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        let svc = RetryLayer::new(policy.clone()).layer(server(first));
        assert_eq!(svc.oneshot(post()).await.unwrap().status(), StatusCode::OK);
    }
    let broke = RetryPolicy::builder()
        .budget(Broke)
        .seed(1)
        .build()
        .unwrap();
    let svc = RetryLayer::new(broke).layer(server(StatusCode::SERVICE_UNAVAILABLE));
    let res = svc.oneshot(post()).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let all = keep.0.lock().unwrap();
    let count = |name: &str| all[name].load(Ordering::Relaxed);
    assert_eq!(count("tower_retry_retries_total{reason=429}"), 1, "{all:?}");
    assert_eq!(count("tower_retry_retries_total{reason=5xx}"), 1, "{all:?}");
    assert_eq!(count("tower_retry_retries_total{reason=transport}"), 0);
    assert_eq!(count("tower_retry_budget_refusals_total{}"), 1, "{all:?}");
}
