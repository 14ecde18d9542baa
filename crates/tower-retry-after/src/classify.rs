//! Which requests are safe to send again, and which errors are worth a retry.

use std::fmt;

use http::{Method, Request};
use path_pattern::{PathPattern, PatternError};

/// How safe a request is to send again.
///
/// Decided per request by [`RetryPolicy`](crate::RetryPolicy) from its
/// method and path (see [`Builder::route_class`](crate::Builder::route_class)).
/// A request carrying an `Idempotency-Key` header is always treated as
/// [`Idempotent`](RequestClass::Idempotent), except when its route is
/// [`Once`](RequestClass::Once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestClass {
    /// Safe to send again whatever happened to the first attempt: idempotent
    /// methods and inference POSTs (a second completion costs tokens, not
    /// correctness). Retried on every retryable status and on transport
    /// errors.
    Idempotent,
    /// Creates something on the server (a fine-tuning job, a batch, a file).
    /// Sent again only when the server certainly did not act on it, that is
    /// on a 429 or a 503, or when the request carries an `Idempotency-Key`.
    /// Not retried on other statuses (500, 502, 504, 408) nor on transport
    /// errors, where the server may have created the resource.
    CreatesResource,
    /// Never sent again.
    Once,
}

/// A rule mapping a method and a path prefix to a [`RequestClass`].
///
/// The path is a prefix matched segment by segment: `/v1/files` matches
/// `/v1/files`, `/v1/files/` and `/v1/files/file-1/content`, not
/// `/v1/filesystem`. A segment written `{name}` or `*` matches any one
/// segment: `/v1/fine-tunes/{id}/cancel`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RouteRule {
    pub(crate) method: Method,
    pattern: PathPattern,
    pub(crate) class: RequestClass,
}

impl RouteRule {
    pub(crate) fn new(
        method: Method,
        pattern: &str,
        class: RequestClass,
    ) -> Result<Self, PatternError> {
        Ok(RouteRule {
            method,
            pattern: PathPattern::parse(pattern)?,
            class,
        })
    }

    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        *method == self.method && self.pattern.matches_prefix(path)
    }
}

impl fmt::Debug for RouteRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} => {:?}", self.method, self.pattern, self.class)
    }
}

/// The class of a request: the first matching rule, else by method
/// (idempotent methods per RFC 9110 are [`RequestClass::Idempotent`]),
/// else `unmatched`. An `Idempotency-Key` upgrades
/// [`RequestClass::CreatesResource`] to [`RequestClass::Idempotent`].
pub(crate) fn classify<B>(
    rules: &[RouteRule],
    unmatched: RequestClass,
    req: &Request<B>,
) -> RequestClass {
    let method = req.method();
    let path = req.uri().path();
    let class = rules
        .iter()
        .find(|r| r.matches(method, path))
        .map(|r| r.class)
        .unwrap_or_else(|| {
            if is_idempotent(method) {
                RequestClass::Idempotent
            } else {
                unmatched
            }
        });
    if class == RequestClass::CreatesResource && req.headers().contains_key("idempotency-key") {
        RequestClass::Idempotent
    } else {
        class
    }
}

fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// Decides whether a transport error (no response at all) is worth a retry.
///
/// Errors are opaque to the policy, so this is the hook that tells a refused
/// connection or a timeout (worth retrying) from a bad URL (not). A request
/// is retried after an error only when this says so *and* its
/// [`RequestClass`] is [`Idempotent`](RequestClass::Idempotent).
///
/// Implemented by [`RetryAllErrors`] (the default) and by every
/// `Fn(&E) -> bool`; set one with
/// [`Builder::retry_errors_if`](crate::Builder::retry_errors_if).
pub trait ClassifyError<E> {
    /// `true` when the error is transient and the request may be sent again.
    fn is_retryable(&self, error: &E) -> bool;
}

/// The default [`ClassifyError`]: every error is worth a retry (for requests
/// safe to repeat).
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryAllErrors;

impl<E> ClassifyError<E> for RetryAllErrors {
    fn is_retryable(&self, _: &E) -> bool {
        true
    }
}

impl<E, F> ClassifyError<E> for F
where
    F: Fn(&E) -> bool,
{
    fn is_retryable(&self, error: &E) -> bool {
        self(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, uri: &str) -> Request<()> {
        Request::builder().method(method).uri(uri).body(()).unwrap()
    }

    /// An OpenAI-like table, as a caller (together-tower's preset) declares it.
    fn default_rules() -> Vec<RouteRule> {
        let inference = ["/v1/chat/completions", "/v1/embeddings"];
        let creating = ["/v1/fine-tunes", "/v1/batches", "/v1/files"];
        let rule = |p: &&str, class| RouteRule::new(Method::POST, p, class).unwrap();
        creating
            .iter()
            .map(|p| rule(p, RequestClass::CreatesResource))
            .chain(inference.iter().map(|p| rule(p, RequestClass::Idempotent)))
            .collect()
    }

    fn class(method: Method, uri: &str) -> RequestClass {
        classify(
            &default_rules(),
            RequestClass::CreatesResource,
            &req(method, uri),
        )
    }

    #[test]
    fn prefix_matches_by_segment() {
        let rule = RouteRule::new(Method::POST, "/v1/files", RequestClass::Once).unwrap();
        assert!(rule.matches(&Method::POST, "/v1/files"));
        assert!(rule.matches(&Method::POST, "/v1/files/"));
        assert!(rule.matches(&Method::POST, "/v1/files/f-1/content"));
        assert!(!rule.matches(&Method::POST, "/v1/filesystem"));
        assert!(!rule.matches(&Method::POST, "/v1"));
        assert!(!rule.matches(&Method::GET, "/v1/files"));
    }

    #[test]
    fn placeholders_match_one_segment() {
        let rule = RouteRule::new(
            Method::POST,
            "/v1/fine-tunes/{id}/cancel",
            RequestClass::Once,
        )
        .unwrap();
        assert!(rule.matches(&Method::POST, "/v1/fine-tunes/ft-1/cancel"));
        assert!(!rule.matches(&Method::POST, "/v1/fine-tunes/ft-1"));
        assert!(!rule.matches(&Method::POST, "/v1/fine-tunes/ft-1/events"));
        let star = RouteRule::new(Method::POST, "/v1/*/cancel", RequestClass::Once).unwrap();
        assert!(star.matches(&Method::POST, "/v1/batches/cancel"));
    }

    #[test]
    fn patterns_must_be_absolute() {
        assert!(RouteRule::new(Method::POST, "v1/files", RequestClass::Once).is_err());
    }

    #[test]
    fn declared_routes_then_methods() {
        use RequestClass::*;
        assert_eq!(class(Method::POST, "/v1/chat/completions"), Idempotent);
        assert_eq!(
            class(Method::POST, "https://api.together.xyz/v1/embeddings?x=1"),
            Idempotent
        );
        assert_eq!(class(Method::POST, "/v1/fine-tunes"), CreatesResource);
        assert_eq!(
            class(Method::POST, "/v1/batches/b-1/cancel"),
            CreatesResource
        );
        assert_eq!(class(Method::POST, "/v1/files"), CreatesResource);
        assert_eq!(class(Method::GET, "/v1/fine-tunes/ft-1"), Idempotent);
        assert_eq!(class(Method::DELETE, "/v1/files/f-1"), Idempotent);
        assert_eq!(class(Method::POST, "/v1/unknown"), CreatesResource);
        assert_eq!(
            class(Method::PATCH, "/v1/chat/completions"),
            CreatesResource
        );
    }

    #[test]
    fn idempotency_key_upgrades_creating_requests_only() {
        let mut r = req(Method::POST, "/v1/fine-tunes");
        r.headers_mut()
            .insert("idempotency-key", "k-1".parse().unwrap());
        assert_eq!(
            classify(&default_rules(), RequestClass::Once, &r),
            RequestClass::Idempotent
        );
        *r.uri_mut() = "/v1/other".parse().unwrap();
        assert_eq!(
            classify(&default_rules(), RequestClass::Once, &r),
            RequestClass::Once
        );
    }

    #[test]
    fn closures_classify_errors() {
        let only_reset = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionReset;
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let other = std::io::Error::from(std::io::ErrorKind::InvalidInput);
        assert!(only_reset.is_retryable(&reset));
        assert!(!only_reset.is_retryable(&other));
        assert!(ClassifyError::<std::io::Error>::is_retryable(
            &RetryAllErrors,
            &other
        ));
    }
}
