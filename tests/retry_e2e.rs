//! RetryPolicy over a real hyper client against together-sim: transient
//! faults and 429s are ridden out; a permanent 503 stays within the budget.
//!
//! Prints the retries and time each run took (`cargo test --test retry_e2e -- --nocapture`).

use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use together_rate_limits::retry::{RequestClass, RetryLayer, RetryPolicy, TpsBudget};
use together_sim::config::{CHAT, FaultKind, FaultRule};
use together_sim::{Mode, Sim, SimHandle};
use tower::{Service, ServiceBuilder, ServiceExt};

type Hyper = Client<HttpConnector, String>;

fn hyper() -> Hyper {
    Client::builder(TokioExecutor::new()).build_http()
}

fn chat(sim: &SimHandle, i: usize) -> Request<String> {
    Request::post(format!("{}{CHAT}", sim.base_url()))
        .header("authorization", format!("Bearer {}", sim.api_keys()[0]))
        .header("content-type", "application/json")
        .header("x-custom-id", i.to_string())
        .body(format!(
            r#"{{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{{"role":"user","content":"question {i}"}}],"max_tokens":8}}"#
        ))
        .unwrap()
}

/// Sends `n` chat requests at once through `svc`, returns the statuses.
async fn send_all<S>(svc: S, sim: &SimHandle, n: usize) -> Vec<StatusCode>
where
    S: Service<Request<String>, Response = Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let svc = svc.clone();
            let req = chat(sim, i);
            tokio::spawn(async move {
                let res = svc.oneshot(req).await.expect("a response");
                let status = res.status();
                res.into_body().collect().await.expect("a whole body");
                status
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_and_429s_are_ridden_out() {
    // 600/min enforced per second, time 10x faster: 10 per 100 ms of real time.
    let sim = Sim::builder()
        .time_scale(10.0)
        .mode(Mode::Sliding)
        .seed(7)
        .fault(
            FaultRule::new(FaultKind::Overloaded)
                .probability(0.1)
                .route(CHAT),
        )
        .fault(
            FaultRule::new(FaultKind::ServerError)
                .probability(0.05)
                .route(CHAT),
        )
        .fault(
            FaultRule::new(FaultKind::BadGateway)
                .probability(0.05)
                .route(CHAT),
        )
        .fault(
            FaultRule::new(FaultKind::Close)
                .probability(0.05)
                .route(CHAT),
        )
        .spawn()
        .await
        .unwrap();
    // No rate limiter here: 60 callers at once meet 429s, and the retry
    // policy alone waits out each x-ratelimit-reset.
    let policy = RetryPolicy::builder()
        .max_retries(30)
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
        .hint_jitter(Duration::from_millis(50))
        .budget(TpsBudget::new(Duration::from_secs(10), 1_000, 100.0))
        .seed(3)
        .route_class(
            Method::POST,
            "/v1/chat/completions",
            RequestClass::Idempotent,
        )
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(hyper());
    let n = 60;
    let start = Instant::now();
    let statuses = send_all(svc, &sim, n).await;
    let elapsed = start.elapsed();
    let stats = sim.stats();
    let sent = stats.total_requests;
    println!(
        "{n} requests: {} retries ({} answered 429, {} 503, {} 500, {} 502, {} closed) in {elapsed:.2?}",
        sent - n as u64,
        stats.total_429,
        stats.count(CHAT, 503),
        stats.count(CHAT, 500),
        stats.count(CHAT, 502),
        stats.count(CHAT, 0),
    );
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        stats.count(CHAT, 200),
        n as u64,
        "each request succeeded exactly once"
    );
    // The run did meet every kind of trouble it is meant to ride out.
    assert!(stats.total_429 > 0, "no 429s");
    assert!(stats.count(CHAT, 503) + stats.count(CHAT, 500) + stats.count(CHAT, 502) > 0);
    assert!(stats.count(CHAT, 0) > 0, "no closed connections");
    // Retries waited for the hints rather than hammering: far fewer than
    // one retry per caller per window.
    assert!(sent < 20 * n as u64, "{sent} requests sent for {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_503_is_retried_within_the_budget() {
    let sim = Sim::builder()
        .no_limits()
        .fault(FaultRule::new(FaultKind::Overloaded).route(CHAT))
        .spawn()
        .await
        .unwrap();
    // Retries may be at most 20% of calls (no reserve): 100 callers, 4 retries
    // each allowed, yet at most ~20 retries in all.
    let policy = RetryPolicy::builder()
        .max_retries(4)
        .backoff(Duration::from_millis(5), Duration::from_millis(40))
        .budget(TpsBudget::new(Duration::from_secs(10), 0, 0.2))
        .route_class(
            Method::POST,
            "/v1/chat/completions",
            RequestClass::Idempotent,
        )
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .service(hyper());
    let n = 100;
    let start = Instant::now();
    let statuses = send_all(svc, &sim, n).await;
    let sent = sim.stats().count(CHAT, 503);
    println!(
        "{n} callers under a permanent 503: {sent} requests sent in {:.2?}",
        start.elapsed()
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE),
        "the last 503 comes back"
    );
    assert!(sent >= n as u64);
    assert!(
        sent <= n as u64 + 25,
        "{sent} sent: the budget allows ~20 retries, not {}",
        4 * n
    );
}
