//! Reading the input JSONL: the batch format or bare request bodies, one
//! entry per non-blank line, malformed lines kept as that line's error.

use std::fmt::{self, Write as _};
use std::io::BufRead;

use http::Method;
use serde_json::Value;

/// A request to send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Job {
    pub(crate) custom_id: String,
    /// 1-based line number in the input.
    pub(crate) line: usize,
    pub(crate) method: Method,
    /// The path, e.g. `/v1/embeddings` (joined to the base URL).
    pub(crate) path: String,
    pub(crate) body: String,
    /// The body's `model`, for per-model figures.
    pub(crate) model: Option<String>,
    /// A fingerprint of the request (method, path, body): a resumed run
    /// tells a custom_id whose request changed.
    pub(crate) fingerprint: String,
    /// The tokens a token quota charges it up front (the stack's estimate).
    pub(crate) estimate: u32,
}

/// The body to send and its fingerprint (of the body as the line has it).
/// A streamed request asks for its usage (`stream_options.include_usage`)
/// unless it says otherwise, so its output holds the usage like any other.
fn prepare(
    method: &Method,
    path: &str,
    mut body: serde_json::Map<String, Value>,
) -> (String, String, u32) {
    let as_given = serde_json::to_string(&body).unwrap_or_default();
    let print = fingerprint(method, path, &as_given);
    if body.get("stream") == Some(&Value::Bool(true)) && !body.contains_key("stream_options") {
        body.insert(
            "stream_options".to_owned(),
            serde_json::json!({"include_usage": true}),
        );
        let value = Value::Object(body);
        (value.to_string(), print, estimate(&value))
    } else {
        let value = Value::Object(body);
        (as_given, print, estimate(&value))
    }
}

/// The stack's up-front token estimate of a body.
fn estimate(body: &Value) -> u32 {
    tower_quota::TokenEstimate::default().estimate(body)
}

/// FNV-1a over the method, path and body: stable across runs and versions.
pub(crate) fn fingerprint(method: &Method, path: &str, body: &str) -> String {
    format!("fnv1a:{:016x}", fnv1a([method.as_str(), path, body]))
}

/// The hash a [`fingerprint`] shows, read back; `None` for another form.
pub(crate) fn fingerprint_hash(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("fnv1a:")?, 16).ok()
}

/// A JSON object's string `model`.
fn model_of(obj: &serde_json::Map<String, Value>) -> Option<String> {
    obj.get("model").and_then(Value::as_str).map(str::to_owned)
}

/// One input line: a request, or why it cannot be one.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Entry {
    Job(Job),
    /// A line that cannot be a request: its custom_id when it had a
    /// readable one (else none: a line number would collide with a real
    /// custom_id), where it is, what it says of itself, and why.
    Bad {
        custom_id: Option<String>,
        line: usize,
        method: Option<String>,
        url: Option<String>,
        message: String,
    },
}

impl Entry {
    /// The custom_id, if the line has one.
    pub(crate) fn custom_id(&self) -> Option<&str> {
        match self {
            Entry::Job(j) => Some(&j.custom_id),
            Entry::Bad { custom_id, .. } => custom_id.as_deref(),
        }
    }

    #[cfg(any(test, feature = "demo"))]
    pub(crate) fn line(&self) -> usize {
        match self {
            Entry::Job(j) => j.line,
            Entry::Bad { line, .. } => *line,
        }
    }
}

/// Parses the input. Fails (before anything is sent) when two lines share a
/// custom_id; a malformed line becomes an [`Entry::Bad`] and the rest proceed.
#[cfg(any(test, feature = "demo"))]
pub(crate) fn parse(bytes: &[u8], endpoint: Option<&str>) -> Result<Vec<Entry>, String> {
    parse_reader(bytes, endpoint).map_err(|e| e.to_string())?
}

/// [`parse`] over a reader, a line at a time: the input is never held whole.
/// Fails with an I/O error, or (inside) as [`parse`] does.
#[cfg(any(test, feature = "demo"))]
pub(crate) fn parse_reader(
    reader: impl BufRead,
    endpoint: Option<&str>,
) -> std::io::Result<Result<Vec<Entry>, String>> {
    let mut entries = Vec::new();
    scan_lines(reader, |raw, at| {
        entries.push(parse_line(raw, at.line as usize, endpoint));
    })?;
    Ok(check_unique(&entries).map(|()| entries))
}

/// Where a line is in the input: its bytes and its 1-based number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LineRef {
    /// The byte offset of its first byte.
    pub(crate) offset: u64,
    /// Its length in bytes (without the line ending).
    pub(crate) len: u32,
    pub(crate) line: u32,
}

/// Calls `visit` with each non-blank line of `reader` and where it is.
/// Lines end in LF, CRLF or a lone CR (JSON never holds a raw CR inside a
/// string); a UTF-8 byte order mark is not part of line 1.
pub(crate) fn scan_lines(
    mut reader: impl BufRead,
    mut visit: impl FnMut(&[u8], LineRef),
) -> std::io::Result<()> {
    let mut chunk = Vec::new();
    let (mut line, mut pos) = (0u32, 0u64);
    loop {
        chunk.clear();
        let n = reader.read_until(b'\n', &mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        let start = pos;
        pos += n as u64;
        let mut text = &chunk[..];
        if start == 0 {
            text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
        }
        let text = text.strip_suffix(b"\n").unwrap_or(text);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let base = chunk.as_ptr() as usize;
        for raw in text.split(|b| *b == b'\r') {
            line = line.saturating_add(1);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let at = LineRef {
                offset: start + (raw.as_ptr() as usize - base) as u64,
                len: u32::try_from(raw.len()).unwrap_or(u32::MAX),
                line,
            };
            visit(raw, at);
        }
    }
}

/// A custom_id's 64-bit FNV-1a hash: what a run keeps of it while its
/// line waits (a million ids in 8 MB, not in strings).
pub(crate) fn id_hash(id: &str) -> u64 {
    fnv1a([id])
}

fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a str>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

pub(crate) fn parse_line(raw: &[u8], line: usize, endpoint: Option<&str>) -> Entry {
    let raw_text: Option<Value> = serde_json::from_slice(raw).ok();
    let field = |name: &str| {
        raw_text
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (method, url) = (
        field("method"),
        field("url").or(endpoint.map(str::to_owned)),
    );
    let bad = |custom_id: Option<String>, message: String| Entry::Bad {
        custom_id,
        line,
        method: method.clone(),
        url: url.clone(),
        message: format!("line {line}: {message}"),
    };
    let value: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return bad(None, format!("not valid JSON ({e})")),
    };
    let Value::Object(mut obj) = value else {
        return bad(None, "expected a JSON object".to_owned());
    };
    let batch_format = obj.contains_key("body")
        && (obj.contains_key("custom_id") || obj.contains_key("url") || obj.contains_key("method"));
    if !batch_format {
        // A bare request body: custom_id is the line number.
        let Some(path) = endpoint else {
            return bad(
                None,
                "a bare request body needs --endpoint (or write the batch format \
                 {\"custom_id\", \"url\", \"method\", \"body\"})"
                    .to_owned(),
            );
        };
        let model = model_of(&obj);
        let (body, fingerprint, estimate) = prepare(&Method::POST, path, obj);
        return Entry::Job(Job {
            custom_id: line.to_string(),
            line,
            fingerprint,
            method: Method::POST,
            path: path.to_owned(),
            body,
            model,
            estimate,
        });
    }
    let custom_id = match obj.remove("custom_id") {
        None | Some(Value::Null) => line.to_string(),
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return bad(
                None,
                format!("custom_id must be a non-empty string, not {other}"),
            );
        }
    };
    let custom = Some(custom_id.clone());
    let path = match obj.remove("url") {
        Some(Value::String(u)) => u,
        None | Some(Value::Null) => match endpoint {
            Some(e) => e.to_owned(),
            None => return bad(custom, "no url: add \"url\" or pass --endpoint".to_owned()),
        },
        Some(other) => return bad(custom, format!("url must be a string, not {other}")),
    };
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        return bad(
            custom,
            format!("url {path:?} must be a path such as /v1/chat/completions"),
        );
    }
    let method = match obj.remove("method") {
        None | Some(Value::Null) => Method::POST,
        Some(Value::String(m)) => match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => m,
            Err(_) => return bad(custom, format!("method {m:?} is not an HTTP method")),
        },
        Some(other) => return bad(custom, format!("method must be a string, not {other}")),
    };
    let (body, model, fingerprint, estimate) = match obj.remove("body") {
        Some(Value::Object(b)) => {
            let model = model_of(&b);
            let (body, fingerprint, estimate) = prepare(&method, &path, b);
            (body, model, fingerprint, estimate)
        }
        Some(other) => return bad(custom, format!("body must be a JSON object, not {other}")),
        None => unreachable!("batch format has a body"),
    };
    Entry::Job(Job {
        custom_id,
        line,
        fingerprint,
        method,
        path,
        body,
        model,
        estimate,
    })
}

#[cfg(any(test, feature = "demo"))]
fn check_unique(entries: &[Entry]) -> Result<(), String> {
    let mut first: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(entries.len());
    let mut dups = Vec::new();
    for e in entries {
        let Some(id) = e.custom_id() else { continue };
        if let Some(prev) = first.insert(id, e.line()) {
            first.insert(id, prev);
            dups.push((id, prev, e.line()));
        }
    }
    if dups.is_empty() {
        return Ok(());
    }
    Err(duplicates_message(&dups))
}

/// Why an input with duplicate custom_ids is refused: how many, the first
/// five with their lines.
pub(crate) fn duplicates_message<I: fmt::Debug, L: fmt::Display>(dups: &[(I, L, L)]) -> String {
    let mut msg = format!(
        "{} duplicate custom_id(s) in the input; every custom_id must be unique \
         (nothing was sent):",
        dups.len()
    );
    for (id, a, b) in dups.iter().take(5) {
        let _ = write!(msg, "\n  {id:?} on lines {a} and {b}");
    }
    if dups.len() > 5 {
        let _ = write!(msg, "\n  ... and {} more", dups.len() - 5);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_format_and_bare_bodies() {
        let text = br#"{"custom_id": "a", "url": "/v1/embeddings", "method": "post", "body": {"model": "m", "input": "x"}}

{"model": "m", "messages": []}
{"custom_id": "c", "body": {"model": "m"}}
"#;
        let entries = parse(text, Some("/v1/chat/completions")).unwrap();
        assert_eq!(entries.len(), 3);
        let Entry::Job(a) = &entries[0] else { panic!() };
        assert_eq!(
            (a.custom_id.as_str(), a.path.as_str(), &a.method),
            ("a", "/v1/embeddings", &Method::POST)
        );
        let Entry::Job(b) = &entries[1] else { panic!() };
        assert_eq!(
            (b.custom_id.as_str(), b.line, b.path.as_str()),
            ("3", 3, "/v1/chat/completions")
        );
        let Entry::Job(c) = &entries[2] else { panic!() };
        assert_eq!(c.path, "/v1/chat/completions");
    }

    #[test]
    fn malformed_lines_are_errors_of_their_own() {
        let text = b"{not json\n[1]\n{\"custom_id\": \"x\", \"url\": \"v1\", \"body\": {}}\n{\"model\": \"m\"}\n";
        let entries = parse(text, None).unwrap();
        let msgs: Vec<_> = entries
            .iter()
            .map(|e| match e {
                Entry::Bad { message, .. } => message.clone(),
                Entry::Job(_) => String::new(),
            })
            .collect();
        assert!(msgs[0].starts_with("line 1: not valid JSON"), "{msgs:?}");
        assert!(msgs[1].contains("JSON object"));
        assert!(msgs[2].contains("must be a path"));
        assert_eq!(entries[2].custom_id(), Some("x"));
        assert_eq!(entries[0].custom_id(), None);
        assert!(msgs[3].contains("--endpoint"));
    }

    #[test]
    fn a_bad_line_never_collides_with_a_real_custom_id() {
        let text = b"{not json\n{\"custom_id\": \"1\", \"url\": \"/v1/x\", \"body\": {}}\n";
        let entries = parse(text, None).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].custom_id(), None);
        assert_eq!(entries[1].custom_id(), Some("1"));
    }

    #[test]
    fn a_bom_and_every_line_ending_are_read() {
        let line =
            |id: &str| format!("{{\"custom_id\": \"{id}\", \"url\": \"/v1/x\", \"body\": {{}}}}");
        for sep in ["\n", "\r\n", "\r"] {
            let text = format!("\u{feff}{}{sep}{}{sep}", line("a"), line("b"));
            let entries = parse(text.as_bytes(), None).unwrap();
            let ids: Vec<_> = entries.iter().map(|e| e.custom_id()).collect();
            assert_eq!(ids, [Some("a"), Some("b")], "{sep:?}");
            assert!(
                entries.iter().all(|e| matches!(e, Entry::Job(_))),
                "{sep:?}"
            );
        }
    }

    #[test]
    fn duplicates_fail_before_anything_is_sent() {
        let text = b"{\"custom_id\": \"a\", \"url\": \"/v1/x\", \"body\": {}}\n\
                     {\"custom_id\": \"a\", \"url\": \"/v1/x\", \"body\": {}}\n";
        let err = parse(text, None).unwrap_err();
        assert!(err.contains("\"a\" on lines 1 and 2"), "{err}");
    }
}
