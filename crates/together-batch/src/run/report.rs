//! The summary of a run: per route and per model, against the quotas and
//! the learned paces; printed, and written as JSON with `--report`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::client::Client;
use super::collect::{Stats, Tally};
use super::options::{RunOptions, is_page};
use super::plan::Plan;
use super::timeline::Series;

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
    /// On a route a token quota paces: the tokens the answers that
    /// reported their usage were charged up front (the stack's estimate),
    /// and what they used (`null` when none did, or no token quota).
    pub(crate) tokens_estimated: Option<u64>,
    pub(crate) tokens_used: Option<u64>,
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

/// One kind of failure: how many, one custom_id, what the API said, what to do.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FailureReport {
    /// The HTTP status (`null`: no answer).
    pub(crate) status: Option<u16>,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) count: u64,
    pub(crate) example_custom_id: String,
    pub(crate) message: String,
    pub(crate) advice: String,
}

/// The final summary (`--report` writes it as JSON).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) preset: String,
    /// Where the limits came from: a file, a tier, the default.
    pub(crate) limits_from: String,
    pub(crate) time_scale: f64,
    pub(crate) shared_through_redis: bool,
    /// With Redis: decisions asked of it, and made locally while it failed.
    pub(crate) shared_decisions: Option<u64>,
    pub(crate) decided_locally: Option<u64>,
    /// Non-blank input lines.
    pub(crate) lines: u64,
    /// Lines already answered in the output (not sent again).
    pub(crate) skipped: u64,
    pub(crate) ok: u64,
    /// Failed lines, bad input included.
    pub(crate) failed: u64,
    /// Lines that could not be read as requests.
    pub(crate) bad_input: u64,
    /// Lines the output already records as failed (not sent again unless
    /// `--retry-failed`); they count against the exit status.
    pub(crate) failed_earlier: u64,
    /// The most frequent failures of this run, with an example each.
    pub(crate) failure_reasons: Vec<FailureReport>,
    /// Why sending stopped early (an error that would hit every line).
    pub(crate) stopped_early: Vec<String>,
    /// The output stopped taking writes (a full disk): why. Answers after
    /// it are not recorded; their lines are sent again on resume.
    pub(crate) output_error: Option<String>,
    /// A `--report` that could not be written after the run (the others
    /// were): said after the summary, exit status 2.
    #[serde(skip)]
    pub(crate) report_error: Option<String>,
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

/// Achieved requests per second over `secs`: the intervals between attempts.
fn achieved(st: &Stats) -> (f64, f64) {
    let secs = st.last.as_secs_f64();
    let intervals = st.attempts.saturating_sub(1) as f64;
    (secs, if secs > 0.0 { intervals / secs } else { 0.0 })
}

impl Report {
    /// Sums up a run; `failed_earlier` failures were already in the output.
    pub(crate) fn new(
        opts: &RunOptions,
        failed_earlier: u64,
        plan: &Plan,
        tally: &Tally,
        client: &Client,
        rates: &BTreeMap<String, f64>,
        learned: &BTreeMap<String, String>,
    ) -> Self {
        // The routes a token quota paces: their tokens are worth showing.
        let token_quotas: Vec<String> = client
            .limits
            .table()
            .into_iter()
            .filter(|row| row.rate.counts_tokens())
            .map(|row| row.quota)
            .collect();
        let counts_tokens: Vec<String> = client
            .limits
            .routes()
            .into_iter()
            .filter(|(_, quotas)| quotas.iter().any(|q| token_quotas.contains(q)))
            .map(|(route, _)| route)
            .collect();
        let routes: Vec<RouteReport> = tally
            .routes
            .iter()
            .map(|(route, st)| {
                let tokens = st.with_usage > 0 && counts_tokens.contains(route);
                let (secs, achieved) = achieved(st);
                let intervals = st.attempts.saturating_sub(1) as f64;
                let quota = rates.get(route).copied();
                // An ideal needs two requests and some success to mean anything.
                let ideal = quota
                    .filter(|_| intervals >= 1.0 && st.ok > 0)
                    .map(|q| intervals / q);
                RouteReport {
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
                    tokens_estimated: tokens.then_some(st.tokens_estimated),
                    tokens_used: tokens.then_some(st.tokens_used),
                }
            })
            .collect();
        let snapshot = client.quota.snapshot();
        let sharing = client.quota.sharing_stats();
        let models = tally
            .models
            .iter()
            .map(|((route, model), st)| {
                let cell = learned
                    .get(route)
                    .and_then(|quota| snapshot.cell(quota, Some(model)));
                ModelReport {
                    route: route.clone(),
                    model: model.clone(),
                    ok: st.ok,
                    failed: st.failed,
                    attempts: st.attempts,
                    achieved_per_sec: achieved(st).1,
                    learned_per_sec: cell.map(|c| c.pace),
                    source: cell.map(|c| c.source.to_string()),
                }
            })
            .collect();
        let ideal_secs = routes.iter().filter_map(|r| r.ideal_secs).reduce(f64::max);
        let mut reasons: Vec<FailureReport> = tally
            .reasons
            .iter()
            .map(|((status, kind), r)| FailureReport {
                status: (*status != 0).then_some(*status),
                kind: kind.clone(),
                count: r.count,
                example_custom_id: r.example.clone(),
                message: r.message.clone(),
                advice: r.advice.clone(),
            })
            .collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.count));
        reasons.truncate(5);
        let wall_secs = tally.wall.as_secs_f64();
        Report {
            input: opts.input.display().to_string(),
            output: opts.output.display().to_string(),
            preset: opts.limits.preset.name().to_owned(),
            limits_from: opts.limits.origin.clone(),
            time_scale: opts.time_scale,
            shared_through_redis: opts.redis.is_some(),
            shared_decisions: sharing.map(|s| s.asked),
            decided_locally: sharing.map(|s| s.decided_locally),
            lines: plan.lines,
            skipped: plan.skipped,
            ok: tally.ok,
            failed: tally.failed,
            bad_input: plan.bad.len() as u64,
            failed_earlier,
            failure_reasons: reasons,
            stopped_early: tally.stops.clone(),
            output_error: tally.output_error.clone(),
            report_error: None,
            unanswered: plan.total - tally.done,
            interrupted: tally.interrupted,
            wall_secs,
            ideal_secs,
            ideal_pct: ideal_secs
                .filter(|_| wall_secs > 0.0)
                .map(|i| 100.0 * i / wall_secs),
            responses_429: client.responses_429(),
            retries: tally.retries,
            statuses: tally.statuses.clone(),
            routes,
            models,
        }
    }

    /// Writes the report to each `--report`: a page with the charts of
    /// `series` for a name ending `.html` or `.htm`, JSON for any other.
    /// One that fails does not keep the others from being written; the
    /// failures are returned together.
    pub(crate) fn write(&self, opts: &RunOptions, series: &Series) -> Result<(), String> {
        let errors: Vec<String> = opts
            .reports
            .iter()
            .filter_map(|path| {
                let text = if is_page(path) {
                    serde_json::to_value(self)
                        .map_err(|e| e.to_string())
                        .and_then(|json| super::html::page(&json, series))
                } else {
                    serde_json::to_string_pretty(self)
                        .map(|t| t + "\n")
                        .map_err(|e| e.to_string())
                };
                text.and_then(|t| std::fs::write(path, t).map_err(|e| e.to_string()))
                    .map_err(|e| format!("cannot write the report {}: {e}", path.display()))
                    .err()
            })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
