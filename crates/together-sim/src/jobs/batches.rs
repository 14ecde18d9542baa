//! Batches: create, run their lines, list, cancel.

use std::sync::MutexGuard;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Batch, File, Inner, Jobs, not_found};
use crate::fake::{ApiError, Catalog, iso8601, unix_now};

impl Jobs {
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
    /// The jobs, locked, with every batch finished by `now` given its output.
    fn settled(&self, catalog: &Catalog, now: Duration) -> MutexGuard<'_, Inner> {
        let mut inner = self.lock();
        self.settle(&mut inner, catalog, now);
        inner
    }

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
        let inner = self.settled(catalog, now);
        inner
            .batches
            .iter()
            .find(|b| b.owner == owner && b.id == id)
            .map(|b| self.batch_json(b, now))
            .ok_or_else(|| not_found("Batch", id))
    }

    pub(crate) fn list_batches(&self, owner: &str, catalog: &Catalog, now: Duration) -> Value {
        let inner = self.settled(catalog, now);
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
        let mut inner = self.settled(catalog, now);
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
