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
        if self.cancelled.is_some_and(|c| c <= now) {
            return "cancelled";
        }
        let e = now.saturating_sub(self.created);
        if e < cfg.pending {
            "pending"
        } else if e < cfg.pending + cfg.queued {
            "queued"
        } else if e < cfg.pending + cfg.queued + cfg.running {
            "running"
        } else {
            "completed"
        }
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

fn terminal(status: &str) -> bool {
    matches!(status, "completed" | "cancelled" | "error" | "user_error")
}

impl Batch {
    fn status(&self, cfg: &BatchConfig, now: Duration) -> &'static str {
        if self.cancelled.is_some_and(|c| c <= now) {
            return "CANCELLED";
        }
        let e = now.saturating_sub(self.created);
        if e < cfg.validating {
            "VALIDATING"
        } else if e < cfg.validating + cfg.in_progress {
            "IN_PROGRESS"
        } else {
            "COMPLETED"
        }
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
        let mut level = 0i64;
        for (t, d) in &running {
            if *t > now {
                break;
            }
            level += d;
            out.max_running = out.max_running.max(level as u64);
            match out.running_timeline.last_mut() {
                Some(last) if last.0 == t.as_secs_f64() => last.1 = level as u64,
                _ => out.running_timeline.push((t.as_secs_f64(), level as u64)),
            }
        }
        let mut level = 0i64;
        for (t, d) in &active {
            if *t > now {
                break;
            }
            level += d;
            out.max_active = out.max_active.max(level as u64);
        }
        out
    }

    pub(crate) fn upload_file(&self, owner: &str, body: &Value) -> Result<Value, ApiError> {
        let content = body.get("content").and_then(Value::as_str).ok_or_else(|| {
            ApiError::invalid(
                "Missing field `content`: upload multipart/form-data with a `file` part, or a JSON body {\"purpose\": \"batch-api\", \"filename\": \"in.jsonl\", \"content\": \"<jsonl>\"}.",
            )
            .param("content")
        })?;
        let purpose = body
            .get("purpose")
            .and_then(Value::as_str)
            .unwrap_or("batch-api");
        let filename = body
            .get("filename")
            .and_then(Value::as_str)
            .unwrap_or("upload.jsonl");
        let mut inner = self.lock();
        inner.next += 1;
        let file = File {
            id: format!("file-sim-{:08}", inner.next),
            owner: owner.to_string(),
            filename: filename.to_string(),
            purpose: purpose.to_string(),
            content: content.to_string(),
            created_unix: unix_now(),
        };
        let v = file_json(&file);
        inner.files.insert(file.id.clone(), file);
        Ok(v)
    }

    pub(crate) fn list_files(&self, owner: &str) -> Value {
        let inner = self.lock();
        let mut files: Vec<&File> = inner.files.values().filter(|f| f.owner == owner).collect();
        files.sort_by(|a, b| a.id.cmp(&b.id));
        json!({"object": "list", "data": files.into_iter().map(file_json).collect::<Vec<_>>()})
    }

    pub(crate) fn get_file(&self, owner: &str, id: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        inner
            .files
            .get(id)
            .filter(|f| f.owner == owner)
            .map(file_json)
            .ok_or_else(|| not_found("File", id))
    }

    pub(crate) fn file_content(&self, owner: &str, id: &str) -> Result<String, ApiError> {
        let inner = self.lock();
        inner
            .files
            .get(id)
            .filter(|f| f.owner == owner)
            .map(|f| f.content.clone())
            .ok_or_else(|| not_found("File", id))
    }

    pub(crate) fn create_batch(
        &self,
        owner: &str,
        body: &Value,
        now: Duration,
    ) -> Result<Value, ApiError> {
        let input = body
            .get("input_file_id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::invalid("Missing required field `input_file_id`.").param("input_file_id")
            })?;
        let endpoint = body
            .get("endpoint")
            .and_then(Value::as_str)
            .unwrap_or(crate::config::CHAT);
        let mut inner = self.lock();
        let file = inner
            .files
            .get(input)
            .filter(|f| f.owner == owner)
            .ok_or_else(|| not_found("File", input).param("input_file_id"))?;
        let lines = file
            .content
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count();
        let bytes = file.content.len();
        if lines == 0 {
            return Err(ApiError::invalid("The input file has no requests.").param("input_file_id"));
        }
        if lines > self.batch.max_requests_per_batch {
            return Err(ApiError::invalid(format!(
                "The batch has {lines} requests, more than the maximum of {} per batch.",
                self.batch.max_requests_per_batch
            ))
            .param("input_file_id"));
        }
        let in_flight = inner
            .batches
            .iter()
            .filter(|b| {
                b.owner == owner
                    && matches!(b.status(&self.batch, now), "VALIDATING" | "IN_PROGRESS")
            })
            .count();
        if in_flight >= self.batch.max_in_flight {
            return Err(ApiError::new(
                429,
                "batch_limit_exceeded",
                format!(
                    "You have {in_flight} batches in progress, the maximum. Wait for one to finish."
                ),
            ));
        }
        inner.next += 1;
        let b = Batch {
            id: format!("batch-sim-{:08}", inner.next),
            owner: owner.to_string(),
            input_file_id: input.to_string(),
            endpoint: endpoint.to_string(),
            lines,
            bytes,
            created: now,
            created_unix: unix_now(),
            cancelled: None,
            output_file_id: None,
        };
        let v = self.batch_json(&b, now);
        inner.batches.push(b);
        Ok(json!({"job": v, "warning": ""}))
    }

    fn batch_json(&self, b: &Batch, now: Duration) -> Value {
        let status = b.status(&self.batch, now);
        let e = now.saturating_sub(b.created);
        let progress = match status {
            "COMPLETED" => 100.0,
            "IN_PROGRESS" => {
                let p = e.saturating_sub(self.batch.validating).as_secs_f64()
                    / self.batch.in_progress.as_secs_f64().max(1e-9);
                (p * 100.0).min(99.0)
            }
            _ => 0.0,
        };
        let done_unix = b.created_unix + (self.batch.validating + self.batch.in_progress).as_secs();
        json!({
            "id": b.id,
            "user_id": "sim-user",
            "input_file_id": b.input_file_id,
            "file_size_bytes": b.bytes,
            "status": status,
            "job_deadline": iso8601(b.created_unix + 86_400),
            "created_at": iso8601(b.created_unix),
            "endpoint": b.endpoint,
            "progress": progress,
            "model_id": "",
            "request_count": b.lines,
            "output_file_id": b.output_file_id.clone().unwrap_or_default(),
            "error_file_id": "",
            "error": "",
            "completed_at": if status == "COMPLETED" { Value::String(iso8601(done_unix)) } else { Value::Null },
        })
    }

    /// Materialises output files of batches that completed.
    fn settle(&self, inner: &mut Inner, catalog: &Catalog, now: Duration) {
        let mut outputs = Vec::new();
        for i in 0..inner.batches.len() {
            let b = &inner.batches[i];
            if b.output_file_id.is_some() || b.status(&self.batch, now) != "COMPLETED" {
                continue;
            }
            let Some(file) = inner.files.get(&b.input_file_id) else {
                continue;
            };
            let mut out = String::new();
            for (n, line) in file
                .content
                .lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
            {
                out.push_str(&run_line(catalog, &b.endpoint, n, line).to_string());
                out.push('\n');
            }
            outputs.push((i, out));
        }
        for (i, content) in outputs {
            inner.next += 1;
            let id = format!("file-sim-{:08}", inner.next);
            let owner = inner.batches[i].owner.clone();
            let filename = format!("{}-output.jsonl", inner.batches[i].id);
            inner.files.insert(
                id.clone(),
                File {
                    id: id.clone(),
                    owner,
                    filename,
                    purpose: "batch-output".into(),
                    content,
                    created_unix: unix_now(),
                },
            );
            inner.batches[i].output_file_id = Some(id);
        }
    }

    pub(crate) fn get_batch(
        &self,
        owner: &str,
        id: &str,
        catalog: &Catalog,
        now: Duration,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        self.settle(&mut inner, catalog, now);
        inner
            .batches
            .iter()
            .find(|b| b.owner == owner && b.id == id)
            .map(|b| self.batch_json(b, now))
            .ok_or_else(|| not_found("Batch", id))
    }

    pub(crate) fn list_batches(&self, owner: &str, catalog: &Catalog, now: Duration) -> Value {
        let mut inner = self.lock();
        self.settle(&mut inner, catalog, now);
        Value::Array(
            inner
                .batches
                .iter()
                .filter(|b| b.owner == owner)
                .map(|b| self.batch_json(b, now))
                .collect(),
        )
    }

    pub(crate) fn cancel_batch(
        &self,
        owner: &str,
        id: &str,
        catalog: &Catalog,
        now: Duration,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        self.settle(&mut inner, catalog, now);
        let b = inner
            .batches
            .iter_mut()
            .find(|b| b.owner == owner && b.id == id)
            .ok_or_else(|| not_found("Batch", id))?;
        let status = b.status(&self.batch, now);
        if matches!(status, "COMPLETED" | "CANCELLED") {
            return Err(ApiError::invalid(format!(
                "Batch {id} is already {status} and cannot be cancelled."
            )));
        }
        b.cancelled = Some(now);
        let b = inner
            .batches
            .iter()
            .find(|b| b.id == id)
            .expect("found above");
        Ok(self.batch_json(b, now))
    }
}

fn file_json(f: &File) -> Value {
    json!({
        "id": f.id,
        "object": "file",
        "bytes": f.content.len(),
        "created_at": f.created_unix,
        "filename": f.filename,
        "purpose": f.purpose,
        "Processed": true,
        "FileType": "jsonl",
        "LineCount": f.content.lines().filter(|l| !l.trim().is_empty()).count(),
    })
}

fn run_line(catalog: &Catalog, endpoint: &str, n: usize, line: &str) -> Value {
    let parsed: Result<Value, _> = serde_json::from_str(line);
    let (custom_id, result) = match parsed {
        Ok(v) => {
            let custom_id = v.get("custom_id").cloned().unwrap_or(Value::Null);
            let body = v.get("body").cloned().unwrap_or(Value::Null);
            let r = catalog
                .prepare(endpoint, &body)
                .map(|p| catalog.answer(endpoint, &p, &body));
            (custom_id, r)
        }
        Err(e) => (
            Value::Null,
            Err(ApiError::invalid(format!(
                "Invalid JSON on line {}: {e}",
                n + 1
            ))),
        ),
    };
    let (status, body) = match result {
        Ok(b) => (200, b),
        Err(e) => (e.status, e.body()),
    };
    json!({
        "id": format!("req-sim-{n}"),
        "custom_id": custom_id,
        "response": {"status_code": status, "request_id": format!("req-sim-{n}"), "body": body},
    })
}
