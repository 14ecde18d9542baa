//! Fine-tunes and batches: create, read, list, cancel, wait; batch runs.

use std::collections::HashMap;

use http::Method;
use serde_json::{Value, json};

use crate::client::TogetherClient;
use crate::error::Error;
use crate::types::{Batch, BatchRequest, BatchResult, FileObject, FineTune, FineTuneRequest};

fn list_of<T: serde::de::DeserializeOwned>(v: Value, pointer: &str) -> Result<Vec<T>, Error> {
    let items = match (&v, v.pointer(pointer)) {
        (_, Some(items @ Value::Array(_))) => items.clone(),
        (Value::Array(_), _) => v.clone(),
        _ => v.get("data").cloned().unwrap_or(Value::Null),
    };
    serde_json::from_value(items).map_err(|e| Error::decode(format!("job list: {e}")))
}

impl TogetherClient {
    fn ft_path(&self) -> &str {
        self.shared.preset.fine_tunes().path()
    }

    fn batch_path(&self) -> &str {
        self.shared.preset.batches().path()
    }

    /// Starts a fine-tune; waits (FIFO) for a free slot under the preset's cap.
    pub async fn create_fine_tune(&self, request: &FineTuneRequest) -> Result<FineTune, Error> {
        let body = serde_json::to_string(request).map_err(|e| Error::decode(e.to_string()))?;
        self.json(Method::POST, self.ft_path(), Some(body)).await
    }

    /// Reads a fine-tune (a terminal status frees its slot).
    pub async fn fine_tune(&self, id: &str) -> Result<FineTune, Error> {
        self.json(Method::GET, &format!("{}/{id}", self.ft_path()), None)
            .await
    }

    /// Lists the fine-tunes (`{"data": [...]}` or a bare array).
    pub async fn list_fine_tunes(&self) -> Result<Vec<FineTune>, Error> {
        let v: Value = self.json(Method::GET, self.ft_path(), None).await?;
        list_of(v, self.shared.preset.fine_tunes().list_array())
    }

    /// Cancels a fine-tune (frees its slot).
    pub async fn cancel_fine_tune(&self, id: &str) -> Result<FineTune, Error> {
        self.json(
            Method::POST,
            &format!("{}/{id}/cancel", self.ft_path()),
            Some(String::new()),
        )
        .await
    }

    /// Reads the fine-tune every poll interval until its status is terminal.
    pub async fn wait_fine_tune(&self, id: &str) -> Result<FineTune, Error> {
        loop {
            let job = self.fine_tune(id).await?;
            if self.shared.preset.fine_tunes().is_terminal(&job.status) {
                return Ok(job);
            }
            tokio::time::sleep(self.shared.poll_interval).await;
        }
    }

    /// Uploads batch requests as a JSONL file (`purpose: batch-api`), as a
    /// `multipart/form-data` upload (`purpose`, `file_name`, `file` parts),
    /// the way the Together and OpenAI SDKs send files.
    pub async fn upload_batch_file(&self, requests: &[BatchRequest]) -> Result<FileObject, Error> {
        let mut content = String::new();
        for r in requests {
            content.push_str(&serde_json::to_string(r).map_err(|e| Error::decode(e.to_string()))?);
            content.push('\n');
        }
        // multipart/form-data, as the Together and OpenAI SDKs upload files.
        let boundary = multipart_boundary(&content);
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file_name\"\r\n\r\nbatch.jsonl\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"batch.jsonl\"\r\n\
             Content-Type: application/jsonl\r\n\r\n{content}\r\n--{boundary}--\r\n"
        );
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let bytes = self
            .call_typed(Method::POST, "/v1/files", Some(body), Some(&content_type))
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::decode(format!("/v1/files: {e}")))
    }

    /// Creates a batch over an uploaded file for `endpoint`
    /// (`/v1/chat/completions`); waits for a slot under the preset's cap.
    pub async fn create_batch(&self, input_file_id: &str, endpoint: &str) -> Result<Batch, Error> {
        let body = json!({"input_file_id": input_file_id, "endpoint": endpoint, "completion_window": "24h"});
        let v: Value = self
            .json(Method::POST, self.batch_path(), Some(body.to_string()))
            .await?;
        let pointer = self.shared.preset.batches();
        let job = match v.pointer(pointer_or_root(pointer)) {
            Some(job) => job.clone(),
            None => v,
        };
        serde_json::from_value(job).map_err(|e| Error::decode(format!("batch create: {e}")))
    }

    /// Reads a batch (a terminal status frees its slot).
    pub async fn batch(&self, id: &str) -> Result<Batch, Error> {
        self.json(Method::GET, &format!("{}/{id}", self.batch_path()), None)
            .await
    }

    /// Lists the batches (a bare array on Together, `{"data": [...]}` elsewhere).
    pub async fn list_batches(&self) -> Result<Vec<Batch>, Error> {
        let v: Value = self.json(Method::GET, self.batch_path(), None).await?;
        list_of(v, self.shared.preset.batches().list_array())
    }

    /// Cancels a batch.
    pub async fn cancel_batch(&self, id: &str) -> Result<Batch, Error> {
        self.json(
            Method::POST,
            &format!("{}/{id}/cancel", self.batch_path()),
            Some(String::new()),
        )
        .await
    }

    /// Reads the batch every poll interval until its status is terminal.
    pub async fn wait_batch(&self, id: &str) -> Result<Batch, Error> {
        loop {
            let batch = self.batch(id).await?;
            if self.shared.preset.batches().is_terminal(&batch.status) {
                return Ok(batch);
            }
            tokio::time::sleep(self.shared.poll_interval).await;
        }
    }

    /// The results of a finished batch, from its output file, in file order.
    pub async fn batch_results(&self, batch: &Batch) -> Result<Vec<BatchResult>, Error> {
        let Some(file) = batch.output_file() else {
            return Err(Error::decode(format!(
                "batch {} has no output file (status {})",
                batch.id, batch.status
            )));
        };
        let bytes = self
            .call(Method::GET, &format!("/v1/files/{file}/content"), None)
            .await?;
        let text = String::from_utf8_lossy(&bytes);
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: Value = serde_json::from_str(line)
                .map_err(|e| Error::decode(format!("batch output line: {e}")))?;
            let response = v.get("response").cloned().unwrap_or(Value::Null);
            out.push(BatchResult {
                custom_id: match v.get("custom_id") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                },
                status_code: response
                    .get("status_code")
                    .and_then(Value::as_u64)
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(0),
                body: response.get("body").cloned().unwrap_or(Value::Null),
            });
        }
        Ok(out)
    }

    /// Runs `requests` against `endpoint` as batches: splits them at the
    /// preset's [`batch_max_requests`](crate::Preset::batch_max_requests),
    /// uploads and creates each batch (at most the preset's cap in flight),
    /// waits for each, and returns the results in the order of `requests`.
    ///
    /// A request whose result is missing from the output gets no entry;
    /// check `custom_id`s when that matters.
    pub async fn run_batches(
        &self,
        endpoint: &str,
        requests: &[BatchRequest],
    ) -> Result<Vec<BatchResult>, Error> {
        let size = self.shared.preset.batch_max_requests().max(1);
        let runs = requests.chunks(size).map(|chunk| async move {
            let file = self.upload_batch_file(chunk).await?;
            let batch = self.create_batch(&file.id, endpoint).await?;
            let done = self.wait_batch(&batch.id).await?;
            self.batch_results(&done).await
        });
        let mut by_id: HashMap<String, BatchResult> = HashMap::new();
        for result in futures_util::future::join_all(runs).await {
            for r in result? {
                by_id.insert(r.custom_id.clone(), r);
            }
        }
        Ok(requests
            .iter()
            .filter_map(|r| by_id.remove(&r.custom_id))
            .collect())
    }
}

fn pointer_or_root(job: &crate::preset::JobPreset) -> &str {
    job.job_pointer()
}

/// A multipart boundary that does not occur in `content`.
fn multipart_boundary(content: &str) -> String {
    (0u32..)
        .map(|n| format!("together-rate-limits-{n:08x}"))
        .find(|b| !content.contains(b.as_str()))
        .expect("some boundary is free")
}
