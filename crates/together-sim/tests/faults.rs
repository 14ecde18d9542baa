//! Fault injection: schedules, seeded probabilities, closes and latency.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Method;
use together_sim::config::{CHAT, EMBEDDINGS, FaultKind, FaultRule};
use together_sim::{Sim, SimBuilder};

async fn statuses(builder: SimBuilder, n: usize) -> Vec<u16> {
    let sim = builder.spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.post("/v1/embeddings", &embed_body("x")).await.status);
    }
    out
}

fn unlimited() -> SimBuilder {
    Sim::builder().no_limits()
}

#[tokio::test]
async fn scheduled_503_hits_requests_5_to_8() {
    let got = statuses(
        unlimited().fault(FaultRule::new(FaultKind::Overloaded).requests(5, 8)),
        10,
    )
    .await;
    assert_eq!(got, [200, 200, 200, 200, 503, 503, 503, 503, 200, 200]);
}

#[tokio::test]
async fn fault_bodies_have_together_shape() {
    let sim = unlimited()
        .fault(FaultRule::new(FaultKind::Overloaded).requests(1, 1))
        .fault(FaultRule::new(FaultKind::ServerError).requests(2, 2))
        .fault(FaultRule::new(FaultKind::BadGateway).requests(3, 3))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    for want in [503, 500, 502] {
        let a = c.post("/v1/embeddings", &embed_body("x")).await;
        assert_eq!(a.status, want);
        assert_eq!(a.error_type(), "server_error");
    }
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 200);
}

#[tokio::test]
async fn seeded_faults_repeat() {
    let build = |seed| {
        unlimited()
            .seed(seed)
            .fault(FaultRule::new(FaultKind::ServerError).probability(0.5))
    };
    let a = statuses(build(7), 40).await;
    let b = statuses(build(7), 40).await;
    let other = statuses(build(8), 40).await;
    assert_eq!(a, b);
    assert_ne!(a, other);
    assert!(a.contains(&500) && a.contains(&200));
}

#[tokio::test]
async fn faults_scoped_to_a_route() {
    let sim = unlimited()
        .fault(FaultRule::new(FaultKind::Overloaded).route(CHAT))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    assert_eq!(
        c.post("/v1/chat/completions", &chat_body(CHAT_MODEL, 4))
            .await
            .status,
        503
    );
    let sim = unlimited()
        .fault(FaultRule::new(FaultKind::Overloaded).model(OTHER_CHAT_MODEL))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    assert_eq!(
        c.post("/v1/chat/completions", &chat_body(CHAT_MODEL, 4))
            .await
            .status,
        200
    );
    assert_eq!(
        c.post("/v1/chat/completions", &chat_body(OTHER_CHAT_MODEL, 4))
            .await
            .status,
        503
    );
}

#[tokio::test]
async fn close_drops_the_connection_without_answer() {
    let sim = unlimited()
        .fault(FaultRule::new(FaultKind::Close).requests(2, 2))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let body = Bytes::from(embed_body("x").to_string());
    assert!(
        c.try_send(
            Method::POST,
            "/v1/embeddings",
            &[("x-custom-id", "a")],
            body.clone()
        )
        .await
        .is_ok()
    );
    let err = c
        .try_send(
            Method::POST,
            "/v1/embeddings",
            &[("x-custom-id", "b")],
            body.clone(),
        )
        .await;
    assert!(err.is_err(), "expected a closed connection, got {err:?}");
    let a = c
        .try_send(
            Method::POST,
            "/v1/embeddings",
            &[("x-custom-id", "b")],
            body,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let stats = sim.stats();
    assert_eq!(stats.count(EMBEDDINGS, 0), 1);
    assert_eq!(stats.custom_ids["b"].answered, 2);
    assert_eq!(stats.custom_ids["b"].ok, 1);
}

#[tokio::test]
async fn latency_is_added_and_scaled() {
    // 400 ms simulated at scale 10: 40 ms real.
    let sim = unlimited()
        .time_scale(10.0)
        .fault(
            FaultRule::new(FaultKind::Latency)
                .latency(Duration::from_millis(400), Duration::from_millis(100)),
        )
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let t = Instant::now();
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(40), "{took:?}");
    assert!(took < Duration::from_millis(1000), "{took:?}");
}

#[tokio::test]
async fn faulted_requests_count_against_limits() {
    let sim = Sim::builder()
        .requests(EMBEDDINGS, together_sim::Rate::per_second(2))
        .fault(FaultRule::new(FaultKind::Overloaded).requests(1, 2))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 503);
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 503);
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 429);
}

#[tokio::test]
async fn faults_from_toml() {
    let config = together_sim::SimConfig::from_toml_str(
        r#"
        [faults]
        seed = 3
        [[faults.rules]]
        kind = "502"
        from = 2
        to = 3
        route = "/v1/embeddings"
        "#,
    )
    .unwrap();
    let got = statuses(Sim::builder().config(config).no_limits(), 4).await;
    assert_eq!(got, [200, 502, 502, 200]);
}
