//! The typed helpers over a `service_fn` under paused tokio time: partial
//! failures of `embed_all`, rate-limit refusals that are not retried, and
//! both shapes of `GET /v1/models`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use serde_json::{Value, json};
use together_tower::types::{ChatRequest, Message};
use together_tower::{BoxError, ErrorKind, Preset, RouteLimit, TogetherClient};
use tower::service_fn;

/// A fake API: embeddings echo one vector `[i]` per input `"i"`, answering
/// 400 for any chunk holding `"bad"`; chat answers `{}`; models answer
/// `models`.
fn fake(
    calls: Arc<AtomicUsize>,
    models: &'static str,
) -> impl tower::Service<
    Request<String>,
    Response = Response<String>,
    Error = BoxError,
    Future = impl Future<Output = Result<Response<String>, BoxError>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |req: Request<String>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_owned();
        let body: Value = serde_json::from_str(req.body()).unwrap_or(Value::Null);
        async move {
            let (status, answer) = match path.as_str() {
                "/v1/embeddings" => {
                    let inputs = body["input"].as_array().cloned().unwrap_or_default();
                    if inputs.iter().any(|i| i == "bad") {
                        (
                            StatusCode::BAD_REQUEST,
                            json!({"error": {"message": "bad input", "type": "invalid_request_error"}}),
                        )
                    } else {
                        // Out of order on purpose: the helper sorts by index.
                        let data: Vec<Value> = inputs
                            .iter()
                            .enumerate()
                            .rev()
                            .map(|(i, t)| json!({"index": i, "embedding": [t.as_str().unwrap().parse::<f32>().unwrap()]}))
                            .collect();
                        (
                            StatusCode::OK,
                            json!({"model": body["model"], "data": data}),
                        )
                    }
                }
                "/v1/models" => (StatusCode::OK, serde_json::from_str(models).unwrap()),
                _ => (
                    StatusCode::OK,
                    json!({"model": body["model"], "choices": []}),
                ),
            };
            Ok(Response::builder()
                .status(status)
                .body(answer.to_string())?)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn embed_all_keeps_the_good_chunks_and_reports_the_bad_range() {
    let calls = Arc::new(AtomicUsize::new(0));
    let client = TogetherClient::builder()
        .api_key("k")
        .build_with(fake(calls.clone(), "[]"))
        .unwrap();
    let mut texts: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    texts[25] = "bad".into();
    let out = client.embed_all("m", &texts).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "chunks of 20, 20 and 10");
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].range, 20..40);
    assert_eq!(
        out.failures[0].error.status(),
        Some(StatusCode::BAD_REQUEST)
    );
    assert!(out.failures[0].to_string().starts_with("inputs 20..40: "));
    for (i, e) in out.embeddings.iter().enumerate() {
        match i {
            20..40 => assert!(e.is_none()),
            _ => assert_eq!(e.as_deref(), Some(&[i as f32][..]), "input {i}"),
        }
    }
    assert!(out.complete().is_err());
}

#[tokio::test(start_paused = true)]
async fn rate_limit_refusals_are_not_retried() {
    let calls = Arc::new(AtomicUsize::new(0));
    let preset = Preset::seed().route(
        "chat",
        RouteLimit::new(http::Method::POST, "/v1/chat/completions")
            .requests("1/min".parse().unwrap())
            .max_wait(Duration::from_millis(50)),
    );
    let client = TogetherClient::builder()
        .api_key("k")
        .preset(preset)
        .build_with(fake(calls.clone(), "[]"))
        .unwrap();
    let req = ChatRequest::new("m", vec![Message::user("hi")]);
    client.chat(&req).await.unwrap();
    let start = tokio::time::Instant::now();
    let err = client.chat(&req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimit, "{err}");
    // A retry would have slept a backoff (0.375 s at least) first.
    assert!(
        start.elapsed() < Duration::from_millis(100),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the refused call never went out"
    );
    assert!(err.to_string().contains("max_wait"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn models_accept_both_list_shapes() {
    for body in [
        r#"[{"id":"a/b","type":"chat","pricing":{"input":1}}]"#,
        r#"{"object":"list","data":[{"id":"a/b","object":"model","owned_by":"x"}]}"#,
    ] {
        let client = TogetherClient::builder()
            .api_key("k")
            .build_with(fake(Arc::default(), body))
            .unwrap();
        let models = client.models().await.unwrap();
        assert_eq!(models.len(), 1);
        assert_eq!(models[0].id, "a/b");
        assert!(!models[0].extra.is_empty(), "unknown fields are kept");
        assert_eq!(client.model_ids().await.unwrap().as_slice(), ["a/b"]);
    }
}
