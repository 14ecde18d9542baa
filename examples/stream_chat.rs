//! Streams chats through the whole stack (Retry -> RateLimit -> JobLimit ->
//! Together -> hyper) against an in-process together-sim: the chunks print
//! as the server sends them, then the usage; then twenty streamed chats at
//! once, whose token quota is settled by what they used.
//!
//! `cargo run --example stream_chat` (no key, no network).

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use together_sim::config::{AnswerConfig, CHAT, TokenCharge, TokenRange};
use together_tower::types::{ChatRequest, Message};
use together_tower::{Preset, TogetherClient};
use tower::BoxError;

const MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Stand-in for https://api.together.xyz: 10 chats/s and 3,000 tokens/s,
    // tokens charged by what answers use; answers of 60 tokens, a chunk of
    // 4 tokens every 20 ms.
    let sim = together_sim::Sim::builder()
        .no_limits()
        .requests(CHAT, "10/s".parse()?)
        .tokens(CHAT, "3000/s".parse()?)
        .answers(AnswerConfig {
            completion_tokens: Some(TokenRange { min: 60, max: 60 }),
            chunk_interval: Duration::from_millis(20),
            token_charge: TokenCharge::Usage,
            ..AnswerConfig::default()
        })
        .spawn()
        .await?;

    // Together's preset: learns each model's pace from the rate headers,
    // and settles each token estimate (input + max_tokens) by the usage.
    let client = TogetherClient::builder()
        .api_key("test-key")
        .base_url(sim.base_url())
        .preset(Preset::together())
        .build()?;

    let request = ChatRequest::new(MODEL, vec![Message::user("Tell me a story")]).max_tokens(1024);
    let start = Instant::now();
    let mut stream = client.chat_stream(&request).await?;
    let mut first = None;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        first.get_or_insert_with(|| start.elapsed());
        for choice in &chunk.choices {
            print!("{}", choice.delta.content.as_deref().unwrap_or_default());
            std::io::stdout().flush()?;
        }
    }
    println!();
    let usage = stream.usage().ok_or("the server sent no usage")?;
    println!(
        "first chunk after {:?}, the whole stream after {:?}; {} tokens used of {} estimated",
        first.unwrap_or_default(),
        start.elapsed(),
        usage.total_tokens,
        1024 + 4,
    );

    // Twenty at once: charged the estimate (~1,028 tokens each) they would
    // go under three a second; settled by usage, the request limit binds.
    let start = Instant::now();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let client = client.clone();
            let request =
                ChatRequest::new(MODEL, vec![Message::user(format!("Story {i}"))]).max_tokens(1024);
            tokio::spawn(async move { client.chat_stream(&request).await?.finish().await })
        })
        .collect();
    let mut tokens = 0;
    for task in tasks {
        let whole = task.await??;
        tokens += whole.usage.map_or(0, |u| u.total_tokens);
    }
    let stats = sim.stats();
    println!(
        "20 streamed chats in {:.2?}, {tokens} tokens used, {} answered 429",
        start.elapsed(),
        stats.total_429
    );
    Ok(())
}
