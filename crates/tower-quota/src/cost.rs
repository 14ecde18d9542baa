//! What a request costs against a quota, and which key it is charged to.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;
use serde_json::Value;

use crate::fields::BodyFields;

/// What one request costs against a quota.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Cost {
    /// One unit per request (a request quota).
    #[default]
    Requests,
    /// Tokens estimated from the JSON body (a token quota).
    Tokens(TokenEstimate),
    /// A function of the request head and its buffered body.
    Custom(CostFn),
    /// A function of the request head and the body's fields, parsed once
    /// for every quota of the route ([`Cost::from_fields`]).
    Fields(FieldsFn),
}

/// A custom cost function: request head and buffered body (if any) to units.
pub type CostFn = Arc<dyn Fn(&Parts, Option<&[u8]>) -> u32 + Send + Sync>;

/// A cost function of the request head and its JSON body's fields (`None`
/// when the body is not JSON).
pub type FieldsFn = Arc<dyn Fn(&Parts, Option<&BodyFields>) -> u32 + Send + Sync>;

impl Cost {
    /// A cost computed by `f` from the request head and body bytes.
    pub fn custom(f: impl Fn(&Parts, Option<&[u8]>) -> u32 + Send + Sync + 'static) -> Self {
        Cost::Custom(Arc::new(f))
    }

    /// A cost computed by `f` from the request head and the body's fields
    /// (`max_tokens`, `n`, the input's length, the keyed fields), read once
    /// for every quota of the route: no second parse of the body.
    ///
    /// ```
    /// use tower_quota::Cost;
    ///
    /// // An image costs its `n`.
    /// let images = Cost::from_fields(|_, fields| {
    ///     fields.and_then(|f| f.n()).unwrap_or(1).clamp(1, 10) as u32
    /// });
    /// # let _ = images;
    /// ```
    pub fn from_fields(
        f: impl Fn(&Parts, Option<&BodyFields>) -> u32 + Send + Sync + 'static,
    ) -> Self {
        Cost::Fields(Arc::new(f))
    }

    pub(crate) fn needs_body(&self) -> bool {
        !matches!(self, Cost::Requests)
    }

    pub(crate) fn of(
        &self,
        parts: &Parts,
        fields: Option<&BodyFields>,
        body: Option<&[u8]>,
    ) -> u32 {
        match self {
            Cost::Requests => 1,
            Cost::Tokens(estimate) => fields.map_or(estimate.default_max_tokens.max(1), |f| {
                estimate.estimate_fields(f)
            }),
            Cost::Custom(f) => f(parts, body),
            Cost::Fields(f) => f(parts, fields),
        }
    }
}

impl fmt::Debug for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cost::Requests => f.write_str("Requests"),
            Cost::Tokens(t) => f.debug_tuple("Tokens").field(t).finish(),
            Cost::Custom(_) => f.write_str("Custom(..)"),
            Cost::Fields(_) => f.write_str("Fields(..)"),
        }
    }
}

/// Estimates the tokens an OpenAI-style request will use: input text and output budget.
///
/// `tokens = ceil(input_chars / chars_per_token) + max_tokens × n`, where the
/// input text is the body's `prompt` and `input` (strings or arrays) and
/// the `content` of its `messages` (text, or the `text` of content parts), `max_tokens` is the body's (or `default_max_tokens` when
/// absent) and `n` is the body's (default 1). The result is at least 1.
///
/// ```
/// use tower_quota::TokenEstimate;
///
/// let body = serde_json::json!({
///     "model": "m",
///     "messages": [{"role": "user", "content": "12345678"}],
///     "max_tokens": 10,
///     "n": 2
/// });
/// assert_eq!(TokenEstimate::default().estimate(&body), 2 + 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenEstimate {
    /// Characters per token (default 4).
    pub chars_per_token: f64,
    /// Output tokens assumed when the body has no `max_tokens` (default 16).
    pub default_max_tokens: u32,
}

impl Default for TokenEstimate {
    fn default() -> Self {
        TokenEstimate {
            chars_per_token: 4.0,
            default_max_tokens: 16,
        }
    }
}

impl TokenEstimate {
    /// The estimated tokens for a parsed JSON request body.
    pub fn estimate(&self, body: &Value) -> u32 {
        let mut chars = 0usize;
        for field in ["messages", "prompt", "input"] {
            if let Some(v) = body.get(field) {
                count_chars(v, &mut chars);
            }
        }
        let input = (chars as f64 / self.chars_per_token.max(0.01)).ceil();
        let max_tokens = body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(self.default_max_tokens.into());
        let n = body.get("n").and_then(Value::as_u64).unwrap_or(1).max(1);
        let total = input + (max_tokens.saturating_mul(n)) as f64;
        total.clamp(1.0, f64::from(u32::MAX)) as u32
    }

    /// The estimated tokens from a body's fields: the same as
    /// [`estimate`](Self::estimate) of the parsed body, without the tree.
    pub fn estimate_fields(&self, body: &BodyFields) -> u32 {
        let input = (body.input_chars() as f64 / self.chars_per_token.max(0.01)).ceil();
        let max_tokens = body.max_tokens().unwrap_or(self.default_max_tokens.into());
        let n = body.n().unwrap_or(1).max(1);
        let total = input + (max_tokens.saturating_mul(n)) as f64;
        total.clamp(1.0, f64::from(u32::MAX)) as u32
    }
}

fn count_chars(value: &Value, chars: &mut usize) {
    match value {
        Value::String(s) => *chars += s.chars().count(),
        Value::Array(items) => items.iter().for_each(|v| count_chars(v, chars)),
        // A chat message's `content`, a content part's `text`.
        Value::Object(map) => ["content", "text"]
            .iter()
            .filter_map(|k| map.get(*k))
            .for_each(|v| count_chars(v, chars)),
        _ => {}
    }
}

/// Where a keyed quota finds the key of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyBy {
    /// A top-level string field of the JSON body, such as `model`.
    BodyField(String),
    /// A request header. Its value is hashed before use, so a secret (an
    /// API key) never appears in snapshots, traces or memory dumps of keys.
    Header(HeaderName),
}

impl KeyBy {
    /// Keys by the JSON body's `model` field.
    pub fn model() -> Self {
        KeyBy::BodyField("model".to_owned())
    }

    pub(crate) fn needs_body(&self) -> bool {
        matches!(self, KeyBy::BodyField(_))
    }

    /// The request's key: a body field's text as read (the cells are
    /// found by it, no copy made), a header's value hashed.
    pub(crate) fn key_of<'a>(
        &self,
        parts: &Parts,
        fields: Option<&'a BodyFields>,
    ) -> Option<Cow<'a, str>> {
        match self {
            KeyBy::BodyField(field) => fields?.field(field).map(Cow::Borrowed),
            KeyBy::Header(name) => {
                let value = parts.headers.get(name)?;
                Some(Cow::Owned(format!("#{:016x}", fnv1a(value.as_bytes()))))
            }
        }
    }

    #[cfg(feature = "toml")]
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some(("body", field)) if !field.is_empty() => Ok(KeyBy::BodyField(field.to_owned())),
            Some(("header", name)) => HeaderName::try_from(name)
                .map(KeyBy::Header)
                .map_err(|_| format!("key {text:?}: {name:?} is not a valid header name")),
            _ => Err(format!(
                "key {text:?}: write \"body:<field>\" (e.g. \"body:model\") or \"header:<name>\""
            )),
        }
    }
}

/// FNV-1a, enough to keep a header value out of key strings (not a security boundary).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn estimate_counts_all_input_shapes() {
        let e = TokenEstimate::default();
        assert_eq!(e.estimate(&json!({"prompt": "abcd", "max_tokens": 0})), 1);
        assert_eq!(
            e.estimate(&json!({"input": ["abcd", "abcdefgh"], "max_tokens": 0})),
            3
        );
        assert_eq!(
            e.estimate(&json!({"messages": [{"role":"user","content":[{"type":"text","text":"abcdefgh"}]}]})),
            // "abcdefgh": 8 chars = 2 tokens, + 16 default output tokens
            2 + 16
        );
        assert_eq!(e.estimate(&json!({})), 16);
    }

    #[test]
    fn header_keys_are_hashed() {
        let req = http::Request::builder()
            .header("authorization", "Bearer sk-secret")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let key = KeyBy::Header(http::header::AUTHORIZATION)
            .key_of(&parts, None)
            .unwrap();
        assert!(!key.contains("secret"));
        assert!(key.starts_with('#'));
    }

    #[test]
    fn key_spec_parsing() {
        assert_eq!(KeyBy::parse("body:model").unwrap(), KeyBy::model());
        assert!(KeyBy::parse("model").is_err());
        assert!(KeyBy::parse("header:bad header").is_err());
    }
}
