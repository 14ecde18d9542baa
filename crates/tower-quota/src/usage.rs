//! Reading an answer's token usage as its body streams past: the last
//! `"usage": {...}` object of a JSON body or of a stream's events, in
//! bounded memory, without holding the body back.

use memchr::memmem;
use serde::Deserialize;

/// The key searched for. Inside a JSON string every `"` is escaped, so an
/// unescaped `"usage"` followed by `:` is a key, never text.
const KEY: &[u8] = b"\"usage\"";
/// The largest usage object read (a real one is under 300 bytes).
const MAX_OBJECT: usize = 4096;
/// The most tokens one answer is believed to have used; above is nonsense.
pub(crate) const MAX_TOKENS: u64 = 1 << 32;

/// Where the scanner stands.
#[derive(Debug)]
enum Step {
    /// Looking for the key.
    Seek,
    /// After the key: whitespace, then `:`.
    Colon,
    /// After the colon: whitespace, then `{` (anything else: not a usage object).
    Open,
    /// Inside the object.
    Object {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
}

/// Finds the last well-formed usage object in a byte stream.
#[derive(Debug)]
pub(crate) struct UsageScan {
    step: Step,
    /// The last bytes of the previous chunk while seeking: a key split
    /// across two chunks is found.
    carry: Vec<u8>,
    object: Vec<u8>,
    found: Option<u64>,
    /// Part of the body could not be read: nothing found counts.
    lost: bool,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
}

/// The tokens a usage object says were used: `total_tokens`, or prompt
/// plus completion when it is absent; `None` when neither reads, or the
/// figures contradict each other or are out of bounds.
fn tokens_of(object: &[u8]) -> Option<u64> {
    let u: Usage = serde_json::from_slice(object).ok()?;
    let parts = match (u.prompt_tokens, u.completion_tokens) {
        (None, None) => None,
        (p, c) => p.unwrap_or(0).checked_add(c.unwrap_or(0)),
    };
    let total = match (u.total_tokens, parts) {
        (Some(total), Some(parts)) if total < parts => return None,
        (Some(total), _) => total,
        (None, parts) => parts?,
    };
    (total <= MAX_TOKENS).then_some(total)
}

impl UsageScan {
    pub(crate) fn new() -> Self {
        UsageScan {
            step: Step::Seek,
            carry: Vec::new(),
            object: Vec::new(),
            found: None,
            lost: false,
        }
    }

    /// The tokens of the last usage object read so far.
    pub(crate) fn found(&self) -> Option<u64> {
        self.found.filter(|_| !self.lost)
    }

    /// Part of the body could not be read: the scan is worth nothing.
    pub(crate) fn lose(&mut self) {
        self.lost = true;
    }

    /// Reads the next chunk of the body.
    pub(crate) fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() {
            rest = match self.step {
                Step::Seek => self.seek(rest),
                _ => self.walk(rest),
            };
        }
        if matches!(self.step, Step::Seek) {
            // Keep the tail of what was searched: with the next chunk's
            // head it may spell the key.
            self.carry
                .extend_from_slice(&chunk[chunk.len().saturating_sub(KEY.len())..]);
            let excess = self.carry.len().saturating_sub(KEY.len() - 1);
            self.carry.drain(..excess);
        } else {
            self.carry.clear();
        }
    }

    /// Searches `bytes` for the key; returns what follows it, or nothing.
    fn seek<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        if !self.carry.is_empty() {
            // A key straddling the previous chunk and this one.
            let carried = self.carry.len();
            let mut joined = self.carry.clone();
            joined.extend_from_slice(&bytes[..bytes.len().min(KEY.len() - 1)]);
            if let Some(at) = memmem::find(&joined, KEY)
                && at < carried
            {
                self.carry.clear();
                self.step = Step::Colon;
                return &bytes[at + KEY.len() - carried..];
            }
        }
        match memmem::find(bytes, KEY) {
            Some(at) => {
                self.carry.clear();
                self.step = Step::Colon;
                &bytes[at + KEY.len()..]
            }
            None => &[],
        }
    }

    /// Walks `bytes` byte by byte after a key; returns what is left once
    /// the scanner is seeking again.
    fn walk<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        for (i, &b) in bytes.iter().enumerate() {
            match &mut self.step {
                Step::Seek => return &bytes[i..],
                Step::Colon => match b {
                    b':' => self.step = Step::Open,
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    _ => self.step = Step::Seek,
                },
                Step::Open => match b {
                    b'{' => {
                        self.object.clear();
                        self.object.push(b);
                        self.step = Step::Object {
                            depth: 1,
                            in_string: false,
                            escaped: false,
                        };
                    }
                    b' ' | b'\t' | b'\r' | b'\n' => {}
                    // `null` or anything else: not a usage object.
                    _ => self.step = Step::Seek,
                },
                Step::Object {
                    depth,
                    in_string,
                    escaped,
                } => {
                    self.object.push(b);
                    if *in_string {
                        if *escaped {
                            *escaped = false;
                        } else if b == b'\\' {
                            *escaped = true;
                        } else if b == b'"' {
                            *in_string = false;
                        }
                    } else {
                        match b {
                            b'"' => *in_string = true,
                            b'{' | b'[' => *depth += 1,
                            b'}' | b']' => *depth -= 1,
                            _ => {}
                        }
                    }
                    if matches!(self.step, Step::Object { depth: 0, .. }) {
                        if let Some(tokens) = tokens_of(&self.object) {
                            self.found = Some(tokens);
                        }
                        self.object = Vec::new();
                        self.step = Step::Seek;
                    } else if self.object.len() > MAX_OBJECT {
                        self.object = Vec::new();
                        self.step = Step::Seek;
                    }
                }
            }
        }
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(chunks: &[&[u8]]) -> Option<u64> {
        let mut s = UsageScan::new();
        for c in chunks {
            s.feed(c);
        }
        s.found()
    }

    #[test]
    fn reads_a_json_body_and_a_stream() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#;
        assert_eq!(scan(&[body]), Some(12));
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n\
data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":60,\"total_tokens\":63,\"cached_tokens\":0}}\n\n\
data: [DONE]\n\n";
        assert_eq!(scan(&[stream]), Some(63));
        // OpenAI's separate usage chunk, without total_tokens.
        let openai = br#"data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        assert_eq!(scan(&[openai]), Some(7));
    }

    #[test]
    fn text_that_mentions_usage_is_not_usage() {
        let body =
            br#"{"content":"the \"usage\": {\"total_tokens\": 9} is","usage":{"total_tokens":2}}"#;
        assert_eq!(scan(&[body]), Some(2));
        let only_text = br#"{"content":"\"usage\": {\"total_tokens\": 9}"}"#;
        assert_eq!(scan(&[only_text]), None);
    }

    #[test]
    fn nonsense_keeps_the_estimate() {
        for body in [
            &br#"{"usage":{"total_tokens":-5}}"#[..],
            br#"{"usage":{"total_tokens":1.5}}"#,
            br#"{"usage":{"total_tokens":"12"}}"#,
            br#"{"usage":{"prompt_tokens":10,"completion_tokens":10,"total_tokens":3}}"#,
            br#"{"usage":{"total_tokens":99999999999999}}"#,
            br#"{"usage":{}}"#,
            br#"{"usage":null}"#,
            br#"{"usage":{"total_tokens":12"#,
        ] {
            assert_eq!(scan(&[body]), None, "{}", String::from_utf8_lossy(body));
        }
        let huge = format!(
            r#"{{"usage":{{"x":"{}","total_tokens":1}}}}"#,
            "a".repeat(5000)
        );
        assert_eq!(scan(&[huge.as_bytes()]), None);
    }

    proptest! {
        /// However the body is cut into chunks, the same usage is read.
        #[test]
        fn chunking_does_not_matter(cuts in proptest::collection::vec(0usize..200, 0..12), total in 1u64..100_000) {
            let body = format!(
                r#"data: {{"usage":null,"x":"{{\"usage\":{{}}}}"}}{}data: {{"usage" : {{ "prompt_tokens": 1, "total_tokens": {total} }} }}"#,
                "\n\n"
            );
            let bytes = body.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut s = UsageScan::new();
            let mut from = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                s.feed(&bytes[from..c]);
                from = c;
            }
            prop_assert_eq!(s.found(), Some(total));
        }

        /// Arbitrary bytes never panic and never read more than a bounded object.
        #[test]
        fn arbitrary_bytes_are_harmless(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..16)) {
            let mut s = UsageScan::new();
            for c in &chunks {
                s.feed(c);
                prop_assert!(s.object.capacity() <= 2 * MAX_OBJECT + 64);
                prop_assert!(s.carry.len() < KEY.len());
            }
        }
    }
}
