//! An incremental parser of server-sent events (the WHATWG event-stream
//! format) in bounded memory.
//!
//! Lines end in LF, CRLF or CR (a CRLF split across two chunks is one
//! ending); a leading byte-order mark is skipped; `data:` lines of one
//! event are joined with `\n`; `event:` names the event; comment lines
//! (`:`) and `id:`/`retry:` are read and ignored; a blank line dispatches
//! the event; an event with no data is not dispatched. An event larger
//! than the cap is an error, never an unbounded buffer.
//!
//! The crate most Rust OpenAI clients build on for this,
//! `eventsource-stream`, buffers a line and an event without any cap (a
//! server that never ends a line grows it without bound) and pulls in a
//! parser-combinator crate (nom): this one is small, capped, and
//! property-tested against arbitrary bytes.
//!
//! ```
//! use together_tower::sse::SseParser;
//!
//! let mut parser = SseParser::new(1 << 20);
//! let mut events = Vec::new();
//! parser.feed(b": keep-alive\r\ndata: {\"a\":", &mut events)?;
//! parser.feed(b"1}\r\n\r\ndata: [DONE]\n\n", &mut events)?;
//! assert_eq!(events[0].data, "{\"a\":1}");
//! assert_eq!(events[1].data, "[DONE]");
//! # Ok::<(), together_tower::sse::SseError>(())
//! ```

use std::fmt;

/// The default cap on one event: 1 MiB (a chat chunk is a few hundred bytes).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when one was given.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Why a stream of events cannot be read on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SseError {
    /// An event (or one line) over the cap.
    TooLarge {
        /// The cap, in bytes.
        limit: usize,
    },
    /// A line that is not UTF-8.
    NotUtf8,
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::TooLarge { limit } => {
                write!(f, "a server-sent event is over {limit} bytes")
            }
            SseError::NotUtf8 => f.write_str("a server-sent event line is not UTF-8"),
        }
    }
}

impl std::error::Error for SseError {}

/// The parser: feed it chunks as they come, take the events it dispatches.
#[derive(Debug, Clone)]
pub struct SseParser {
    max: usize,
    line: Vec<u8>,
    data: String,
    has_data: bool,
    event: Option<String>,
    /// The last chunk ended in CR: a LF starting the next one ends nothing.
    after_cr: bool,
    /// Still at the start of the stream (a byte-order mark may come).
    at_start: bool,
}

impl SseParser {
    /// A parser whose events may hold at most `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseParser {
            max: max_event_bytes.max(1),
            line: Vec::new(),
            data: String::new(),
            has_data: false,
            event: None,
            after_cr: false,
            at_start: true,
        }
    }

    /// Reads `chunk`, pushing each event it completes onto `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.at_start {
            // A byte-order mark may open the stream, perhaps split across
            // chunks: its bytes are held in `line` until it is whole.
            let bom = b"\xEF\xBB\xBF";
            let take = chunk.len().min(3 - self.line.len());
            let mut probe = self.line.clone();
            probe.extend_from_slice(&chunk[..take]);
            if bom.starts_with(&probe) {
                if probe.len() < 3 {
                    self.line = probe;
                    return Ok(());
                }
                self.line.clear();
                chunk = &chunk[take..];
            }
            // Not a mark: what was held is the start of the first line.
            self.at_start = false;
        }
        if chunk.is_empty() {
            return Ok(());
        }
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let cr = chunk[end] == b'\r';
            self.push_line_bytes(&chunk[..end])?;
            self.end_line(out)?;
            chunk = &chunk[end + 1..];
            if cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
        }
        self.push_line_bytes(chunk)
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() + self.data.len() > self.max {
            self.line.clear();
            self.data.clear();
            return Err(SseError::TooLarge { limit: self.max });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
            }
            self.has_data = false;
            self.event = None;
            self.data.clear();
            return Ok(());
        }
        let line = std::str::from_utf8(&line).map_err(|_| SseError::NotUtf8)?;
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        Ok(())
    }

    /// Whether an event was begun and not ended by a blank line (a stream
    /// that stops there was cut).
    pub fn has_partial_event(&self) -> bool {
        self.has_data || !self.line.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut p = SseParser::new(1024);
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out)?;
        }
        Ok(out)
    }

    fn data(events: &[SseEvent]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn reads_the_format() {
        let events = parse(&[b"\xEF\xBB\xBFdata: a\ndata:b\n\n: comment\nevent: error\ndata: {}\r\n\r\nid: 1\nretry: 5\n\ndata\n\n"]).unwrap();
        assert_eq!(data(&events), ["a\nb", "{}", ""]);
        assert_eq!(events[1].event.as_deref(), Some("error"));
        // CR alone, and CRLF split across chunks.
        let events = parse(&[b"data: x\r", b"\ndata: y\r\r", b"data: z\r\n\r\n"]).unwrap();
        assert_eq!(data(&events), ["x\ny", "z"]);
        // An empty chunk between the CR and the LF of one line ending.
        let events = parse(&[b"data: x\r", b"", b"\ndata: y\n\n"]).unwrap();
        assert_eq!(data(&events), ["x\ny"]);
        // The mark split over chunks.
        let events = parse(&[b"\xEF", b"\xBB", b"\xBFdata: m\n\n"]).unwrap();
        assert_eq!(data(&events), ["m"]);
    }

    #[test]
    fn bounds_and_bad_bytes_are_errors() {
        let big = format!("data: {}\n\n", "x".repeat(2000));
        assert_eq!(
            parse(&[big.as_bytes()]),
            Err(SseError::TooLarge { limit: 1024 })
        );
        // Many data lines adding up over the cap.
        let lines = "data: xxxxxxxxxx\n".repeat(200);
        assert!(parse(&[lines.as_bytes()]).is_err());
        assert_eq!(parse(&[b"data: \xFF\n\n"]), Err(SseError::NotUtf8));
        let mut p = SseParser::new(64);
        p.feed(b"data: half", &mut Vec::new()).unwrap();
        assert!(p.has_partial_event());
    }

    proptest! {
        /// Arbitrary bytes in arbitrary chunks: no panic, memory within the cap.
        #[test]
        fn arbitrary_bytes_are_harmless(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
            let mut p = SseParser::new(256);
            let mut out = Vec::new();
            for c in &chunks {
                if p.feed(c, &mut out).is_err() {
                    break;
                }
                prop_assert!(p.line.len() + p.data.len() <= 256);
            }
            for e in &out {
                prop_assert!(e.data.len() <= 256);
            }
        }

        /// However a well-formed stream is cut into chunks, the same events come out.
        #[test]
        fn chunking_does_not_matter(
            payloads in proptest::collection::vec("[a-z{}:\" ]{0,20}", 1..6),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let nl = if crlf { "\r\n" } else { "\n" };
            let text: String = payloads.iter().map(|p| format!(": c{nl}data: {p}{nl}{nl}")).collect();
            let bytes = text.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            let mut p = SseParser::new(1024);
            let mut out = Vec::new();
            let mut from = 0;
            for c in at.into_iter().chain([bytes.len()]) {
                p.feed(&bytes[from..c], &mut out).unwrap();
                from = c;
            }
            prop_assert_eq!(data(&out), payloads.iter().map(String::as_str).collect::<Vec<_>>());
        }
    }
}
