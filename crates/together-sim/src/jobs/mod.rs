//! Fine-tunes, files and batches. Statuses follow simulated time lazily:
//! a job's status is computed from its creation time and the configured
//! durations whenever it is read, so no background task is needed.
//!
//! - Fine-tunes: `pending` -> `queued` -> `running` -> `completed`;
//!   cancel -> `cancelled`. At most `max_concurrent` non-terminal jobs per
//!   key; a create beyond answers 409.
//! - Files: `POST /v1/files` takes a `multipart/form-data` upload as the
//!   SDKs send it (a `file` part and a `purpose` field), or a JSON body
//!   `{"purpose": "batch-api", "filename": "in.jsonl", "content": "<jsonl>"}`.
//! - Batches: `VALIDATING` -> `IN_PROGRESS` -> `COMPLETED`; cancel ->
//!   `CANCELLED`. The output file (one line per input line:
//!   `{"id", "custom_id", "response": {"status_code", "body"}}`) appears
//!   when the batch completes; lines that fail carry their error body and
//!   status code in `response`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{BatchConfig, FineTuneConfig};
use crate::fake::{ApiError, Catalog, iso8601, unix_now};
use crate::stats::FineTuneStats;

mod batches;
mod files;

#[derive(Debug)]
struct FineTune {
    id: String,
    owner: String,
    model: String,
    training_file: String,
    suffix: Option<String>,
    created: Duration,
    created_unix: u64,
    cancelled: Option<Duration>,
}

#[derive(Debug)]
struct File {
    id: String,
    owner: String,
    filename: String,
    purpose: String,
    content: String,
    created_unix: u64,
}

#[derive(Debug)]
struct Batch {
    id: String,
    owner: String,
    input_file_id: String,
    endpoint: String,
    lines: usize,
    bytes: usize,
    created: Duration,
    created_unix: u64,
    cancelled: Option<Duration>,
    output_file_id: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    fine_tunes: Vec<FineTune>,
    files: HashMap<String, File>,
    batches: Vec<Batch>,
}

/// Job store.
#[derive(Debug)]
pub(crate) struct Jobs {
    ft: FineTuneConfig,
    batch: BatchConfig,
    inner: Mutex<Inner>,
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        format!("{what} {id} not found"),
    )
    .code("not_found")
}

impl FineTune {
    fn phases(&self, cfg: &FineTuneConfig) -> (Duration, Duration) {
        let start = self.created + cfg.pending + cfg.queued;
        (start, start + cfg.running)
    }

    fn status(&self, cfg: &FineTuneConfig, now: Duration) -> &'static str {
        let phases = [
            (cfg.pending, "pending"),
            (cfg.queued, "queued"),
            (cfg.running, "running"),
        ];
        phase(self.created, self.cancelled, now, &phases).unwrap_or("completed", "cancelled")
    }

    fn json(&self, cfg: &FineTuneConfig, now: Duration) -> Value {
        let status = self.status(cfg, now);
        let updated = self.created_unix + now.saturating_sub(self.created).as_secs();
        json!({
            "id": self.id,
            "object": "fine-tune",
            "status": status,
            "model": self.model,
            "training_file": self.training_file,
            "validation_file": "",
            "output_name": format!("sim/{}-{}", self.model.rsplit('/').next().unwrap_or(&self.model), self.suffix.as_deref().unwrap_or(&self.id)),
            "created_at": iso8601(self.created_unix),
            "updated_at": iso8601(updated),
            "n_epochs": 1,
            "batch_size": 16,
            "learning_rate": 0.00001,
            "events": [],
        })
    }
}

/// Where a job created at `created` stands at `now`, its phases lasting
/// the durations given in turn.
enum Phase {
    /// In the named phase.
    In(&'static str),
    /// Past every phase.
    Done,
    /// Cancelled before `now`.
    Cancelled,
}

impl Phase {
    /// The phase's name, or `done` or `cancelled`.
    fn unwrap_or(self, done: &'static str, cancelled: &'static str) -> &'static str {
        match self {
            Phase::In(name) => name,
            Phase::Done => done,
            Phase::Cancelled => cancelled,
        }
    }
}

fn phase(
    created: Duration,
    cancelled: Option<Duration>,
    now: Duration,
    phases: &[(Duration, &'static str)],
) -> Phase {
    if cancelled.is_some_and(|c| c <= now) {
        return Phase::Cancelled;
    }
    let elapsed = now.saturating_sub(created);
    let mut end = Duration::ZERO;
    for &(length, name) in phases {
        end += length;
        if elapsed < end {
            return Phase::In(name);
        }
    }
    Phase::Done
}

/// The level after each of `events` (sorted `(at, +1 or -1)`) up to `now`.
fn levels(events: &[(Duration, i64)], now: Duration) -> impl Iterator<Item = (Duration, u64)> {
    events
        .iter()
        .take_while(move |(t, _)| *t <= now)
        .scan(0i64, |level, &(t, d)| {
            *level += d;
            Some((t, (*level).max(0) as u64))
        })
}

fn terminal(status: &str) -> bool {
    matches!(status, "completed" | "cancelled" | "error" | "user_error")
}

impl Batch {
    fn status(&self, cfg: &BatchConfig, now: Duration) -> &'static str {
        let phases = [
            (cfg.validating, "VALIDATING"),
            (cfg.in_progress, "IN_PROGRESS"),
        ];
        phase(self.created, self.cancelled, now, &phases).unwrap_or("COMPLETED", "CANCELLED")
    }
}

impl Jobs {
    pub(crate) fn new(ft: FineTuneConfig, batch: BatchConfig) -> Self {
        Self {
            ft,
            batch,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn create_fine_tune(
        &self,
        owner: &str,
        body: &Value,
        catalog: &Catalog,
        now: Duration,
    ) -> Result<Value, ApiError> {
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("Missing required field `model`.").param("model"))?;
        let training_file = body
            .get("training_file")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::invalid("Missing required field `training_file`.").param("training_file")
            })?;
        catalog.model(model)?;
        let mut inner = self.lock();
        let active = inner
            .fine_tunes
            .iter()
            .filter(|j| j.owner == owner && !terminal(j.status(&self.ft, now)))
            .count();
        if active >= self.ft.max_concurrent {
            return Err(ApiError::new(
                409,
                "conflict",
                format!(
                    "You have reached the maximum of {} concurrent fine-tuning jobs. Wait for a job to finish or cancel one.",
                    self.ft.max_concurrent
                ),
            ));
        }
        inner.next += 1;
        let job = FineTune {
            id: format!("ft-sim-{:08}", inner.next),
            owner: owner.to_string(),
            model: model.to_string(),
            training_file: training_file.to_string(),
            suffix: body
                .get("suffix")
                .and_then(Value::as_str)
                .map(str::to_string),
            created: now,
            created_unix: unix_now(),
            cancelled: None,
        };
        let v = job.json(&self.ft, now);
        inner.fine_tunes.push(job);
        Ok(v)
    }

    pub(crate) fn list_fine_tunes(&self, owner: &str, now: Duration) -> Value {
        let inner = self.lock();
        let data: Vec<Value> = inner
            .fine_tunes
            .iter()
            .filter(|j| j.owner == owner)
            .map(|j| j.json(&self.ft, now))
            .collect();
        json!({ "data": data })
    }

    pub(crate) fn get_fine_tune(
        &self,
        owner: &str,
        id: &str,
        now: Duration,
    ) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .fine_tunes
            .iter()
            .find(|j| j.owner == owner && j.id == id)
            .map(|j| j.json(&self.ft, now))
            .ok_or_else(|| not_found("Fine-tune job", id))
    }

    pub(crate) fn cancel_fine_tune(
        &self,
        owner: &str,
        id: &str,
        now: Duration,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let job = inner
            .fine_tunes
            .iter_mut()
            .find(|j| j.owner == owner && j.id == id)
            .ok_or_else(|| not_found("Fine-tune job", id))?;
        let status = job.status(&self.ft, now);
        if terminal(status) {
            return Err(ApiError::invalid(format!(
                "Fine-tune job {id} is already {status} and cannot be cancelled."
            )));
        }
        job.cancelled = Some(now);
        Ok(job.json(&self.ft, now))
    }

    pub(crate) fn fine_tune_stats(&self, now: Duration) -> FineTuneStats {
        let inner = self.lock();
        let mut running = Vec::new();
        let mut active = Vec::new();
        let mut out = FineTuneStats {
            created: inner.fine_tunes.len() as u64,
            ..FineTuneStats::default()
        };
        for j in &inner.fine_tunes {
            let (start, end) = j.phases(&self.ft);
            let end = j.cancelled.map_or(end, |c| c.min(end));
            if start < end {
                running.push((start, 1i64));
                running.push((end, -1));
            }
            if j.created < end {
                active.push((j.created, 1i64));
                active.push((end, -1));
            }
            match j.status(&self.ft, now) {
                "running" => {
                    out.running_now += 1;
                    out.active_now += 1;
                }
                s if !terminal(s) => out.active_now += 1,
                _ => {}
            }
        }
        // Ends sort before starts at the same instant (half-open intervals).
        running.sort();
        active.sort();
        for (t, level) in levels(&running, now) {
            out.max_running = out.max_running.max(level);
            match out.running_timeline.last_mut() {
                Some(last) if last.0 == t.as_secs_f64() => last.1 = level,
                _ => out.running_timeline.push((t.as_secs_f64(), level)),
            }
        }
        out.max_active = levels(&active, now).map(|(_, l)| l).max().unwrap_or(0);
        out
    }
}
