//! 10,000 mixed requests through the binary against together-sim enforcing
//! strictly (`sliding`): no 429, near the ideal time, one line per custom_id.
//!
//! Prints the measured figures (`cargo test -p together-batch --test e2e -- --nocapture`).

mod common;

use std::time::Instant;

use together_sim::config::{CHAT, EMBEDDINGS, RouteLimits};
use together_sim::limits::LimitKind;
use together_sim::{Mode, Rate, Sim};

use common::*;

/// Limits generous enough for 10,000 requests in about 11 s, the same on
/// both sides: chat 36,000/min and embeddings 18,000/min (600/s and 300/s),
/// enforced per 1 s window. The simulator runs in real time: a request
/// delayed in transit by more than the client's margin of a window (1.5% of
/// 1 s: 15 ms) would meet a full window, and a shorter window (a time scale)
/// would shrink that slack on a machine shared with other work.
const LIMITS: &str = r#"
base = "seed"
safety_margin = 0.015
[routes.chat]
requests = "36000/min"
tokens = "none"
[routes.embeddings]
requests = "18000/min"
"#;
const SCALE: f64 = 1.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mixed_requests_meet_no_429_near_the_ideal_time() {
    let route = |per_min| RouteLimits {
        requests: Some(Rate::per_minute(per_min)),
        ..RouteLimits::default()
    };
    let sim = Sim::builder()
        .time_scale(SCALE)
        .mode(Mode::Sliding)
        .route_limits(CHAT, route(36_000))
        .route_limits(EMBEDDINGS, route(18_000))
        .spawn()
        .await
        .unwrap();
    let dir = scratch("e2e");
    let (input, output, limits, report) = (
        dir.join("in.jsonl"),
        dir.join("out.jsonl"),
        dir.join("limits.toml"),
        dir.join("report.json"),
    );
    std::fs::write(&input, mixed_input(10_000)).unwrap();
    std::fs::write(&limits, LIMITS).unwrap();
    let base = sim.base_url();
    let scale = SCALE.to_string();
    let args = [
        "run",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--base-url",
        &base,
        "--limits",
        limits.to_str().unwrap(),
        "--time-scale",
        &scale,
        "--report",
        report.to_str().unwrap(),
        "--quiet",
    ];
    let start = Instant::now();
    let out = run(Some(&sim.api_keys()[0]), &args).await;
    let elapsed = start.elapsed();
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let stats = sim.stats();
    let wall = report["wall_secs"].as_f64().unwrap();
    let ideal = report["ideal_secs"].as_f64().unwrap();
    println!("{stdout}");
    println!(
        "10,000 requests: wall {wall:.3} s (process {elapsed:.3?}), ideal {ideal:.3} s: \
         {:.1}% of the ideal rate, {:+.1}% over the ideal time; 429s at the server {}; \
         most accepted in one window: chat {} (limit 600), embeddings {} (limit 300)",
        100.0 * ideal / wall,
        100.0 * (wall / ideal - 1.0),
        stats.total_429,
        stats.max_in_window(CHAT, LimitKind::Requests),
        stats.max_in_window(EMBEDDINGS, LimitKind::Requests),
    );
    assert_eq!(stats.total_429, 0, "429s reached the server");
    assert_eq!(report["responses_429"], 0);
    assert_eq!(report["ok"], 10_000);
    let lines = read_output(&output);
    let ids = ids(&lines);
    assert_eq!(lines.len(), 10_000);
    assert_eq!(ids.len(), 10_000, "every custom_id exactly once");
    assert!(ids.values().all(|n| *n == 1));
    assert!(
        lines
            .iter()
            .all(|l| l["status"] == 200 && l.get("response").is_some())
    );
    // A loose bound (a test on a shared machine, not a benchmark).
    assert!(wall < ideal * 1.25, "{wall} s vs ideal {ideal} s");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
