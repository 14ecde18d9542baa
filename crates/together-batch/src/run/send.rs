//! Sending one job through the stack and reading its answer.

use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request, Response};
use serde_json::Value;
use together_tower::body::{BodyLimits, read_body};
use together_tower::service::Attempts;
use together_tower::stream::{Streamed, is_event_stream};
use together_tower::{ApiKey, BoxError, ClientService, Error, HttpBody};
use tower::Service;

use super::timeline::Lane;
use crate::input::Job;

pub(super) type ResponseFuture = <ClientService as Service<Request<String>>>::Future;

/// What one job came to: the status (0: no answer) and the body or error.
pub(super) struct Sent {
    pub(super) status: u16,
    pub(super) outcome: Result<Value, Error>,
}

pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The request for `job`, counting its attempts, on its route's lane.
pub(super) fn request(
    job: &Job,
    attempts: &Attempts,
    lane: Lane,
) -> Result<Request<String>, http::Error> {
    let mut req = Request::builder()
        .method(job.method.clone())
        .uri(job.path.as_str());
    if let Ok(v) = HeaderValue::from_str(&job.custom_id) {
        req = req.header("x-custom-id", v);
    }
    let mut req = req.body(job.body.clone())?;
    req.extensions_mut().insert(attempts.clone());
    req.extensions_mut().insert(lane);
    Ok(req)
}

/// Reads the answer; errors are together-tower's, scrubbed of the key.
pub(super) async fn answer(
    response: Result<ResponseFuture, Error>,
    attempts: &Attempts,
    key: &ApiKey,
    limits: BodyLimits,
) -> Sent {
    let scrub = |text: String| key.scrub(&text);
    let failed = |status: u16, e: BoxError| Sent {
        status,
        outcome: Err(Error::from_service(e, attempts.retries(), &scrub)),
    };
    let res: Response<HttpBody> = match response {
        Ok(fut) => match fut.await {
            Ok(res) => res,
            Err(e) => return failed(0, e),
        },
        Err(e) => {
            return Sent {
                status: 0,
                outcome: Err(e),
            };
        }
    };
    let status = res.status();
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if status.is_success() && is_event_stream(res.headers()) {
        // A stream: its events assembled into the answer a request without
        // `stream` gets, so every output line has the same shape.
        let scrub_key = key.clone();
        let streamed = Streamed::<Value>::new(res.into_body(), limits)
            .scrubbing(move |text| scrub_key.scrub(&text));
        let outcome = match streamed.finish().await {
            Ok(whole) => scrub_value(whole, key).map_err(|e| e.with_status(status)),
            Err(e) => Err(e.with_status(status)),
        };
        return Sent {
            status: status.as_u16(),
            outcome,
        };
    }
    let bytes = match read_body(res.into_body(), limits).await {
        Ok(b) => b,
        Err(e) => {
            return Sent {
                status: status.as_u16(),
                outcome: Err(Error::from_body(e, attempts.retries(), &scrub).with_status(status)),
            };
        }
    };
    let outcome = if status.is_success() {
        success_body(&bytes, key).map_err(|e| e.with_status(status))
    } else {
        Err(Error::from_status(
            status,
            &bytes,
            request_id,
            attempts.retries(),
            &scrub,
        ))
    };
    Sent {
        status: status.as_u16(),
        outcome,
    }
}

/// An assembled answer, scrubbed of the key should the server have echoed
/// it (read again only then, as a body is).
fn scrub_value(whole: Value, key: &ApiKey) -> Result<Value, Error> {
    let secret = key.expose_secret();
    let text = whole.to_string();
    if secret.is_empty() || !text.contains(secret) {
        return Ok(whole);
    }
    success_body(text.as_bytes(), key)
}

/// A success's body: JSON, scrubbed of the key should the server echo it.
/// A body that is not JSON is a failure ([`ErrorKind::Decode`]): the line is
/// not answered, whatever the status said.
///
/// [`ErrorKind::Decode`]: together_tower::ErrorKind::Decode
fn success_body(bytes: &[u8], key: &ApiKey) -> Result<Value, Error> {
    let secret = key.expose_secret();
    let echoed = !secret.is_empty() && bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
    let parsed = if echoed {
        serde_json::from_str(&key.scrub(&String::from_utf8_lossy(bytes)))
    } else {
        serde_json::from_slice(bytes)
    };
    parsed.map_err(|e| {
        let start: String = key
            .scrub(&String::from_utf8_lossy(&bytes[..bytes.len().min(200)]))
            .chars()
            .take(100)
            .collect();
        Error::decode(format!(
            "the answer is not the JSON it should be ({e}; {} bytes, starting {start:?})",
            bytes.len()
        ))
    })
}

/// A job's result, as the collector takes it.
pub(crate) struct Done {
    pub(crate) route: String,
    pub(crate) model: Option<String>,
    pub(crate) custom_id: String,
    /// The HTTP status (0: no answer).
    pub(crate) status: u16,
    pub(crate) attempts: u32,
    /// The output line.
    pub(crate) line: Value,
    /// Why it failed; `None` for a success.
    pub(crate) error: Option<Error>,
    /// For an answer that reports its usage: the tokens estimated up front, and used.
    pub(crate) tokens: Option<(u64, u64)>,
    /// The route's in-flight slot, held until the line is written, so
    /// results waiting for the collector count against --max-in-flight.
    pub(crate) permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Done {
    pub(crate) fn ok(&self) -> bool {
        self.error.is_none()
    }
}
