//! A worker sharing one quota through Redis: sends `--requests` requests to
//! a no-op service through a shared RateLimitLayer and prints each grant's
//! wall-clock time in microseconds since the Unix epoch, one per line.
//!
//! Run several at once to watch them share a quota:
//! `cargo run -p tower-quota-redis --bin quota-worker -- redis://127.0.0.1:6379/ demo 10/s 20`

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tower::{ServiceExt, service_fn};
use tower_layer::Layer;
use tower_quota::{Limits, Quota, RateLimitLayer, Route, SharedOptions};
use tower_quota_redis::RedisStore;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, prefix, rate, requests] = args.as_slice() else {
        return Err("usage: quota-worker REDIS_URL KEY_PREFIX RATE REQUESTS (e.g. 10/s 20)".into());
    };
    let requests: usize = requests.parse()?;
    let limits = Limits::builder()
        .quota("q", Quota::new(rate.parse()?))
        .route(Route::new(http::Method::POST, "/x").quota("q"))
        .build()?;
    let store = RedisStore::new(url, "worker-secret")?.prefix(prefix.clone());
    let layer = RateLimitLayer::shared(limits, Arc::new(store), SharedOptions::default())?;
    let svc = layer.layer(service_fn(|_: http::Request<String>| async {
        let us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros();
        println!("{us}");
        Ok::<_, Infallible>(http::Response::new(String::new()))
    }));
    let tasks: Vec<_> = (0..requests)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let req = http::Request::post("/x").body(String::new()).unwrap();
                svc.oneshot(req).await
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}
