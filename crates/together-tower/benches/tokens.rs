//! Token quotas charged by estimate or reconciled by usage, and streams
//! through the whole stack, against together-sim (a harness, not criterion).
//!
//! `cargo bench -p together-tower --bench tokens`
//!
//! 1. Chats asking `max_tokens: 1024` whose answers use 50 to 70 tokens,
//!    against Tier-1-like limits (10 requests/s and 3,000 tokens/s in a
//!    strict 1 s window), the simulator charging either the real usage when
//!    an answer completes or the estimate at admission; the client is
//!    together-tower's default preset (learned per model) charging the
//!    estimate only, or reconciling it with the usage (the preset's
//!    default). Figures: the rate the simulator accepted (simulated
//!    requests per second), as a share of the binding limit (the lower of
//!    10/s and 3,000 tokens/s over what the simulator charges a request),
//!    and the 429s.
//! 2. 200 streamed chats at once through the whole stack: every one
//!    complete with its usage; the time from leaving the stack's layers to
//!    the first chunk, beside the same for a bare client on an idle
//!    simulator (the simulator's own first-chunk time).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::Request;
use together_sim::config::{AnswerConfig, CHAT, TokenCharge, TokenRange};
use together_sim::{Mode, Sim, SimHandle};
use together_tower::types::{ChatRequest, Message};
use together_tower::{Preset, TogetherClient, default_http_client};
use tower::{ServiceExt, service_fn};
use tower_quota::Charging;

const MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";
const SCALE: f64 = 10.0;
const REQUESTS: usize = 600;

async fn sim(charge: TokenCharge, mode: Mode, chunk_interval: Duration) -> SimHandle {
    Sim::builder()
        .time_scale(SCALE)
        .mode(mode)
        .no_limits()
        .requests(CHAT, "10/s".parse().unwrap())
        .tokens(CHAT, "3000/s".parse().unwrap())
        .answers(AnswerConfig {
            completion_tokens: Some(TokenRange { min: 50, max: 70 }),
            token_charge: charge,
            chunk_interval,
            seed: 7,
            ..AnswerConfig::default()
        })
        .spawn()
        .await
        .expect("the simulator starts")
}

fn chat(i: usize) -> ChatRequest {
    ChatRequest::new(MODEL, vec![Message::user(format!("question {i:05}"))]).max_tokens(1024)
}

fn client(sim: &SimHandle, charging: Charging) -> TogetherClient {
    TogetherClient::builder()
        .api_key(&sim.api_keys()[0])
        .base_url(sim.base_url())
        .preset(Preset::together().charging(charging).time_scaled(SCALE))
        .build()
        .expect("the client builds")
}

/// Sends every chat at once (the limiter queues them); the simulator's
/// figures after.
async fn workload(charge: TokenCharge, mode: Mode, charging: Charging) {
    let sim = sim(charge, mode, Duration::ZERO).await;
    let client = client(&sim, charging);
    let start = Instant::now();
    let tasks: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.chat(&chat(i)).await.map(|r| r.into_inner()) })
        })
        .collect();
    let (mut used, mut failed) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(answer) => used += answer.usage.map_or(0, |u| u.total_tokens),
            Err(_) => failed += 1,
        }
    }
    let wall = start.elapsed();
    let stats = sim.stats();
    let mut ok: Vec<f64> = stats
        .arrivals
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.t)
        .collect();
    ok.sort_by(f64::total_cmp);
    let rate = |from: usize| (ok.len() - 1 - from) as f64 / (ok[ok.len() - 1] - ok[from]);
    // What the server charges a request: its real usage, or the estimate
    // (input + max_tokens, as the simulator counts it).
    // A strict window holds whole requests: floor(3000 / 1027) = 2 a second.
    let per_request = match charge {
        TokenCharge::Usage => used as f64 / (REQUESTS - failed) as f64,
        _ => 3.0 + 1024.0,
    };
    let fits = match mode {
        Mode::Sliding => (3000.0 / per_request).floor(),
        _ => 3000.0 / per_request,
    };
    let binding = fits.min(10.0);
    let pct_429 = 100.0 * stats.total_429 as f64 / stats.total_requests as f64;
    println!(
        "| {} ({}) | {} | {REQUESTS} | {failed} | {:.2} | {binding:.2} | **{:.3}** | {:.3} | {} | {pct_429:.2} | {:.2} |",
        match charge {
            TokenCharge::Usage => "usage",
            _ => "estimate",
        },
        match mode {
            Mode::Sliding => "sliding",
            _ => "gcra",
        },
        match charging {
            Charging::Reconciled => "reconciled",
            _ => "estimate",
        },
        rate(0),
        rate(0) / binding,
        rate(ok.len() / 2) / binding,
        stats.total_429,
        wall.as_secs_f64(),
    );
}

/// Percentile `p` of `xs` (sorted here), in milliseconds.
fn ms(xs: &mut [Duration], p: f64) -> f64 {
    xs.sort();
    let i = ((xs.len() - 1) as f64 * p).round() as usize;
    xs[i].as_secs_f64() * 1000.0
}

/// 200 streamed chats at once through the stack, timed from leaving the
/// layers (a wrapper around the HTTP client notes each) to the first chunk.
async fn streams() {
    let sim = sim(TokenCharge::Usage, Mode::Sliding, Duration::from_millis(20)).await;
    // The bare simulator's first-chunk time: 50 streams one after another.
    let http = default_http_client(Duration::from_secs(60));
    let mut bare = Vec::new();
    for i in 0..50 {
        tokio::time::sleep(Duration::from_millis(110)).await;
        let mut body = serde_json::to_value(chat(i)).unwrap();
        body["stream"] = true.into();
        let req = Request::post(format!("{}/v1/chat/completions", sim.base_url()))
            .header("authorization", format!("Bearer {}", sim.api_keys()[0]))
            .header("content-type", "application/json")
            .body(body.to_string())
            .unwrap();
        let start = Instant::now();
        let res = http.clone().oneshot(req).await.unwrap();
        let mut frames = http_body_util::BodyDataStream::new(res.into_body());
        frames.next().await.unwrap().unwrap();
        bare.push(start.elapsed());
        while frames.next().await.is_some() {}
    }
    let left: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let noted = left.clone();
    let inner = default_http_client(Duration::from_secs(60));
    let wrapper = service_fn(move |req: Request<String>| {
        let id = req
            .body()
            .split("question ")
            .nth(1)
            .map(|s| s[..5].to_owned())
            .unwrap_or_default();
        noted.lock().unwrap().insert(id, Instant::now());
        inner.clone().oneshot(req)
    });
    let client = TogetherClient::builder()
        .api_key(&sim.api_keys()[0])
        .base_url(sim.base_url())
        .preset(Preset::together().time_scaled(SCALE))
        .build_with(wrapper)
        .unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let mut stream = client.chat_stream(&chat(i)).await?;
                let first = stream.next().await.expect("a first chunk")?;
                let at = Instant::now();
                drop(first);
                while let Some(chunk) = stream.next().await {
                    chunk?;
                }
                let usage = stream.usage().map(|u| u.total_tokens);
                Ok::<_, together_tower::Error>((format!("{i:05}"), at, usage))
            })
        })
        .collect();
    let mut overhead = Vec::new();
    let mut waits = Vec::new();
    let mut with_usage = 0;
    for t in tasks {
        let (id, first, usage) = t.await.unwrap().expect("every stream completes");
        let left = left.lock().unwrap()[&id];
        overhead.push(first - left);
        waits.push(left - start);
        with_usage += usize::from(usage.is_some());
    }
    let stats = sim.stats();
    println!(
        "200 streams: {with_usage} complete with usage, {} 429s, {:.2} s in all; rate-limit wait p50 {:.0} ms, max {:.0} ms",
        stats.total_429,
        start.elapsed().as_secs_f64(),
        ms(&mut waits, 0.5),
        ms(&mut waits, 1.0),
    );
    println!(
        "first chunk after leaving the layers: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; bare client on an idle simulator: p50 {:.2} ms, p99 {:.2} ms",
        ms(&mut overhead, 0.5),
        ms(&mut overhead, 0.99),
        ms(&mut overhead, 1.0),
        ms(&mut bare, 0.5),
        ms(&mut bare, 0.99),
    );
}

#[tokio::main]
async fn main() {
    println!(
        "| simulator charges (window) | client charges | requests | failed | accepted/s (simulated) | binding /s | of binding | second half | 429s | 429 % | wall s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (charge, mode, charging) in [
        (TokenCharge::Usage, Mode::Sliding, Charging::Estimate),
        (TokenCharge::Usage, Mode::Sliding, Charging::Reconciled),
        (TokenCharge::Estimate, Mode::Gcra, Charging::Estimate),
        (TokenCharge::Estimate, Mode::Gcra, Charging::Reconciled),
        (TokenCharge::Estimate, Mode::Sliding, Charging::Estimate),
        (TokenCharge::Estimate, Mode::Sliding, Charging::Reconciled),
    ] {
        workload(charge, mode, charging).await;
    }
    streams().await;
}
