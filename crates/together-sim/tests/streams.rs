//! Streamed answers (server-sent events in Together's and OpenAI's shapes,
//! chunk timing, a cut fault) and token limits charged by real usage.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use together_sim::config::{
    AnswerConfig, FaultKind, FaultRule, TokenCharge, TokenRange, UsageStyle,
};
use together_sim::{Sim, SimHandle};

fn stream_body(include_usage: bool) -> Value {
    json!({
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1024,
        "stream": true,
        "stream_options": {"include_usage": include_usage},
    })
}

fn answers(style: UsageStyle, tokens: u64) -> AnswerConfig {
    AnswerConfig {
        completion_tokens: Some(TokenRange {
            min: tokens,
            max: tokens,
        }),
        usage_style: style,
        ..AnswerConfig::default()
    }
}

/// The JSON events of a stream, and whether it ended with `[DONE]`.
fn events(body: &[u8]) -> (Vec<Value>, bool) {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    let mut done = false;
    for event in text.split("\n\n").filter(|e| !e.is_empty()) {
        let data = event.strip_prefix("data: ").expect("a data line");
        if data == "[DONE]" {
            done = true;
        } else {
            assert!(!done, "an event after [DONE]");
            out.push(serde_json::from_str(data).unwrap());
        }
    }
    (out, done)
}

fn content(events: &[Value]) -> String {
    events
        .iter()
        .filter_map(|e| e.pointer("/choices/0/delta/content")?.as_str())
        .collect()
}

#[tokio::test]
async fn a_stream_carries_usage_as_together_and_as_openai_send_it() {
    let sim = Sim::builder()
        .answers(answers(UsageStyle::Together, 60))
        .spawn()
        .await
        .unwrap();
    let mut client = Client::new(sim.addr(), &sim.api_keys()[0]);
    let answer = client
        .post("/v1/chat/completions", &stream_body(true))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("text/event-stream"));
    let (evs, done) = events(&answer.body);
    assert!(done);
    assert_eq!(evs[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(content(&evs), "sim ".repeat(60));
    let last = evs.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"]["completion_tokens"], 60);
    assert_eq!(last["usage"]["cached_tokens"], 0);
    assert!(evs[..evs.len() - 1].iter().all(|e| e["usage"].is_null()));

    let sim = Sim::builder()
        .answers(answers(UsageStyle::Openai, 60))
        .spawn()
        .await
        .unwrap();
    let mut client = Client::new(sim.addr(), &sim.api_keys()[0]);
    let (evs, _) = events(
        &client
            .post("/v1/chat/completions", &stream_body(true))
            .await
            .body,
    );
    let last = evs.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["total_tokens"], 61);
    assert_eq!(evs[evs.len() - 2]["choices"][0]["finish_reason"], "stop");
    // Not asked for: no usage at all.
    let (evs, _) = events(
        &client
            .post("/v1/chat/completions", &stream_body(false))
            .await
            .body,
    );
    assert!(
        evs.iter()
            .all(|e| e.get("usage").is_none_or(Value::is_null))
    );
    // Completions stream text chunks.
    let completion = json!({"model": CHAT_MODEL, "prompt": "hi", "max_tokens": 8, "stream": true});
    let (evs, done) = events(&client.post("/v1/completions", &completion).await.body);
    assert!(done);
    let text: String = evs
        .iter()
        .filter_map(|e| e.pointer("/choices/0/text")?.as_str())
        .collect();
    assert_eq!(text, "sim ".repeat(8));
    assert_eq!(evs.last().unwrap()["choices"][0]["finish_reason"], "length");
}

/// Sends a streamed chat on a fresh connection; returns when each frame came and its bytes.
async fn frames(sim: &SimHandle) -> (Vec<Duration>, Result<Vec<u8>, String>) {
    let stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::post("/v1/chat/completions")
        .header("host", "sim")
        .header("authorization", format!("Bearer {}", sim.api_keys()[0]))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(stream_body(true).to_string())))
        .unwrap();
    let start = Instant::now();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    let mut at = Vec::new();
    let mut bytes = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                at.push(start.elapsed());
                bytes.extend_from_slice(f.data_ref().unwrap());
            }
            Err(e) => return (at, Err(format!("{e} after {} bytes", bytes.len()))),
        }
    }
    (at, Ok(bytes))
}

#[tokio::test]
async fn chunks_come_as_they_are_made_and_a_cut_stream_fails() {
    // 40 tokens, 4 a chunk: 13 events 200 ms (simulated) apart, 20 ms real.
    let sim = Sim::builder()
        .time_scale(10.0)
        .answers(AnswerConfig {
            chunk_interval: Duration::from_millis(200),
            ..answers(UsageStyle::Together, 40)
        })
        .spawn()
        .await
        .unwrap();
    let (at, body) = frames(&sim).await;
    let (evs, done) = events(&body.unwrap());
    assert!(done && evs.len() == 12, "{} events", evs.len());
    let last = *at.last().unwrap();
    assert!(
        last >= Duration::from_millis(200),
        "the stream took {last:?}"
    );
    assert!(
        at[0] < last / 4,
        "first chunk at {:?}, last at {last:?}",
        at[0]
    );

    let sim = Sim::builder()
        .fault(FaultRule::new(FaultKind::Cut))
        .answers(answers(UsageStyle::Together, 40))
        .spawn()
        .await
        .unwrap();
    let (at, body) = frames(&sim).await;
    let error = body.unwrap_err();
    assert!(!at.is_empty(), "chunks came before the cut: {error}");
    // An answer that does not stream is spared.
    let mut client = Client::new(sim.addr(), &sim.api_keys()[0]);
    assert_eq!(
        client
            .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 1024))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_usage_charging_limit_charges_what_answers_used() {
    let spawn = |charge| {
        Sim::builder()
            .no_limits()
            .tokens("/v1/chat/completions", "3000/s".parse().unwrap())
            .answers(AnswerConfig {
                token_charge: charge,
                ..answers(UsageStyle::Together, 60)
            })
            .spawn()
    };
    // The estimate (1 input + 1024) lets two through a 3,000-token second.
    let sim = spawn(TokenCharge::Estimate).await.unwrap();
    let mut client = Client::new(sim.addr(), &sim.api_keys()[0]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            client
                .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 1024))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    // Charging usage (61 each), all pass and the remaining count says so.
    let sim = spawn(TokenCharge::Usage).await.unwrap();
    let mut client = Client::new(sim.addr(), &sim.api_keys()[0]);
    for i in 1..=5 {
        let answer = client
            .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 1024))
            .await;
        assert_eq!(answer.status, 200);
        let remaining: u64 = answer
            .header("x-tokenlimit-remaining")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (3000 - 61 * i..=3000 - 61 * i + 61).contains(&remaining),
            "{remaining}"
        );
    }
    // A stream is charged at its end.
    let answer = client
        .post("/v1/chat/completions", &stream_body(true))
        .await;
    assert_eq!(answer.status, 200);
    // (charged by the server's sending task just after the last event)
    let mut charged = 0;
    for _ in 0..100 {
        charged = sim.stats().limiters.iter().map(|l| l.accepted_cost).sum();
        if charged == 6 * 61 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(charged, 6 * 61);
}
