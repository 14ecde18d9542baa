//! Collecting results: each written to the output as it arrives, counted
//! per route and model, shown on the progress line; Ctrl-C handled here.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tower_quota::Snapshot;

use super::client::Client;
use super::feed::Feeders;
use super::options::RunOptions;
use super::options::is_page;
use super::plan::save_paces;
use super::send::Done;
use super::stop::{early_stop, suggest};
use super::timeline::Timeline;
use crate::output::Output;
use crate::progress::Progress;

/// The achieved rate is measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// How often the paces in force and the holds are sampled for the report's charts.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// How often the learned paces are saved while a run goes.
const STATE_EVERY: Duration = Duration::from_secs(5);

/// What one route (or one route and model) got.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) answered: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// Requests sent, retries included.
    pub(crate) attempts: u64,
    /// Jobs planned.
    pub(crate) total: u64,
    /// From the start to the last answer.
    pub(crate) last: Duration,
    /// Of the answers that reported their usage: tokens estimated up front, and used.
    pub(crate) tokens_estimated: u64,
    pub(crate) tokens_used: u64,
    /// How many answers reported their usage.
    pub(crate) with_usage: u64,
    recent: VecDeque<Instant>,
}

impl Stats {
    fn add(&mut self, done: &Done, since_start: Duration, now: Instant) {
        self.answered += 1;
        self.attempts += u64::from(done.attempts);
        if let Some((estimated, used)) = done.tokens {
            self.tokens_estimated += estimated;
            self.tokens_used += used;
            self.with_usage += 1;
        }
        self.last = since_start;
        if done.ok() {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
        {
            self.recent.pop_front();
        }
    }

    /// Answers per second over the last [`RATE_WINDOW`]: the intervals
    /// between them over the time they span (answers bunch: counting them
    /// over the window would read above the pace they were sent at).
    fn recent_rate(&self, now: Instant) -> f64 {
        let mut recent = self
            .recent
            .iter()
            .filter(|t| now.duration_since(**t) <= RATE_WINDOW);
        let Some(first) = recent.next() else {
            return 0.0;
        };
        let (n, last) = recent.fold((0u32, *first), |(n, _), t| (n + 1, *t));
        let span = last.duration_since(*first).as_secs_f64();
        if n == 0 || span <= 0.0 {
            0.0
        } else {
            f64::from(n) / span
        }
    }
}

/// Everything the run got, for the report.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) routes: BTreeMap<String, Stats>,
    /// Per route and model, for learned quotas.
    pub(crate) models: BTreeMap<(String, String), Stats>,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    pub(crate) retries: u64,
    /// Results written, bad input lines included.
    pub(crate) done: u64,
    pub(crate) statuses: BTreeMap<u16, u64>,
    pub(crate) interrupted: bool,
    pub(crate) wall: Duration,
    /// Failures by status and type, with a count and an example.
    pub(crate) reasons: BTreeMap<(u16, String), Reason>,
    /// Why sending stopped early, if it did.
    pub(crate) stops: Vec<String>,
    /// The output stopped taking writes (a full disk): why.
    pub(crate) output_error: Option<String>,
}

/// One kind of failure in the summary.
#[derive(Debug, Clone)]
pub(crate) struct Reason {
    pub(crate) count: u64,
    pub(crate) example: String,
    pub(crate) message: String,
    pub(crate) advice: String,
}

/// What the collector reads besides the results.
pub(crate) struct Context<'a> {
    pub(crate) opts: &'a RunOptions,
    pub(crate) client: &'a Client,
    /// Each route's static request rate, per second.
    pub(crate) rates: &'a BTreeMap<String, f64>,
    /// Each route's learned request quota, by name.
    pub(crate) learned: &'a BTreeMap<String, String>,
    /// Each route's quotas, by name.
    pub(crate) route_quotas: &'a BTreeMap<String, Vec<String>>,
    /// What the run did over time, for the report's charts.
    pub(crate) timeline: &'a Timeline,
}

/// Writes every result as it arrives until the feeders are done (or, after
/// a write failure or a second Ctrl-C, abandoned); `tally` holds the bad
/// input lines already written. An output that stops taking writes ends
/// the run with the summary and the error in [`Tally::output_error`].
pub(crate) async fn collect(
    cx: &Context<'_>,
    mut feeders: Feeders,
    out: &mut Output,
    progress: &mut Progress,
    mut tally: Tally,
    total: u64,
) -> Result<Tally, String> {
    let start = Instant::now();
    let mut signals = signals();
    let mut interrupts = 0;
    let mut abandoned = false;
    let mut store_failing = false;
    let grace = tokio::time::sleep(Duration::from_secs(86_400 * 365));
    tokio::pin!(grace);
    let mut ticker = tokio::time::interval(Duration::from_millis(200));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Paces and holds are sampled only for a report page's charts.
    let charts = cx.opts.reports.iter().any(|path| is_page(path));
    let mut sampler = tokio::time::interval(SAMPLE_EVERY);
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut write_error = None;
    let mut last_save = Instant::now();
    loop {
        tokio::select! {
            d = feeders.results.recv() => {
                let Some(mut d) = d else { break };
                if let Err(e) = out.write(&d.line) {
                    write_error = Some(e);
                    feeders.abandon();
                    continue;
                }
                tally.record(cx, &d, start);
                note_store(cx, progress, &mut store_failing);
                if !cx.opts.keep_going
                    && let Some(mut stop) = early_stop(cx.opts, &d)
                    && feeders.block(|b| stop.apply(b))
                {
                    if let Some(model) = &stop.suggest
                        && let Some(e) = d.error.take()
                    {
                        let key = reason_key(d.status, &e);
                        let advice = suggest(&cx.client.together, e, model).await;
                        stop.why = stop.why.replacen(": stopped", &format!("; {advice}: stopped"), 1);
                        if let Some(reason) = tally.reasons.get_mut(&key) {
                            reason.advice = advice;
                        }
                    }
                    progress.note(&stop.why);
                    tally.stops.push(stop.why);
                }
                drop(d.permit.take());
            }
            Some(name) = signals.recv() => {
                interrupts += 1;
                if interrupts == 1 {
                    feeders.stop();
                    grace.as_mut().reset(tokio::time::Instant::now() + cx.opts.grace);
                    progress.note(&format!(
                        "{name}: taking no new lines; waiting up to {:?} for the {} request(s) \
                         already sent (those still queued for quota are dropped; {name} again \
                         to abandon them all: they stay unanswered and are sent on resume)",
                        cx.opts.grace,
                        feeders.sent_in_flight()
                    ));
                } else {
                    feeders.abandon();
                    abandoned = true;
                    progress.note(&format!("{name} again: abandoning the requests in flight"));
                }
            }
            () = &mut grace, if interrupts > 0 && !abandoned => {
                abandoned = true;
                feeders.abandon();
                progress.note(&format!(
                    "abandoning the {} request(s) still in flight after {:?}: they stay \
                     unanswered and are sent on resume",
                    feeders.sent_in_flight(),
                    cx.opts.grace
                ));
            }
            _ = sampler.tick(), if charts => sample(cx, &tally),
            _ = ticker.tick() => {
                note_store(cx, progress, &mut store_failing);
                progress.update(tally.done, total, &status_line(cx, &tally), false);
                if last_save.elapsed() >= STATE_EVERY {
                    last_save = Instant::now();
                    if let Some(e) = save_paces(cx.opts, &cx.client.quota) {
                        progress.note(&e);
                    }
                }
            }
        }
    }
    tally.wall = start.elapsed();
    if charts {
        sample(cx, &tally);
    }
    tally.interrupted = interrupts > 0;
    progress.update(tally.done, total, &status_line(cx, &tally), true);
    if let Some(e) = save_paces(cx.opts, &cx.client.quota) {
        progress.note(&e);
    }
    progress.finish();
    if let Err(e) = out.flush() {
        write_error.get_or_insert(e);
    }
    tally.output_error = write_error;
    Ok(tally)
}

impl Tally {
    /// Counts a result.
    fn record(&mut self, cx: &Context<'_>, d: &Done, start: Instant) {
        let now = Instant::now();
        let since_start = now.duration_since(start);
        self.done += 1;
        *self.statuses.entry(d.status).or_default() += 1;
        self.retries += u64::from(d.attempts.saturating_sub(1));
        match &d.error {
            None => self.ok += 1,
            Some(e) => {
                self.failed += 1;
                let reason = self
                    .reasons
                    .entry(reason_key(d.status, e))
                    .or_insert_with(|| Reason {
                        count: 0,
                        example: d.custom_id.clone(),
                        message: e.message().to_owned(),
                        advice: e.advice(),
                    });
                reason.count += 1;
            }
        }
        if cx.learned.contains_key(&d.route)
            && let Some(model) = &d.model
        {
            let key = (d.route.clone(), model.clone());
            self.models.entry(key).or_default().add(d, since_start, now);
        }
        self.routes
            .entry(d.route.clone())
            .or_default()
            .add(d, since_start, now);
    }
}

/// How the summary groups failures: by status and the type the record shows.
fn reason_key(status: u16, e: &together_tower::Error) -> (u16, String) {
    let kind = e.type_name().unwrap_or(e.kind().label());
    (status, kind.to_owned())
}

/// Says when the shared store stops (or starts again) answering.
fn note_store(cx: &Context<'_>, progress: &Progress, failing: &mut bool) {
    let Some(stats) = cx.client.quota.sharing_stats() else {
        return;
    };
    if stats.store_failing == *failing {
        return;
    }
    *failing = stats.store_failing;
    progress.note(if *failing {
        "the shared store (Redis) does not answer: deciding locally, at this process's share \
         of each quota, until it answers again"
    } else {
        "the shared store (Redis) answers again: quotas are shared again"
    });
}

/// Ctrl-C, SIGTERM (docker stop, systemd, timeout) and SIGHUP, by name, as
/// a channel: the first stops taking lines, the second abandons.
fn signals() -> mpsc::UnboundedReceiver<&'static str> {
    let (tx, rx) = mpsc::unbounded_channel();
    let ctrl_c = tx.clone();
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            if ctrl_c.send("Ctrl-C").is_err() {
                break;
            }
        }
    });
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        for (kind, name) in [
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
        ] {
            let Ok(mut stream) = signal(kind) else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if tx.send(name).is_err() {
                        break;
                    }
                }
            });
        }
    }
    rx
}

/// Until when `route` is held by a server's wait hint, if it is.
fn held_until(cx: &Context<'_>, snapshot: &Snapshot, route: &str) -> Option<Instant> {
    let quotas = cx.route_quotas.get(route)?;
    snapshot
        .cells
        .iter()
        .filter(|c| quotas.contains(&c.quota))
        .filter_map(|c| c.hold_until)
        .max()
        .filter(|until| *until > snapshot.at)
        .map(tokio::time::Instant::into_std)
}

/// The request pace in force on `route`, per second: its static quota, or
/// its learned cells' paces summed over the models.
fn pace_of(cx: &Context<'_>, snapshot: &Snapshot, route: &str) -> Option<f64> {
    if let Some(rate) = cx.rates.get(route) {
        return Some(*rate);
    }
    let quota = cx.learned.get(route)?;
    let paces = snapshot.cells.iter().filter(|c| &c.quota == quota);
    paces.map(|c| c.pace).reduce(|a, b| a + b)
}

/// Samples each route's pace in force and holds into the timeline.
fn sample(cx: &Context<'_>, tally: &Tally) {
    let snapshot = cx.client.quota.snapshot();
    let next = Instant::now() + SAMPLE_EVERY;
    for route in tally.routes.keys() {
        let lane = cx.timeline.lane(route);
        // Marked up to the next sample, which marks on if the hold goes on.
        let held = held_until(cx, &snapshot, route).map(|until| until.min(next));
        cx.timeline
            .sample(lane, pace_of(cx, &snapshot, route), held);
    }
}

/// The progress line: per route the achieved rate against its quota (or
/// its learned paces), the ETA, 429s, retries, failures.
fn status_line(cx: &Context<'_>, tally: &Tally) -> String {
    let now = Instant::now();
    let snapshot = cx.client.quota.snapshot();
    let mut parts = Vec::new();
    let mut eta = 0.0f64;
    for (route, st) in &tally.routes {
        let held = held_until(cx, &snapshot, route).map_or(String::new(), |until| {
            let left = until.saturating_duration_since(snapshot.at.into_std());
            format!(" held {:.0} s", left.as_secs_f64().ceil())
        });
        let rate = st.recent_rate(now);
        let left = st.total.saturating_sub(st.answered) as f64;
        if let Some(q) = cx.rates.get(route) {
            // Sent at most at the quota: more is the answers' jitter.
            let rate = rate.min(*q);
            parts.push(format!("{} {rate:.1}/{q:.1} per s{held}", short(route)));
            eta = eta.max(left / q);
            continue;
        }
        let paces: Vec<String> = cx
            .learned
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
        let learned = if paces.is_empty() {
            String::new()
        } else {
            format!(" (learned {})", paces.join(", "))
        };
        parts.push(format!("{} {rate:.1}/s{learned}{held}", short(route)));
        if rate > 0.0 {
            eta = eta.max(left / rate);
        }
    }
    format!(
        "| {} | ETA {:.0} s | 429s {} | retries {} | failed {}",
        parts.join(", "),
        eta.ceil(),
        cx.client.responses_429(),
        tally.retries,
        tally.failed,
    )
}

/// A model id without its organisation, at most 24 characters: `bge-large-en-v1.5`.
fn short_model(model: &str) -> &str {
    let name = model.rsplit('/').next().unwrap_or(model);
    match name.char_indices().nth(24) {
        Some((end, _)) => &name[..end],
        None => name,
    }
}

/// A route for the progress line: `chat/completions` for `POST
/// /v1/chat/completions`, the method kept when it is not POST.
fn short(route: &str) -> String {
    let (method, path) = route.split_once(' ').unwrap_or(("", route));
    let path = path.strip_prefix("/v1/").unwrap_or(path);
    match method {
        "POST" | "" => path.to_owned(),
        _ => format!("{method} {path}"),
    }
}
