//! Four together-batch processes sharing one key: with `--redis` they stay
//! inside the quota together (no 429, at least 95% of it used); without it
//! each believes it owns the whole quota and the server answers 429s.
//!
//! Needs Redis: REDIS_URL or a server on 127.0.0.1:6379 (with neither the
//! test says loudly that it did not run; under
//! TOGETHER_RATE_LIMITS_REQUIRE_REDIS=1 it fails instead).

mod common;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use together_sim::config::{CHAT, RouteLimits};
use together_sim::{Mode, Rate, Sim, SimHandle, Stats};

use common::*;

const PROCESSES: usize = 4;
const PER_PROCESS: usize = 100;
/// 6,000/min: 100 per 1 s window, in real time (no time scaling here, so
/// the windows are long next to a Redis round trip).
const RATE: f64 = 100.0;
const LIMITS: &str = r#"
base = "seed"
[routes.chat]
requests = "6000/min"
tokens = "none"

[batch]
processes = 4
"#;

async fn sim(key: &str) -> SimHandle {
    Sim::builder()
        .mode(Mode::Sliding)
        .api_key(key)
        .arrival_log_capacity(10_000)
        .route_limits(
            CHAT,
            RouteLimits {
                requests: Some(Rate::per_minute(6000)),
                ..RouteLimits::default()
            },
        )
        .spawn()
        .await
        .unwrap()
}

/// Runs the processes at once; returns the wall time.
async fn run_processes(sim: &SimHandle, key: &str, redis: Option<&str>, tag: &str) -> f64 {
    let dir = scratch(&format!("redis-{tag}"));
    let limits = dir.join("limits.toml");
    std::fs::write(&limits, LIMITS).unwrap();
    let base = sim.base_url();
    let start = Instant::now();
    let mut children = Vec::new();
    for p in 0..PROCESSES {
        let input = dir.join(format!("in-{p}.jsonl"));
        let output = dir.join(format!("out-{p}.jsonl"));
        let text: String = (0..PER_PROCESS)
            .map(|i| batch_line(&format!("p{p}-{i}"), CHAT, chat_body(i)) + "\n")
            .collect();
        std::fs::write(&input, text).unwrap();
        let mut args = vec![
            "run".to_owned(),
            input.display().to_string(),
            "-o".to_owned(),
            output.display().to_string(),
            "--base-url".to_owned(),
            base.clone(),
            "--limits".to_owned(),
            limits.display().to_string(),
            "--quiet".to_owned(),
        ];
        if let Some(url) = redis {
            args.extend(["--redis".to_owned(), url.to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        children.push((start_child(key, &args), output));
    }
    for (child, output) in children {
        let out = child.wait_with_output().await.unwrap();
        let (stdout, stderr) = texts(&out);
        if redis.is_some() {
            assert!(out.status.success(), "{stdout}\n{stderr}");
            assert!(stdout.contains("shared through Redis"), "{stdout}");
            let lines = read_output(&output);
            assert_eq!(ids(&lines).len(), PER_PROCESS);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    wall
}

fn start_child(key: &str, args: &[&str]) -> tokio::process::Child {
    start(Some(key), args)
}

/// Accepted chat requests per second between the first and the last
/// accepted arrival, as a share of the quota.
fn quota_used(stats: &Stats) -> (u64, f64) {
    let ok: Vec<f64> = stats
        .arrivals
        .iter()
        .filter(|a| a.route == CHAT && a.status == 200)
        .map(|a| a.t)
        .collect();
    let span = ok.last().unwrap() - ok.first().unwrap();
    (ok.len() as u64, (ok.len() - 1) as f64 / span / RATE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_share_one_key_through_redis_without_429s() {
    let Some(url) = redis_url("four_processes_share_one_key_through_redis_without_429s") else {
        return;
    };
    // A key of its own, so no other run's Redis state is shared.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let key = format!("batch-redis-test-{}-{nanos}", std::process::id());

    let shared = sim(&key).await;
    let wall = run_processes(&shared, &key, Some(&url), "shared").await;
    let stats = shared.stats();
    let (accepted, used) = quota_used(&stats);
    let total = (PROCESSES * PER_PROCESS) as f64;
    println!(
        "with --redis: {accepted} accepted, 429s {}, {:.1}% of the quota between the first and \
         the last request, {:.1}% over the processes' whole wall time ({wall:.2} s, ideal {:.2} s); \
         most in one window {} (limit 100)",
        stats.total_429,
        100.0 * used,
        100.0 * (total - 1.0) / RATE / wall,
        (total - 1.0) / RATE,
        stats.max_in_window(CHAT, together_sim::LimitKind::Requests),
    );
    assert_eq!(
        stats.total_429, 0,
        "429s with the quota shared through Redis"
    );
    assert_eq!(accepted, total as u64);
    assert!(used >= 0.95, "only {:.1}% of the quota used", 100.0 * used);
    shared.shutdown().await;

    let alone = sim(&key).await;
    let wall = run_processes(&alone, &key, None, "alone").await;
    let stats = alone.stats();
    println!(
        "without --redis: 429s {} in {wall:.2} s (each process paces itself at the whole quota)",
        stats.total_429
    );
    assert!(stats.total_429 > 0, "four unshared processes met no 429");
    alone.shutdown().await;
}
