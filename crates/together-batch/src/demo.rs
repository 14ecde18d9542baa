//! `together-batch demo`: together-sim in this process with Together's
//! dynamic limits (per model, 2x the successful rate of the last 10 s,
//! between 2/s and 40/s, time compressed), a realistic mixed workload run
//! through the same path as `run` told nothing about limits, and the
//! summary with the rates it learned.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use together_sim::config::{CHAT, EMBEDDINGS};
use together_sim::{DynamicLimits, Mode, Sim, SimHandle};

use crate::config::{BatchSection, LimitsSource};
use crate::run::{self, Report, RunOptions};

/// The chat models of the workload (in together-sim's catalog).
const CHAT_MODELS: [&str; 2] = [
    "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
];
const EMBED_MODEL: &str = "BAAI/bge-large-en-v1.5";

/// Options of `demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Embedding requests, each of 1 to 9 texts.
    #[arg(long, default_value_t = 600, hide = true)]
    embeddings: usize,
    /// Chat completions.
    #[arg(long, default_value_t = 300, hide = true)]
    chats: usize,
    /// How much faster than real time the simulator (and the quotas) run.
    #[arg(long, default_value_t = 10.0, hide = true)]
    time_scale: f64,
    /// Keeps the generated input and the output in this directory (default:
    /// a temporary one, removed afterwards).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// No progress.
    #[arg(short, long)]
    quiet: bool,
    /// Writes the summary to this file: a page with a chart per route for
    /// a name ending `.html`, JSON for any other (may be given more than once).
    #[arg(long, value_name = "FILE")]
    report: Vec<PathBuf>,
}

/// A mixed workload in the batch format: `embeddings` requests of 1 to 9
/// texts and `chats` chat completions, interleaved, from a fixed seed.
pub(crate) fn workload(embeddings: usize, chats: usize, seed: u64) -> String {
    let mut rng = SmallRng::seed_from_u64(seed);
    let topics = [
        "rate limits",
        "tower middleware",
        "GCRA",
        "sliding windows",
        "retries with jitter",
        "Redis",
        "batch inference",
    ];
    let (mut e, mut c) = (0, 0);
    let mut out = String::new();
    while e < embeddings || c < chats {
        let pick_chat =
            e >= embeddings || (c < chats && rng.random_range(0..embeddings + chats) < chats);
        let line = if pick_chat {
            c += 1;
            let topic = topics[rng.random_range(0..topics.len())];
            json!({
                "custom_id": format!("chat-{c}"),
                "url": CHAT,
                "method": "POST",
                "body": {
                    "model": CHAT_MODELS[rng.random_range(0..CHAT_MODELS.len())],
                    "messages": [
                        {"role": "system", "content": "You answer in one sentence."},
                        {"role": "user", "content": format!("Question {c}: what should I know about {topic}?")},
                    ],
                    "max_tokens": rng.random_range(16..64),
                    "temperature": 0.2,
                },
            })
        } else {
            e += 1;
            let n = rng.random_range(1..10);
            let texts: Vec<String> = (0..n)
                .map(|i| {
                    let topic = topics[rng.random_range(0..topics.len())];
                    format!("Document {e}.{i} about {topic}.")
                })
                .collect();
            json!({
                "custom_id": format!("embed-{e}"),
                "url": EMBEDDINGS,
                "method": "POST",
                "body": {"model": EMBED_MODEL, "input": texts},
            })
        };
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

/// Starts together-sim with the seed's limits, `sliding`, time-scaled.
pub(crate) async fn spawn_sim(time_scale: f64) -> Result<SimHandle, String> {
    Sim::builder()
        .time_scale(time_scale)
        .mode(Mode::Sliding)
        .spawn()
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))
}

/// The demo's dynamic rule: Together's, per key and model, on chat and embeddings.
pub(crate) fn demo_rule() -> DynamicLimits {
    DynamicLimits {
        multiple: 2.0,
        window: Duration::from_secs(10),
        base: 2.0,
        cap: 40.0,
        routes: vec![CHAT.to_owned(), EMBEDDINGS.to_owned()],
        ..DynamicLimits::default()
    }
}

/// Starts together-sim with the demo's dynamic limits, time-scaled.
pub(crate) async fn spawn_dynamic_sim(time_scale: f64) -> Result<SimHandle, String> {
    Sim::builder()
        .time_scale(time_scale)
        .dynamic(demo_rule())
        .spawn()
        .await
        .map_err(|e| format!("cannot start the simulator: {e}"))
}

/// Options to run a generated workload against an in-process simulator.
pub(crate) fn sim_options(
    sim: &SimHandle,
    dir: &std::path::Path,
    time_scale: f64,
    quiet: bool,
) -> RunOptions {
    RunOptions {
        input: dir.join("demo-input.jsonl"),
        output: dir.join("demo-output.jsonl"),
        base_url: sim.base_url(),
        limits: LimitsSource {
            preset: together_tower::Preset::seed(),
            batch: BatchSection::default(),
            origin: "the seed preset".to_owned(),
        },
        endpoint: None,
        max_in_flight: 128,
        api_key_env: together_tower::API_KEY_ENV.to_owned(),
        api_key: Some(
            together_tower::ApiKey::new(&sim.api_keys()[0])
                .expect("the simulator's keys are plain ASCII"),
        ),
        retry_failed: false,
        keep_going: false,
        force: false,
        strict: false,
        resend_changed: false,
        bounds: crate::config::Bounds::default(),
        grace: Duration::from_secs(10),
        quiet,
        reports: Vec::new(),
        metrics: None,
        redis: None,
        processes: 1,
        time_scale,
        // Windows `time_scale` times shorter make the same timer and
        // scheduling jitter a larger share of each: 3% under the rate.
        safety_margin: Some(0.03),
        progress_every: Duration::from_secs(2),
        state: None,
        state_max_age: Duration::ZERO,
    }
}

/// What the dynamic simulator saw, in a few lines: the highest limit each
/// model reached, per real second (like the learned paces beside it).
pub(crate) fn dynamic_view(sim: &SimHandle) -> String {
    let stats = sim.stats();
    let scale = stats.time_scale;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "the simulator saw {} requests, {} answered 429, {} accepted above the limit in force",
        stats.total_requests,
        stats.total_429,
        stats.dynamic_over_limit(),
    );
    for d in &stats.dynamic {
        let top = d.series.iter().map(|p| p.rate).fold(d.rate, f64::max);
        let _ = writeln!(
            s,
            "  {:<44} highest limit {:>6.1}/s (cap {}/s); accepted {}, 429s {}",
            d.model,
            top * scale,
            d.cap * scale,
            d.accepted,
            d.rejected
        );
    }
    s
}

/// Runs the demo.
pub(crate) async fn demo(args: DemoArgs) -> ExitCode {
    match demo_inner(args).await {
        Ok(report) if report.report_error.is_some() => ExitCode::from(2),
        Ok(report) if report.failed == 0 && report.unanswered == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("together-batch: error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn demo_inner(args: DemoArgs) -> Result<Report, String> {
    if !(args.time_scale > 0.0 && args.time_scale.is_finite()) {
        return Err("--time-scale must be above 0".to_owned());
    }
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("together-batch-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let sim = spawn_dynamic_sim(args.time_scale).await?;
    let mut opts = sim_options(&sim, &dir, args.time_scale, args.quiet);
    opts.reports = args.report.clone();
    opts.limits = LimitsSource {
        preset: together_tower::Preset::together(),
        batch: BatchSection::default(),
        origin: "the default: learned per model from the server".to_owned(),
    };
    let workload_text = workload(args.embeddings, args.chats, 7);
    std::fs::write(&opts.input, &workload_text)
        .map_err(|e| format!("cannot write {}: {e}", opts.input.display()))?;
    let _ = std::fs::remove_file(&opts.output);
    let texts = workload_text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["body"]["input"].as_array().map(Vec::len))
        .sum::<usize>();
    println!(
        "together-batch demo: together-sim on {} with Together's dynamic limits (per model: \
         2x the successful rate of the last 10 s, between 2/s and 40/s, per 1 s sliding \
         window; time x{}), told nothing about limits: {} embedding requests ({texts} texts) \
         and {} chats over two models",
        sim.base_url(),
        args.time_scale,
        args.embeddings,
        args.chats
    );
    let report = run::run(opts.clone()).await?;
    print!("{}", report.render());
    print!("{}", dynamic_view(&sim));
    if let Some(e) = &report.report_error {
        eprintln!("together-batch: error: {e}");
    }
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!(
            "input: {}; output: {}",
            opts.input.display(),
            opts.output.display()
        );
    }
    sim.shutdown().await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workload_is_mixed_and_deterministic() {
        let text = workload(30, 10, 1);
        assert_eq!(text, workload(30, 10, 1));
        let entries = crate::input::parse(text.as_bytes(), None).unwrap();
        assert_eq!(entries.len(), 40);
        let chats = entries
            .iter()
            .filter(|e| matches!(e, crate::input::Entry::Job(j) if j.path == CHAT))
            .count();
        assert_eq!(chats, 10);
        // Interleaved, not one block after the other.
        let first_half_chats = text
            .lines()
            .take(20)
            .filter(|l| l.contains("chat-"))
            .count();
        assert!((1..10).contains(&first_half_chats), "{first_half_chats}");
    }
}
