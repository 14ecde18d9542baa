//! Told nothing, the CLI learns each model's limit from a simulator with
//! Together's dynamic rule (2x the successful rate of the last 10 s, base
//! 2/s, cap 40/s, time-scaled): every request answered once, nothing
//! accepted above the limit in force, few 429s, the learned paces in the
//! summary and kept for the next run. (The figures against the fastest
//! schedule are benchmarks: `together-batch bench-learn`, BENCHMARKS.md.)

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use together_sim::config::{EMBEDDINGS, HeaderConfig, RetryAfter};
use together_sim::dynamic::CapChange;
use together_sim::{DynamicLimits, Sim, SimHandle};

use common::*;

const SCALE: &str = "20";
const MODELS: [&str; 2] = [
    "BAAI/bge-large-en-v1.5",
    "togethercomputer/m2-bert-80M-8k-retrieval",
];

fn rule(headers: bool) -> DynamicLimits {
    DynamicLimits {
        multiple: 2.0,
        window: Duration::from_secs(10),
        base: 2.0,
        cap: 40.0,
        headers,
        routes: vec![EMBEDDINGS.to_owned()],
        ..DynamicLimits::default()
    }
}

async fn sim(rule: DynamicLimits, only_reset: bool) -> SimHandle {
    let mut b = Sim::builder().time_scale(20.0).dynamic(rule);
    if only_reset {
        b = b.headers(HeaderConfig {
            retry_after: RetryAfter::None,
            retry_after_ms: false,
            ..HeaderConfig::default()
        });
    }
    b.spawn().await.unwrap()
}

fn input(n: usize, models: &[&str]) -> String {
    (0..n)
        .map(|i| {
            let body = json!({"model": models[i % models.len()], "input": [format!("text {i}")]});
            batch_line(&format!("e-{i}"), EMBEDDINGS, body) + "\n"
        })
        .collect()
}

/// Runs the CLI, told nothing about limits; asserts every line answered
/// once and ok and nothing accepted above the limit; returns the report
/// and the share of 429s among the requests sent.
async fn run_told_nothing(
    sim: &SimHandle,
    dir: &std::path::Path,
    n: usize,
    models: &[&str],
    extra: &[&str],
) -> (Value, f64, String) {
    let (input_path, output, report) = (
        dir.join("in.jsonl"),
        dir.join("out.jsonl"),
        dir.join("report.json"),
    );
    std::fs::write(&input_path, input(n, models)).unwrap();
    let base = sim.base_url();
    let mut args = vec![
        "run",
        input_path.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--base-url",
        &base,
        "--time-scale",
        SCALE,
        "--safety-margin",
        "0.05",
        "--report",
        report.to_str().unwrap(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = run(Some(&sim.api_keys()[0]), &args).await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lines = read_output(&output);
    let ids = ids(&lines);
    assert_eq!(ids.len(), n, "every custom_id answered");
    assert!(ids.values().all(|&c| c == 1), "none twice");
    assert!(lines.iter().all(|l| l["status"] == 200), "all ok");
    let stats = sim.stats();
    assert_eq!(
        stats.dynamic_over_limit(),
        0,
        "accepted above the limit in force"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let sent: u64 = report["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["attempts"].as_u64().unwrap())
        .sum();
    let share_429 = report["responses_429"].as_u64().unwrap() as f64 / sent as f64;
    (report, share_429, stdout)
}

fn learned<'a>(report: &'a Value, model: &str) -> &'a Value {
    report["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["model"] == model)
        .unwrap_or_else(|| panic!("{model} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn told_nothing_it_follows_each_models_headers_and_keeps_them() {
    let sim = sim(rule(true), false).await;
    let dir = scratch("learn-headers");
    let (report, share_429, stdout) = run_told_nothing(&sim, &dir, 400, &MODELS, &[]).await;
    assert!(share_429 <= 0.02, "{share_429} of requests met 429");
    // Each model learned its own limit from the headers, above the start
    // (1/s, 20/s at this time scale), at most the cap (40/s: 800/s).
    for model in MODELS {
        let m = learned(&report, model);
        assert_eq!(m["source"], "header", "{m}");
        let pace = m["learned_per_sec"].as_f64().unwrap();
        assert!(pace > 20.0 && pace <= 800.0, "{model}: {pace}");
    }
    assert!(stdout.contains("learned/s"), "{stdout}");
    let stats = sim.stats();
    for model in MODELS {
        let d = stats.dynamic("key-1", model).unwrap();
        assert_eq!(d.accepted, 200, "{model}");
    }

    // The paces were kept beside the output and start the next run.
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("out.jsonl.state.json")).unwrap())
            .unwrap();
    assert!(state["paces"].as_array().unwrap().len() >= 2, "{state}");
    let next = dir.join("next.jsonl");
    std::fs::write(&next, input(4, &MODELS)).unwrap();
    let base = sim.base_url();
    let state_path = dir.join("out.jsonl.state.json");
    let out = run(
        Some(&sim.api_keys()[0]),
        &[
            "run",
            next.to_str().unwrap(),
            "-o",
            dir.join("next-out.jsonl").to_str().unwrap(),
            "--base-url",
            &base,
            "--time-scale",
            SCALE,
            "--state",
            state_path.to_str().unwrap(),
        ],
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("learned pace(s) where the last run left them"),
        "{stderr}"
    );
    // A state learned from another server is not used.
    let other = dir.join("other.jsonl");
    std::fs::write(&other, input(1, &MODELS)).unwrap();
    let out = run(
        Some(&sim.api_keys()[0]),
        &[
            "run",
            other.to_str().unwrap(),
            "-o",
            dir.join("other-out.jsonl").to_str().unwrap(),
            "--base-url",
            &base.replace("127.0.0.1", "localhost"),
            "--time-scale",
            SCALE,
            "--state",
            state_path.to_str().unwrap(),
        ],
    )
    .await;
    let (_, stderr) = texts(&out);
    assert!(stderr.contains("ignored"), "{stderr}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_headers_it_probes_with_few_429s() {
    let sim = sim(rule(false), true).await;
    let dir = scratch("learn-probe");
    let (report, share_429, _) =
        run_told_nothing(&sim, &dir, 300, &MODELS[..1], &["--no-state"]).await;
    assert!(share_429 <= 0.05, "{share_429} of requests met 429");
    let m = learned(&report, MODELS[0]);
    assert_eq!(m["source"], "probe", "{m}");
    assert!(
        !dir.join("out.jsonl.state.json").exists(),
        "--no-state keeps none"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_that_drops_mid_run_is_followed() {
    let mut rule = rule(true);
    rule.cap_schedule = vec![CapChange {
        at: Duration::from_secs(20),
        cap: 10.0,
    }];
    let sim = sim(rule, false).await;
    let dir = scratch("learn-drop");
    let (report, share_429, _) =
        run_told_nothing(&sim, &dir, 500, &MODELS[..1], &["--no-state"]).await;
    assert!(share_429 <= 0.03, "{share_429} of requests met 429");
    let m = learned(&report, MODELS[0]);
    let pace = m["learned_per_sec"].as_f64().unwrap();
    assert!(
        pace <= 10.0 * 20.0,
        "the pace followed the cap down: {pace}"
    );
    let d = sim.stats();
    let d = d.dynamic("key-1", MODELS[0]).unwrap();
    assert_eq!(d.cap, 10.0, "the run went past the drop");
    sim.shutdown().await;
}
