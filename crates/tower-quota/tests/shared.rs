//! The shared-store path of RateLimit, against an in-memory store (paused time).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use tokio::time::Instant;
use tower::util::BoxCloneService;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;
use tower_quota::error::StoreUnavailable;
use tower_quota::{
    Limits, OnStoreFailure, Quota, RateLimitLayer, Route, SharedCell, SharedDecision,
    SharedOptions, SharedStore, shared::DecisionFuture,
};

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// GCRA over a map, as a Redis script would keep it; `mode` makes it fail or hang.
#[derive(Debug, Default)]
struct MemoryStore {
    tats: Mutex<HashMap<String, Instant>>,
    mode: AtomicU8,
    calls: Mutex<u32>,
}

impl SharedStore for MemoryStore {
    fn decide(&self, cells: Vec<SharedCell>, _catch_up: Duration) -> DecisionFuture {
        *self.calls.lock().unwrap() += 1;
        match self.mode.load(Ordering::SeqCst) {
            FAIL => return Box::pin(async { Err("store down".into()) }),
            HANG => return Box::pin(std::future::pending()),
            _ => {}
        }
        let now = Instant::now();
        let mut tats = self.tats.lock().unwrap();
        let mut wait = Duration::ZERO;
        let mut next = Vec::new();
        for c in &cells {
            let tat = tats.get(&c.name).copied().unwrap_or(now).max(now);
            let tau = c.interval * (c.burst - 1);
            let allow_at = (tat + c.interval * (c.cost - 1))
                .checked_sub(tau)
                .unwrap_or(now);
            wait = wait.max(allow_at.saturating_duration_since(now));
            next.push((c.name.clone(), tat + c.interval * c.cost));
        }
        let decision = if wait.is_zero() {
            tats.extend(next);
            SharedDecision::Granted
        } else {
            SharedDecision::Wait(wait)
        };
        Box::pin(async move { Ok(decision) })
    }
}

type Log = Arc<Mutex<Vec<Instant>>>;

fn stack(
    layer: &RateLimitLayer,
    log: Log,
) -> BoxCloneService<
    Request<String>,
    Response<tower_quota::ResponseBody<String>>,
    tower_quota::BoxError,
> {
    BoxCloneService::new(layer.layer(service_fn(move |_: Request<String>| {
        log.lock().unwrap().push(Instant::now());
        async { Ok::<_, Infallible>(Response::new(String::new())) }
    })))
}

fn limits() -> Limits {
    Limits::builder()
        .quota("chat", Quota::new("10/s".parse().unwrap()))
        .route(Route::new(Method::POST, "/chat").quota("chat"))
        .build()
        .unwrap()
}

fn req() -> Request<String> {
    Request::post("/chat").body(String::new()).unwrap()
}

fn max_in_window(times: &mut [Instant], window: Duration) -> usize {
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn processes_sharing_a_store_stay_within_the_quota_together() {
    let store = Arc::new(MemoryStore::default());
    let log = Log::default();
    // Four "processes": four layers (own queues and engines), one store.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let layer =
            RateLimitLayer::shared(limits(), store.clone(), SharedOptions::default()).unwrap();
        let svc = stack(&layer, log.clone());
        for _ in 0..10 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(
                async move { svc.oneshot(req()).await.unwrap() },
            ));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut times = log.lock().unwrap().clone();
    assert_eq!(times.len(), 40);
    assert!(max_in_window(&mut times, Duration::from_secs(1)) <= 10);
    // 40 at 10/s (1% under): about 4 s, not 1 s as four private quotas would allow.
    let span = *times.last().unwrap() - times[0];
    assert!(span >= Duration::from_millis(3_900), "{span:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_falls_back_to_the_local_share_then_returns() {
    let store = Arc::new(MemoryStore::default());
    store.mode.store(FAIL, Ordering::SeqCst);
    let options = SharedOptions::default()
        .on_failure(OnStoreFailure::LocalShare(0.5))
        .retry_after(Duration::from_secs(2), Duration::from_secs(2));
    let layer = RateLimitLayer::shared(limits(), store.clone(), options).unwrap();
    let log = Log::default();
    let svc = stack(&layer, log.clone());
    let start = Instant::now();
    // While the store fails: half the quota locally, 5/s.
    for _ in 0..6 {
        svc.clone().oneshot(req()).await.unwrap();
    }
    let times: Vec<_> = log.lock().unwrap().iter().map(|t| *t - start).collect();
    assert!(
        times[5] >= Duration::from_secs_f64(5.0 * 0.2 / 0.99) - Duration::from_millis(1),
        "{times:?}"
    );
    assert_eq!(
        *store.calls.lock().unwrap(),
        1,
        "the breaker stays open: one failed call"
    );
    // The store is back: after the breaker's 2 s it is asked again.
    store.mode.store(OK, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    svc.clone().oneshot(req()).await.unwrap();
    assert_eq!(*store.calls.lock().unwrap(), 2, "asked the store again");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_times_out_into_the_fallback() {
    let store = Arc::new(MemoryStore::default());
    store.mode.store(HANG, Ordering::SeqCst);
    let options = SharedOptions::default().timeout(Duration::from_millis(50));
    let layer = RateLimitLayer::shared(limits(), store, options).unwrap();
    let log = Log::default();
    let start = Instant::now();
    stack(&layer, log.clone()).oneshot(req()).await.unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(50),
        "sent right after the timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn fail_open_and_fail_closed() {
    let store = Arc::new(MemoryStore::default());
    store.mode.store(FAIL, Ordering::SeqCst);
    let open = RateLimitLayer::shared(
        limits(),
        store.clone(),
        SharedOptions::default().on_failure(OnStoreFailure::FailOpen),
    )
    .unwrap();
    let log = Log::default();
    let start = Instant::now();
    for _ in 0..5 {
        stack(&open, log.clone()).oneshot(req()).await.unwrap();
    }
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "fail open sends without limiting"
    );

    let closed = RateLimitLayer::shared(
        limits(),
        store,
        SharedOptions::default().on_failure(OnStoreFailure::FailClosed),
    )
    .unwrap();
    let err = stack(&closed, log).oneshot(req()).await.unwrap_err();
    let err = err
        .downcast_ref::<StoreUnavailable>()
        .expect("StoreUnavailable");
    assert!(err.to_string().contains("fails closed"));
}

#[test]
fn a_local_share_outside_zero_to_one_is_refused() {
    let store = Arc::new(MemoryStore::default());
    for share in [0.0, -1.0, 1.5] {
        let err = RateLimitLayer::shared(
            limits(),
            store.clone(),
            SharedOptions::default().on_failure(OnStoreFailure::LocalShare(share)),
        )
        .unwrap_err();
        assert_eq!(err.entry(), "shared.on_failure");
    }
}
