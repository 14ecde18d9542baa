//! The `metrics` feature: names, labels and values through a recorder that
//! keeps what it is given (run with `--features metrics`; CI does).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tower::{ServiceExt, service_fn};
use tower_layer::Layer as _;
use tower_quota::{Adaptive, KeyBy, Limits, Quota, RateHeaders, RateLimitLayer, Route};

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// Keeps every metric by `name{label=value,...}` (labels sorted).
#[derive(Default)]
struct Keep {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for Keep {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut all = self.counters.lock().unwrap();
        Counter::from_arc(all.entry(render(key)).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut all = self.gauges.lock().unwrap();
        Gauge::from_arc(all.entry(render(key)).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut all = self.histograms.lock().unwrap();
        Histogram::from_arc(all.entry(render(key)).or_default().clone())
    }
}

fn chat(model: &str) -> Request<String> {
    Request::post("/chat")
        .body(format!(r#"{{"model":"{model}"}}"#))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_layer_reports_grants_waits_holds_refusals_and_paces() {
    let keep: &'static Keep = Box::leak(Box::default());
    metrics::set_global_recorder(keep).expect("the only recorder of this test binary");
    let limits = Limits::builder()
        .quota(
            "chat",
            Quota::new("10/s".parse().unwrap()).keyed_by(KeyBy::model()),
        )
        .route(
            Route::new(Method::POST, "/chat")
                .quota("chat")
                .max_wait(Duration::from_secs(2)),
        )
        .build()
        .unwrap();
    let layer = RateLimitLayer::new(limits);
    let first = Arc::new(AtomicU64::new(0));
    let svc = layer.layer(service_fn(move |_: Request<String>| {
        // The first answer is a 429 asking for 1 s: a hold.
        let n = first.fetch_add(1, Ordering::Relaxed);
        let res = if n == 0 {
            Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header("retry-after", "1")
                .body(String::new())
                .unwrap()
        } else {
            Response::new(String::new())
        };
        async move { Ok::<_, Infallible>(res) }
    }));
    // One granted at once (answered 429: the model is held 1 s), then
    // five queued behind the hold, 0.1 s apart after it.
    svc.clone().oneshot(chat("m")).await.unwrap();
    let queued: Vec<_> = (0..5)
        .map(|_| tokio::spawn(svc.clone().oneshot(chat("m"))))
        .collect();
    tokio::task::yield_now().await;
    let depth = keep.gauges.lock().unwrap()["tower_quota_queue_depth{key=m,quota=chat}"].clone();
    assert_eq!(f64::from_bits(depth.load(Ordering::Relaxed)), 5.0);
    // Twenty more at once: those that could not start within max_wait
    // (2 s: the hold, then 0.1 s each) fail at once.
    let more: Vec<_> = (0..20)
        .map(|_| tokio::spawn(svc.clone().oneshot(chat("m"))))
        .collect();
    let mut refused = 0;
    for m in more {
        refused += u64::from(m.await.unwrap().is_err());
    }
    for q in queued {
        q.await.unwrap().unwrap();
    }
    let source = |gauges: &BTreeMap<String, Arc<AtomicU64>>, key: &str| {
        gauges
            .get(key)
            .map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
    };
    // The recorder's locks end with this block, before the next await.
    {
        let counters = keep.counters.lock().unwrap();
        let count = |name: &str| counters[name].load(Ordering::Relaxed);
        let grants = count("tower_quota_grants_total{route=POST /chat}");
        let max_wait = count("tower_quota_refused_total{reason=max_wait,route=POST /chat}");
        assert_eq!(grants + max_wait, 26, "{counters:?}");
        assert!(max_wait >= 1, "{counters:?}");
        assert_eq!(refused, max_wait);
        assert_eq!(
            count("tower_quota_refused_total{reason=cost_too_high,route=POST /chat}"),
            0
        );
        let histograms = keep.histograms.lock().unwrap();
        let holds = histograms["tower_quota_hold_seconds{key=m,quota=chat}"]
            .0
            .lock()
            .unwrap()
            .clone();
        assert_eq!(holds, [1.0]);
        let waits = histograms["tower_quota_wait_seconds{route=POST /chat}"]
            .0
            .lock()
            .unwrap()
            .clone();
        assert_eq!(waits.len() as u64, grants);
        assert!(waits.iter().any(|&w| w >= 1.0), "{waits:?}");
        let gauges = keep.gauges.lock().unwrap();
        let pace =
            f64::from_bits(gauges["tower_quota_pace{key=m,quota=chat}"].load(Ordering::Relaxed));
        assert!((pace - 9.9).abs() < 0.01, "{pace}");
        assert_eq!(
            f64::from_bits(
                gauges["tower_quota_queue_depth{key=m,quota=chat}"].load(Ordering::Relaxed)
            ),
            0.0
        );
        // Where the pace comes from: a static cell has only `static`.
        assert_eq!(
            source(
                &gauges,
                "tower_quota_pace_source{key=m,quota=chat,source=static}"
            ),
            Some(1.0)
        );
        assert_eq!(
            source(
                &gauges,
                "tower_quota_pace_source{key=m,quota=chat,source=start}"
            ),
            None
        );
    }

    // A learning cell starts at `start` and moves to `header` when an
    // answer carries the server's limit.
    let limits = Limits::builder()
        .quota(
            "learned",
            Quota::adaptive(
                Adaptive::new("5/s".parse().unwrap()).headers(RateHeaders::together_requests()),
            )
            .keyed_by(KeyBy::model()),
        )
        .route(Route::new(Method::POST, "/chat").quota("learned"))
        .build()
        .unwrap();
    let svc = RateLimitLayer::new(limits).layer(service_fn(|_: Request<String>| async {
        let res = Response::builder()
            .header("x-ratelimit-limit", "20")
            .header("x-ratelimit-remaining", "19")
            .body(String::new())
            .unwrap();
        Ok::<_, Infallible>(res)
    }));
    let name = |s: &str| format!("tower_quota_pace_source{{key=n,quota=learned,source={s}}}");
    let read = |s: &str| source(&keep.gauges.lock().unwrap(), &name(s));
    svc.clone().oneshot(chat("n")).await.unwrap();
    assert_eq!(read("header"), Some(1.0));
    for other in ["start", "saved", "probe"] {
        assert_eq!(read(other), Some(0.0), "{other}");
    }
    assert_eq!(read("static"), None);
}
