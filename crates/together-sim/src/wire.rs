//! What goes on the wire: header values, second counts, key labels.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::Value;

/// What the server answers.
pub(crate) type Resp = Response<Full<Bytes>>;

pub(crate) fn put(hs: &mut http::HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        hs.insert(HeaderName::from_static(name), v);
    }
}

pub(crate) fn ceil_ms(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000) as u64
}

/// Seconds rounded up to the millisecond, without trailing zeros:
/// `0.05`, `1`, `2.5`.
pub(crate) fn fmt_secs(d: Duration) -> String {
    let ms = ceil_ms(d);
    let s = format!("{}.{:03}", ms / 1000, ms % 1000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// How stats name an API key: `key-1` for the first configured key, and so on.
/// Keys are secrets, even test ones: they never appear in stats or logs.
pub(crate) fn key_label(keys: &[String], key: &str) -> String {
    keys.iter()
        .position(|k| k == key)
        .map_or_else(String::new, |i| format!("key-{}", i + 1))
}

/// A JSON answer with this status.
pub(crate) fn json_response(status: u16, v: &Value) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_seconds() {
        assert_eq!(fmt_secs(Duration::from_millis(50)), "0.05");
        assert_eq!(fmt_secs(Duration::from_secs(1)), "1");
        assert_eq!(fmt_secs(Duration::from_micros(2_500_001)), "2.501");
    }

    #[test]
    fn keys_are_labelled_never_shown() {
        let keys = ["sk-a".to_owned(), "sk-b".to_owned()];
        assert_eq!(key_label(&keys, "sk-b"), "key-2");
        assert_eq!(key_label(&keys, "sk-x"), "");
    }
}
