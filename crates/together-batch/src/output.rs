//! The output JSONL: what an earlier run already answered (resume, read as
//! a stream, never whole), a torn last line cut off, one whole line written
//! per result, and an exclusive lock while a run writes it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::input::{fingerprint_hash, id_hash};

/// What an earlier run left in the output.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    /// custom_id ([`id_hash`]) -> answered successfully.
    pub(crate) answered: HashMap<u64, bool>,
    /// Bytes of a torn last line that were cut off.
    pub(crate) torn_bytes: usize,
    /// Failed lines dropped for `--retry-failed`.
    pub(crate) dropped_failures: usize,
    /// Failed lines kept: answered by a server, not sent again.
    pub(crate) failed_earlier: usize,
    /// Failed lines dropped because no attempt reached a server (sent again).
    pub(crate) unsent: usize,
    /// Complete lines that were not results (removed, with `--force`).
    pub(crate) unreadable: usize,
    /// custom_ids whose request body changed since their line was written.
    pub(crate) changed: Vec<String>,
}

/// How to open the output.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ResumeOptions {
    /// Drop failure lines to send them again.
    pub(crate) retry_failed: bool,
    /// Write into a file that is not a results file (its other lines go).
    pub(crate) force: bool,
    /// Drop the lines of custom_ids whose body changed, to send them again
    /// (else they are only reported in [`Previous::changed`]).
    pub(crate) resend_changed: bool,
}

/// The output file, opened for appending whole lines, locked for this run.
#[derive(Debug)]
pub(crate) struct Output {
    file: Option<File>,
    path: PathBuf,
    /// The file's length after the last whole line.
    len: u64,
    /// Held while the run writes: a second run on the same output fails.
    _lock: File,
}

/// Whether a line is one this tool wrote: an object with a `custom_id` key
/// and a `response` or an `error` (a request line of an input has neither).
fn is_result(v: &Value) -> bool {
    v.get("custom_id").is_some() && (v.get("response").is_some() || v.get("error").is_some())
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

/// What to do with one complete line of an existing output.
enum Verdict {
    Keep,
    Drop,
}

impl Output {
    /// Opens (or creates) `path` for appending, after reading what it holds
    /// line by line (memory holds the custom_ids, not the file).
    ///
    /// Refuses a file that is not a results file of this tool (unless
    /// `force`) and a file another run is writing (naming its pid). A torn
    /// last line (no trailing newline: the process died mid-write) is cut
    /// off. Lines dropped (failures with `retry_failed`, failures that
    /// never reached a server, changed bodies with `resend_changed`) are
    /// removed by copying the rest through a temporary file and a rename,
    /// so the custom_ids sent again appear once. `fingerprints` are the
    /// input's request fingerprints by custom_id.
    pub(crate) fn open(
        path: &Path,
        options: ResumeOptions,
        fingerprints: &HashMap<u64, u64>,
    ) -> Result<(Output, Previous), String> {
        let fail = |what: &str, e: std::io::Error| {
            format!(
                "cannot {what} the output {}: {e} (nothing was sent)",
                path.display()
            )
        };
        // Through a symlink, the file it names: one lock, one rewrite.
        let real = std::fs::canonicalize(path).ok();
        let path = real.as_deref().unwrap_or(path);
        let lock = lock(path)?;
        let mut prev = Previous::default();
        if path.exists() && !path.is_file() {
            return Err(format!(
                "the output {} is not a regular file: choose a file for -o (nothing was sent)",
                path.display()
            ));
        }
        let file = match File::open(path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail("open", e)),
        };
        let mut verdicts: Vec<(u64, u64, Verdict)> = Vec::new();
        let mut complete = 0u64;
        let mut results = 0usize;
        let mut first_stranger: Option<u64> = None;
        let mut torn_result = false;
        if let Some(file) = file {
            let mut reader = BufReader::with_capacity(1 << 16, file);
            let mut raw = Vec::new();
            let mut number = 0u64;
            loop {
                raw.clear();
                let n = reader
                    .read_until(b'\n', &mut raw)
                    .map_err(|e| fail("read", e))?;
                if n == 0 {
                    break;
                }
                if raw.last() != Some(&b'\n') {
                    prev.torn_bytes = n;
                    // A crash during the first result's write leaves only this.
                    torn_result = raw.starts_with(b"{\"custom_id\"");
                    break;
                }
                number += 1;
                let start = complete;
                complete += n as u64;
                let verdict = judge(&raw, options, fingerprints, &mut prev, &mut results);
                if matches!(verdict, Some(Verdict::Drop)) || verdict.is_none() {
                    if verdict.is_none() && !raw.iter().all(u8::is_ascii_whitespace) {
                        first_stranger.get_or_insert(number);
                        prev.unreadable += 1;
                    }
                    verdicts.push((start, complete, Verdict::Drop));
                } else {
                    verdicts.push((start, complete, Verdict::Keep));
                }
            }
        }
        if let Some(line) = first_stranger
            && !options.force
        {
            return Err(format!(
                "{} is not a results file of together-batch (line {line} is not a result): \
                 refusing to write into it; pass --force to replace its other lines, or \
                 choose another -o (nothing was sent)",
                path.display()
            ));
        }
        if prev.torn_bytes > 0 && results == 0 && !options.force && !torn_result {
            return Err(format!(
                "{} is not a results file of together-batch (it has no complete result line): \
                 refusing to write into it; pass --force to replace it (nothing was sent)",
                path.display()
            ));
        }
        if !options.resend_changed && !prev.changed.is_empty() {
            // Refused by the caller: leave the file as it is.
            return Ok((Output::unopened(path, lock), prev));
        }
        let dropping = verdicts.iter().any(|(_, _, v)| matches!(v, Verdict::Drop));
        if dropping {
            rewrite(path, &verdicts).map_err(|e| fail("rewrite", e))?;
        } else if prev.torn_bytes > 0 {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| fail("truncate", e))?;
            f.set_len(complete).map_err(|e| fail("truncate", e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| fail("write", e))?;
        let len = file.metadata().map_err(|e| fail("write", e))?.len();
        Ok((
            Output {
                file: Some(file),
                path: path.to_owned(),
                len,
                _lock: lock,
            },
            prev,
        ))
    }

    /// An output that takes no writes (the run is refused before sending).
    fn unopened(path: &Path, lock: File) -> Output {
        Output {
            file: None,
            path: path.to_owned(),
            len: 0,
            _lock: lock,
        }
    }

    /// Appends one result as one whole line (a single write).
    ///
    /// A failed write is cut back to the last whole line and the output
    /// takes no more writes: no torn line in the middle of the file.
    pub(crate) fn write(&mut self, value: &Value) -> Result<(), String> {
        let path = self.path.display();
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| format!("{path} takes no more writes"))?;
        let mut line = serde_json::to_vec(value).map_err(|e| e.to_string())?;
        line.push(b'\n');
        match file.write_all(&line) {
            Ok(()) => {
                self.len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = file.set_len(self.len);
                self.file = None;
                Err(format!("cannot write to {path}: {e}"))
            }
        }
    }

    /// Flushes to the disk.
    pub(crate) fn flush(&mut self) -> Result<(), String> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.flush()
            .and_then(|()| file.sync_data())
            .map_err(|e| format!("cannot flush {}: {e}", self.path.display()))
    }
}

/// Reads one complete line: `None` when it is not a result, else whether
/// to keep it, counting what it says into `prev`.
fn judge(
    raw: &[u8],
    options: ResumeOptions,
    fingerprints: &HashMap<u64, u64>,
    prev: &mut Previous,
    results: &mut usize,
) -> Option<Verdict> {
    let parsed: Value = serde_json::from_slice(raw).ok()?;
    if !is_result(&parsed) {
        return None;
    }
    if is_unnamed_bad_line(&parsed) {
        *results += 1;
        return Some(Verdict::Drop); // recorded again from the input
    }
    let id = parsed.get("custom_id").and_then(Value::as_str)?;
    *results += 1;
    let ok = is_success(&parsed);
    if !ok && options.retry_failed {
        prev.dropped_failures += 1;
        return Some(Verdict::Drop);
    }
    if !ok && never_reached_a_server(&parsed) {
        prev.unsent += 1;
        return Some(Verdict::Drop);
    }
    let key = id_hash(id);
    let fingerprint = parsed.get("fingerprint").and_then(Value::as_str);
    if let (Some(then), Some(now)) = (fingerprint, fingerprints.get(&key))
        && fingerprint_hash(then) != Some(*now)
    {
        if options.resend_changed {
            return Some(Verdict::Drop);
        }
        prev.changed.push(id.to_owned());
    }
    match prev.answered.get(&key) {
        // A success already recorded wins; a later line for the same id is dropped.
        Some(true) => return Some(Verdict::Drop),
        Some(false) if !ok => return Some(Verdict::Drop),
        _ => {}
    }
    if let Some(false) = prev.answered.insert(key, ok) {
        prev.failed_earlier -= 1;
    }
    if !ok {
        prev.failed_earlier += 1;
    }
    Some(Verdict::Keep)
}

/// Copies the kept lines through a temporary file, then renames it over `path`.
fn rewrite(path: &Path, verdicts: &[(u64, u64, Verdict)]) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    let mut from = File::open(path)?;
    let mut to = BufWriter::new(File::create(&tmp)?);
    for (start, end, verdict) in verdicts {
        if matches!(verdict, Verdict::Keep) {
            from.seek(SeekFrom::Start(*start))?;
            std::io::copy(&mut (&mut from).take(end - start), &mut to)?;
        }
    }
    let to = to.into_inner().map_err(|e| e.into_error())?;
    to.set_permissions(from.metadata()?.permissions())?;
    to.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Takes the output's lock file (`.NAME.lock`, holding this process's pid),
/// or says which process holds it.
fn lock(path: &Path) -> Result<File, String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let lock_path = path.with_file_name(format!(".{name}.lock"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| {
            format!(
                "cannot open the output {}: its lock {}: {e} (nothing was sent)",
                path.display(),
                lock_path.display()
            )
        })?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(format!(
                "another together-batch (pid {}) is writing {}: wait for it to finish, or \
                 choose another -o (nothing was sent)",
                holder.trim(),
                path.display()
            ));
        }
        Err(TryLockError::Error(e)) => {
            return Err(format!(
                "cannot lock {}: {e} (nothing was sent)",
                lock_path.display()
            ));
        }
    }
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
    let _ = file.flush();
    Ok(file)
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
        let (mut out, prev) = Output::open(&p, ResumeOptions::default(), &HashMap::new()).unwrap();
        assert_eq!(prev.torn_bytes, 22);
        assert_eq!(prev.failed_earlier, 1);
        assert_eq!(prev.answered.get(&id_hash("a")), Some(&true));
        assert_eq!(prev.answered.get(&id_hash("b")), Some(&false));
        assert!(!prev.answered.contains_key(&id_hash("c")));
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
        let (_out, prev) = Output::open(&p, ResumeOptions::default(), &HashMap::new()).unwrap();
        assert_eq!(prev.unsent, 2);
        assert_eq!(prev.failed_earlier, 2);
        assert_eq!(
            prev.unreadable, 0,
            "a bad input line is re-recorded, not unreadable"
        );
        let mut kept: Vec<_> = prev.answered.keys().copied().collect();
        kept.sort_unstable();
        let mut expected = [id_hash("answered"), id_hash("timeout")];
        expected.sort_unstable();
        assert_eq!(kept, expected);
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
        let retry = ResumeOptions {
            retry_failed: true,
            ..ResumeOptions::default()
        };
        let (_out, prev) = Output::open(&p, retry, &HashMap::new()).unwrap();
        assert_eq!(prev.dropped_failures, 1);
        assert!(!prev.answered.contains_key(&id_hash("b")));
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "{\"custom_id\":\"a\",\"response\":{}}\n");
    }

    #[test]
    fn a_file_that_is_not_results_is_refused_unless_forced() {
        let d = dir("stranger");
        let p = d.join("notes.txt");
        std::fs::write(&p, "my notes\nmore notes\nno newline at the end").unwrap();
        let none = HashMap::new();
        let err = Output::open(&p, ResumeOptions::default(), &none).unwrap_err();
        assert!(err.contains("not a results file"), "{err}");
        assert!(err.contains("--force"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "my notes\nmore notes\nno newline at the end",
            "left untouched"
        );
        let force = ResumeOptions {
            force: true,
            ..ResumeOptions::default()
        };
        let (_out, prev) = Output::open(&p, force, &none).unwrap();
        assert_eq!(prev.torn_bytes, "no newline at the end".len());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }

    #[test]
    fn a_second_writer_is_refused_naming_the_first() {
        let d = dir("lock");
        let p = d.join("out.jsonl");
        let none = HashMap::new();
        let first = Output::open(&p, ResumeOptions::default(), &none).unwrap();
        let err = Output::open(&p, ResumeOptions::default(), &none).unwrap_err();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(Output::open(&p, ResumeOptions::default(), &none).is_ok());
    }

    #[test]
    fn a_changed_body_is_reported_or_sent_again() {
        let d = dir("changed");
        let p = d.join("out.jsonl");
        let text = "{\"custom_id\":\"a\",\"fingerprint\":\"fnv1a:00000000000000f1\",\"response\":{}}\n\
                    {\"custom_id\":\"b\",\"fingerprint\":\"fnv1a:00000000000000f2\",\"response\":{}}\n";
        std::fs::write(&p, text).unwrap();
        let now: HashMap<u64, u64> = [(id_hash("a"), 0xf1), (id_hash("b"), 0xf9)].into();
        let (out, prev) = Output::open(&p, ResumeOptions::default(), &now).unwrap();
        assert_eq!(prev.changed, ["b"]);
        drop(out);
        let resend = ResumeOptions {
            resend_changed: true,
            ..ResumeOptions::default()
        };
        let (_out, prev) = Output::open(&p, resend, &now).unwrap();
        assert!(prev.changed.is_empty());
        assert!(!prev.answered.contains_key(&id_hash("b")));
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 1);
    }

    #[test]
    fn an_input_given_as_the_output_is_refused_not_emptied() {
        let d = dir("input-as-output");
        let p = d.join("requests.jsonl");
        let text = "{\"custom_id\":\"a\",\"url\":\"/v1/x\",\"body\":{}}\n";
        std::fs::write(&p, text).unwrap();
        let err = Output::open(&p, ResumeOptions::default(), &HashMap::new()).unwrap_err();
        assert!(err.contains("not a results file"), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
    }

    #[test]
    fn a_failed_write_leaves_no_torn_line_and_takes_no_more() {
        let d = dir("failed-write");
        let p = d.join("out.jsonl");
        let (mut out, _) = Output::open(&p, ResumeOptions::default(), &HashMap::new()).unwrap();
        out.write(&serde_json::json!({"custom_id": "a", "response": {}}))
            .unwrap();
        // A write that fails: the file handle is read-only from here on.
        out.file = Some(File::open(&p).unwrap());
        assert!(
            out.write(&serde_json::json!({"custom_id": "b", "response": {}}))
                .is_err()
        );
        assert!(
            out.write(&serde_json::json!({"custom_id": "c", "response": {}}))
                .is_err()
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_torn_first_result_resumes_without_force() {
        let d = dir("torn-first");
        let p = d.join("out.jsonl");
        std::fs::write(&p, "{\"custom_id\":\"a\",\"resp").unwrap();
        let (_out, prev) = Output::open(&p, ResumeOptions::default(), &HashMap::new()).unwrap();
        assert!(prev.torn_bytes > 0);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "");
    }
}
