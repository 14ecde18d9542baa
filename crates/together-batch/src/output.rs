//! The output JSONL: what an earlier run already answered (resume), a torn
//! last line cut off, and one whole line written per result.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// What an earlier run left in the output.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    /// custom_id -> answered successfully.
    pub(crate) answered: HashMap<String, bool>,
    /// Bytes of a torn last line that were cut off.
    pub(crate) torn_bytes: usize,
    /// Failed lines dropped for `--retry-failed`.
    pub(crate) dropped_failures: usize,
    /// Failed lines kept: answered by a server, not sent again.
    pub(crate) failed_earlier: usize,
    /// Failed lines dropped because no attempt reached a server (sent again).
    pub(crate) unsent: usize,
    /// Complete lines that were not results (skipped).
    pub(crate) unreadable: usize,
}

/// The output file, opened for appending whole lines.
#[derive(Debug)]
pub(crate) struct Output {
    file: File,
    path: PathBuf,
}

/// Whether an output line is a success: it has a `response` and no `error`.
fn is_success(v: &Value) -> bool {
    v.get("response").is_some() && v.get("error").is_none_or(Value::is_null)
}

/// Whether a failure line's request never reached a server: it says so, or
/// (written before the field existed) it has no status.
fn never_reached_a_server(v: &Value) -> bool {
    match v.get("reached_server").and_then(Value::as_bool) {
        Some(reached) => !reached,
        None => v.get("status").is_none_or(Value::is_null),
    }
}

/// Whether a line records a bad input line that had no custom_id: recorded
/// again from the input on every run.
fn is_unnamed_bad_line(v: &Value) -> bool {
    v.get("custom_id").is_some_and(Value::is_null) && v["error"]["type"] == "invalid_input"
}

impl Output {
    /// Opens (or creates) `path` for appending, after reading what it holds.
    ///
    /// A torn last line (no trailing newline: the process died mid-write) is
    /// cut off. With `retry_failed`, lines recording failures are removed
    /// (the file is rewritten through a temporary file and a rename) so the
    /// retried custom_ids appear once.
    pub(crate) fn open(path: &Path, retry_failed: bool) -> Result<(Output, Previous), String> {
        let fail = |what: &str, e: std::io::Error| {
            format!(
                "cannot {what} the output {}: {e} (nothing was sent)",
                path.display()
            )
        };
        let mut prev = Previous::default();
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(|e| fail("read", e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail("open", e)),
        }
        let complete = match bytes.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None => 0,
        };
        prev.torn_bytes = bytes.len() - complete;
        let mut keep = Vec::with_capacity(complete);
        for raw in bytes[..complete].split_inclusive(|b| *b == b'\n') {
            let parsed: Option<Value> = serde_json::from_slice(raw).ok();
            let id = parsed
                .as_ref()
                .and_then(|v| v.get("custom_id"))
                .and_then(Value::as_str);
            let Some(id) = id else {
                let unnamed_bad = parsed.as_ref().is_some_and(is_unnamed_bad_line);
                if !unnamed_bad && !raw.iter().all(u8::is_ascii_whitespace) {
                    prev.unreadable += 1;
                }
                continue;
            };
            let ok = parsed.as_ref().is_some_and(is_success);
            if !ok && retry_failed {
                prev.dropped_failures += 1;
                continue;
            }
            if !ok && parsed.as_ref().is_some_and(never_reached_a_server) {
                prev.unsent += 1;
                continue;
            }
            match prev.answered.get(id) {
                // A success already recorded wins; a later line for the same id is dropped.
                Some(true) => continue,
                Some(false) if !ok => continue,
                _ => {}
            }
            if let Some(false) = prev.answered.insert(id.to_owned(), ok) {
                prev.failed_earlier -= 1;
            }
            if !ok {
                prev.failed_earlier += 1;
            }
            keep.extend_from_slice(raw);
        }
        let rewrite = keep.len() != complete;
        if rewrite {
            let tmp = tmp_path(path);
            std::fs::write(&tmp, &keep).map_err(|e| fail("rewrite", e))?;
            std::fs::rename(&tmp, path).map_err(|e| fail("rewrite", e))?;
        } else if prev.torn_bytes > 0 {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| fail("truncate", e))?;
            f.set_len(complete as u64)
                .map_err(|e| fail("truncate", e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| fail("write", e))?;
        Ok((
            Output {
                file,
                path: path.to_owned(),
            },
            prev,
        ))
    }

    /// Appends one result as one whole line (a single write).
    pub(crate) fn write(&mut self, value: &Value) -> Result<(), String> {
        let mut line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|e| format!("cannot write to {}: {e}", self.path.display()))
    }

    /// Flushes to the disk.
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        self.file
            .flush()
            .and_then(|()| self.file.sync_data())
            .map_err(|e| format!("cannot flush {}: {e}", self.path.display()))
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.together-batch.tmp"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("together-batch-unit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn torn_last_line_is_cut_and_answers_are_read() {
        let d = dir("torn");
        let p = d.join("out.jsonl");
        std::fs::write(
            &p,
            "{\"custom_id\":\"a\",\"response\":{}}\n{\"custom_id\":\"b\",\"status\":500,\"error\":{}}\n{\"custom_id\":\"c\",\"resp",
        )
        .unwrap();
        let (mut out, prev) = Output::open(&p, false).unwrap();
        assert_eq!(prev.torn_bytes, 22);
        assert_eq!(prev.failed_earlier, 1);
        assert_eq!(prev.answered.get("a"), Some(&true));
        assert_eq!(prev.answered.get("b"), Some(&false));
        assert!(!prev.answered.contains_key("c"));
        out.write(&serde_json::json!({"custom_id": "c", "response": 1}))
            .unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.ends_with("\"response\":1}\n"), "{text}");
    }

    #[test]
    fn failures_that_never_reached_a_server_are_sent_again() {
        let d = dir("unsent");
        let p = d.join("out.jsonl");
        let lines = [
            r#"{"custom_id":"refused","status":null,"reached_server":false,"error":{}}"#,
            r#"{"custom_id":"old-refused","status":null,"error":{}}"#,
            r#"{"custom_id":"timeout","status":null,"reached_server":true,"error":{}}"#,
            r#"{"custom_id":"answered","status":404,"reached_server":true,"error":{}}"#,
            r#"{"custom_id":null,"line":7,"error":{"type":"invalid_input"}}"#,
        ];
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        let (_out, prev) = Output::open(&p, false).unwrap();
        assert_eq!(prev.unsent, 2);
        assert_eq!(prev.failed_earlier, 2);
        assert_eq!(
            prev.unreadable, 0,
            "a bad input line is re-recorded, not unreadable"
        );
        let mut kept: Vec<_> = prev.answered.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, ["answered", "timeout"]);
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 2);
    }

    #[test]
    fn retry_failed_drops_failure_lines() {
        let d = dir("retry");
        let p = d.join("out.jsonl");
        std::fs::write(
            &p,
            "{\"custom_id\":\"a\",\"response\":{}}\n{\"custom_id\":\"b\",\"error\":{}}\n",
        )
        .unwrap();
        let (_out, prev) = Output::open(&p, true).unwrap();
        assert_eq!(prev.dropped_failures, 1);
        assert!(!prev.answered.contains_key("b"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "{\"custom_id\":\"a\",\"response\":{}}\n");
    }
}
