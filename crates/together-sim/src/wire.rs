//! What goes on the wire: header values, second counts, key labels.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;
use tokio::sync::mpsc;

/// What the server answers.
pub(crate) type Resp = Response<SimBody>;

/// A body: whole, or a stream of chunks sent as they are made (an error
/// in the stream aborts the connection mid-body).
#[derive(Debug)]
pub(crate) enum SimBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Result<Bytes, StreamCut>>),
}

impl SimBody {
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        SimBody::Full(Some(bytes.into()))
    }
}

/// A stream cut by fault injection.
#[derive(Debug)]
pub(crate) struct StreamCut;

impl fmt::Display for StreamCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stream cut by fault injection")
    }
}

impl std::error::Error for StreamCut {}

impl Body for SimBody {
    type Data = Bytes;
    type Error = StreamCut;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamCut>>> {
        match self.get_mut() {
            SimBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            SimBody::Stream(rx) => rx.poll_recv(cx).map(|c| c.map(|c| c.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, SimBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            SimBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            SimBody::Full(None) => SizeHint::with_exact(0),
            SimBody::Stream(_) => SizeHint::default(),
        }
    }
}

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
    let mut r = Response::new(SimBody::full(body));
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
