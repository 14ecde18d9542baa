//! [`Error`]: one error type for the typed helpers.

use std::fmt;

use http::StatusCode;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::BoxError;

/// The most characters of a non-JSON error body an [`Error`] quotes.
pub const MAX_QUOTED_BODY: usize = 500;

/// What went wrong, broadly; see [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The API answered with an error status.
    Api,
    /// The API answered 404 for the request's model.
    ModelNotFound,
    /// The rate limiter refused to wait (a route's `max_wait`) or the
    /// request can never fit its quota.
    RateLimit,
    /// No response: connection refused or reset, timeout, TLS.
    Transport,
    /// The response body was not what the API documents.
    Decode,
    /// The client is misconfigured (key, base URL, preset).
    Config,
    /// The response body is over the cap ([`BodyLimits`](crate::body::BodyLimits)).
    TooLarge,
    /// No answer in time: the body stalled, or the request's deadline passed.
    Timeout,
    /// A streamed answer was cut after it began: what came is kept
    /// ([`Streamed::response`](crate::stream::Streamed::response)); it is
    /// not retried (the caller has part of it).
    Interrupted,
}

/// An error of [`TogetherClient`](crate::TogetherClient): the HTTP status,
/// the API's error type and message, the request id, the retries made, and
/// what to do about it (in `Display`).
///
/// Never contains the API key: messages from the server are scrubbed of it.
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    status: Option<StatusCode>,
    api_type: Option<String>,
    code: Option<String>,
    param: Option<String>,
    message: String,
    request_id: Option<String>,
    retries: u32,
    model: Option<String>,
    suggestions: Vec<String>,
    source: Option<BoxError>,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                status: None,
                api_type: None,
                code: None,
                param: None,
                message: message.into(),
                request_id: None,
                retries: 0,
                model: None,
                suggestions: Vec::new(),
                source: None,
            }),
        }
    }

    /// A misconfiguration ([`ErrorKind::Config`]) with its source.
    pub fn config(source: impl Into<BoxError>) -> Self {
        let source = source.into();
        let mut e = Error::new(ErrorKind::Config, source.to_string());
        e.inner.source = Some(source);
        e
    }

    /// A body that is not what the API documents ([`ErrorKind::Decode`]).
    pub fn decode(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Decode, message)
    }

    /// A streamed answer that failed after its head (`kind`: usually
    /// [`ErrorKind::Interrupted`]); `message` says what came before.
    pub fn stream(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error::new(kind, message)
    }

    /// No answer in time ([`ErrorKind::Timeout`]).
    pub fn timeout(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Timeout, message)
    }

    /// A body that could not be read whole ([`BodyError`](crate::body::BodyError)):
    /// [`ErrorKind::TooLarge`], [`ErrorKind::Timeout`] for a stalled one,
    /// else [`ErrorKind::Transport`]; `scrub` removes the key.
    pub fn from_body(
        error: crate::body::BodyError,
        retries: u32,
        scrub: &dyn Fn(String) -> String,
    ) -> Self {
        use crate::body::BodyError;
        let kind = match &error {
            BodyError::TooLarge { .. } => ErrorKind::TooLarge,
            BodyError::Stalled { .. } => ErrorKind::Timeout,
            BodyError::Transport(e) if e.is::<crate::AttemptTimeout>() => ErrorKind::Timeout,
            _ => ErrorKind::Transport,
        };
        let mut e = Error::new(kind, scrub(source_chain(&error)));
        e.inner.retries = retries;
        e.inner.source = Some(Box::new(error));
        e
    }

    /// This error, recording the HTTP status it came with.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.inner.status = Some(status);
        self
    }

    /// An error from the service stack (no response): the rate limiter's
    /// refusals are [`ErrorKind::RateLimit`], a request that cannot be built
    /// [`ErrorKind::Config`], anything else [`ErrorKind::Transport`]. `scrub`
    /// removes the key from the message (see [`ApiKey::scrub`](crate::ApiKey::scrub)).
    pub fn from_service(source: BoxError, retries: u32, scrub: &dyn Fn(String) -> String) -> Self {
        let kind = if source.is::<tower_quota::error::WaitTimeout>()
            || source.is::<tower_quota::error::CostTooHigh>()
        {
            ErrorKind::RateLimit
        } else if source.is::<crate::service::InvalidPath>() {
            ErrorKind::Config
        } else {
            ErrorKind::Transport
        };
        let mut e = Error::new(kind, scrub(source_chain(&*source)));
        e.inner.retries = retries;
        e.inner.source = Some(source);
        e
    }

    /// An error status with its body, in Together's (and OpenAI's) shape
    /// `{"error": {"message", "type", "param", "code"}}` or anything else
    /// (then the message is the body, scrubbed, then cut to
    /// [`MAX_QUOTED_BODY`] characters). `retries` is the attempts made
    /// after the first.
    ///
    /// ```
    /// use http::StatusCode;
    /// use together_tower::{ApiKey, Error};
    ///
    /// let key = ApiKey::new("sk-1").unwrap();
    /// let body = br#"{"error":{"message":"bad key sk-1","type":"invalid_api_key"}}"#;
    /// let e = Error::from_status(StatusCode::UNAUTHORIZED, body, None, 0, &|t| key.scrub(&t));
    /// assert_eq!(e.api_type(), Some("invalid_api_key"));
    /// assert_eq!(e.message(), "bad key <redacted>");
    /// ```
    pub fn from_status(
        status: StatusCode,
        body: &[u8],
        request_id: Option<String>,
        retries: u32,
        scrub: &dyn Fn(String) -> String,
    ) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let err = json.as_ref().map(|v| v.get("error").unwrap_or(v));
        let text = |k: &str| {
            err.and_then(|e| e.get(k)).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        // Scrub before cutting, so no part of a key survives the cut.
        let message = match text("message") {
            Some(message) => scrub(message),
            None => scrub(String::from_utf8_lossy(body).into_owned())
                .chars()
                .take(MAX_QUOTED_BODY)
                .collect(),
        };
        let mut e = Error::new(ErrorKind::Api, message);
        e.inner.status = Some(status);
        // Every text from the server is scrubbed: it may echo the key anywhere.
        e.inner.api_type = text("type").map(scrub);
        e.inner.code = text("code").map(scrub);
        e.inner.param = text("param").map(scrub);
        e.inner.request_id = request_id.or_else(|| {
            json.as_ref()
                .and_then(|v| v.get("id")?.as_str().map(str::to_owned))
        });
        e.inner.retries = retries;
        e
    }

    /// Whether this looks like "model not found": a 404 naming the model.
    pub fn is_unknown_model(&self) -> bool {
        self.inner.status == Some(StatusCode::NOT_FOUND)
            && (self.inner.param.as_deref() == Some("model")
                || self.inner.code.as_deref() == Some("model_not_available")
                || self.inner.message.to_lowercase().contains("model"))
    }

    /// This error (a 404 naming `model`) as [`ErrorKind::ModelNotFound`],
    /// naming the closest listed ids in its [`suggestions`](Self::suggestions)
    /// and [`advice`](Self::advice).
    pub fn into_model_not_found(mut self, model: &str, suggestions: Vec<String>) -> Self {
        self.inner.kind = ErrorKind::ModelNotFound;
        self.inner.model = Some(model.to_owned());
        self.inner.suggestions = suggestions;
        self
    }

    pub(crate) fn with_model(mut self, model: &str) -> Self {
        self.inner.model.get_or_insert_with(|| model.to_owned());
        self
    }

    /// Whether the request certainly never reached a server: refused by
    /// the rate limiter or the configuration, or a connection that could not
    /// be made (refused, no route, DNS). A timeout or a reset after
    /// connecting may have reached it, so it is not counted here.
    pub fn never_sent(&self) -> bool {
        match self.inner.kind {
            ErrorKind::RateLimit | ErrorKind::Config => return true,
            ErrorKind::Transport => {}
            _ => return false,
        }
        let mut cur: Option<&(dyn std::error::Error + 'static)> = self
            .inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static));
        while let Some(e) = cur {
            #[cfg(feature = "rustls")]
            if e.downcast_ref::<hyper_util::client::legacy::Error>()
                .is_some_and(hyper_util::client::legacy::Error::is_connect)
            {
                return true;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::ConnectionRefused
            {
                return true;
            }
            cur = e.source();
        }
        false
    }

    /// What went wrong, broadly.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<StatusCode> {
        self.inner.status
    }

    /// The API's error type (`invalid_request_error`, `dynamic_request_limited`...).
    pub fn api_type(&self) -> Option<&str> {
        self.inner.api_type.as_deref()
    }

    /// The type a results file records: the API's error type, else the
    /// [kind's label](ErrorKind::label) (`None` only for an API answer
    /// without a type).
    pub fn type_name(&self) -> Option<&str> {
        let e = &self.inner;
        let label = (e.kind != ErrorKind::Api || e.status.is_none()).then(|| e.kind.label());
        e.api_type.as_deref().or(label)
    }

    /// The API's error code, if any.
    pub fn code(&self) -> Option<&str> {
        self.inner.code.as_deref()
    }

    /// The API's (or the transport's) message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The request id (`x-request-id`), if the API sent one.
    pub fn request_id(&self) -> Option<&str> {
        self.inner.request_id.as_deref()
    }

    /// Retries sent before giving up: attempts that reached the client
    /// service after the first (a retry refused by the rate limiter is not sent).
    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    /// The model the request named, if any.
    pub fn model(&self) -> Option<&str> {
        self.inner.model.as_deref()
    }

    /// For [`ErrorKind::ModelNotFound`]: the closest listed model ids, best first.
    pub fn suggestions(&self) -> &[String] {
        &self.inner.suggestions
    }

    /// What to do about it, in a sentence: check the key, pick a listed
    /// model (naming the closest), lower the rate... (also the end of
    /// [`Display`](fmt::Display)).
    pub fn advice(&self) -> String {
        if self.inner.kind == ErrorKind::ModelNotFound {
            return if self.inner.suggestions.is_empty() {
                "pick a model listed by GET /v1/models".to_owned()
            } else {
                format!(
                    "pick a listed model; closest: {}",
                    self.inner.suggestions.join(", ")
                )
            };
        }
        match (self.inner.kind, self.inner.status.map(|s| s.as_u16())) {
            (ErrorKind::Api, Some(401)) => {
                "check the API key (TOGETHER_API_KEY): it is missing, mistyped or revoked".into()
            }
            (ErrorKind::Api, Some(402)) => "the account is out of credit: add credit".into(),
            (ErrorKind::Api, Some(403)) => {
                "shorten the input or lower max_tokens to fit the model's context length".into()
            }
            (ErrorKind::Api, Some(404)) => "check the path and the base URL".into(),
            (ErrorKind::Api, Some(409)) => {
                "a job cap was reached: wait for running jobs to finish or cancel one".into()
            }
            (ErrorKind::Api, Some(429)) => "rate limited even after retries: lower the rate \
                 (set the preset's quotas to your account's limits) or ramp up more slowly"
                .into(),
            (ErrorKind::Api, Some(s)) if s >= 500 => "the server is overloaded or failing: \
                 try again later, or configure a fallback model"
                .into(),
            (ErrorKind::Api, _) => "fix the request as the message says".into(),
            (ErrorKind::RateLimit, _) => {
                "the rate limiter refused: lower the rate, raise max_wait, or split the request"
                    .into()
            }
            (ErrorKind::Transport, _) => {
                "no response: check the base URL and the network; retry later".into()
            }
            (ErrorKind::TooLarge, _) => "the answer is larger than the cap on a response: raise \
                 it if such answers are expected, or ask for less (fewer inputs, smaller images)"
                .into(),
            (ErrorKind::Timeout, _) => "no answer in time: the server is slow or stalled; raise \
                 the timeouts if such answers are expected, or try later"
                .into(),
            (ErrorKind::Interrupted, _) => "the stream broke off: what came is kept; send the \
                 request again for the rest"
                .into(),
            (ErrorKind::Decode, _) => {
                "the response had an unexpected shape: check the base URL points at an \
                 OpenAI-compatible API"
                    .into()
            }
            _ => "fix the client's configuration".into(),
        }
    }
}

impl ErrorKind {
    /// A short label: `api`, `model_not_found`, `rate_limiter`, `transport`,
    /// `decode`, `config`, `too_large`, `timeout`.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Api => "api",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::RateLimit => "rate_limiter",
            ErrorKind::Transport => "transport",
            ErrorKind::Decode => "decode",
            ErrorKind::Config => "config",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Interrupted => "interrupted",
        }
    }
}

/// As a results file records it: `status` (or null), `type` (the API's
/// error type, else the [kind's label](ErrorKind::label) for errors without
/// an answer), `code`, `message`, and `param`, `request_id`, `model`,
/// `suggestions` when known, and the `advice`. Never the key: messages are scrubbed when the
/// error is made.
impl Serialize for Error {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = &self.inner;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("status", &e.status.map(|s| s.as_u16()))?;
        map.serialize_entry("type", &self.type_name())?;
        map.serialize_entry("code", &e.code)?;
        map.serialize_entry("message", &e.message)?;
        if let Some(param) = &e.param {
            map.serialize_entry("param", param)?;
        }
        if let Some(id) = &e.request_id {
            map.serialize_entry("request_id", id)?;
        }
        if let Some(model) = &e.model {
            map.serialize_entry("model", model)?;
        }
        if !e.suggestions.is_empty() {
            map.serialize_entry("suggestions", &e.suggestions)?;
        }
        map.serialize_entry("advice", &self.advice())?;
        map.end()
    }
}

/// An error and its sources, joined with `": "`, as one line for logs and output.
pub fn source_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.inner.kind, self.inner.status) {
            (ErrorKind::ModelNotFound, _) => write!(
                f,
                "model {:?} not found",
                self.inner.model.as_deref().unwrap_or("?")
            )?,
            (_, Some(status)) => {
                write!(f, "API answered {status}")?;
                if let Some(t) = &self.inner.api_type {
                    write!(f, " ({t})")?;
                }
                write!(f, ": {}", self.inner.message)?;
            }
            (ErrorKind::RateLimit, None) => write!(f, "{}", self.inner.message)?,
            (ErrorKind::Transport, None) => write!(f, "request failed: {}", self.inner.message)?,
            (_, None) => write!(f, "{}", self.inner.message)?,
        }
        if let Some(id) = &self.inner.request_id {
            write!(f, " [request {id}]")?;
        }
        if self.inner.retries > 0 {
            write!(f, " after {} retries", self.inner.retries)?;
        }
        write!(f, "; {}", self.advice())
    }
}

/// Prints what [`Display`](fmt::Display) prints, so `?` in a `main`
/// returning `Result<(), Box<dyn Error>>` shows the helpful message; `{:#?}`
/// shows the fields.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !f.alternate() {
            return fmt::Display::fmt(self, f);
        }
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("status", &self.inner.status)
            .field("api_type", &self.inner.api_type)
            .field("code", &self.inner.code)
            .field("message", &self.inner.message)
            .field("request_id", &self.inner.request_id)
            .field("retries", &self.inner.retries)
            .field("model", &self.inner.model)
            .field("suggestions", &self.inner.suggestions)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_what_to_do() {
        let body = br#"{"error":{"message":"Invalid API key provided: sk-live-123","type":"invalid_api_key"}}"#;
        let scrub = |s: String| s.replace("sk-live-123", "<redacted>");
        let e = Error::from_status(
            StatusCode::UNAUTHORIZED,
            body,
            Some("req-1".into()),
            0,
            &scrub,
        );
        let text = e.to_string();
        assert!(text.contains("check the API key"), "{text}");
        assert!(text.contains("req-1"), "{text}");
        assert!(!text.contains("sk-live-123"), "{text}");
        assert!(!format!("{e:?}").contains("sk-live-123"));
        assert!(!format!("{e:#?}").contains("sk-live-123"));
        // `?` in main prints Debug: it says what Display says.
        assert_eq!(format!("{e:?}"), text);
        assert!(format!("{e:#?}").starts_with("Error {"));
        let e = Error::from_status(StatusCode::TOO_MANY_REQUESTS, b"{}", None, 4, &scrub);
        assert!(e.to_string().contains("lower the rate"));
        assert!(e.to_string().contains("after 4 retries"));
        assert_eq!(e.retries(), 4);
    }

    #[test]
    fn a_key_straddling_the_cut_is_scrubbed_whole() {
        let key = "sk-live-0123456789";
        let body = format!("{}{key} and more", "x".repeat(MAX_QUOTED_BODY - 5));
        let scrub = |s: String| s.replace(key, "<redacted>");
        let e = Error::from_status(StatusCode::BAD_GATEWAY, body.as_bytes(), None, 0, &scrub);
        assert!(!e.message().contains("sk-l"), "{}", e.message());
        assert_eq!(e.message().chars().count(), MAX_QUOTED_BODY);
    }

    #[test]
    fn serializes_as_a_results_file_records_it() {
        let body = br#"{"error":{"message":"no such model","type":"invalid_request_error","param":"model","code":"model_not_available"}}"#;
        let e = Error::from_status(StatusCode::NOT_FOUND, body, Some("r-1".into()), 2, &|s| s);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(v["type"], "invalid_request_error");
        assert_eq!(v["code"], "model_not_available");
        assert_eq!(v["param"], "model");
        assert_eq!(v["request_id"], "r-1");
        let io: BoxError = Box::new(std::io::Error::other("connection refused"));
        let v = serde_json::to_value(Error::from_service(io, 0, &|s| s)).unwrap();
        assert_eq!(v["status"], Value::Null);
        assert_eq!(v["type"], "transport");
        assert_eq!(v["message"], "connection refused");
    }
}
