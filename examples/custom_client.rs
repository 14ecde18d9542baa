//! Wraps your own client service: here a `service_fn` that records every
//! request and answers with canned JSON (a mock, a test double, or a client
//! with your own transport). The stack in front of it is the same one
//! `TogetherClient::builder().build()` puts over hyper.
//!
//! No network: `cargo run --example custom_client`.

use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use together_tower::types::{ChatRequest, Message};
use together_tower::{Preset, TogetherClient};
use tower::{BoxError, Layer, ServiceExt, service_fn};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorder = service_fn({
        let seen = seen.clone();
        move |req: Request<String>| {
            // `Authorization` arrives marked sensitive: Debug shows `Sensitive`.
            seen.lock().unwrap().push(format!(
                "{} {} auth={:?}",
                req.method(),
                req.uri(),
                req.headers().get("authorization")
            ));
            let body = match req.uri().path() {
                "/v1/models" => r#"[{"id":"my/model","type":"chat"}]"#.to_string(),
                _ => r#"{"id":"c1","model":"my/model","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"stop"}]}"#.to_string(),
            };
            async move {
                Ok::<_, BoxError>(
                    Response::builder()
                        .status(StatusCode::OK)
                        .body(http_body_util::Full::new(bytes::Bytes::from(body)))?,
                )
            }
        }
    });

    // 1. The typed client over the recorder.
    let client = TogetherClient::builder()
        .api_key("sk-example")
        .preset(Preset::seed())
        .build_with(recorder.clone())?;
    let answer = client
        .chat(&ChatRequest::new("my/model", vec![Message::user("hi")]))
        .await?;
    println!(
        "chat answered {:?} by {}",
        answer.choices[0].message.content,
        answer.model()
    );
    println!(
        "models: {:?}",
        client
            .models()
            .await?
            .iter()
            .map(|m| &m.id)
            .collect::<Vec<_>>()
    );

    // 2. Just the layers, over the same recorder, for raw requests.
    let layers = TogetherClient::builder().api_key("sk-example").layers()?;
    let stack = layers.layer(recorder);
    let res = stack
        .oneshot(Request::get("/v1/models").body(String::new())?)
        .await?;
    println!("raw GET /v1/models: {}", res.status());

    for line in seen.lock().unwrap().iter() {
        assert!(!line.contains("sk-example"));
        println!("recorded: {line}");
    }
    Ok(())
}
