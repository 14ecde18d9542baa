//! [`Together`]: base URL, auth, user agent and JSON headers over any client.

use std::fmt;
use std::future::Ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use futures_util::TryFutureExt;
use futures_util::future::{Either, MapErr};

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Uri};
use tower_layer::Layer;
use tower_service::Service;

use crate::BoxError;
use crate::key::ApiKey;

/// Together's API: `https://api.together.xyz`.
pub const DEFAULT_BASE_URL: &str = "https://api.together.xyz";

/// The default `User-Agent`.
pub const DEFAULT_USER_AGENT: &str = concat!("together-tower/", env!("CARGO_PKG_VERSION"));

/// Counts the attempts of one call: put it in a request's extensions and
/// [`Together`] adds one each time the request (or a retry's copy, which
/// shares it) goes out. [`TogetherClient`](crate::TogetherClient) does this
/// for every call, to report retries in its [`Error`](crate::Error).
#[derive(Debug, Clone, Default)]
pub struct Attempts(Arc<AttemptsInner>);

#[derive(Debug, Default)]
struct AttemptsInner {
    count: AtomicU32,
    first: std::sync::OnceLock<tokio::time::Instant>,
}

impl Attempts {
    /// Attempts sent so far.
    pub fn get(&self) -> u32 {
        self.0.count.load(Ordering::Relaxed)
    }

    /// When the first attempt went out (tokio's clock), if one did: where
    /// a deadline across retries starts.
    pub fn first_sent(&self) -> Option<tokio::time::Instant> {
        self.0.first.get().copied()
    }

    fn count(&self) {
        self.0.first.get_or_init(tokio::time::Instant::now);
        self.0.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Retries made so far (attempts after the first).
    pub fn retries(&self) -> u32 {
        self.get().saturating_sub(1)
    }
}

/// A base URL that cannot be used, as `scheme://host[:port][/prefix]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBaseUrl(String);

impl fmt::Display for InvalidBaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid base URL {:?}: write http(s)://host[:port][/prefix], e.g. {DEFAULT_BASE_URL}",
            self.0
        )
    }
}

impl std::error::Error for InvalidBaseUrl {}

/// A request path that cannot be joined to the base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPath(String);

impl InvalidPath {
    pub(crate) fn new(path: &str) -> Self {
        InvalidPath(path.to_owned())
    }
}

impl fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request path {:?} does not make a valid URL with the base URL: pass a path like /v1/models",
            self.0
        )
    }
}

impl std::error::Error for InvalidPath {}

#[derive(Clone)]
struct Config {
    scheme: Scheme,
    authority: Authority,
    prefix: String,
    base: String,
    auth: Option<ApiKey>,
    user_agent: HeaderValue,
}

/// Sends requests to Together (or another OpenAI-compatible API) through any
/// inner `Service<http::Request<B>>`.
///
/// For each request it
/// - joins a relative URI (`/v1/chat/completions`) to the base URL
///   (default [`DEFAULT_BASE_URL`]); an absolute URI is left as it is;
/// - sets `Authorization: Bearer <key>` when the request has none, and marks
///   every `Authorization` header sensitive, so `Debug` and tower-http's
///   traces print `Sensitive`;
/// - sets `User-Agent`, `Accept: application/json` and, on POST, PUT and
///   PATCH, `Content-Type: application/json` when absent;
/// - counts the attempt in the request's [`Attempts`], if any.
///
/// # Clone
///
/// Clones share the configuration.
#[derive(Clone)]
pub struct Together<C> {
    inner: C,
    config: Arc<Config>,
}

impl<C> Together<C> {
    /// The inner service.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> C {
        self.inner
    }
}

impl<C: fmt::Debug> fmt::Debug for Together<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Together")
            .field("base_url", &self.config.base)
            .field("api_key", &self.config.auth)
            .field("inner", &self.inner)
            .finish()
    }
}

/// Makes [`Together`] services.
#[derive(Clone)]
pub struct TogetherLayer {
    config: Arc<Config>,
}

impl TogetherLayer {
    /// A layer sending to `base_url` (`scheme://host[:port][/prefix]`) with
    /// `key` (or without auth when `None`). A base URL ending in `/v1`, as
    /// OpenAI-compatible docs write it (`https://api.together.xyz/v1`), is
    /// joined to `/v1/...` paths without doubling the `/v1`.
    pub fn new(base_url: &str, key: Option<ApiKey>) -> Result<Self, InvalidBaseUrl> {
        let bad = || InvalidBaseUrl(base_url.to_owned());
        let uri: Uri = base_url.trim().parse().map_err(|_| bad())?;
        let scheme = uri.scheme().cloned().ok_or_else(bad)?;
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(bad());
        }
        let authority = uri.authority().cloned().ok_or_else(bad)?;
        if uri.query().is_some() {
            return Err(bad());
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(TogetherLayer {
            config: Arc::new(Config {
                base: format!("{scheme}://{authority}{prefix}"),
                scheme,
                authority,
                prefix,
                auth: key,
                user_agent: HeaderValue::from_static(DEFAULT_USER_AGENT),
            }),
        })
    }

    /// Replaces the `User-Agent` header value.
    pub fn user_agent(mut self, value: HeaderValue) -> Self {
        Arc::make_mut(&mut self.config).user_agent = value;
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.config.base
    }
}

impl fmt::Debug for TogetherLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TogetherLayer")
            .field("base_url", &self.config.base)
            .field("api_key", &self.config.auth)
            .finish()
    }
}

impl<C> Layer<C> for TogetherLayer {
    type Service = Together<C>;

    fn layer(&self, inner: C) -> Together<C> {
        Together {
            inner,
            config: self.config.clone(),
        }
    }
}

impl Config {
    fn prepare<B>(&self, req: &mut Request<B>) -> Result<(), BoxError> {
        if req.uri().authority().is_none() {
            let pq = req
                .uri()
                .path_and_query()
                .map_or("/", PathAndQuery::as_str)
                .to_owned();
            // A base URL ending in /v1 (as OpenAI-compatible docs write it)
            // and a path starting with /v1/ name the same /v1 once.
            let prefix = match self.prefix.strip_suffix("/v1") {
                Some(shorter) if pq.starts_with("/v1/") || pq == "/v1" => shorter,
                _ => self.prefix.as_str(),
            };
            let joined = format!("{prefix}{pq}");
            let pq: PathAndQuery = joined.parse().map_err(|_| InvalidPath(pq.clone()))?;
            let uri = Uri::builder()
                .scheme(self.scheme.clone())
                .authority(self.authority.clone())
                .path_and_query(pq)
                .build()
                .map_err(|_| InvalidPath(joined))?;
            *req.uri_mut() = uri;
        }
        let headers = req.headers_mut();
        if let Some(key) = &self.auth
            && !headers.contains_key(AUTHORIZATION)
        {
            headers.insert(AUTHORIZATION, key.header_value().clone());
        }
        if let Some(auth) = headers.get_mut(AUTHORIZATION) {
            auth.set_sensitive(true);
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, self.user_agent.clone());
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        }
        let has_body = [Method::POST, Method::PUT, Method::PATCH].contains(req.method());
        if has_body && !req.headers().contains_key(CONTENT_TYPE) {
            req.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(attempts) = req.extensions().get::<Attempts>() {
            attempts.count();
        }
        Ok(())
    }
}

impl<C, B> Service<Request<B>> for Together<C>
where
    C: Service<Request<B>>,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future =
        Either<Ready<Result<C::Response, BoxError>>, MapErr<C::Future, fn(C::Error) -> BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Err(e) = self.config.prepare(&mut req) {
            return Either::Left(std::future::ready(Err(e)));
        }
        Either::Right(
            self.inner
                .call(req)
                .map_err(Into::into as fn(C::Error) -> BoxError),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{ServiceExt, service_fn};

    #[tokio::test]
    async fn joins_base_url_and_sets_headers() {
        let layer = TogetherLayer::new(
            "http://127.0.0.1:9/openai/",
            Some(ApiKey::new("k1").unwrap()),
        )
        .unwrap();
        assert_eq!(layer.base_url(), "http://127.0.0.1:9/openai");
        let svc = layer.layer(service_fn(|req: Request<String>| async move {
            Ok::<_, BoxError>(req)
        }));
        let attempts = Attempts::default();
        let mut req = Request::post("/v1/models?x=1").body(String::new()).unwrap();
        req.extensions_mut().insert(attempts.clone());
        let sent = svc.oneshot(req).await.unwrap();
        assert_eq!(sent.uri(), "http://127.0.0.1:9/openai/v1/models?x=1");
        assert!(sent.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(sent.headers()[CONTENT_TYPE], "application/json");
        assert!(
            sent.headers()[USER_AGENT]
                .to_str()
                .unwrap()
                .starts_with("together-tower/")
        );
        assert_eq!(attempts.get(), 1);
        assert!(!format!("{:?}", sent.headers()).contains("k1"));
    }

    #[tokio::test]
    async fn a_base_url_ending_in_v1_is_not_doubled() {
        let sent = |base: &'static str, path: &'static str| async move {
            let svc = TogetherLayer::new(base, None).unwrap().layer(service_fn(
                |req: Request<String>| async move { Ok::<_, BoxError>(req) },
            ));
            let req = Request::post(path).body(String::new()).unwrap();
            svc.oneshot(req).await.unwrap().uri().to_string()
        };
        let together = "https://api.together.xyz/v1";
        assert_eq!(
            sent(together, "/v1/chat/completions").await,
            "https://api.together.xyz/v1/chat/completions"
        );
        assert_eq!(
            sent("https://api.together.xyz/v1/", "/v1/models?x=1").await,
            "https://api.together.xyz/v1/models?x=1"
        );
        // Only a /v1 the path repeats is dropped.
        assert_eq!(
            sent(together, "/models").await,
            "https://api.together.xyz/v1/models"
        );
        assert_eq!(
            sent("http://h/proxy/v1", "/v1/embeddings").await,
            "http://h/proxy/v1/embeddings"
        );
    }

    #[test]
    fn bad_base_urls_fail_at_construction() {
        for bad in ["api.together.xyz", "", "http://h/p?q=1", "ftp://h/"] {
            assert!(TogetherLayer::new(bad, None).is_err(), "{bad}");
        }
    }
}
