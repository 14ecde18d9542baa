//! Reuses the policies for another OpenAI-compatible API: the same builder
//! with another base URL, key variable and preset.
//!
//! A preset for another API is the OpenAI-style one with your account's
//! rates (here from TOML; a file works the same way). To keep this runnable
//! without network, the "other API" is an in-process together-sim serving
//! OpenAI-compatible routes: `cargo run --example openai_compatible`.
//! Against the real thing: `.base_url("https://api.openai.com")` and
//! `.api_key_env("OPENAI_API_KEY")`.

use std::time::Instant;

use together_tower::types::{ChatRequest, EmbeddingRequest, Message};
use together_tower::{Preset, TogetherClient};
use tower::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let other_api = together_sim::Sim::builder()
        .time_scale(10.0)
        .spawn()
        .await?;

    // OpenAI's paths and status names, with the rates of your account
    // pinned (without `learn = false` they are where learning starts, from
    // OpenAI's x-ratelimit-* headers).
    let preset = Preset::from_toml(
        r#"
        base = "openai"
        name = "my-openai-compatible"
        learn = false

        [routes.chat]
        requests = "3000/min"        # 50/s: one request every 20 ms
        tokens = "1000000 tokens/min"

        [routes.embeddings]
        requests = "600/min"

        [fine_tunes]
        cap = 2
        "#,
    )?;
    println!("routes: {:?}", preset.limits()?.routes());

    let client = TogetherClient::builder()
        .base_url(other_api.base_url())
        .api_key("test-key") // or .api_key_env("OPENAI_API_KEY")
        .preset(preset)
        .build()?;

    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..10 {
        let client = client.clone();
        calls.spawn(async move {
            client
                .chat(&ChatRequest::new(
                    "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                    vec![Message::user(format!("question {i}"))],
                ))
                .await
        });
    }
    while let Some(answer) = calls.join_next().await {
        answer??;
    }
    let embedded = client
        .embeddings(&EmbeddingRequest::new("BAAI/bge-large-en-v1.5", ["a", "b"]))
        .await?;
    println!(
        "10 chats paced at 50/s and {} embeddings in {:.2?}; 429s: {}",
        embedded.data.len(),
        start.elapsed(),
        other_api.stats().total_429
    );
    other_api.shutdown().await;
    Ok(())
}
