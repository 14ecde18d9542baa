//! Uncontended overhead: RateLimit over a ready no-op service against the bare
//! service, tower's RateLimit and governor's own `check`.
//!
//! `cargo bench -p tower-quota --bench quota`

use std::num::NonZeroU32;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use tower_quota::{Limits, RateLimit, Route};

mod support;
use support::{CHAT, Noop, chat, long_chat, one_quota, per_model_and_tokens, ready_and_call};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let req = || chat("");
    let req_json = || chat(CHAT);
    let long = long_chat();
    let req_1k = || chat(&long);

    let mut group = c.benchmark_group("uncontended");
    let mut bare = Noop;
    group.bench_function("bare service", |b| {
        b.iter(|| ready_and_call(&mut bare, req()))
    });

    let limits = one_quota();
    let mut limited = RateLimit::new(Noop, limits);
    group.bench_function("tower-quota, one quota", |b| {
        b.iter(|| ready_and_call(&mut limited, req()))
    });

    let limits = per_model_and_tokens();
    let mut keyed = RateLimit::new(Noop, limits);
    group.bench_function("tower-quota, per-model + tokens (parses JSON)", |b| {
        b.iter(|| ready_and_call(&mut keyed, req_json()))
    });
    let mut bare_1k = Noop;
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
        Noop,
        Limits::builder()
            .route(Route::new(Method::GET, "/elsewhere"))
            .build()
            .unwrap(),
    );
    group.bench_function("tower-quota, unmatched route", |b| {
        b.iter(|| ready_and_call(&mut unmatched, req()))
    });

    let mut tower_limit = tower::limit::RateLimit::new(
        Noop,
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
