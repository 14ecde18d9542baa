//! The client against together-sim with the seed's limits, time-scaled:
//! throughput without 429s, job workflows, model suggestions, fallback.
//!
//! Prints the measured times (`cargo test -p together-tower --test sim -- --nocapture`).

use std::time::{Duration, Instant};

use serde_json::json;
use together_sim::config::{BatchConfig, CHAT, EMBEDDINGS, FaultKind, FaultRule, FineTuneConfig};
use together_sim::limits::LimitKind;
use together_sim::{Mode, Sim, SimBuilder, SimHandle};
use together_tower::types::{
    BatchRequest, ChatRequest, EmbeddingRequest, FineTuneRequest, Message,
};
use together_tower::{ErrorKind, Preset, TogetherBuilder, TogetherClient, retry_policy};

const CHAT_MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";
const SMALL_MODEL: &str = "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo";
const EMBED_MODEL: &str = "BAAI/bge-large-en-v1.5";

async fn spawn(builder: SimBuilder) -> SimHandle {
    builder.mode(Mode::Sliding).spawn().await.unwrap()
}

/// A client of `sim` with the seed preset scaled by `scale`.
fn client(sim: &SimHandle, scale: f64) -> TogetherBuilder {
    // Windows `scale` times shorter make timer jitter a larger share of each:
    // a 3% margin instead of the default 1%.
    TogetherClient::builder()
        .api_key(&sim.api_keys()[0])
        .base_url(sim.base_url())
        .preset(Preset::seed().time_scaled(scale).safety_margin(0.03))
        .poll_interval(Duration::from_millis(10))
}

fn chat(i: usize) -> ChatRequest {
    ChatRequest::new(CHAT_MODEL, vec![Message::user(format!("question {i}"))]).max_tokens(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_all_3000_and_500_chats_meet_no_429_near_the_ideal_time() {
    const SCALE: f64 = 10.0;
    let sim = spawn(Sim::builder().time_scale(SCALE)).await;
    let client = client(&sim, SCALE).build().unwrap();
    let texts: Vec<String> = (0..3000).map(|i| format!("document number {i}")).collect();
    let chats = 500;

    let start = Instant::now();
    let chat_tasks: Vec<_> = (0..chats)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.chat(&chat(i)).await.map(|r| r.choices.len()) })
        })
        .collect();
    let embed_client = client.clone();
    let embed_texts = texts.clone();
    let embed_task = tokio::spawn(async move {
        let out = embed_client.embed_all(EMBED_MODEL, &embed_texts).await;
        (out, Instant::now())
    });
    for t in chat_tasks {
        assert_eq!(t.await.unwrap().unwrap(), 1);
    }
    let chats_done = start.elapsed();
    let (embedded, embed_end) = embed_task.await.unwrap();
    let embeds_done = embed_end - start;
    let stats = sim.stats();

    // Ideal at the quota: (n - 1) intervals, burst 1. Chat 600/min at 10x =
    // 100/s; embeddings 300/min at 10x = 50/s, 3000 inputs / 20 = 150 requests.
    let ideal_chat = Duration::from_secs_f64((chats - 1) as f64 / 100.0);
    let ideal_embed = Duration::from_secs_f64(149.0 / 50.0);
    println!(
        "chat: {chats} in {chats_done:.3?} (ideal {ideal_chat:.3?}, {:+.1}%); \
         embeddings: 3000 inputs in 150 requests in {embeds_done:.3?} (ideal {ideal_embed:.3?}, {:+.1}%); \
         429s: {}; most accepted in one window: chat {} (limit 10), embeddings {} (limit 5)",
        100.0 * (chats_done.as_secs_f64() / ideal_chat.as_secs_f64() - 1.0),
        100.0 * (embeds_done.as_secs_f64() / ideal_embed.as_secs_f64() - 1.0),
        stats.total_429,
        stats.max_in_window(CHAT, LimitKind::Requests),
        stats.max_in_window(EMBEDDINGS, LimitKind::Requests),
    );
    assert_eq!(stats.total_429, 0, "the limiter let 429s through");
    assert!(embedded.is_complete(), "{:?}", embedded.failures);
    let vectors = embedded.complete().unwrap();
    assert_eq!(vectors.len(), 3000);
    // In input order: the same texts embedded one by one give the same vectors.
    for i in [0, 21, 1234, 2999] {
        let one = client
            .embeddings(&EmbeddingRequest::new(EMBED_MODEL, [texts[i].clone()]))
            .await
            .unwrap();
        assert_eq!(one.data[0].embedding, vectors[i], "input {i}");
    }
    // A loose bound (a test, not a benchmark): pacing, not stalling.
    assert!(
        chats_done < ideal_chat.mul_f64(1.5),
        "{chats_done:?} vs {ideal_chat:?}"
    );
    assert!(
        embeds_done < ideal_embed.mul_f64(1.5),
        "{embeds_done:?} vs {ideal_embed:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_tunes_run_end_to_end_under_the_cap() {
    // pending 1 s, queued 1 s, running 10 s simulated; 120 ms real at 100x.
    let sim = spawn(
        Sim::builder()
            .time_scale(100.0)
            .fine_tunes(FineTuneConfig::default()),
    )
    .await;
    let client = client(&sim, 100.0).build().unwrap();
    let jobs: Vec<_> = (0..5)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut req = FineTuneRequest::new(SMALL_MODEL, "file-train");
                req.suffix = Some(format!("run-{i}"));
                let job = client.create_fine_tune(&req).await?;
                assert_eq!(job.status, "pending");
                client.wait_fine_tune(&job.id).await
            })
        })
        .collect();
    for j in jobs {
        assert_eq!(j.await.unwrap().unwrap().status, "completed");
    }
    let listed = client.list_fine_tunes().await.unwrap();
    assert_eq!(listed.len(), 5);
    assert!(listed.iter().all(|j| j.extra.contains_key("created_at")));

    let job = client
        .create_fine_tune(&FineTuneRequest::new(SMALL_MODEL, "file-train"))
        .await
        .unwrap();
    let cancelled = client.cancel_fine_tune(&job.id).await.unwrap();
    assert_eq!(cancelled.status, "cancelled");
    assert_eq!(client.fine_tune(&job.id).await.unwrap().status, "cancelled");
    assert_eq!(client.jobs().available("fine-tune"), Some(3));

    let stats = sim.stats();
    assert!(stats.fine_tunes.max_active <= 3, "{:?}", stats.fine_tunes);
    assert_eq!(stats.count("/v1/fine-tunes", 409), 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_split_at_the_cap_and_return_results_in_order() {
    // Validating 1 s, in progress 5 s simulated: 60 ms real at 100x; at most
    // 2 batches in flight on the server and in the client's preset.
    let sim = spawn(Sim::builder().time_scale(100.0).batches(BatchConfig {
        max_in_flight: 2,
        ..BatchConfig::default()
    }))
    .await;
    let preset = Preset::seed()
        .time_scaled(100.0)
        .merge_toml("[batches]\ncap = 2")
        .unwrap();
    let client = client(&sim, 100.0).preset(preset).build().unwrap();
    let requests: Vec<_> = (0..250)
        .map(|i| {
            BatchRequest::new(
                format!("req-{i}"),
                json!({"model": SMALL_MODEL, "messages": [{"role": "user", "content": format!("q{i}")}], "max_tokens": 4}),
            )
        })
        .collect();
    let results = client.run_batches(CHAT, &requests).await.unwrap();
    assert_eq!(results.len(), 250);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.custom_id, format!("req-{i}"));
        assert_eq!(r.status_code, 200, "{r:?}");
        assert!(r.body["choices"][0]["message"]["content"].is_string());
    }
    let batches = client.list_batches().await.unwrap();
    assert_eq!(batches.len(), 3, "250 requests at 100 a batch");
    assert!(batches.iter().all(|b| b.status == "COMPLETED"));
    assert_eq!(sim.stats().count("/v1/batches", 429), 0);
    assert_eq!(client.jobs().available("batch"), Some(2));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_gets_the_closest_listed_ids() {
    let sim = spawn(Sim::builder().time_scale(10.0)).await;
    let client = client(&sim, 10.0).build().unwrap();
    let req = ChatRequest::new(
        "meta-llama/Llama-3.3-70B-Instruct",
        vec![Message::user("hi")],
    );
    let err = client.chat(&req).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ModelNotFound, "{err}");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(404));
    assert_eq!(err.suggestions()[0], CHAT_MODEL, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("pick a listed model") && text.contains(CHAT_MODEL),
        "{text}"
    );

    let models = client.models().await.unwrap();
    assert!(
        models
            .iter()
            .any(|m| m.id == EMBED_MODEL && m.kind.as_deref() == Some("embedding"))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_model_falls_back_to_the_next() {
    let sim = spawn(
        Sim::builder()
            .time_scale(10.0)
            .fault(FaultRule::new(FaultKind::Overloaded).model(CHAT_MODEL)),
    )
    .await;
    let retry = retry_policy()
        .max_retries(2)
        .backoff(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    let client = client(&sim, 10.0)
        .retry(retry)
        .fallback(CHAT_MODEL, [SMALL_MODEL])
        .build()
        .unwrap();
    let served = client.chat(&chat(1)).await.unwrap();
    assert_eq!(served.model(), SMALL_MODEL);
    assert_eq!(served.fell_back_from(), [CHAT_MODEL]);
    assert_eq!(served.model, SMALL_MODEL, "the server's own answer agrees");
    // Three attempts on the first model (two retries), then the fallback.
    assert_eq!(sim.stats().count(CHAT, 503), 3);
    assert_eq!(sim.stats().count(CHAT, 200), 1);

    // Without a fallback the 503 comes back, with its retry count and advice.
    let plain = TogetherClient::builder()
        .api_key(&sim.api_keys()[0])
        .base_url(sim.base_url())
        .retry(
            retry_policy()
                .max_retries(2)
                .backoff(Duration::from_millis(1), Duration::from_millis(5))
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let err = plain.chat(&chat(2)).await.unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(503));
    assert_eq!(err.retries(), 2);
    assert_eq!(err.model(), Some(CHAT_MODEL));
    let text = err.to_string();
    assert!(
        text.contains("after 2 retries") && text.contains("fallback model"),
        "{text}"
    );
    sim.shutdown().await;
}
