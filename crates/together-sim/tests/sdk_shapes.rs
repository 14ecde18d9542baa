//! Requests shaped as the `openai` Python package sends them get answers
//! with every field that SDK parses; `/v1/models` is a bare array; stats.

mod common;

use bytes::Bytes;
use common::*;
use http::Method;
use serde_json::{Value, json};
use together_sim::{Sim, Stats};

const SDK_HEADERS: &[(&str, &str)] = &[
    ("user-agent", "OpenAI/Python 1.54.4"),
    ("accept", "application/json"),
    ("x-stainless-lang", "python"),
    ("x-stainless-package-version", "1.54.4"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "CPython"),
    ("x-stainless-runtime-version", "3.12.3"),
    ("x-stainless-async", "false"),
    ("x-stainless-retry-count", "0"),
    ("x-stainless-read-timeout", "600"),
];

async fn sdk_post(c: &mut Client, path: &str, body: Value) -> Value {
    let a = c
        .send(
            Method::POST,
            path,
            SDK_HEADERS,
            Bytes::from(body.to_string()),
        )
        .await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("application/json"));
    a.json()
}

fn check_usage(v: &Value) {
    let u = &v["usage"];
    let (p, c, t) = (
        u["prompt_tokens"].as_u64().unwrap(),
        u["completion_tokens"].as_u64().unwrap(),
        u["total_tokens"].as_u64().unwrap(),
    );
    assert_eq!(p + c, t);
}

#[tokio::test]
async fn chat_completion_as_the_openai_sdk_sends_it() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let v = sdk_post(
        &mut c,
        "/v1/chat/completions",
        json!({
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Say hello"}
            ],
            "model": CHAT_MODEL,
            "max_tokens": 64,
            "temperature": 0.7,
            "n": 2
        }),
    )
    .await;
    assert!(v["id"].is_string());
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].is_u64());
    assert_eq!(v["model"], CHAT_MODEL);
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    for (i, ch) in choices.iter().enumerate() {
        assert_eq!(ch["index"], i);
        assert_eq!(ch["message"]["role"], "assistant");
        assert!(
            ch["message"]["content"]
                .as_str()
                .unwrap()
                .contains("Say hello")
        );
        assert_eq!(ch["finish_reason"], "stop");
    }
    check_usage(&v);
    // Deterministic content; short max_tokens cuts with finish_reason length.
    let v = sdk_post(&mut c, "/v1/chat/completions", chat_body(CHAT_MODEL, 2)).await;
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 2);
}

#[tokio::test]
async fn completion_as_the_openai_sdk_sends_it() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let v = sdk_post(
        &mut c,
        "/v1/completions",
        json!({"model": "meta-llama/Llama-2-70b-hf", "prompt": "Once upon", "max_tokens": 32}),
    )
    .await;
    assert_eq!(v["object"], "text_completion");
    assert!(v["id"].is_string() && v["created"].is_u64());
    assert!(v["choices"][0]["text"].is_string());
    assert_eq!(v["choices"][0]["index"], 0);
    assert!(v["choices"][0]["finish_reason"].is_string());
    check_usage(&v);
}

#[tokio::test]
async fn embeddings_one_per_input_in_order_and_stable() {
    let sim = Sim::builder().embedding_dims(8).spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let v = sdk_post(
        &mut c,
        "/v1/embeddings",
        json!({"input": ["alpha", "beta", "alpha"], "model": EMBED_MODEL, "encoding_format": "float"}),
    )
    .await;
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], EMBED_MODEL);
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    for (i, d) in data.iter().enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        assert_eq!(d["embedding"].as_array().unwrap().len(), 8);
    }
    assert_eq!(data[0]["embedding"], data[2]["embedding"]);
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);
    assert!(v["usage"]["prompt_tokens"].is_u64() && v["usage"]["total_tokens"].is_u64());
    // A string input gives the same vector as in the array.
    let one = sdk_post(
        &mut c,
        "/v1/embeddings",
        json!({"input": "alpha", "model": EMBED_MODEL}),
    )
    .await;
    assert_eq!(one["data"][0]["embedding"], data[0]["embedding"]);
    // The SDK's default encoding: base64 of little-endian f32.
    let b = sdk_post(
        &mut c,
        "/v1/embeddings",
        json!({"input": "alpha", "model": EMBED_MODEL, "encoding_format": "base64"}),
    )
    .await;
    let s = b["data"][0]["embedding"].as_str().unwrap();
    assert_eq!(s.len(), 44); // 32 bytes -> 44 base64 chars
}

#[tokio::test]
async fn models_is_a_bare_array() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let v = c.get("/v1/models").await.json();
    let models = v.as_array().expect("a bare array");
    assert!(models.len() >= 5);
    for m in models {
        for f in [
            "id",
            "object",
            "created",
            "type",
            "display_name",
            "organization",
            "context_length",
        ] {
            assert!(m.get(f).is_some(), "model lacks {f}: {m}");
        }
        assert_eq!(m["object"], "model");
    }
}

#[tokio::test]
async fn stats_endpoint_and_arrival_log() {
    let sim = Sim::builder()
        .arrival_log_capacity(3)
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    for i in 0..4 {
        let id = format!("job-{i}");
        let body = Bytes::from(embed_body("x").to_string());
        let a = c
            .send(
                Method::POST,
                "/v1/embeddings",
                &[("x-custom-id", &id)],
                body,
            )
            .await;
        assert_eq!(a.status, 200);
    }
    let v = Client::without_key(sim.addr()).get("/sim/stats").await;
    assert_eq!(v.status, 200);
    let stats: Stats = serde_json::from_slice(&v.body).unwrap();
    assert_eq!(stats.total_requests, 4);
    assert_eq!(stats.arrivals.len(), 3);
    assert_eq!(stats.arrivals_dropped, 1);
    assert_eq!(stats.arrivals[2].custom_id.as_deref(), Some("job-3"));
    assert_eq!(stats.arrivals[2].route, "/v1/embeddings");
    assert_eq!(stats.arrivals[2].model.as_deref(), Some(EMBED_MODEL));
    assert!(stats.arrivals[0].t <= stats.arrivals[2].t);
    assert_eq!(stats.custom_ids.len(), 4);
    assert_eq!(
        stats.counts[0].key, "key-1",
        "stats name keys, never show them"
    );
}

#[tokio::test]
async fn binary_prints_address_and_keys() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = std::env::temp_dir().join(format!("together-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("sim.toml");
    std::fs::write(&cfg, "api_keys = [\"cli-key\"]\n").unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_together-sim"))
        .args([
            "--config",
            cfg.to_str().unwrap(),
            "--port",
            "0",
            "--time-scale",
            "5",
            "--mode",
            "gcra",
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next_line().await.unwrap().unwrap();
    let url = first.rsplit(' ').next().unwrap().to_string();
    let second = lines.next_line().await.unwrap().unwrap();
    assert!(second.contains("cli-key"), "{second}");
    let addr = url.trim_start_matches("http://").parse().unwrap();
    let a = Client::new(addr, "cli-key")
        .post("/v1/embeddings", &embed_body("x"))
        .await;
    assert_eq!(a.status, 200);
    let s: Stats =
        serde_json::from_slice(&Client::without_key(addr).get("/sim/stats").await.body).unwrap();
    assert_eq!(s.time_scale, 5.0);
    child.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let sim = Sim::builder().spawn().await.unwrap();
    let addr = sim.addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(sim);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("still accepting after the handle was dropped");
}
