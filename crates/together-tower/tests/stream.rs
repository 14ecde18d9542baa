//! Streamed chats through the whole stack against together-sim: chunks
//! pass as the server sends them, usage is read, a cut stream is an error
//! and is not sent again, a 429 before the head is retried.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use together_sim::config::{
    AnswerConfig, CHAT, FaultKind, FaultRule, HeaderConfig, TokenCharge, TokenRange, UsageStyle,
};
use together_sim::{Sim, SimBuilder, SimHandle};
use together_tower::types::{ChatRequest, CompletionRequest, Message};
use together_tower::{ErrorKind, Preset, TogetherClient};

const CHAT_MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";

fn answers(tokens: u64, interval_ms: u64, style: UsageStyle) -> AnswerConfig {
    AnswerConfig {
        completion_tokens: Some(TokenRange {
            min: tokens,
            max: tokens,
        }),
        chunk_interval: Duration::from_millis(interval_ms),
        usage_style: style,
        ..AnswerConfig::default()
    }
}

fn client(sim: &SimHandle, preset: Preset) -> TogetherClient {
    TogetherClient::builder()
        .api_key(&sim.api_keys()[0])
        .base_url(sim.base_url())
        .preset(preset)
        .build()
        .unwrap()
}

fn chat() -> ChatRequest {
    ChatRequest::new(CHAT_MODEL, vec![Message::user("Tell me")]).max_tokens(1024)
}

async fn spawn(builder: SimBuilder) -> SimHandle {
    builder.spawn().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_come_as_sent_and_add_up_with_their_usage() {
    for style in [UsageStyle::Together, UsageStyle::Openai] {
        // 40 tokens, 4 a chunk: 12 events 100 ms (simulated) apart, 10 ms real.
        let sim = spawn(
            Sim::builder()
                .time_scale(10.0)
                .answers(answers(40, 100, style)),
        )
        .await;
        let client = client(&sim, Preset::together());
        let start = Instant::now();
        let mut stream = client.chat_stream(&chat()).await.unwrap();
        let mut at = Vec::new();
        while let Some(chunk) = stream.next().await {
            chunk.unwrap();
            at.push(start.elapsed());
        }
        let whole = stream.response();
        assert_eq!(whole.choices[0].message.content, "sim ".repeat(40));
        assert_eq!(whole.choices[0].message.role, "assistant");
        assert_eq!(whole.choices[0].finish_reason.as_deref(), Some("stop"));
        let usage = stream.usage().expect("the usage came");
        assert_eq!((usage.completion_tokens, usage.total_tokens), (40, 42));
        let last = *at.last().unwrap();
        assert!(last >= Duration::from_millis(100), "{last:?}");
        // The first chunk came while the server was still sending (it takes 110 ms real).
        assert!(at[0] + Duration::from_millis(60) < last, "{at:?}");
    }
    // Text completions too.
    let sim = spawn(Sim::builder().answers(answers(12, 0, UsageStyle::Together))).await;
    let client = client(&sim, Preset::together());
    let request = CompletionRequest::new(CHAT_MODEL, "Once");
    let whole = client
        .completions_stream(&request)
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(whole.choices[0].text, "sim ".repeat(12));
    assert_eq!(whole.usage.unwrap().completion_tokens, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_is_an_error_after_its_chunks_and_is_not_sent_again() {
    let sim = spawn(
        Sim::builder()
            .fault(FaultRule::new(FaultKind::Cut))
            .answers(answers(40, 0, UsageStyle::Together)),
    )
    .await;
    let client = client(&sim, Preset::together());
    let mut stream = client.chat_stream(&chat()).await.unwrap();
    let mut good = 0;
    let error = loop {
        match stream.next().await {
            Some(Ok(_)) => good += 1,
            Some(Err(e)) => break e,
            None => panic!("the stream ended without an error after {good} chunks"),
        }
    };
    assert!(good > 0, "chunks came before the cut");
    assert_eq!(error.kind(), ErrorKind::Interrupted, "{error}");
    assert!(
        error.to_string().contains(&format!("after {good} chunks")),
        "{error}"
    );
    assert!(stream.next().await.is_none(), "one error, then the end");
    assert!(!stream.response().choices[0].message.content.is_empty());
    assert_eq!(
        sim.stats().total_requests,
        1,
        "a cut stream is not sent again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_before_the_head_is_retried() {
    // The server allows one chat a second and says nothing of it on a
    // success; the client's preset believes in a hundred, so the second
    // stream meets a 429 and is retried after its hint.
    let sim = spawn(
        Sim::builder()
            .time_scale(10.0)
            .headers(HeaderConfig {
                success_headers: false,
                ..HeaderConfig::default()
            })
            .no_limits()
            .requests(CHAT, "1/s".parse().unwrap())
            .answers(answers(8, 0, UsageStyle::Together)),
    )
    .await;
    let preset = Preset::from_toml(
        r#"
        base = "tier1"
        [routes.chat]
        requests = "6000/min"
        tokens = "none"
        "#,
    )
    .unwrap();
    let client = client(&sim, preset);
    for _ in 0..2 {
        let whole = client
            .chat_stream(&chat())
            .await
            .unwrap()
            .finish()
            .await
            .unwrap();
        assert_eq!(whole.choices[0].message.content, "sim ".repeat(8));
    }
    let stats = sim.stats();
    assert!(stats.total_429 >= 1, "{stats:?}");
    assert_eq!(stats.total_requests, 2 + stats.total_429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_settle_the_token_quota_by_their_usage() {
    // A server that charges real usage with 3,000 tokens/s: chats of
    // max_tokens 1024 using ~60 tokens. Charged the estimate (1,027), the
    // client would send under three a second; settled by usage, the
    // request limit (10/s) binds.
    let sim = spawn(
        Sim::builder()
            .time_scale(10.0)
            .no_limits()
            .requests(CHAT, "10/s".parse().unwrap())
            .tokens(CHAT, "3000/s".parse().unwrap())
            .answers(AnswerConfig {
                token_charge: TokenCharge::Usage,
                ..answers(60, 0, UsageStyle::Together)
            }),
    )
    .await;
    let preset = Preset::from_toml(
        r#"
        base = "tier1"
        learn = false
        charge = "reconciled"
        [routes.chat]
        requests = "10/s"
        tokens = "3000/s"
        "#,
    )
    .unwrap()
    .time_scaled(10.0)
    .safety_margin(0.03);
    let client = client(&sim, preset);
    let start = Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.chat_stream(&chat()).await?.finish().await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let took = start.elapsed();
    let stats = sim.stats();
    assert_eq!(stats.total_429, 0, "{stats:?}");
    // 100 at 100/s (real) take 1 s; at the estimate's pace (a burst of 29,
    // then 29/s real) 2.4 s.
    assert!(took < Duration::from_millis(1700), "took {took:?}");
}

/// A client over `answer` (no network) with a reconciled 100 tokens/s chat quota.
fn scripted(
    answer: impl Fn() -> http::Response<String> + Clone + Send + Sync + 'static,
) -> (TogetherClient, Arc<Mutex<Vec<Duration>>>) {
    let preset = Preset::from_toml(
        r#"
        base = "tier1"
        learn = false
        charge = "reconciled"
        [routes.chat]
        requests = "6000/min"
        tokens = "100/s"
        "#,
    )
    .unwrap();
    let start = tokio::time::Instant::now();
    let arrived = Arc::new(Mutex::new(Vec::new()));
    let seen = arrived.clone();
    let client = TogetherClient::builder()
        .api_key("k")
        .preset(preset)
        .build_with(tower::service_fn(move |_req: http::Request<String>| {
            seen.lock().unwrap().push(start.elapsed());
            let res = answer();
            async move { Ok::<_, tower::BoxError>(res) }
        }))
        .unwrap();
    (client, arrived)
}

fn small_chat() -> ChatRequest {
    ChatRequest::new(CHAT_MODEL, vec![Message::user("abcd")]).max_tokens(90)
}

#[tokio::test(start_paused = true)]
async fn a_stream_read_to_its_end_settles_before_it_is_dropped() {
    let (client, arrived) = scripted(|| {
        http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(
                "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n\
                 data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":9,\"total_tokens\":10}}\n\n\
                 data: [DONE]\n\n"
                    .to_owned(),
            )
            .unwrap()
    });
    let mut first = client.chat_stream(&small_chat()).await.unwrap();
    while let Some(chunk) = first.next().await {
        chunk.unwrap();
    }
    // The first stream is still alive: its 81 unused tokens are back.
    let second = client.chat_stream(&small_chat()).await.unwrap();
    let arrived = arrived.lock().unwrap().clone();
    assert!(arrived[1] < Duration::from_millis(200), "{arrived:?}");
    drop((first, second));
}

#[tokio::test(start_paused = true)]
async fn a_server_that_does_not_stream_is_a_clear_error() {
    let (client, _) = scripted(|| {
        http::Response::builder()
            .header("content-type", "application/json")
            .body(r#"{"choices":[{"message":{"content":"hi"}}]}"#.to_owned())
            .unwrap()
    });
    let error = client.chat_stream(&small_chat()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Decode, "{error}");
    assert!(
        error.to_string().contains("instead of server-sent events"),
        "{error}"
    );
}
