//! Composes the layers by hand over hyper-util's client:
//! Retry -> RateLimit -> JobLimit -> Together -> hyper.
//!
//! Runs against an in-process together-sim (no network):
//! `cargo run --example hyper_stack`.

use std::time::Instant;

use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use together_rate_limits::quota::RateLimitLayer;
use together_rate_limits::retry::RetryLayer;
use together_tower::{ApiKey, Preset, TogetherLayer, retry_policy};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Stand-in for https://api.together.xyz, 10x faster than real time.
    let sim = together_sim::Sim::builder()
        .time_scale(10.0)
        .spawn()
        .await?;

    // The seed's limits (chat 600/min...) scaled like the simulator's clock.
    let preset = Preset::seed().time_scaled(10.0);
    let stack = ServiceBuilder::new()
        // Outside the rate limit, so every retry is charged against the quota.
        .layer(RetryLayer::new(retry_policy().build()?))
        .layer(RateLimitLayer::new(preset.limits()?))
        .layer(preset.job_limit().build()?)
        // Base URL, `Authorization: Bearer` (sensitive), user agent, JSON headers.
        .layer(TogetherLayer::new(
            &sim.base_url(),
            Some(ApiKey::new("test-key")?),
        )?)
        .service(Client::builder(TokioExecutor::new()).build_http::<String>());
    // Boxed before it moves into spawned tasks: rustc cannot prove the
    // unboxed stack's futures `Send` inside an `async` block (the retry
    // policy's error classifier is a higher-ranked `fn(&BoxError) -> bool`).
    let stack = BoxCloneSyncService::new(stack);

    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..30 {
        let stack = stack.clone();
        calls.spawn(async move {
            let body = format!(
                r#"{{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{{"role":"user","content":"q{i}"}}],"max_tokens":8}}"#
            );
            let res = stack
                .oneshot(Request::post("/v1/chat/completions").body(body)?)
                .await?;
            let status = res.status();
            res.into_body().collect().await?;
            Ok::<_, BoxError>(status)
        });
    }
    while let Some(status) = calls.join_next().await {
        assert!(status??.is_success());
    }
    let stats = sim.stats();
    println!(
        "30 chat completions in {:.2?} (one every 10 ms at 10x), {} answered 429",
        start.elapsed(),
        stats.total_429
    );
    sim.shutdown().await;
    Ok(())
}
