//! Uncontended overhead: RateLimit over a ready no-op service against the bare
//! service, tower's RateLimit and governor's own `check`.
//!
//! `cargo bench -p tower-quota --bench quota`

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt;
use http::{Method, Request, Response};
use tower::{Service, service_fn};
use tower_quota::{KeyBy, Limits, Quota, Rate, RateLimit, Route};

/// Polls a future that must be ready at once (every path here is uncontended).
fn now<F: Future>(f: F) -> F::Output {
    f.now_or_never().expect("uncontended path never waits")
}

fn ready_and_call<S: Service<Request<String>>>(svc: &mut S, req: Request<String>) -> S::Response
where
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    now(svc.call(req)).unwrap()
}

fn noop() -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|_: Request<String>| std::future::ready(Ok(Response::new(String::new()))))
}

/// A quota so generous (a billion a second) that no call ever waits.
fn huge() -> Quota {
    Quota::new(
        Rate::new(
            NonZeroU32::new(1_000_000_000).unwrap(),
            Duration::from_secs(1),
        )
        .unwrap(),
    )
    .burst(NonZeroU32::new(1_000_000_000).unwrap())
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let req = || {
        Request::post("/v1/chat/completions")
            .body(String::new())
            .unwrap()
    };
    let body = r#"{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{"role":"user","content":"Say hi"}],"max_tokens":16}"#;
    let req_json = || {
        Request::post("/v1/chat/completions")
            .body(body.to_string())
            .unwrap()
    };

    // The issue's case: a 1 KB chat body (a long user message).
    let long = format!(
        r#"{{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{}"}}],"max_tokens":16,"temperature":0.2}}"#,
        "Summarize: the quick brown fox jumps over the lazy dog. ".repeat(16)
    );
    assert!((1000..1100).contains(&long.len()), "{}", long.len());
    let req_1k = || {
        Request::post("/v1/chat/completions")
            .body(long.clone())
            .unwrap()
    };

    let mut group = c.benchmark_group("uncontended");
    let mut bare = noop();
    group.bench_function("bare service", |b| {
        b.iter(|| ready_and_call(&mut bare, req()))
    });

    let limits = Limits::builder()
        .quota("q", huge())
        .route(Route::new(Method::POST, "/v1/chat/completions").quota("q"))
        .build()
        .unwrap();
    let mut limited = RateLimit::new(noop(), limits);
    group.bench_function("tower-quota, one quota", |b| {
        b.iter(|| ready_and_call(&mut limited, req()))
    });

    let limits = Limits::builder()
        .quota("q", huge().keyed_by(KeyBy::model()))
        .quota(
            "tokens",
            huge().cost(tower_quota::Cost::Tokens(Default::default())),
        )
        .route(
            Route::new(Method::POST, "/v1/chat/completions")
                .quota("q")
                .quota("tokens"),
        )
        .build()
        .unwrap();
    let mut keyed = RateLimit::new(noop(), limits);
    group.bench_function("tower-quota, per-model + tokens (parses JSON)", |b| {
        b.iter(|| ready_and_call(&mut keyed, req_json()))
    });
    let mut bare_1k = noop();
    group.bench_function("bare service, 1 KB body", |b| {
        b.iter(|| ready_and_call(&mut bare_1k, req_1k()))
    });
    group.bench_function("tower-quota, per-model + tokens, 1 KB body", |b| {
        b.iter(|| ready_and_call(&mut keyed, req_1k()))
    });

    group.bench_function("BodyFields::parse, 1 KB body (no service)", |b| {
        b.iter(|| tower_quota::BodyFields::parse(std::hint::black_box(long.as_bytes()), &["model"]))
    });

    let mut unmatched = RateLimit::new(
        noop(),
        Limits::builder()
            .route(Route::new(Method::GET, "/elsewhere"))
            .build()
            .unwrap(),
    );
    group.bench_function("tower-quota, unmatched route", |b| {
        b.iter(|| ready_and_call(&mut unmatched, req()))
    });

    let mut tower_limit = tower::limit::RateLimit::new(
        noop(),
        tower::limit::rate::Rate::new(u64::MAX / 2, Duration::from_secs(1)),
    );
    group.bench_function("tower::limit::RateLimit", |b| {
        b.iter(|| ready_and_call(&mut tower_limit, req()))
    });

    let governor = governor::RateLimiter::direct(governor::Quota::per_second(
        NonZeroU32::new(1_000_000_000).unwrap(),
    ));
    group.bench_function("governor check (no service)", |b| {
        b.iter(|| governor.check().is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
