//! Every error code, in Together's shape.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use serde_json::json;
use together_sim::Sim;

#[tokio::test]
async fn missing_or_unknown_key_is_401() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::without_key(sim.addr());
    let a = c
        .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 4))
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(a.error_type(), "invalid_request_error");
    assert_eq!(a.json()["error"]["code"], "invalid_api_key");
    let mut c = Client::new(sim.addr(), "wrong-key");
    let a = c.get("/v1/models").await;
    assert_eq!(a.status, 401);
    // The key is never echoed.
    assert!(!String::from_utf8_lossy(&a.body).contains("wrong-key"));
}

#[tokio::test]
async fn unknown_model_is_404_naming_it() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let a = c
        .post("/v1/chat/completions", &chat_body("nope/missing-model", 4))
        .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_type(), "invalid_request_error");
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nope/missing-model")
    );
    let a = c
        .post("/v1/embeddings", &json!({"model": "x/y", "input": "a"}))
        .await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn unknown_models_accepted_when_configured() {
    let sim = Sim::builder()
        .accept_unknown_models(true)
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let a = c
        .post("/v1/chat/completions", &chat_body("any/model", 4))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["model"], "any/model");
}

#[tokio::test]
async fn unknown_route_is_404() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let a = c.post("/v1/nothing", &json!({})).await;
    assert_eq!(a.status, 404);
    a.error_type();
    let a = c.get("/v1/chat/completions").await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn malformed_json_and_missing_fields_are_400() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let a = c.post_raw("/v1/chat/completions", "{not json").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_type(), "invalid_request_error");
    let a = c
        .post("/v1/chat/completions", &json!({"model": CHAT_MODEL}))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["param"], "messages");
    let a = c
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["param"], "model");
    let a = c
        .post("/v1/embeddings", &json!({"model": EMBED_MODEL}))
        .await;
    assert_eq!(a.status, 400);
    let a = c
        .post("/v1/completions", &json!({"model": CHAT_MODEL}))
        .await;
    assert_eq!(a.status, 400);
    let a = c
        .post("/v1/fine-tunes", &json!({"model": CHAT_MODEL}))
        .await;
    assert_eq!(a.status, 400);
    // Errors do not count against the rate limits.
    assert_eq!(sim.stats().total_429, 0);
}

#[tokio::test]
async fn over_context_length_is_403() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    // sim/tiny-context has a context of 64 tokens.
    let a = c
        .post("/v1/chat/completions", &chat_body("sim/tiny-context", 100))
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.error_type(), "invalid_request_error");
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("64")
    );
    let a = c
        .post("/v1/chat/completions", &chat_body("sim/tiny-context", 60))
        .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let sim = Sim::builder().max_body_bytes(200).spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let big = json!({"model": EMBED_MODEL, "input": "x".repeat(500)});
    let a = c.post("/v1/embeddings", &big).await;
    assert_eq!(a.status, 413);
    a.error_type();
    // Chunked (no content-length) is limited too.
    let a = c
        .send(
            Method::POST,
            "/v1/embeddings",
            &[("transfer-encoding", "chunked")],
            Bytes::from(big.to_string()),
        )
        .await;
    assert_eq!(a.status, 413);
    let a = c.post("/v1/embeddings", &embed_body("small")).await;
    assert_eq!(a.status, 200);
}
