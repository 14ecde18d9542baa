//! Lines with `"stream": true` through the binary against together-sim:
//! sent streamed, written as the assembled answer with its usage (the same
//! shape as the others), a cut stream recorded as failed; the summary
//! reports tokens estimated against tokens used.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use together_sim::config::{AnswerConfig, CHAT, FaultKind, FaultRule, TokenRange};
use together_sim::{Rate, Sim, SimBuilder};

use common::*;

const MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";

fn input(n: usize) -> String {
    (0..n)
        .map(|i| {
            let mut body = json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": format!("question {i}")}],
                "max_tokens": 1024,
            });
            if i % 2 == 0 {
                body["stream"] = json!(true);
            }
            batch_line(&format!("q{i}"), "/v1/chat/completions", body) + "\n"
        })
        .collect()
}

fn sim(faults: bool) -> SimBuilder {
    // Requests only: the seed's token quota (a burst of one second's worth)
    // meets a strict window's token limit with 429s, which are not the point here.
    let mut b = Sim::builder()
        .time_scale(10.0)
        .no_limits()
        .requests(CHAT, Rate::per_minute(600))
        .answers(AnswerConfig {
            completion_tokens: Some(TokenRange { min: 60, max: 60 }),
            chunk_interval: Duration::from_millis(10),
            ..AnswerConfig::default()
        });
    if faults {
        b = b.fault(FaultRule::new(FaultKind::Cut));
    }
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_lines_are_written_whole_with_their_usage() {
    let sim = sim(false).spawn().await.unwrap();
    let dir = scratch("stream");
    let (inp, out, report) = (
        dir.join("in.jsonl"),
        dir.join("out.jsonl"),
        dir.join("report.json"),
    );
    std::fs::write(&inp, input(20)).unwrap();
    let base = sim.base_url();
    let mut args = run_args(&inp, &out, &base, "10", "0.03", &[]);
    args.extend(["--report", report.to_str().unwrap()]);
    let done = run(Some(&sim.api_keys()[0]), &args).await;
    let (stdout, stderr) = texts(&done);
    assert!(done.status.success(), "{stdout}\n{stderr}");
    let lines = read_output(&out);
    assert_eq!(lines.len(), 20);
    for line in &lines {
        let r = &line["response"];
        assert_eq!(r["object"], "chat.completion", "{line}");
        assert_eq!(r["choices"][0]["message"]["content"], "sim ".repeat(60));
        assert_eq!(r["choices"][0]["finish_reason"], "stop");
        assert_eq!(r["usage"]["completion_tokens"], 60, "{line}");
    }
    // The summary: tokens estimated (max_tokens 1024 and the input) against used.
    let used: u64 = lines
        .iter()
        .map(|l| l["response"]["usage"]["total_tokens"].as_u64().unwrap())
        .sum();
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let route = &report["routes"][0];
    assert_eq!(route["tokens_used"], used, "{report}");
    let estimated = route["tokens_estimated"].as_u64().unwrap();
    assert!(estimated >= 20 * 1024, "{report}");
    assert!(
        stdout.contains(&format!("tokens estimated {estimated}, used {used}")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_stream_is_recorded_as_failed_with_what_came() {
    let sim = sim(true).spawn().await.unwrap();
    let dir = scratch("stream-cut");
    let (inp, out) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&inp, input(4)).unwrap();
    let base = sim.base_url();
    let args = run_args(&inp, &out, &base, "10", "0.03", &["--keep-going"]);
    let done = run(Some(&sim.api_keys()[0]), &args).await;
    let (stdout, stderr) = texts(&done);
    assert!(!done.status.success(), "{stdout}\n{stderr}");
    let lines = read_output(&out);
    assert_eq!(lines.len(), 4);
    for line in &lines {
        let streamed = line["custom_id"] == "q0" || line["custom_id"] == "q2";
        if streamed {
            assert_eq!(line["error"]["type"], "interrupted", "{line}");
            assert!(
                line["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("cut after"),
                "{line}"
            );
        } else {
            assert!(line.get("error").is_none(), "{line}");
        }
    }
    // Each was sent once: a cut stream is not retried.
    let chats: u64 = sim
        .stats()
        .counts
        .iter()
        .filter(|c| c.route == "/v1/chat/completions")
        .map(|c| c.count)
        .sum();
    assert_eq!(chats, 4, "{:?}", sim.stats().arrivals);
}
