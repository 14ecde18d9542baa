//! `together-batch bench-learn` (hidden): how close learned limits come to
//! the fastest schedule Together's dynamic rule allows, beside the static
//! presets, against together-sim's dynamic mode.
//!
//! The rule (per key and model): limit per second = 2 x the successful rate
//! of the last 10 s, between a base of 2/s and a cap of 40/s. Scenarios:
//! `headers` (rate headers on every answer), `no-headers` (a 429 carries
//! only `x-ratelimit-reset`), `two-models` (as many requests again for a
//! second model, at once: each model has its own limit), `cap-drop` (the cap falls from 40/s to 10/s
//! mid-run), `redis` (four CLI processes share the key through Redis).
//! The fastest schedule is computed here from the same rule: each request
//! sent at the first instant it would be accepted, answers instant.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;
use together_sim::config::{EMBEDDINGS, HeaderConfig, RetryAfter};
use together_sim::dynamic::CapChange;
use together_sim::{DynamicLimits, Sim, SimHandle};

use crate::config::{BatchSection, LimitsSource};
use crate::demo::{demo_rule, sim_options};
use crate::run;

/// Options of `bench-learn`.
#[derive(Debug, Args)]
pub(crate) struct LearnArgs {
    /// Embedding requests per scenario.
    #[arg(long, default_value_t = 1500)]
    embeddings: usize,
    /// Time speed-up of the simulator (and of the clients' static quotas).
    #[arg(long, default_value_t = 10.0)]
    time_scale: f64,
    /// The clients' safety margin (tower-quota's default).
    #[arg(long, default_value_t = 0.01)]
    safety_margin: f64,
    /// Scenarios to run: headers, no-headers, two-models, cap-drop, redis.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "headers,no-headers,two-models,cap-drop,redis"
    )]
    scenarios: Vec<String>,
    /// Clients beside the learned default: static presets (`seed`, `tier-1`).
    #[arg(long, value_delimiter = ',', default_value = "seed,tier-1")]
    statics: Vec<String>,
    /// Redis for the `redis` scenario.
    #[arg(long, default_value = "redis://127.0.0.1:6379/")]
    redis: String,
    /// Writes the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// One client on one scenario.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    pub(crate) scenario: String,
    pub(crate) client: String,
    pub(crate) requests: usize,
    /// Answers per second over the run.
    pub(crate) throughput: f64,
    pub(crate) ok: u64,
    pub(crate) wall_secs: f64,
    /// The fastest schedule the rule allows, in real seconds.
    pub(crate) fastest_secs: f64,
    /// `fastest_secs / wall_secs`.
    pub(crate) of_fastest: f64,
    pub(crate) responses_429: u64,
    /// 429s as a share of the requests sent, %.
    pub(crate) pct_429: f64,
    /// Acceptances above the limit in force, as the simulator counted them.
    pub(crate) over_limit: u64,
    /// `cap-drop` only: 429s later than 2 s (simulated) after the drop.
    pub(crate) late_429: Option<u64>,
}

/// The dynamic rule of the scenarios: the demo's, on embeddings.
pub(crate) fn rule(headers: bool) -> DynamicLimits {
    DynamicLimits {
        headers,
        routes: vec![EMBEDDINGS.to_owned()],
        ..demo_rule()
    }
}

/// When the cap drops in `cap-drop` (simulated).
pub(crate) const DROP_AT: Duration = Duration::from_secs(30);

/// The simulated seconds from the first to the last of `n` requests on one
/// key and model when each goes at the first instant `rule` accepts it.
pub(crate) fn fastest_schedule(n: usize, rule: &DynamicLimits) -> f64 {
    let window_ms = rule.window.as_millis() as u64;
    let mut accepted: VecDeque<u64> = VecDeque::new();
    let mut successes: VecDeque<u64> = VecDeque::new();
    let (mut sent, mut t, mut last) = (0, 0u64, 0u64);
    while sent < n {
        while accepted.front().is_some_and(|&a| a + 1000 <= t) {
            accepted.pop_front();
        }
        while successes.front().is_some_and(|&s| s + window_ms <= t) {
            successes.pop_front();
        }
        loop {
            let recent = rule.multiple * successes.len() as f64 / rule.window.as_secs_f64();
            let rate = recent
                .max(rule.base)
                .min(rule.cap_at(Duration::from_millis(t)));
            if sent == n || (accepted.len() + 1) as f64 > rate {
                break;
            }
            accepted.push_back(t);
            successes.push_back(t);
            sent += 1;
            last = t;
        }
        t += 1;
    }
    last as f64 / 1000.0
}

/// `n` embedding requests in the batch format, spread over `models` in turn.
pub(crate) fn embeddings(n: usize, models: &[&str], tag: &str) -> String {
    let mut out = String::new();
    for i in 0..n {
        let line = json!({
            "custom_id": format!("{tag}-{i}"),
            "url": EMBEDDINGS,
            "body": {"model": models[i % models.len()], "input": [format!("text {i}")]},
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// The embedding models of the scenarios (in together-sim's catalog).
pub(crate) const MODELS: [&str; 2] = [
    "BAAI/bge-large-en-v1.5",
    "togethercomputer/m2-bert-80M-8k-retrieval",
];

/// A dynamic simulator; `only_reset` leaves a 429 with `x-ratelimit-reset` alone.
pub(crate) async fn spawn(
    rule: DynamicLimits,
    time_scale: f64,
    only_reset: bool,
    key: &str,
) -> Result<SimHandle, String> {
    let mut b = Sim::builder()
        .time_scale(time_scale)
        .dynamic(rule)
        .api_keys([key.to_owned()]);
    if only_reset {
        b = b.headers(HeaderConfig {
            retry_after: RetryAfter::None,
            retry_after_ms: false,
            ..HeaderConfig::default()
        });
    }
    b.spawn()
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))
}

/// The limits of a client: the learned default, or a static tier.
pub(crate) fn limits(client: &str) -> Result<LimitsSource, String> {
    Ok(match client {
        "learned" => LimitsSource {
            preset: together_tower::Preset::together(),
            batch: BatchSection::default(),
            origin: "learned".into(),
        },
        tier => LimitsSource {
            preset: together_tower::Preset::named(tier).map_err(|e| e.to_string())?,
            batch: BatchSection::default(),
            origin: format!("tier {tier}"),
        },
    })
}

/// A key no other run has used, so nothing learned earlier is shared in.
fn fresh_key(scenario: &str, client: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("bench-{scenario}-{client}-{nanos}")
}

/// Runs `client` on `scenario` in-process; the simulator's stats after.
async fn one(args: &LearnArgs, dir: &Path, scenario: &str, client: &str) -> Result<Figure, String> {
    let (mut dynamic, only_reset, models): (_, _, &[&str]) = match scenario {
        "headers" => (rule(true), false, &MODELS[..1]),
        "no-headers" => (rule(false), true, &MODELS[..1]),
        "two-models" => (rule(true), false, &MODELS[..]),
        "cap-drop" => (rule(true), false, &MODELS[..1]),
        other => return Err(format!("unknown scenario {other:?}")),
    };
    if scenario == "cap-drop" {
        dynamic.cap_schedule = vec![CapChange {
            at: DROP_AT,
            cap: 10.0,
        }];
    }
    let per_model = args.embeddings;
    let n = per_model * models.len();
    let fastest = fastest_schedule(per_model, &dynamic) / args.time_scale;
    let key = fresh_key(scenario, client);
    let sim = spawn(dynamic, args.time_scale, only_reset, &key).await?;
    let run_dir = dir.join(format!("{scenario}-{client}"));
    std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
    let mut opts = sim_options(&sim, &run_dir, args.time_scale, true);
    std::fs::write(&opts.input, embeddings(n, models, scenario)).map_err(|e| e.to_string())?;
    opts.limits = limits(client)?;
    opts.safety_margin = Some(args.safety_margin);
    let report = run::run(opts).await?;
    let stats = sim.stats();
    let sent: u64 = report.routes.iter().map(|r| r.attempts).sum();
    let late_429 = (scenario == "cap-drop").then(|| {
        stats
            .dynamic
            .iter()
            .map(|d| {
                let at = |ms: u64| {
                    d.series
                        .iter()
                        .take_while(|s| s.t_ms <= ms)
                        .last()
                        .map_or(0, |s| s.rejected)
                };
                d.rejected - at(DROP_AT.as_millis() as u64 + 2000)
            })
            .sum()
    });
    sim.shutdown().await;
    Ok(Figure {
        scenario: scenario.into(),
        client: client.into(),
        requests: n,
        throughput: n as f64 / report.wall_secs,
        ok: report.ok,
        wall_secs: report.wall_secs,
        fastest_secs: fastest,
        of_fastest: fastest / report.wall_secs,
        responses_429: report.responses_429,
        pct_429: 100.0 * report.responses_429 as f64 / sent.max(1) as f64,
        over_limit: stats.dynamic_over_limit(),
        late_429,
    })
}

/// Four `together-batch run` processes sharing the key through Redis.
async fn processes(args: &LearnArgs, dir: &Path, client: &str) -> Result<Figure, String> {
    const N: usize = 4;
    let dynamic = rule(true);
    let n = args.embeddings;
    let fastest = fastest_schedule(n, &dynamic) / args.time_scale;
    let key = fresh_key("redis", client);
    let sim = spawn(dynamic, args.time_scale, false, &key).await?;
    let run_dir = dir.join(format!("redis-{client}"));
    std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (base, scale, margin) = (
        sim.base_url(),
        args.time_scale.to_string(),
        args.safety_margin.to_string(),
    );
    let start = Instant::now();
    let mut children = Vec::new();
    for p in 0..N {
        let lines: String = embeddings(n, &MODELS[..1], "redis")
            .lines()
            .skip(p)
            .step_by(N)
            .map(|l| format!("{l}\n"))
            .collect();
        let input = run_dir.join(format!("in-{p}.jsonl"));
        std::fs::write(&input, lines).map_err(|e| e.to_string())?;
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("run")
            .arg(&input)
            .arg("-o")
            .arg(run_dir.join(format!("out-{p}.jsonl")))
            .args(["--base-url", &base, "--time-scale", &scale])
            .args(["--safety-margin", &margin, "--quiet", "--no-state"])
            .args(["--redis", &args.redis, "--processes", "4"])
            .arg("--report")
            .arg(run_dir.join(format!("report-{p}.json")))
            .env(together_tower::API_KEY_ENV, &key)
            .stdout(std::process::Stdio::null());
        if client != "learned" {
            cmd.args(["--tier", client]);
        }
        children.push(cmd.spawn().map_err(|e| e.to_string())?);
    }
    for mut c in children {
        c.wait().await.map_err(|e| e.to_string())?;
    }
    let wall = start.elapsed().as_secs_f64();
    let (mut ok, mut r429, mut sent) = (0, 0, 0);
    for p in 0..N {
        let text = std::fs::read_to_string(run_dir.join(format!("report-{p}.json")))
            .map_err(|e| format!("process {p} left no report: {e}"))?;
        let r: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        ok += r["ok"].as_u64().unwrap_or(0);
        r429 += r["responses_429"].as_u64().unwrap_or(0);
        sent += r["routes"]
            .as_array()
            .map_or(0, |a| a.iter().filter_map(|x| x["attempts"].as_u64()).sum());
    }
    let over_limit = sim.stats().dynamic_over_limit();
    sim.shutdown().await;
    Ok(Figure {
        scenario: "redis".into(),
        client: client.into(),
        requests: n,
        throughput: n as f64 / wall,
        ok,
        wall_secs: wall,
        fastest_secs: fastest,
        of_fastest: fastest / wall,
        responses_429: r429,
        pct_429: 100.0 * r429 as f64 / sent.max(1) as f64,
        over_limit,
        late_429: None,
    })
}

pub(crate) async fn bench_learn(args: LearnArgs) -> ExitCode {
    match bench_inner(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("together-batch bench-learn: {e}");
            ExitCode::from(2)
        }
    }
}

async fn bench_inner(args: LearnArgs) -> Result<(), String> {
    let dir =
        std::env::temp_dir().join(format!("together-batch-bench-learn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let clients: Vec<String> = std::iter::once("learned".to_owned())
        .chain(args.statics.iter().filter(|s| !s.is_empty()).cloned())
        .collect();
    let mut figures = Vec::new();
    println!(
        "{:<11} {:<8} {:>6} {:>6} {:>8} {:>8} {:>9} {:>10} {:>6} {:>7} {:>5} {:>6}",
        "scenario",
        "client",
        "reqs",
        "ok",
        "wall s",
        "reqs/s",
        "fastest",
        "of fastest",
        "429s",
        "429 %",
        "over",
        "late"
    );
    for scenario in &args.scenarios {
        for client in &clients {
            let f = if scenario == "redis" {
                processes(&args, &dir, client).await?
            } else {
                one(&args, &dir, scenario, client).await?
            };
            println!(
                "{:<11} {:<8} {:>6} {:>6} {:>8.2} {:>8.1} {:>9.2} {:>10.3} {:>6} {:>7.2} {:>5} {:>6}",
                f.scenario,
                f.client,
                f.requests,
                f.ok,
                f.wall_secs,
                f.throughput,
                f.fastest_secs,
                f.of_fastest,
                f.responses_429,
                f.pct_429,
                f.over_limit,
                f.late_429.map_or("-".to_owned(), |v| v.to_string()),
            );
            figures.push(f);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_schedule_follows_the_rule() {
        // Flat at the cap: base = cap = 10/s, 10 at once each second.
        let flat = DynamicLimits {
            base: 10.0,
            cap: 10.0,
            ..rule(true)
        };
        assert_eq!(fastest_schedule(10, &flat), 0.0);
        assert_eq!(fastest_schedule(11, &flat), 1.0);
        assert_eq!(fastest_schedule(30, &flat), 2.0);
        // Ramping: 2/s at first, doubling about every 4.4 s, 40/s at most.
        let ramp = fastest_schedule(1500, &rule(true));
        assert!((45.0..55.0).contains(&ramp), "{ramp}");
        // A cap that drops can only make it longer.
        let mut drop = rule(true);
        drop.cap_schedule = vec![CapChange {
            at: DROP_AT,
            cap: 10.0,
        }];
        assert!(fastest_schedule(1500, &drop) > ramp + 30.0);
    }
}
