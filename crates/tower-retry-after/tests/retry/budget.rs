//! The retry budget bounds retries across all callers.

use tokio::task::JoinSet;
use tower::{Layer, ServiceExt};
use tower_retry_after::{RetryLayer, TpsBudget};

use crate::support::*;

const CALLERS: usize = 100;

/// Runs `CALLERS` concurrent chat calls against a server answering 503
/// forever, through two services made by one layer; returns how many
/// requests the server saw.
async fn storm(layer: RetryLayer) -> usize {
    let server = Server::new(|_| reply(503, &[]));
    let services = [layer.layer(server.clone()), layer.layer(server.clone())];
    let mut callers = JoinSet::new();
    for i in 0..CALLERS {
        let service = services[i % 2].clone();
        callers.spawn(async move { service.oneshot(chat()).await });
    }
    while let Some(result) = callers.join_next().await {
        let res = result.unwrap().unwrap();
        // Every caller gets the last 503 back.
        assert_eq!(res.status(), 503);
    }
    server.count()
}

#[tokio::test(start_paused = true)]
async fn budget_bounds_retries_under_a_permanent_503() {
    // Each call deposits one token, each retry costs four (25 %); no reserve.
    let budget = TpsBudget::new(secs(10), 0, 0.25);
    let policy = policy().budget(budget).build().unwrap();
    let sent = storm(RetryLayer::new(policy)).await;
    // 100 first attempts + 25 retries, not 100 x 5 attempts.
    assert_eq!(sent, CALLERS + CALLERS / 4);
}

#[tokio::test(start_paused = true)]
async fn without_a_budget_every_caller_uses_every_attempt() {
    let policy = policy().build().unwrap();
    assert_eq!(storm(RetryLayer::new(policy)).await, CALLERS * 5);
}

#[tokio::test(start_paused = true)]
async fn default_budget_allows_a_reserve_plus_a_share() {
    // TpsBudget::default(): 10 retries a second over 10 s (100) plus 20 % of
    // deposits (20 for 100 calls).
    let policy = tower_retry_after::RetryPolicy::builder()
        .seed(3)
        .build()
        .unwrap();
    let sent = storm(RetryLayer::new(policy)).await;
    assert!(sent <= CALLERS + 100 + CALLERS / 5, "{sent}");
    assert!(sent < CALLERS * 5, "{sent}");
}
