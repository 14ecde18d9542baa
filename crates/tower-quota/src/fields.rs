//! What the rate limiter reads of a JSON request body, in one pass and
//! without building a `serde_json::Value` tree: the top-level string fields
//! a quota is keyed by (`model`), the characters of the input text, and
//! `max_tokens` and `n`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

mod scan;

/// The fields of a JSON request body a quota reads, parsed once per request
/// and handed to every quota of its route (and to [`Cost::from_fields`](crate::Cost::from_fields)).
///
/// ```
/// use tower_quota::BodyFields;
///
/// let body = br#"{"model":"m","messages":[{"role":"user","content":"12345678"}],"max_tokens":10,"n":2}"#;
/// let fields = BodyFields::parse(body, &["model"]).unwrap();
/// assert_eq!(fields.field("model"), Some("m"));
/// assert_eq!(fields.input_chars(), 8);
/// assert_eq!((fields.max_tokens(), fields.n()), (Some(10), Some(2)));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BodyFields {
    /// The wanted top-level fields that hold a string.
    strings: Strings,
    /// Characters of `messages`, `prompt` and `input`, in that order.
    chars: [usize; 3],
    max_tokens: Option<u64>,
    n: Option<u64>,
}

impl fmt::Debug for BodyFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyFields")
            .field("strings", &self.strings)
            .field("chars", &self.chars)
            .field("max_tokens", &self.max_tokens)
            .field("n", &self.n)
            .finish()
    }
}

const INPUTS: [&str; 3] = ["messages", "prompt", "input"];

impl BodyFields {
    /// Reads `body` as a JSON object, keeping the string values of the
    /// top-level fields named in `wanted`; `None` when it is not JSON. A
    /// JSON value that is not an object has no fields.
    ///
    /// The common shapes of request bodies are read by a one-pass scanner;
    /// whatever it is not sure of (invalid JSON among them) by serde_json,
    /// whose answer is the reference: both give the same fields.
    pub fn parse<S: AsRef<str>>(body: &[u8], wanted: &[S]) -> Option<BodyFields> {
        Self::scan(body, wanted).or_else(|| parse_with_serde(body, wanted))
    }

    /// The string value of a wanted top-level field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.strings
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// Characters of the input text: `prompt` and `input` (strings or
    /// arrays) and the `content` of `messages` (text, or the `text` of
    /// content parts).
    pub fn input_chars(&self) -> usize {
        self.chars.iter().sum()
    }

    /// `max_tokens`, when it is a whole number.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    /// `n`, when it is a whole number.
    pub fn n(&self) -> Option<u64> {
        self.n
    }
}

/// The wanted fields that hold a string: each field's name and value in
/// one string (one allocation), with the name's length. The first is kept
/// inline (routes are mostly keyed by one field), any more on the heap.
#[derive(Clone, Default, PartialEq, Eq)]
struct Strings {
    first: Option<(usize, String)>,
    more: Vec<(usize, String)>,
}

impl Strings {
    /// Each field's name and value.
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let entries = self.first.iter().chain(&self.more);
        entries.map(|(n, both)| both.split_at(*n))
    }

    /// Removes the field `name`; the first of the rest moves up, so
    /// `first` is empty only when `more` is (the fields, in the order they
    /// were taken, are `first` then `more`, whatever the edits).
    fn remove(&mut self, name: &str) {
        if self.first.is_none() {
            return;
        }
        let named = |(n, both): &(usize, String)| both.get(..*n) == Some(name);
        self.more.retain(|entry| !named(entry));
        if self.first.as_ref().is_some_and(named) {
            self.first = (!self.more.is_empty()).then(|| self.more.remove(0));
        }
    }

    fn push(&mut self, name: &str, text: &str) {
        let mut both = String::with_capacity(name.len() + text.len());
        both.push_str(name);
        both.push_str(text);
        let entry = (name.len(), both);
        match self.first {
            None => self.first = Some(entry),
            Some(_) => self.more.push(entry),
        }
    }
}

/// The fields as a map of names to values.
impl fmt::Debug for Strings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// [`BodyFields::parse`] by serde_json alone.
fn parse_with_serde<S: AsRef<str>>(body: &[u8], wanted: &[S]) -> Option<BodyFields> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let fields = Top { wanted }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(fields)
}

impl BodyFields {
    /// Takes what a top-level field with `roles` held. The last of
    /// duplicate keys wins, as in a parsed JSON map.
    #[inline(always)]
    fn take<S: AsRef<str>>(&mut self, roles: KeyRoles, probe: Probe<'_>, wanted: &[S]) {
        if let Some(i) = roles.input {
            self.chars[i] = probe.chars;
        }
        match roles.number {
            Some(Number::MaxTokens) => self.max_tokens = probe.number,
            Some(Number::N) => self.n = probe.number,
            None => {}
        }
        if let Some(w) = roles.wanted {
            let name = wanted[w].as_ref();
            self.strings.remove(name);
            if let Some(text) = probe.text {
                self.strings.push(name, &text);
            }
        }
    }
}

/// The top-level object.
struct Top<'w, S> {
    wanted: &'w [S],
}

impl<'de, S: AsRef<str>> DeserializeSeed<'de> for Top<'_, S> {
    type Value = BodyFields;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<BodyFields, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: AsRef<str>> Visitor<'de> for Top<'_, S> {
    type Value = BodyFields;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BodyFields, A::Error> {
        let mut out = BodyFields::default();
        let wanted = self.wanted;
        while let Some(key) = map.next_key_seed(TopKey { wanted })? {
            if key == KeyRoles::NONE {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let keep_text = key.wanted.is_some();
            let probe = map.next_value_seed(ProbeVisitor { keep_text })?;
            out.take(key, probe, wanted);
        }
        Ok(out)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BodyFields, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(BodyFields::default())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<BodyFields, E> {
        Ok(BodyFields::default())
    }
}

/// What a top-level key is to the reader, found without copying the key.
struct TopKey<'w, S> {
    wanted: &'w [S],
}

/// A top-level key's roles: an input (its index in `INPUTS`), a number
/// read, a wanted field (its index in `wanted`); any, all or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyRoles {
    input: Option<usize>,
    number: Option<Number>,
    wanted: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    MaxTokens,
    N,
}

impl KeyRoles {
    const NONE: KeyRoles = KeyRoles {
        input: None,
        number: None,
        wanted: None,
    };

    fn of<S: AsRef<str>>(key: &[u8], wanted: &[S]) -> KeyRoles {
        KeyRoles {
            input: INPUTS.iter().position(|k| k.as_bytes() == key),
            number: match key {
                b"max_tokens" => Some(Number::MaxTokens),
                b"n" => Some(Number::N),
                _ => None,
            },
            wanted: wanted.iter().position(|w| w.as_ref().as_bytes() == key),
        }
    }
}

impl<'de, S: AsRef<str>> DeserializeSeed<'de> for TopKey<'_, S> {
    type Value = KeyRoles;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<KeyRoles, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, S: AsRef<str>> Visitor<'de> for TopKey<'_, S> {
    type Value = KeyRoles;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyRoles, E> {
        Ok(KeyRoles::of(key.as_bytes(), self.wanted))
    }
}

/// One interesting value: its characters (for an input), its whole number
/// (for `max_tokens`, `n`), its text (for a key).
#[derive(Default)]
struct Probe<'a> {
    chars: usize,
    number: Option<u64>,
    text: Option<Cow<'a, str>>,
}

/// Reads one value into a [`Probe`]; a string's text is kept only when
/// asked (a wanted field), so an input's text is counted, never copied.
struct ProbeVisitor {
    keep_text: bool,
}

impl<'de> DeserializeSeed<'de> for ProbeVisitor {
    type Value = Probe<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Probe<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ProbeVisitor {
    type Value = Probe<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Probe<'de>, E> {
        Ok(Probe {
            chars: s.chars().count(),
            number: None,
            text: self.keep_text.then(|| Cow::Owned(s.to_owned())),
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Probe<'de>, E> {
        Ok(Probe {
            chars: s.chars().count(),
            number: None,
            text: self.keep_text.then_some(Cow::Borrowed(s)),
        })
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Probe<'de>, E> {
        Ok(Probe {
            number: Some(v),
            ..Probe::default()
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Probe<'de>, E> {
        Ok(Probe {
            number: u64::try_from(v).ok(),
            ..Probe::default()
        })
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Probe<'de>, E> {
        Ok(Probe::default())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Probe<'de>, E> {
        Ok(Probe::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Probe<'de>, E> {
        Ok(Probe::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Probe<'de>, A::Error> {
        Ok(Probe {
            chars: CharsVisitor.visit_seq(seq)?,
            ..Probe::default()
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Probe<'de>, A::Error> {
        Ok(Probe {
            chars: CharsVisitor.visit_map(map)?,
            ..Probe::default()
        })
    }
}

/// The characters of an input value: strings, arrays of them, and the
/// `content` and `text` of objects (chat messages, content parts).
struct Chars(usize);

impl<'de> de::Deserialize<'de> for Chars {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Chars, D::Error> {
        d.deserialize_any(CharsVisitor).map(Chars)
    }
}

struct CharsVisitor;

impl<'de> Visitor<'de> for CharsVisitor {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<usize, E> {
        Ok(s.chars().count())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut total = 0;
        while let Some(Chars(n)) = seq.next_element()? {
            total += n;
        }
        Ok(total)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        // The last of duplicate keys wins, as in a parsed JSON map.
        let (mut content, mut text) = (0, 0);
        while let Some(key) = map.next_key::<PartKey>()? {
            match key {
                PartKey::Content => content = map.next_value::<Chars>()?.0,
                PartKey::Text => text = map.next_value::<Chars>()?.0,
                PartKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(content + text)
    }
}

/// A key of an object inside an input (a message, a content part): the
/// text is under `content` or `text`. Found without copying the key.
enum PartKey {
    Content,
    Text,
    Other,
}

impl PartKey {
    fn of(key: &[u8]) -> PartKey {
        match key {
            b"content" => PartKey::Content,
            b"text" => PartKey::Text,
            _ => PartKey::Other,
        }
    }
}

impl<'de> de::Deserialize<'de> for PartKey {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<PartKey, D::Error> {
        d.deserialize_str(PartKeyVisitor)
    }
}

struct PartKeyVisitor;

impl Visitor<'_> for PartKeyVisitor {
    type Value = PartKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<PartKey, E> {
        Ok(PartKey::of(key.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_shapes_read_as_a_parsed_map_would() {
        let f = BodyFields::parse(
            br#"{"model":"a","model":"b","n":-1,"max_tokens":2.5}"#,
            &["model"],
        )
        .unwrap();
        assert_eq!(f.field("model"), Some("b"));
        assert_eq!((f.n(), f.max_tokens()), (None, None));
        let f = BodyFields::parse(br#"{"model":7}"#, &["model"]).unwrap();
        assert_eq!(f.field("model"), None);
        assert_eq!(
            BodyFields::parse(b"[1,2]", &["model"]),
            Some(BodyFields::default())
        );
        assert_eq!(BodyFields::parse(b"{\"model\":", &["model"]), None);
        assert_eq!(BodyFields::parse(b"{} x", &["model"]), None);
        let f = BodyFields::parse(
            br#"{"messages":[{"content":"ab","text":"c"},{"content":[{"text":"\u00e9t\u00e9"}]}]}"#,
            &[] as &[&str],
        )
        .unwrap();
        assert_eq!(f.input_chars(), 2 + 1 + 3);
    }

    #[test]
    fn keys_are_read_unescaped_and_in_every_role_they_have() {
        // Escaped keys name the same fields as plain ones.
        let f = BodyFields::parse(
            br#"{"mod\u0065l":"m","m\u0061x_tokens":3,"\u006e":2,"messages":[{"c\u006fntent":"abcd"}]}"#,
            &["model"],
        )
        .unwrap();
        assert_eq!(f.field("model"), Some("m"));
        assert_eq!((f.max_tokens(), f.n()), (Some(3), Some(2)));
        assert_eq!(f.input_chars(), 4);
        // A key both wanted and an input is both.
        let f = BodyFields::parse(br#"{"prompt":"abc","n":1}"#, &["prompt", "n"]).unwrap();
        assert_eq!((f.field("prompt"), f.input_chars()), (Some("abc"), 3));
        assert_eq!((f.field("n"), f.n()), (None, Some(1)));
    }

    #[test]
    fn fields_are_found_by_whole_name_and_shown_by_name() {
        // A name that is a prefix of another's name and value finds nothing.
        let f = BodyFields::parse(
            br#"{"model":"m","user":"u","mode":"x"}"#,
            &["model", "user"],
        )
        .unwrap();
        assert_eq!((f.field("model"), f.field("user")), (Some("m"), Some("u")));
        assert_eq!(
            (f.field("mode"), f.field("modelm"), f.field("")),
            (None, None, None)
        );
        // The last of duplicate keys wins.
        let f = BodyFields::parse(br#"{"model":"a","model":"bc"}"#, &["model"]).unwrap();
        assert_eq!(f.field("model"), Some("bc"));
        let shown = format!("{f:?}");
        assert!(shown.contains(r#"strings: {"model": "bc"}"#), "{shown}");
        // With two fields, the first kept inline and the second on the
        // heap: a duplicate of either replaces it, a value that is not a
        // string removes it.
        let wanted = ["model", "user"];
        for body in [
            br#"{"model":"a","user":"u","model":"b","user":"v"}"#.as_slice(),
            br#"{"user":"u","model":"a","user":"v","model":"b"}"#,
            br#"{"model":"a","user":"v","model":1,"model":"b"}"#,
        ] {
            let f = BodyFields::parse(body, &wanted).unwrap();
            assert_eq!((f.field("model"), f.field("user")), (Some("b"), Some("v")));
        }
        let f = BodyFields::parse(br#"{"user":"u","model":"a","user":2}"#, &wanted).unwrap();
        assert_eq!((f.field("model"), f.field("user")), (Some("a"), None));
        // Fields read alike compare alike, whatever was removed on the way.
        let parse = |body: &[u8]| BodyFields::parse(body, &wanted).unwrap();
        assert_eq!(
            parse(br#"{"model":"a","user":"u","model":1}"#),
            parse(br#"{"user":"u"}"#)
        );
        assert_eq!(
            parse(br#"{"model":"a","user":"u","model":"b"}"#),
            parse(br#"{"user":"u","model":"b"}"#)
        );
    }

    use crate::TokenEstimate;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (0u64..5000).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-zé\\u{1F600} \"\\\\]{0,12}".prop_map(Value::String),
            // Long text, read past the first words by `memchr`.
            "[a-z ]{48,90}[é\\u{1F600}\"\\\\]?[a-z ]{0,60}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            let keys = prop_oneof![
                Just("content".to_owned()),
                Just("text".to_owned()),
                Just("role".to_owned()),
                "[a-z]{1,4}",
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((keys, inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn body() -> impl Strategy<Value = String> {
        let keys = prop_oneof![
            Just("model"),
            Just("messages"),
            Just("prompt"),
            Just("input"),
            Just("max_tokens"),
            Just("n"),
            Just("other"),
        ];
        prop::collection::vec((keys, json_value()), 0..6).prop_map(|kv| {
            // Written by hand, so duplicate keys reach the parser.
            let fields: Vec<String> = kv
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::from(k), v))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
    }

    /// A body, then broken or made awkward: a snippet inserted, or cut short.
    fn awkward_body() -> impl Strategy<Value = Vec<u8>> {
        let snippets: [&[u8]; 22] = [
            b"\\",
            b"\"",
            b"\x01",
            b"1e400",
            b"-0",
            b"1.5",
            b"\\ud800",
            b"\\u00e9",
            b",",
            b"}",
            b"]",
            b"{",
            b"[",
            b" ",
            b"0",
            b".",
            b"e",
            b"-",
            b"\xff",
            b"null",
            b"\"content\":",
            b"18446744073709551616",
        ];
        (body(), any::<usize>(), 0..snippets.len() + 1).prop_map(move |(text, at, which)| {
            let mut bytes = text.into_bytes();
            let at = at % (bytes.len() + 1);
            match snippets.get(which) {
                Some(snippet) => {
                    bytes.splice(at..at, snippet.iter().copied());
                }
                None => bytes.truncate(at),
            }
            bytes
        })
    }

    #[test]
    fn the_fast_reader_reads_common_bodies_and_gives_up_on_the_rest() {
        let common: [&[u8]; 6] = [
            br#"{"model":"m","messages":[{"role":"system","content":"Be terse.\n\tOK"},{"role":"user","content":[{"type":"text","text":"caf\u00e9 \"x\" \/ \\"},{"type":"image_url","image_url":{"url":"data:,"}}]}],"max_tokens":512,"temperature":0.7,"top_p":1e-1,"stop":["\n\n"],"stream":true,"n":1,"tools":null}"#,
            " {\"model\" : \"m\", \"input\" : [\"été\", \"😀\"] }\n".as_bytes(),
            br#"{"model":"m","input":"one text","encoding_format":"float","dimensions":-3}"#,
            br#"{"model":"m","prompt":["a","b"],"max_tokens":0,"logit_bias":{"50256":-100.5}}"#,
            br#"{}"#,
            br#"{"model":"m","messages":[],"max_tokens":18446744073709551615}"#,
        ];
        // Text long enough to be read by `memchr` past its first words,
        // past ASCII, escaped, a model's long name.
        let long = "the quick brown fox jumps over the lazy dog ".repeat(3);
        let long_bodies = [
            format!(r#"{{"model":"m","input":"{long}été {long}\n{long}"}}"#),
            format!(r#"{{"model":"{long}","prompt":"{long}😀"}}"#),
        ];
        let common = common
            .into_iter()
            .chain(long_bodies.iter().map(|body| body.as_bytes()));
        for body in common {
            let fast = BodyFields::scan(body, &["model"]);
            assert!(fast.is_some(), "{}", String::from_utf8_lossy(body));
            assert_eq!(fast, parse_with_serde(body, &["model"]));
        }
        // Left to serde_json, which decides: its answer is the one given.
        let awkward: [&[u8]; 11] = [
            b"{\"model\":\"a\x01\"}",
            b"{\"input\":[\"a\x1fb\"]}",
            br#"{"model":"m","max_tokens":1e400}"#,
            br#"{"n":1.0}"#,
            br#"{"model":"caf\u00e9"}"#,
            br#"{"mod\u0065l":"m"}"#,
            br#"{"input":"\ud83d\ude00"}"#,
            br#"{"max_tokens":18446744073709551616}"#,
            br#"[1]"#,
            b"{\"input\":\"\xff\"}",
            br#"{"model":"m",}"#,
        ];
        let long_awkward = [
            format!("{{\"input\":\"{long}\x01{long}\"}}").into_bytes(),
            [format!("{{\"input\":\"{long}").as_bytes(), b"\xff\"}"].concat(),
            format!("{{\"input\":\"{long}").into_bytes(),
        ];
        let awkward = awkward
            .into_iter()
            .chain(long_awkward.iter().map(Vec::as_slice));
        for body in awkward {
            let text = String::from_utf8_lossy(body);
            assert_eq!(BodyFields::scan(body, &["model"]), None, "{text}");
            let parsed = BodyFields::parse(body, &["model"]);
            assert_eq!(parsed, parse_with_serde(body, &["model"]), "{text}");
        }
        let deep = format!("{{\"other\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(BodyFields::scan(deep.as_bytes(), &["model"]), None);
        let parsed = BodyFields::parse(deep.as_bytes(), &["model"]);
        assert_eq!(parsed, Some(BodyFields::default()));
    }

    proptest! {
        // A snippet lands where it matters (inside a read string, say) in
        // a few cases of each hundred: more cases than the default.
        #![proptest_config(ProptestConfig::with_cases(2048))]
        #[test]
        fn the_fast_reader_answers_as_serde_json_or_not_at_all(bytes in awkward_body()) {
            if let Some(fast) = BodyFields::scan(&bytes, &["model", "input"]) {
                prop_assert_eq!(Some(fast), parse_with_serde(&bytes, &["model", "input"]));
            }
        }
    }

    proptest! {

        #[test]
        fn fields_read_what_the_parsed_tree_says(text in body()) {
            let tree: Value = serde_json::from_str(&text).unwrap();
            let fields = BodyFields::parse(text.as_bytes(), &["model"]).unwrap();
            let estimate = TokenEstimate::default();
            prop_assert_eq!(estimate.estimate(&tree), estimate.estimate_fields(&fields));
            prop_assert_eq!(tree.get("model").and_then(Value::as_str), fields.field("model"));
        }
    }
}
