//! `together-batch`: a JSONL file of requests in, a JSONL file of results
//! out, as fast as Together's (or any OpenAI-compatible API's) rate limits
//! allow, with no 429 storms, nothing lost, and nothing sent twice but what
//! was in flight at a crash.
//!
//! ```text
//! together-batch run INPUT.jsonl -o OUTPUT.jsonl [--base-url URL]
//!     [--limits limits.toml | --tier tier1] [--endpoint /v1/chat/completions]
//!     [--max-in-flight N] [--api-key-env NAME] [--retry-failed] [--quiet]
//!     [--report report.json] [--report report.html] [--metrics 127.0.0.1:9464]
//!     [--redis URL --processes N]
//! together-batch demo        # a simulated server and a workload, in-process
//! together-batch limits [--limits limits.toml | --tier tier1]
//! ```
//!
//! # Input
//!
//! One request per line, in the batch format
//! `{"custom_id": "...", "url": "/v1/embeddings", "method": "POST", "body": {...}}`
//! (`url` and `method` optional with `--endpoint`; method defaults to POST),
//! or a bare request body (its custom_id is its line number; needs
//! `--endpoint`). Blank lines are skipped. Two lines with the same
//! custom_id stop the run before anything is sent. A malformed line is
//! recorded as that line's error (with its line number); the rest proceed.
//!
//! # Output
//!
//! One JSON line per input line, written as results arrive, each line in a
//! single write: `custom_id`, `line`, `method`, `url`, `status`, `attempts`,
//! `started_at_ms`, `elapsed_ms`, and the `response` body or an `error`
//! (`status`, Together's error `type`, `code` and `message`, `attempts`).
//!
//! # Resume
//!
//! Running again with the same output skips every custom_id already there:
//! successes, and failures the server answered unless `--retry-failed`
//! (which removes the failure lines and sends them again); failures that
//! never reached a server are sent again. An error that would hit every
//! line (a refused key, an unreachable base URL, an unknown route or model)
//! stops sending what it affects (`--keep-going` does not). A torn last line, left by a crash,
//! is cut off and its request sent again. Ctrl-C stops taking new lines and
//! lets the requests already sent finish (a second Ctrl-C abandons them;
//! they are sent on resume); either way the output is flushed and the
//! summary printed.
//!
//! # The API key
//!
//! From `TOGETHER_API_KEY`, or the variable named by `--api-key-env`; never
//! an argument; never printed, logged or written (error messages are
//! scrubbed of it).
//!
//! # Limits
//!
//! By default nothing needs configuring: Together's limits are dynamic, per
//! organization and per model, so each route learns each model's pace from
//! the server's rate headers (or by probing when there are none), starting
//! at Together's base of 60 requests/min. The progress line and the summary
//! show the learned pace next to the achieved rate. The paces are kept in
//! a state file (`OUTPUT.state.json`, or `--state FILE`; `--no-state` to
//! keep none) so a resumed or next run starts where this one ended; a state
//! older than `--state-max-age` (1 h) or learned from another base URL is
//! ignored. `--tier` or `--limits` pin static rates instead (a limits file
//! learns only with `base = "together"` or `learn = true`).
//!
//! # Sharing a key between processes
//!
//! `--redis redis://HOST:PORT/` (or `redis = "..."` in the `[batch]` table
//! of the limits file) makes the quotas shared through Redis by every
//! process using the same key; `--processes N` (or `processes = N`) is how
//! many share it, so that while Redis is unreachable each falls back to
//! 1/N of each quota locally.
//!
//! # Report and metrics
//!
//! `--report FILE.json` writes the summary as JSON; `--report FILE.html` a
//! self-contained page with a chart per route (attempts sent per second
//! against the pace in force; 429s, retries and holds marked) and the
//! summary's tables (both may be given). `--metrics ADDR` serves the
//! layers' metrics in Prometheus's text format at `http://ADDR/metrics`
//! while the run goes (loopback only unless `--metrics-public`; port 0
//! picks one, printed on stderr). An unusable address or report path
//! stops the run before anything is sent.
//!
//! # Exit status
//!
//! 0 when every line is answered successfully, 1 when some failed (in this
//! run or an earlier one) or were left unanswered (interrupted, stopped
//! early), 2 when the output or a report stopped taking writes (after the
//! summary) or the run could not start (nothing was sent).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "demo")]
mod bench;
#[cfg(feature = "demo")]
mod bench_learn;
mod config;
#[cfg(feature = "demo")]
mod demo;
mod input;
#[cfg(feature = "metrics")]
mod metrics;
mod output;
mod progress;
mod run;
mod state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Bounds, LimitsSource};
use crate::run::RunOptions;

/// A JSONL of requests in, a JSONL of results out, paced to the rate limits.
#[derive(Debug, Parser)]
#[command(name = "together-batch", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log the stack's own events (holds, retries, learned paces, fast
    /// failures) to stderr; -vv adds everything else (hyper's connection
    /// pool, waits).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sends every request of INPUT and writes one result line per request to OUTPUT.
    Run(Box<RunArgs>),
    /// Starts a simulated Together server in this process and runs a
    /// realistic workload through it (no key, no network).
    #[cfg(feature = "demo")]
    Demo(demo::DemoArgs),
    /// Prints the effective limits (preset, tier or file).
    Limits(LimitsArgs),
    /// Compares this CLI with a plain retrying client against the simulator.
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    Bench(bench::BenchArgs),
    /// Measures learned limits against the fastest schedule of a dynamic simulator.
    #[cfg(feature = "demo")]
    #[command(hide = true)]
    BenchLearn(bench_learn::LearnArgs),
}

/// Where the limits come from.
#[derive(Debug, Clone, Args)]
struct LimitsSel {
    /// A limits file (together-tower's preset TOML, plus an optional `[batch]` table).
    #[arg(long, value_name = "FILE", conflicts_with = "tier")]
    limits: Option<PathBuf>,
    /// A static preset: seed, free, tier1 .. tier5 (tier-1 and 1 are read
    /// too; default: learn each model's limits from the server).
    #[arg(long, value_name = "TIER")]
    tier: Option<String>,
    /// Runs every quota this many times faster (for a time-scaled simulator).
    #[arg(long, hide = true, default_value_t = 1.0, value_name = "X")]
    time_scale: f64,
    /// Runs every quota this fraction under its rate (default 0.01).
    #[arg(long, hide = true, value_name = "FRACTION")]
    safety_margin: Option<f64>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The requests, one JSON per line.
    input: PathBuf,
    /// The results, one JSON per line (appended to; re-running resumes).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// The API's base URL.
    #[arg(long, default_value = together_tower::DEFAULT_BASE_URL, value_name = "URL")]
    base_url: String,
    #[command(flatten)]
    limits: LimitsSel,
    /// The path for lines without a `url` (and for bare request bodies).
    #[arg(long, value_name = "PATH")]
    endpoint: Option<String>,
    #[command(flatten)]
    bounds: BoundsSel,
    /// Most requests in flight per route (waiting for their quota included).
    #[arg(long, default_value_t = 128, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// The environment variable holding the API key.
    #[arg(long, default_value = together_tower::API_KEY_ENV, value_name = "NAME")]
    api_key_env: String,
    /// Sends again the lines whose earlier result was a failure.
    #[arg(long)]
    retry_failed: bool,
    /// Refuses to start when some lines match no quota (they would go out
    /// unpaced); by default they are listed with a warning.
    #[arg(long)]
    strict: bool,
    /// Writes into an output file that is not a results file of this tool
    /// (its other lines are removed).
    #[arg(long)]
    force: bool,
    /// What to do when a custom_id already answered has another request in
    /// the input: refuse to start, or send it again.
    #[arg(long, value_enum, default_value_t = OnChange::Refuse, value_name = "WHAT")]
    on_change: OnChange,
    /// After a first Ctrl-C or SIGTERM, seconds the requests in flight have
    /// to finish before they are abandoned (unanswered, sent on resume).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    grace: f64,
    /// Keeps sending after an error that will hit every line (a refused
    /// key, an unreachable base URL, an unknown route or model); by default
    /// sending stops there and the rest is left for the next run.
    #[arg(long)]
    keep_going: bool,
    /// No progress (the summary is still printed).
    #[arg(short, long)]
    quiet: bool,
    /// Writes the summary to this file: a page with a chart per route (the
    /// rate sent against the pace, 429s, retries, holds) for a name ending
    /// `.html`, JSON for any other. May be given more than once.
    #[arg(long, value_name = "FILE")]
    report: Vec<PathBuf>,
    /// Serves the stack's metrics in Prometheus's text format at
    /// http://ADDR/metrics while the run goes: IP:PORT or localhost:PORT,
    /// loopback only unless --metrics-public (port 0: any free port,
    /// printed on stderr).
    #[cfg(feature = "metrics")]
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Allows a --metrics address beyond loopback (0.0.0.0:PORT).
    #[cfg(feature = "metrics")]
    #[arg(long, requires = "metrics")]
    metrics_public: bool,
    /// Shares the quotas with other processes through Redis.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// How many processes share the key (each falls back to 1/N of each
    /// quota while Redis is unreachable). Default 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    processes: Option<u32>,
    /// Keeps the paces learned per model in this file, so that a resumed or
    /// next run starts where this one ended (default: OUTPUT.state.json).
    #[arg(long, value_name = "FILE", conflicts_with = "no_state")]
    state: Option<PathBuf>,
    /// Keeps no learned paces between runs.
    #[arg(long)]
    no_state: bool,
    /// Ignores a state file older than this many seconds.
    #[arg(long, default_value_t = 3600.0, value_name = "SECS")]
    state_max_age: f64,
    /// Seconds between plain progress lines (when stderr is not a terminal).
    #[arg(long, hide = true, default_value_t = 5.0, value_name = "SECS")]
    progress_every: f64,
}

#[derive(Debug, Args)]
struct LimitsArgs {
    #[command(flatten)]
    limits: LimitsSel,
    #[command(flatten)]
    bounds: BoundsSel,
}

/// What to do with a custom_id whose request changed since it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum OnChange {
    /// Stop before anything is sent, naming them.
    Refuse,
    /// Send them again, replacing their lines.
    Resend,
}

/// How long and how much one request may take.
#[derive(Debug, Clone, Args)]
struct BoundsSel {
    /// Seconds one attempt may take, head and body.
    #[arg(long = "timeout", default_value_t = together_tower::DEFAULT_TIMEOUT.as_secs_f64(), value_name = "SECS")]
    attempt_timeout: f64,
    /// Seconds to wait for the next chunk of a body.
    #[arg(long, default_value_t = together_tower::body::DEFAULT_IDLE_TIMEOUT.as_secs_f64(), value_name = "SECS")]
    idle_timeout: f64,
    /// Seconds a request may take from its first attempt to its answer,
    /// retries and holds included.
    #[arg(long, default_value_t = config::DEFAULT_DEADLINE.as_secs_f64(), value_name = "SECS")]
    deadline: f64,
    /// The longest a server's wait hint may hold a route (or a retry wait), seconds.
    #[arg(long, default_value_t = tower_quota::DEFAULT_MAX_HOLD.as_secs_f64(), value_name = "SECS")]
    max_hold: f64,
    /// The largest response read, in MiB; a larger one fails its line.
    #[arg(long, default_value_t = (together_tower::body::DEFAULT_MAX_RESPONSE_BYTES >> 20) as u64, value_name = "MIB")]
    max_response_mb: u64,
}

impl BoundsSel {
    fn check(&self) -> Result<Bounds, String> {
        let secs = |v: f64, flag: &str| {
            (v > 0.0 && v.is_finite())
                .then(|| Duration::from_secs_f64(v))
                .ok_or_else(|| format!("{flag} must be a number of seconds above 0"))
        };
        let mib = usize::try_from(self.max_response_mb)
            .ok()
            .and_then(|m| m.checked_mul(1 << 20))
            .filter(|b| *b > 0)
            .ok_or("--max-response-mb must be above 0")?;
        Ok(Bounds {
            attempt: secs(self.attempt_timeout, "--timeout")?,
            idle: secs(self.idle_timeout, "--idle-timeout")?,
            deadline: secs(self.deadline, "--deadline")?,
            max_hold: secs(self.max_hold, "--max-hold")?,
            max_response_bytes: mib,
        })
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("together-batch: error: {msg}");
    ExitCode::from(2)
}

/// The stack's crates log at debug with -v (others only warn); -vv logs
/// everything at trace.
fn init_logging(verbose: u8) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = match verbose {
        0 => return,
        1 => Targets::new().with_default(LevelFilter::WARN).with_targets(
            [
                "tower_quota",
                "tower_quota_redis",
                "tower_retry_after",
                "tower_jobs",
                "together_tower",
                "together_batch",
            ]
            .map(|t| (t, LevelFilter::DEBUG)),
        ),
        _ => Targets::new().with_default(LevelFilter::TRACE),
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => run_command(*args).await,
            #[cfg(feature = "demo")]
            Command::Demo(args) => demo::demo(args).await,
            Command::Limits(args) => limits_command(args),
            #[cfg(feature = "demo")]
            Command::Bench(args) => bench::bench(args).await,
            #[cfg(feature = "demo")]
            Command::BenchLearn(args) => bench_learn::bench_learn(args).await,
        }
    })
}

/// The limits and bounds the flags select, checked.
fn selected(sel: &LimitsSel, bounds: &BoundsSel) -> Result<(LimitsSource, Bounds), String> {
    let bounds = bounds.check()?;
    let source = config::load(sel.limits.as_deref(), sel.tier.as_deref())?;
    Ok((source, bounds))
}

fn limits_command(args: LimitsArgs) -> ExitCode {
    let sel = args.limits;
    let (source, bounds) = match selected(&sel, &args.bounds) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let mut preset = source.preset.clone();
    if sel.time_scale != 1.0 {
        preset = preset.time_scaled(sel.time_scale);
    }
    if let Some(m) = sel.safety_margin {
        preset = preset.safety_margin(m);
    }
    preset = preset.max_hold(bounds.max_hold);
    match preset.limits() {
        Ok(limits) => {
            print!("{}", config::render_table(&source, &limits, sel.time_scale));
            print!("{}", config::render_bounds(&bounds, &limits));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("invalid limits: {e}")),
    }
}

async fn run_command(args: RunArgs) -> ExitCode {
    let sel = args.limits;
    let (source, bounds) = match selected(&sel, &args.bounds) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if !(sel.time_scale > 0.0 && sel.time_scale.is_finite()) {
        return fail("--time-scale must be above 0");
    }
    let redis = args.redis.or_else(|| source.batch.redis.clone());
    let processes = args.processes.or(source.batch.processes).unwrap_or(1);
    if processes == 0 {
        return fail("processes must be at least 1");
    }
    if !(args.state_max_age >= 0.0 && args.state_max_age.is_finite()) {
        return fail("--state-max-age must be a number of seconds");
    }
    let state = if args.no_state {
        None
    } else {
        Some(
            args.state
                .unwrap_or_else(|| state::default_path(&args.output)),
        )
    };
    #[cfg(feature = "metrics")]
    let metrics = match args.metrics.as_deref() {
        Some(text) => match metrics::parse_address(text, args.metrics_public) {
            Ok(addr) => Some(addr),
            Err(e) => return fail(&e),
        },
        None => None,
    };
    #[cfg(not(feature = "metrics"))]
    let metrics = None;
    let opts = RunOptions {
        state,
        state_max_age: Duration::from_secs_f64(args.state_max_age),
        input: args.input,
        output: args.output,
        base_url: args.base_url,
        limits: source,
        endpoint: args.endpoint,
        max_in_flight: args.max_in_flight as usize,
        api_key_env: args.api_key_env,
        api_key: None,
        retry_failed: args.retry_failed,
        keep_going: args.keep_going,
        force: args.force,
        strict: args.strict,
        resend_changed: args.on_change == OnChange::Resend,
        bounds,
        grace: Duration::from_secs_f64(args.grace.max(0.0)),
        quiet: args.quiet,
        reports: args.report,
        metrics,
        redis,
        processes,
        time_scale: sel.time_scale,
        safety_margin: sel.safety_margin,
        progress_every: Duration::from_secs_f64(args.progress_every.max(0.05)),
    };
    match run::run(opts).await {
        Ok(report) => {
            print!("{}", report.render());
            if let Some(e) = &report.report_error {
                eprintln!("together-batch: error: {e}");
            }
            if report.output_error.is_some() || report.report_error.is_some() {
                ExitCode::from(2)
            } else if report.failed == 0 && report.unanswered == 0 && report.failed_earlier == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => fail(&e),
    }
}
