//! Helpers for the CLI's tests: a scratch directory, the binary run against
//! an in-process together-sim, output parsing, and finding Redis.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_together-batch");

/// together-sim with the seed's limits in strict windows, `scale` times
/// faster, taking the key `test-key`.
pub async fn seed_sim(scale: f64) -> together_sim::SimHandle {
    together_sim::Sim::builder()
        .time_scale(scale)
        .mode(together_sim::Mode::Sliding)
        .api_key("test-key")
        .spawn()
        .await
        .unwrap()
}

/// A fresh scratch directory for `test`.
pub fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("together-batch-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `together-batch ARGS` with the key in `TOGETHER_API_KEY` (when given),
/// no terminal, stdout and stderr captured.
pub fn command(key: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("TOGETHER_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(k) = key {
        c.env("TOGETHER_API_KEY", k);
    }
    c
}

/// Runs `together-batch ARGS` to the end.
pub async fn run(key: Option<&str>, args: &[&str]) -> Output {
    command(key, args).output().await.unwrap()
}

/// Starts `together-batch ARGS` without waiting.
pub fn start(key: Option<&str>, args: &[&str]) -> Child {
    command(key, args).spawn().unwrap()
}

/// stdout and stderr as text.
pub fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The output file's lines, parsed (every line must be whole JSON).
pub fn read_output(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "the output ends mid-line"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// How many lines each custom_id has in the output.
pub fn ids(lines: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l["custom_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    m
}

/// A batch-format line.
pub fn batch_line(id: &str, url: &str, body: Value) -> String {
    serde_json::json!({"custom_id": id, "url": url, "method": "POST", "body": body}).to_string()
}

/// A chat request body.
pub fn chat_body(i: usize) -> Value {
    serde_json::json!({
        "model": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
        "messages": [{"role": "user", "content": format!("question {i}")}],
        "max_tokens": 4,
    })
}

/// An embeddings request body.
pub fn embed_body(i: usize) -> Value {
    serde_json::json!({"model": "BAAI/bge-large-en-v1.5", "input": [format!("doc {i}")]})
}

/// `n` lines alternating two chats and one embedding.
pub fn mixed_input(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let line = if i % 3 == 2 {
            batch_line(&format!("e{i}"), "/v1/embeddings", embed_body(i))
        } else {
            batch_line(&format!("c{i}"), "/v1/chat/completions", chat_body(i))
        };
        s.push_str(&line);
        s.push('\n');
    }
    s
}

const HOW: &str = "install redis-server (e.g. `apt-get install redis-server`) or set REDIS_URL=redis://HOST:PORT/";

/// A Redis URL (REDIS_URL, or a server on 127.0.0.1:6379), or `None` after
/// saying loudly that `test` did not run; fails instead under
/// `TOGETHER_RATE_LIMITS_REQUIRE_REDIS=1` (the policy of tower-quota-redis's tests).
pub fn redis_url(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Some(url);
    }
    if TcpStream::connect("127.0.0.1:6379").is_ok() {
        return Some("redis://127.0.0.1:6379/".into());
    }
    if std::env::var("TOGETHER_RATE_LIMITS_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
        panic!("{test} needs Redis and TOGETHER_RATE_LIMITS_REQUIRE_REDIS=1: {HOW}");
    }
    eprintln!(
        "\n*** {test} DID NOT RUN: no Redis found (REDIS_URL unset, nothing on 127.0.0.1:6379). \
         To run it: {HOW}. ***\n"
    );
    None
}

/// `run INPUT -o OUTPUT` against `base` with the seed's static quotas (the
/// simulator's default limits) scaled by `scale` (as the simulator's) and a
/// safety `margin`, plus `extra` flags.
pub fn run_args<'a>(
    input: &'a Path,
    output: &'a Path,
    base: &'a str,
    scale: &'a str,
    margin: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--base-url",
        base,
        "--time-scale",
        scale,
        "--safety-margin",
        margin,
        "--tier",
        "seed",
    ];
    args.extend_from_slice(extra);
    args
}
