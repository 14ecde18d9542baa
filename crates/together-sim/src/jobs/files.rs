//! Files: upload, list, read.

use serde_json::{Value, json};

use super::{File, Jobs, not_found};
use crate::fake::{ApiError, unix_now};

impl Jobs {
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
}

pub(super) fn file_json(f: &File) -> Value {
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
