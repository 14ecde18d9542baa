//! `together-batch run`: reads the input, skips what the output already
//! answers, sends the rest through together-tower's stack (one feeder and
//! one in-flight cap per route, so a slow route never starves a fast one),
//! writes each result as it arrives, and sums up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::{Value, json};
use together_tower::error::source_chain;
use together_tower::service::Attempts;
use together_tower::{ClientService, DEFAULT_TIMEOUT, HttpBody, TogetherClient};
use tokio::sync::{Semaphore, mpsc, watch};
use tower::{ServiceBuilder, ServiceExt};
use tower_quota::{Limits, OnStoreFailure, RateLimitLayer, SharedOptions};
use tower_quota_redis::RedisStore;

use crate::config::{self, LimitsSource};
use crate::input::{self, Entry, Job};
use crate::output::Output;
use crate::progress::Progress;
use crate::state::SavedState;

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub(crate) input: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) base_url: String,
    pub(crate) limits: LimitsSource,
    pub(crate) endpoint: Option<String>,
    pub(crate) max_in_flight: usize,
    pub(crate) api_key_env: String,
    /// Only for in-process runs (demo, bench); the CLI reads the environment.
    pub(crate) api_key: Option<Secret>,
    pub(crate) retry_failed: bool,
    pub(crate) quiet: bool,
    pub(crate) report: Option<PathBuf>,
    pub(crate) redis: Option<String>,
    pub(crate) processes: u32,
    pub(crate) time_scale: f64,
    pub(crate) safety_margin: Option<f64>,
    pub(crate) progress_every: Duration,
    /// Where learned paces are kept between runs (`None`: not kept).
    pub(crate) state: Option<PathBuf>,
    /// A saved state older than this is ignored.
    pub(crate) state_max_age: Duration,
}

/// An API key that never prints.
#[derive(Clone)]
pub(crate) struct Secret(Arc<str>);

impl Secret {
    pub(crate) fn new(key: &str) -> Self {
        Secret(Arc::from(key.trim()))
    }

    fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with the key replaced by `<redacted>`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_owned()
        } else {
            text.replace(&*self.0, "<redacted>")
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One route in the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RouteReport {
    pub(crate) route: String,
    /// Results received.
    pub(crate) answered: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Requests sent, retries included (what the quota is charged).
    pub(crate) attempts: u64,
    /// Seconds from the start to the route's last answer.
    pub(crate) secs: f64,
    /// Requests sent per second (intervals between them over `secs`).
    pub(crate) achieved_per_sec: f64,
    /// The route's request quota, per second (time-scaled when asked).
    pub(crate) quota_per_sec: Option<f64>,
    /// `achieved_per_sec` as a share of the quota, %.
    pub(crate) quota_pct: Option<f64>,
    /// The least time the quota allows for these attempts: (attempts - 1) / quota.
    pub(crate) ideal_secs: Option<f64>,
    /// `ideal_secs / secs`, %.
    pub(crate) ideal_pct: Option<f64>,
}

/// One route and model of a learned quota in the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ModelReport {
    pub(crate) route: String,
    pub(crate) model: String,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Requests sent, retries included.
    pub(crate) attempts: u64,
    /// Requests sent per second from the start to the model's last answer.
    pub(crate) achieved_per_sec: f64,
    /// The pace learned for this model at the end, requests per second.
    pub(crate) learned_per_sec: Option<f64>,
    /// Where it came from: header, probe, saved or start.
    pub(crate) source: Option<String>,
}

/// The final summary (`--report` writes it as JSON).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) preset: String,
    pub(crate) time_scale: f64,
    pub(crate) shared_through_redis: bool,
    /// Non-blank input lines.
    pub(crate) lines: u64,
    /// Lines already answered in the output (not sent again).
    pub(crate) skipped: u64,
    pub(crate) ok: u64,
    /// Failed lines, bad input included.
    pub(crate) failed: u64,
    /// Lines that could not be read as requests.
    pub(crate) bad_input: u64,
    /// Lines left without an answer (interrupted); sent on resume.
    pub(crate) unanswered: u64,
    pub(crate) interrupted: bool,
    pub(crate) wall_secs: f64,
    /// The slowest route's ideal time.
    pub(crate) ideal_secs: Option<f64>,
    /// `ideal_secs / wall_secs`, %.
    pub(crate) ideal_pct: Option<f64>,
    /// 429 answers received (retried ones included).
    pub(crate) responses_429: u64,
    pub(crate) retries: u64,
    /// Answers by HTTP status (0: no answer).
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) routes: Vec<RouteReport>,
    /// Per route and model, with the learned pace (learned quotas only).
    pub(crate) models: Vec<ModelReport>,
}

impl Report {
    /// The human summary.
    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "together-batch: {} lines: {} ok, {} failed ({} bad input), {} already answered, {} unanswered{}",
            self.lines,
            self.ok,
            self.failed,
            self.bad_input,
            self.skipped,
            self.unanswered,
            if self.interrupted {
                " (interrupted: run again to send them)"
            } else {
                ""
            }
        );
        let ideal = match (self.ideal_secs, self.ideal_pct) {
            (Some(i), Some(p)) => format!(" (ideal {i:.2} s: {p:.1}% of the ideal rate)"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "wall time {:.2} s{ideal}; 429s {}; retries {}; limits: {}{}{}",
            self.wall_secs,
            self.responses_429,
            self.retries,
            self.preset,
            if self.time_scale == 1.0 {
                String::new()
            } else {
                format!(" x{}", self.time_scale)
            },
            if self.shared_through_redis {
                ", shared through Redis"
            } else {
                ""
            }
        );
        if !self.routes.is_empty() {
            let _ = writeln!(
                s,
                "{:<24} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9}",
                "route",
                "ok",
                "failed",
                "sent",
                "rate/s",
                "quota/s",
                "of quota",
                "ideal s",
                "of ideal"
            );
            for r in &self.routes {
                let opt = |v: Option<f64>, unit: &str| match v {
                    Some(v) => format!("{v:.1}{unit}"),
                    None => "-".to_owned(),
                };
                let _ = writeln!(
                    s,
                    "{:<24} {:>8} {:>8} {:>8} {:>10.2} {:>10} {:>9} {:>9} {:>9}",
                    r.route,
                    r.ok,
                    r.failed,
                    r.attempts,
                    r.achieved_per_sec,
                    opt(r.quota_per_sec, ""),
                    opt(r.quota_pct, "%"),
                    r.ideal_secs.map_or("-".to_owned(), |v| format!("{v:.2}")),
                    opt(r.ideal_pct, "%"),
                );
            }
        }
        if !self.models.is_empty() {
            let _ = writeln!(
                s,
                "{:<24} {:<44} {:>8} {:>8} {:>10} {:>10}  source",
                "route", "model", "ok", "sent", "rate/s", "learned/s"
            );
            for m in &self.models {
                let _ = writeln!(
                    s,
                    "{:<24} {:<44} {:>8} {:>8} {:>10.2} {:>10}  {}",
                    m.route,
                    m.model,
                    m.ok,
                    m.attempts,
                    m.achieved_per_sec,
                    m.learned_per_sec
                        .map_or("-".to_owned(), |v| format!("{v:.2}")),
                    m.source.as_deref().unwrap_or("-"),
                );
            }
        }
        s
    }
}

/// The stack, with a count of the 429s it saw (before retries hide them).
pub(crate) struct Client {
    pub(crate) service: ClientService,
    pub(crate) limits: Limits,
    /// The stack's rate-limit layer: its snapshots show the learned paces.
    pub(crate) quota: RateLimitLayer,
    pub(crate) responses_429: Arc<AtomicU64>,
}

/// Builds the client: together-tower's stack over its default HTTP client,
/// the preset time-scaled and margined as asked, quotas shared through
/// Redis with `--redis`.
pub(crate) fn build_client(opts: &RunOptions, key: &Secret) -> Result<Client, String> {
    let mut preset = opts.limits.preset.clone();
    if opts.time_scale != 1.0 {
        preset = preset.time_scaled(opts.time_scale);
    }
    if let Some(m) = opts.safety_margin {
        preset = preset.safety_margin(m);
    }
    let limits = preset
        .limits()
        .map_err(|e| format!("invalid limits: {e}"))?;
    let quota = match &opts.redis {
        Some(url) => {
            let store = RedisStore::new(url, key.expose())
                .map_err(|e| key.scrub(&format!("--redis {}: {e}", config::redact_url(url))))?;
            let share = 1.0 / f64::from(opts.processes.max(1));
            RateLimitLayer::shared(
                limits.clone(),
                Arc::new(store),
                SharedOptions::default().on_failure(OnStoreFailure::LocalShare(share)),
            )
            .map_err(|e| format!("--redis: {e}"))?
        }
        None => RateLimitLayer::new(limits.clone()),
    };
    let builder = TogetherClient::builder()
        .api_key(key.expose())
        .base_url(&opts.base_url)
        .preset(preset)
        .rate_limit(quota.clone());
    let responses_429 = Arc::new(AtomicU64::new(0));
    let counter = responses_429.clone();
    let http = ServiceBuilder::new()
        .map_response(move |res: Response<HttpBody>| {
            if res.status() == http::StatusCode::TOO_MANY_REQUESTS {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            res
        })
        .service(together_tower::default_http_client(DEFAULT_TIMEOUT));
    let client = builder
        .build_with(http)
        .map_err(|e| key.scrub(&e.to_string()))?;
    Ok(Client {
        service: client.service(),
        limits,
        quota,
        responses_429,
    })
}

/// Reads the key from `--api-key-env` (default `TOGETHER_API_KEY`).
fn read_key(opts: &RunOptions) -> Result<Secret, String> {
    if let Some(k) = &opts.api_key {
        return Ok(k.clone());
    }
    match std::env::var(&opts.api_key_env) {
        Ok(k) if !k.trim().is_empty() => Ok(Secret::new(&k)),
        _ => Err(format!(
            "no API key: set {} (or name another variable with --api-key-env); \
             the key is never taken as an argument (nothing was sent)",
            opts.api_key_env
        )),
    }
}

/// What a request task hands back.
struct Done {
    route: String,
    model: Option<String>,
    ok: bool,
    status: u16,
    attempts: u32,
    line: Value,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sends one request; the result line's `status` and `response` or `error`.
async fn send(
    service: ClientService,
    job: &Job,
    attempts: Attempts,
    key: &Secret,
) -> (bool, u16, Value) {
    let mut req = Request::builder()
        .method(job.method.clone())
        .uri(job.path.as_str());
    if let Ok(v) = HeaderValue::from_str(&job.custom_id) {
        req = req.header("x-custom-id", v);
    }
    let mut req = match req.body(job.body.clone()) {
        Ok(r) => r,
        Err(e) => {
            let err = json!({"status": null, "type": "invalid_request", "message": e.to_string()});
            return (false, 0, err);
        }
    };
    req.extensions_mut().insert(attempts);
    let res = match service.oneshot(req).await {
        Ok(res) => res,
        Err(e) => {
            let kind = if e.is::<tower_quota::error::WaitTimeout>()
                || e.is::<tower_quota::error::CostTooHigh>()
            {
                "rate_limiter"
            } else {
                "transport"
            };
            let message = key.scrub(&source_chain(&*e));
            return (
                false,
                0,
                json!({"status": null, "type": kind, "message": message}),
            );
        }
    };
    let status = res.status();
    let bytes = match res.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let message = key.scrub(&source_chain(&*e));
            return (
                false,
                status.as_u16(),
                json!({"status": status.as_u16(), "type": "transport", "message": message}),
            );
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    if status.is_success() {
        let body =
            parsed.unwrap_or_else(|| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        return (true, status.as_u16(), body);
    }
    let err = parsed.as_ref().map(|v| v.get("error").unwrap_or(v));
    let field = |k: &str| {
        err.and_then(|e| e.get(k))
            .and_then(|v| match v {
                Value::String(s) => Some(Value::String(key.scrub(s))),
                Value::Number(n) => Some(Value::String(n.to_string())),
                _ => None,
            })
            .unwrap_or(Value::Null)
    };
    let message = match field("message") {
        Value::Null => Value::String(
            key.scrub(
                &String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(500)
                    .collect::<String>(),
            ),
        ),
        m => m,
    };
    (
        false,
        status.as_u16(),
        json!({
            "status": status.as_u16(),
            "type": field("type"),
            "code": field("code"),
            "message": message,
        }),
    )
}

#[derive(Default)]
struct RouteStats {
    answered: u64,
    ok: u64,
    failed: u64,
    attempts: u64,
    total: u64,
    last: Duration,
    recent: VecDeque<Instant>,
}

const RATE_WINDOW: Duration = Duration::from_secs(5);

/// A model id without its organisation, at most 24 characters: `bge-large-en-v1.5`.
fn short_model(model: &str) -> &str {
    let name = model.rsplit('/').next().unwrap_or(model);
    match name.char_indices().nth(24) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

fn short(route: &str) -> &str {
    route.strip_prefix("/v1/").unwrap_or(route)
}

/// How often the learned paces are saved while a run goes.
const STATE_EVERY: Duration = Duration::from_secs(5);

/// Saves the learned paces to the state file, if there is one and anything was learned.
fn save_state(opts: &RunOptions, quota: &RateLimitLayer, progress: &mut Progress) {
    let Some(path) = &opts.state else {
        return;
    };
    let state = SavedState::capture(quota, &opts.base_url, opts.time_scale);
    if state.is_empty() {
        return;
    }
    if let Err(e) = state.save(path) {
        progress.note(&e);
    }
}

/// Runs the batch; `Err` only for what fails before anything is sent (or
/// an output that stops taking writes).
pub(crate) async fn run(opts: RunOptions) -> Result<Report, String> {
    // 1. Everything that can fail does, before a request goes out.
    let bytes = std::fs::read(&opts.input).map_err(|e| {
        format!(
            "cannot read the input {}: {e} (nothing was sent)",
            opts.input.display()
        )
    })?;
    let entries = input::parse(&bytes, opts.endpoint.as_deref())?;
    let key = read_key(&opts)?;
    let client = build_client(&opts, &key)?;
    let (mut out, prev) = Output::open(&opts.output, opts.retry_failed)?;
    let rates = config::route_rates(&client.limits);
    let learned = config::learned_request_quotas(&client.limits);

    let mut notes = Vec::new();
    if let Some(path) = &opts.state {
        match SavedState::load(path, &opts.base_url, opts.time_scale, opts.state_max_age) {
            Ok(Some(saved)) => {
                let n = saved.apply(&client.quota);
                if n > 0 {
                    notes.push(format!(
                        "starting {n} learned pace(s) where the last run left them ({})",
                        path.display()
                    ));
                }
            }
            Ok(None) => {}
            Err(note) => notes.push(note),
        }
    }
    if prev.torn_bytes > 0 {
        notes.push(format!(
            "cut a torn last line ({} bytes) from {}: its request will be sent again",
            prev.torn_bytes,
            opts.output.display()
        ));
    }
    if prev.dropped_failures > 0 {
        notes.push(format!(
            "--retry-failed: {} failed line(s) removed from the output, sending them again",
            prev.dropped_failures
        ));
    }
    if prev.unreadable > 0 {
        notes.push(format!(
            "{} line(s) of {} are not results and were removed",
            prev.unreadable,
            opts.output.display()
        ));
    }

    let lines = entries.len() as u64;
    let mut skipped = 0u64;
    let mut bad = Vec::new();
    let mut by_route: Vec<(String, Vec<Job>)> = Vec::new();
    let mut route_index: HashMap<String, usize> = HashMap::new();
    for e in entries {
        if prev.answered.contains_key(e.custom_id()) {
            skipped += 1;
            continue;
        }
        match e {
            Entry::Bad {
                custom_id,
                line,
                message,
            } => bad.push(json!({
                "custom_id": custom_id,
                "line": line,
                "attempts": 0,
                "error": {"status": null, "type": "invalid_input", "message": message},
            })),
            Entry::Job(job) => {
                let i = *route_index.entry(job.path.clone()).or_insert_with(|| {
                    by_route.push((job.path.clone(), Vec::new()));
                    by_route.len() - 1
                });
                by_route[i].1.push(job);
            }
        }
    }
    let to_send: u64 = by_route.iter().map(|(_, j)| j.len() as u64).sum();
    let total = to_send + bad.len() as u64;
    let mut progress = Progress::new(total, opts.quiet, opts.progress_every);
    for note in &notes {
        progress.note(note);
    }
    if skipped > 0 {
        progress.note(&format!(
            "{skipped} line(s) already answered in {}: skipped",
            opts.output.display()
        ));
    }

    let mut failed = 0u64;
    let bad_input = bad.len() as u64;
    for line in &bad {
        out.write(line)?;
        failed += 1;
    }

    // 2. One feeder per route, each with its own in-flight cap.
    let start = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (abandon_tx, abandon_rx) = watch::channel(false);
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut routes: BTreeMap<String, RouteStats> = BTreeMap::new();
    let mut models: BTreeMap<(String, String), RouteStats> = BTreeMap::new();
    for (route, jobs) in by_route {
        routes.entry(route.clone()).or_default().total = jobs.len() as u64;
        let tx = tx.clone();
        let mut stop = stop_rx.clone();
        let abandon = abandon_rx.clone();
        let service = client.service.clone();
        let key = key.clone();
        let in_flight = in_flight.clone();
        let sem = Arc::new(Semaphore::new(opts.max_in_flight.max(1)));
        tokio::spawn(async move {
            for job in jobs {
                if *stop.borrow() {
                    break;
                }
                let permit = tokio::select! {
                    p = sem.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = stop.wait_for(|s| *s) => break,
                };
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (tx, mut stop, mut abandon) = (tx.clone(), stop.clone(), abandon.clone());
                let (service, key, in_flight, route) = (
                    service.clone(),
                    key.clone(),
                    in_flight.clone(),
                    route.clone(),
                );
                tokio::spawn(async move {
                    let _permit = permit;
                    let attempts = Attempts::default();
                    let started_at = unix_ms();
                    let t0 = Instant::now();
                    let fut = send(service, &job, attempts.clone(), &key);
                    tokio::pin!(fut);
                    let mut stopping = false;
                    let result = loop {
                        tokio::select! {
                            biased;
                            _ = abandon.wait_for(|a| *a) => break None,
                            r = &mut fut => break Some(r),
                            _ = stop.wait_for(|s| *s), if !stopping => {
                                // Not sent yet (still queued for its quota): drop it,
                                // it stays unanswered and goes out on resume.
                                if attempts.get() == 0 {
                                    break None;
                                }
                                stopping = true;
                            }
                        }
                    };
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let Some((ok, status, value)) = result else {
                        return;
                    };
                    let mut line = json!({
                        "custom_id": job.custom_id,
                        "line": job.line,
                        "method": job.method.as_str(),
                        "url": job.path,
                        "status": if status == 0 { Value::Null } else { json!(status) },
                        "attempts": attempts.get(),
                        "started_at_ms": started_at,
                        "elapsed_ms": (t0.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
                    });
                    let mut value = value;
                    if !ok && let Some(obj) = value.as_object_mut() {
                        obj.insert("attempts".to_owned(), json!(attempts.get()));
                    }
                    line[if ok { "response" } else { "error" }] = value;
                    let _ = tx.send(Done {
                        route,
                        model: job.model.clone(),
                        ok,
                        status,
                        attempts: attempts.get(),
                        line,
                    });
                });
            }
        });
    }
    drop(tx);

    let (sig_tx, mut sig_rx) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if sig_tx.send(()).is_err() {
                break;
            }
        }
    });

    // 3. Write each result as it arrives.
    let mut ok_count = 0u64;
    let mut retries = 0u64;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut interrupts = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut write_error = None;
    let status_msg = |routes: &BTreeMap<String, RouteStats>, failed: u64, retries: u64| {
        let now = Instant::now();
        let mut parts = Vec::new();
        let mut eta = 0.0f64;
        let elapsed = start.elapsed().min(RATE_WINDOW).as_secs_f64().max(0.001);
        let snapshot = client.quota.snapshot();
        for (route, st) in routes {
            let paces: Vec<String> = learned
                .get(route)
                .map(|quota| {
                    snapshot
                        .cells
                        .iter()
                        .filter(|c| &c.quota == quota)
                        .map(|c| {
                            let model = c.key.as_deref().map_or("", short_model);
                            format!("{model} {:.1}/s {}", c.pace, c.source)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let learned_note = if paces.is_empty() {
                String::new()
            } else {
                format!(" (learned {})", paces.join(", "))
            };
            let recent = st
                .recent
                .iter()
                .filter(|t| now.duration_since(**t) <= RATE_WINDOW)
                .count() as f64;
            let rate = recent / elapsed;
            let left = st.total.saturating_sub(st.answered) as f64;
            match rates.get(route) {
                Some(q) => {
                    parts.push(format!("{} {rate:.1}/{q:.1} per s", short(route)));
                    eta = eta.max(left / q);
                }
                None => {
                    parts.push(format!("{} {rate:.1}/s{learned_note}", short(route)));
                    if rate > 0.0 {
                        eta = eta.max(left / rate);
                    }
                }
            }
        }
        format!(
            "| {} | ETA {:.0} s | 429s {} | retries {retries} | failed {failed}",
            parts.join(", "),
            eta.ceil(),
            client.responses_429.load(Ordering::Relaxed),
        )
    };
    let mut done = failed;
    let mut last_save = Instant::now();
    loop {
        tokio::select! {
            d = rx.recv() => {
                let Some(d) = d else { break };
                if let Err(e) = out.write(&d.line) {
                    write_error = Some(e);
                    let _ = stop_tx.send(true);
                    let _ = abandon_tx.send(true);
                    continue;
                }
                done += 1;
                *statuses.entry(d.status).or_default() += 1;
                retries += u64::from(d.attempts.saturating_sub(1));
                if learned.contains_key(&d.route) && let Some(model) = &d.model {
                    let m = models.entry((d.route.clone(), model.clone())).or_default();
                    m.attempts += u64::from(d.attempts);
                    m.last = start.elapsed();
                    if d.ok { m.ok += 1 } else { m.failed += 1 }
                }
                let st = routes.entry(d.route).or_default();
                st.answered += 1;
                st.attempts += u64::from(d.attempts);
                st.last = start.elapsed();
                let now = Instant::now();
                st.recent.push_back(now);
                while st.recent.front().is_some_and(|t| now.duration_since(*t) > RATE_WINDOW) {
                    st.recent.pop_front();
                }
                if d.ok {
                    st.ok += 1;
                    ok_count += 1;
                } else {
                    st.failed += 1;
                    failed += 1;
                }
            }
            Some(()) = sig_rx.recv() => {
                interrupts += 1;
                if interrupts == 1 {
                    let _ = stop_tx.send(true);
                    progress.note(&format!(
                        "Ctrl-C: taking no new lines; waiting for the requests already sent \
                         (about {} in flight; Ctrl-C again to abandon them: they stay \
                         unanswered and are sent on resume)",
                        in_flight.load(Ordering::Relaxed)
                    ));
                } else {
                    let _ = abandon_tx.send(true);
                    progress.note("Ctrl-C again: abandoning the requests in flight");
                }
            }
            _ = ticker.tick() => {
                let msg = status_msg(&routes, failed, retries);
                progress.update(done, total, &msg, false);
                if last_save.elapsed() >= STATE_EVERY {
                    last_save = Instant::now();
                    save_state(&opts, &client.quota, &mut progress);
                }
            }
        }
    }
    let wall = start.elapsed();
    let final_msg = status_msg(&routes, failed, retries);
    progress.update(done, total, &final_msg, true);
    save_state(&opts, &client.quota, &mut progress);
    progress.finish();
    out.flush()?;
    if let Some(e) = write_error {
        return Err(e);
    }

    // 4. Sum up.
    let mut route_reports = Vec::new();
    for (route, st) in &routes {
        let secs = st.last.as_secs_f64();
        let intervals = st.attempts.saturating_sub(1) as f64;
        let achieved = if secs > 0.0 { intervals / secs } else { 0.0 };
        let quota = rates.get(route).copied();
        let ideal = quota.map(|q| intervals / q);
        route_reports.push(RouteReport {
            route: route.clone(),
            answered: st.answered,
            ok: st.ok,
            failed: st.failed,
            attempts: st.attempts,
            secs,
            achieved_per_sec: achieved,
            quota_per_sec: quota,
            quota_pct: quota.map(|q| 100.0 * achieved / q),
            ideal_secs: ideal,
            ideal_pct: ideal.filter(|_| secs > 0.0).map(|i| 100.0 * i / secs),
        });
    }
    let snapshot = client.quota.snapshot();
    let model_reports = models
        .iter()
        .map(|((route, model), st)| {
            let secs = st.last.as_secs_f64();
            let intervals = st.attempts.saturating_sub(1) as f64;
            let cell = learned
                .get(route)
                .and_then(|quota| snapshot.cell(quota, Some(model)));
            ModelReport {
                route: route.clone(),
                model: model.clone(),
                ok: st.ok,
                failed: st.failed,
                attempts: st.attempts,
                achieved_per_sec: if secs > 0.0 { intervals / secs } else { 0.0 },
                learned_per_sec: cell.map(|c| c.pace),
                source: cell.map(|c| c.source.to_string()),
            }
        })
        .collect();
    let ideal_secs = route_reports
        .iter()
        .filter_map(|r| r.ideal_secs)
        .reduce(f64::max);
    let wall_secs = wall.as_secs_f64();
    let report = Report {
        input: opts.input.display().to_string(),
        output: opts.output.display().to_string(),
        preset: opts.limits.preset.name().to_owned(),
        time_scale: opts.time_scale,
        shared_through_redis: opts.redis.is_some(),
        lines,
        skipped,
        ok: ok_count,
        failed,
        bad_input,
        unanswered: total - done,
        interrupted: interrupts > 0,
        wall_secs,
        ideal_secs,
        ideal_pct: ideal_secs
            .filter(|_| wall_secs > 0.0)
            .map(|i| 100.0 * i / wall_secs),
        responses_429: client.responses_429.load(Ordering::Relaxed),
        retries,
        statuses,
        routes: route_reports,
        models: model_reports,
    };
    if let Some(path) = &opts.report {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write the report {}: {e}", path.display()))?;
    }
    Ok(report)
}
