//! Shared decisions against a Redis on loopback: decisions per second per
//! process, and the latency a shared layer adds per request.
//!
//! `REDIS_URL=redis://127.0.0.1:6379/ cargo bench -p tower-quota-redis --bench redis`

use std::convert::Infallible;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tower::{ServiceExt, service_fn};
use tower_layer::Layer;
use tower_quota::{Limits, Quota, Rate, RateLimitLayer, Route, SharedCell, SharedOptions};
use tower_quota_redis::RedisStore;

/// A quota so generous that every decision is a grant.
fn huge() -> Quota {
    Quota::new(Rate::new(NonZeroU32::new(1_000_000).unwrap(), Duration::from_secs(1)).unwrap())
        .burst(NonZeroU32::new(1_000_000_000).unwrap())
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let prefix = format!("trl-bench:{}", std::process::id());
    let store = RedisStore::new(&url, "bench-secret")
        .unwrap()
        .prefix(prefix);
    let cell =
        |i: usize| SharedCell::new(format!("q{i}"), Duration::from_micros(1), 1_000_000_000, 1);

    // Warm up the connection and the script cache.
    for _ in 0..100 {
        store.decide_now(&[cell(0)], Duration::ZERO).await.unwrap();
    }

    // One decision at a time: the round trip.
    let samples: Vec<Duration> = {
        let mut v = Vec::new();
        for _ in 0..5_000 {
            let t = Instant::now();
            store.decide_now(&[cell(0)], Duration::ZERO).await.unwrap();
            v.push(t.elapsed());
        }
        v
    };
    let (p50, p99) = percentiles(samples);
    println!("sequential decisions: p50 {p50:?}, p99 {p99:?}");

    // Many at once over the one multiplexed connection: throughput.
    for concurrency in [16usize, 64] {
        let n = 40_000;
        let start = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..n / concurrency {
                        store.decide_now(&[cell(t)], Duration::ZERO).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        println!("{concurrency} concurrent callers: {rate:.0} decisions/s");
    }

    // Per request through the layer: shared against local.
    let limits = || {
        Limits::builder()
            .quota("q", huge())
            .route(Route::new(http::Method::POST, "/x").quota("q"))
            .build()
            .unwrap()
    };
    let shared =
        RateLimitLayer::shared(limits(), Arc::new(store.clone()), SharedOptions::default())
            .unwrap();
    let local = RateLimitLayer::new(limits());
    for (name, layer) in [("local layer", local), ("shared layer (Redis)", shared)] {
        let svc = layer.layer(service_fn(|_: http::Request<String>| async {
            Ok::<_, Infallible>(http::Response::new(String::new()))
        }));
        let mut v = Vec::new();
        for _ in 0..5_000 {
            let req = http::Request::post("/x").body(String::new()).unwrap();
            let t = Instant::now();
            svc.clone().oneshot(req).await.unwrap();
            v.push(t.elapsed());
        }
        let (p50, p99) = percentiles(v);
        println!("{name}: per request p50 {p50:?}, p99 {p99:?}");
    }
}
