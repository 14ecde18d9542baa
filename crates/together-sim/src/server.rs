//! The HTTP server: hyper 1 http1 connections on a tokio listener, routing,
//! authentication, body limits, rate limits, faults and answers.
//!
//! Order of checks for every request: route known (else 404 after auth),
//! `Authorization: Bearer KEY` (401), body size (413), JSON (400), fields
//! and model (400, 404), context length (403), rate limits (429; on a
//! [dynamic](crate::dynamic) route the dynamic rule, then its capacity
//! 503), faults (503/500/502/close/latency), then the answer.
//! `GET /sim/stats` needs no key and is not counted.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{
    CHAT, COMPLETIONS, ConfigError, EMBEDDINGS, HeaderConfig, IMAGES, RetryAfter, SimBuilder,
    SimConfig,
};
use crate::dynamic::{Admission, Dynamic, Exceeded, View};
use crate::fake::{ApiError, Catalog};
use crate::faults::{Action, Faults};
use crate::jobs::Jobs;
use crate::limits::{Clock, Cost, Grant, LimitKind, Limits, Refusal};
use crate::stats::{Record, Recorder, Stats};

type Resp = Response<Full<Bytes>>;

/// The simulator could not start.
#[derive(Debug)]
pub enum SpawnError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// Binding the listener failed.
    Bind(std::io::Error),
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::Config(e) => write!(f, "invalid simulator config: {e}"),
            SpawnError::Bind(e) => write!(f, "cannot bind the simulator's listener: {e}"),
        }
    }
}

impl std::error::Error for SpawnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SpawnError::Config(e) => Some(e),
            SpawnError::Bind(e) => Some(e),
        }
    }
}

/// Returned to hyper to close the connection without an answer.
#[derive(Debug)]
struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection closed by fault injection")
    }
}

impl std::error::Error for Closed {}

enum Exit {
    Api(ApiError),
    Answer(Resp),
    Close,
}

impl From<ApiError> for Exit {
    fn from(e: ApiError) -> Self {
        Exit::Api(e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Chat,
    Completions,
    Embeddings,
    Images,
    Models,
    FineTunes(bool),
    FineTune(&'a str),
    FineTuneCancel(&'a str),
    Files(bool),
    File(&'a str),
    FileContent(&'a str),
    Batches(bool),
    Batch(&'a str),
    BatchCancel(&'a str),
    Stats,
}

impl<'a> Route<'a> {
    fn parse(method: &Method, path: &'a str) -> Option<Self> {
        let post = method == Method::POST;
        let get = method == Method::GET;
        let path = path.trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').skip(1).collect();
        Some(match (segs.as_slice(), post, get) {
            (["v1", "chat", "completions"], true, _) => Route::Chat,
            (["v1", "completions"], true, _) => Route::Completions,
            (["v1", "embeddings"], true, _) => Route::Embeddings,
            (["v1", "images", "generations"], true, _) => Route::Images,
            (["v1", "models"], _, true) => Route::Models,
            (["v1", "fine-tunes"], p, g) if p || g => Route::FineTunes(p),
            (["v1", "fine-tunes", id], _, true) => Route::FineTune(id),
            (["v1", "fine-tunes", id, "cancel"], true, _) => Route::FineTuneCancel(id),
            (["v1", "files"], p, g) if p || g => Route::Files(p),
            (["v1", "files", id], _, true) => Route::File(id),
            (["v1", "files", id, "content"], _, true) => Route::FileContent(id),
            (["v1", "batches"], p, g) if p || g => Route::Batches(p),
            (["v1", "batches", id], _, true) => Route::Batch(id),
            (["v1", "batches", id, "cancel"], true, _) => Route::BatchCancel(id),
            (["sim", "stats"], _, true) => Route::Stats,
            _ => return None,
        })
    }

    fn pattern(self) -> &'static str {
        match self {
            Route::Chat => CHAT,
            Route::Completions => COMPLETIONS,
            Route::Embeddings => EMBEDDINGS,
            Route::Images => IMAGES,
            Route::Models => "/v1/models",
            Route::FineTunes(_) => "/v1/fine-tunes",
            Route::FineTune(_) => "/v1/fine-tunes/{id}",
            Route::FineTuneCancel(_) => "/v1/fine-tunes/{id}/cancel",
            Route::Files(_) => "/v1/files",
            Route::File(_) => "/v1/files/{id}",
            Route::FileContent(_) => "/v1/files/{id}/content",
            Route::Batches(_) => "/v1/batches",
            Route::Batch(_) => "/v1/batches/{id}",
            Route::BatchCancel(_) => "/v1/batches/{id}/cancel",
            Route::Stats => "/sim/stats",
        }
    }

    fn inference(self) -> bool {
        matches!(
            self,
            Route::Chat | Route::Completions | Route::Embeddings | Route::Images
        )
    }

    fn takes_json(self) -> bool {
        matches!(
            self,
            Route::FineTunes(true) | Route::Files(true) | Route::Batches(true)
        ) || self.inference()
    }
}

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct Shared {
    config: SimConfig,
    clock: Clock,
    limits: Limits,
    recorder: Recorder,
    jobs: Jobs,
    faults: Faults,
    catalog: Catalog,
    dynamic: Option<Dynamic>,
}

impl Shared {
    fn new(config: SimConfig) -> Self {
        Self {
            clock: Clock::new(config.time_scale),
            limits: Limits::new(&config),
            recorder: Recorder::new(config.arrival_log_capacity),
            jobs: Jobs::new(config.fine_tunes.clone(), config.batches.clone()),
            faults: Faults::new(&config.faults),
            catalog: Catalog::new(&config),
            dynamic: config
                .dynamic
                .clone()
                .map(|d| Dynamic::new(d, config.faults.seed)),
            config,
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        let now = self.clock.now();
        let mut s = Stats {
            time_scale: self.config.time_scale,
            sim_secs: now.as_secs_f64(),
            total_requests: 0,
            total_429: 0,
            counts: Vec::new(),
            limiters: self.limits.snapshot(),
            dynamic: self
                .dynamic
                .as_ref()
                .map_or_else(Vec::new, |d| d.snapshot(now)),
            arrivals: Vec::new(),
            arrivals_dropped: 0,
            fine_tunes: self.jobs.fine_tune_stats(now),
            custom_ids: Default::default(),
        };
        self.recorder.fill(&mut s);
        s
    }

    fn key<'s>(&'s self, headers: &http::HeaderMap) -> Option<&'s str> {
        let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let k = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))?
            .trim();
        self.config
            .api_keys
            .iter()
            .find(|c| c.as_str() == k)
            .map(String::as_str)
    }

    fn too_many(&self, r: Refusal) -> Resp {
        let h = &self.config.headers;
        let real = self.clock.to_real(r.wait);
        let (kind, unit) = match r.kind {
            LimitKind::Requests => ("dynamic_request_limited", "requests"),
            LimitKind::Tokens => ("dynamic_token_limited", "tokens"),
            LimitKind::Images => ("dynamic_request_limited", "images"),
        };
        let e = ApiError::new(
            429,
            kind,
            format!(
                "You have exceeded the rate limit of {} {unit} per {} s for this API key and model. Retry after {} s.",
                r.limit,
                fmt_secs(r.window),
                fmt_secs(r.wait),
            ),
        );
        let mut resp = json_response(429, &e.body());
        let hs = resp.headers_mut();
        if h.reset_on_429 {
            put(hs, "x-ratelimit-reset", fmt_secs(real));
        }
        self.retry_hints(hs, real);
        let limit = self.per_second(r.limit, r.window);
        if r.kind == LimitKind::Tokens {
            put(hs, "x-tokenlimit-limit", limit.clone());
            put(hs, "x-tokenlimit-remaining", "0".into());
        } else {
            put(hs, "x-ratelimit-limit", limit);
            put(hs, "x-ratelimit-remaining", "0".into());
        }
        resp
    }

    /// `retry-after` and `retry-after-ms` for a real wait, as configured.
    fn retry_hints(&self, hs: &mut http::HeaderMap, real: Duration) {
        let h = &self.config.headers;
        let ms = ceil_ms(real).max(1);
        match h.retry_after {
            RetryAfter::None => {}
            RetryAfter::Seconds => put(hs, "retry-after", ms.div_ceil(1000).to_string()),
            RetryAfter::HttpDate => {
                let at = SystemTime::now() + Duration::from_secs(ms.div_ceil(1000));
                put(hs, "retry-after", httpdate::fmt_http_date(at));
            }
        }
        if h.retry_after_ms {
            put(hs, "retry-after-ms", ms.to_string());
        }
    }

    /// The rate headers of a dynamic route's answer, when switched on.
    fn dynamic_headers(&self, d: &Dynamic, resp: &mut Resp, view: &View) {
        if d.headers() {
            view.write(resp.headers_mut(), self.config.time_scale);
        }
    }

    /// A dynamic route's 429.
    fn dynamic_too_many(&self, d: &Dynamic, kind: Exceeded, view: &View) -> Resp {
        let wait = view.reset();
        let real = self.clock.to_real(wait);
        let (kind, what, rate) = match kind {
            Exceeded::Requests => ("dynamic_request_limited", "requests", view.rate()),
            Exceeded::Tokens => (
                "dynamic_token_limited",
                "tokens",
                view.token_rate().unwrap_or_default(),
            ),
        };
        let e = ApiError::new(
            429,
            kind,
            format!(
                "You have exceeded your dynamic rate limit of {} {what} per second for this API key and model. Ramp up gradually and retry after {} s.",
                crate::dynamic::fmt_num(rate),
                fmt_secs(wait),
            ),
        );
        let mut resp = json_response(429, &e.body());
        if d.headers() {
            view.write(resp.headers_mut(), self.config.time_scale);
        } else {
            put(resp.headers_mut(), "x-ratelimit-reset", fmt_secs(real));
        }
        self.retry_hints(resp.headers_mut(), real);
        resp
    }

    /// A limit of `limit` per simulated `window` as Together reports it:
    /// per (simulated) second.
    fn per_second(&self, limit: u64, window: Duration) -> String {
        crate::dynamic::fmt_num(limit as f64 / window.as_secs_f64())
    }

    fn success_headers(&self, resp: &mut Resp, grants: &[Grant]) {
        let h: &HeaderConfig = &self.config.headers;
        if !h.success_headers || grants.is_empty() {
            return;
        }
        let hs = resp.headers_mut();
        let req = grants
            .iter()
            .find(|g| g.kind == LimitKind::Requests)
            .or_else(|| grants.iter().find(|g| g.kind == LimitKind::Images));
        if let Some(g) = req {
            put(hs, "x-ratelimit-limit", self.per_second(g.limit, g.window));
            put(hs, "x-ratelimit-remaining", g.remaining.to_string());
            put(
                hs,
                "x-ratelimit-reset",
                fmt_secs(self.clock.to_real(g.reset)),
            );
        }
        if let Some(g) = grants.iter().find(|g| g.kind == LimitKind::Tokens) {
            put(hs, "x-tokenlimit-limit", self.per_second(g.limit, g.window));
            put(hs, "x-tokenlimit-remaining", g.remaining.to_string());
        }
    }
}

pub(crate) fn put(hs: &mut http::HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        hs.insert(HeaderName::from_static(name), v);
    }
}

fn ceil_ms(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000) as u64
}

/// Seconds rounded up to the millisecond, without trailing zeros:
/// `0.05`, `1`, `2.5`.
pub(crate) fn fmt_secs(d: Duration) -> String {
    let ms = ceil_ms(d);
    let s = format!("{}.{:03}", ms / 1000, ms % 1000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn json_response(status: u16, v: &Value) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

struct Info<'s> {
    key: &'s str,
    route: &'static str,
    model: Option<String>,
    limited: bool,
}

async fn handle(st: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Closed> {
    if req.method() == Method::GET && req.uri().path() == "/sim/stats" {
        let v = serde_json::to_value(st.stats()).unwrap_or_default();
        return Ok(json_response(200, &v));
    }
    let at = st.clock.now();
    let custom_id = req
        .headers()
        .get("x-custom-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut info = Info {
        key: "",
        route: "unknown",
        model: None,
        limited: false,
    };
    let result = match serve(&st, req, &mut info).await {
        Ok(r) | Err(Exit::Answer(r)) => Ok(r),
        Err(Exit::Api(e)) => Ok(json_response(e.status, &e.body())),
        Err(Exit::Close) => Err(Closed),
    };
    let status = result.as_ref().map_or(0, |r| r.status().as_u16());
    let key_label = key_label(&st.config.api_keys, info.key);
    st.recorder.record(Record {
        at,
        key: &key_label,
        route: info.route,
        model: info.model.as_deref(),
        status,
        custom_id: custom_id.as_deref(),
        limited: info.limited,
    });
    result
}

async fn read_body(st: &Shared, headers: &http::HeaderMap, body: Incoming) -> Result<Bytes, Exit> {
    let max = st.config.max_body_bytes;
    let too_large = || {
        Exit::Api(
            ApiError::new(
                413,
                "invalid_request_error",
                format!("Request body too large: the limit is {max} bytes."),
            )
            .code("request_too_large"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err(Exit::Close),
    }
}

async fn serve<'s>(
    st: &'s Shared,
    req: Request<Incoming>,
    info: &mut Info<'s>,
) -> Result<Resp, Exit> {
    let (parts, body) = req.into_parts();
    let route = Route::parse(&parts.method, parts.uri.path());
    if let Some(r) = route {
        info.route = r.pattern();
    }
    let Some(key) = st.key(&parts.headers) else {
        return Err(ApiError::new(
            401,
            "invalid_request_error",
            "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.",
        )
        .code("invalid_api_key")
        .into());
    };
    info.key = key;
    let Some(route) = route else {
        return Err(ApiError::new(
            404,
            "invalid_request_error",
            format!("Unknown endpoint: {} {}", parts.method, parts.uri.path()),
        )
        .code("not_found")
        .into());
    };
    let multipart = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::multipart::boundary)
        .filter(|_| route == Route::Files(true))
        .map(str::to_owned);
    let body: Value = if let Some(boundary) = multipart {
        let bytes = read_body(st, &parts.headers, body).await?;
        crate::multipart::to_upload(&bytes, &boundary)?
    } else if route.takes_json() {
        let bytes = read_body(st, &parts.headers, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::invalid(format!("Invalid JSON body: {e}")).code("invalid_json")
        })?
    } else {
        Value::Null
    };
    let pattern = route.pattern();
    let prepared = if route.inference() {
        let p = st.catalog.prepare(pattern, &body)?;
        info.model = Some(p.model.clone());
        Some(p)
    } else {
        None
    };
    let cost = prepared.as_ref().map_or(Cost::default(), |p| Cost {
        tokens: p.tokens(),
        images: if route == Route::Images { p.n } else { 0 },
    });
    let model = info.model.as_deref();
    let dynamic = st.dynamic.as_ref().filter(|d| d.governs(pattern));
    let mut ticket = None;
    let grants = match (dynamic, model) {
        (Some(d), Some(m)) => {
            let label = key_label(&st.config.api_keys, key);
            match d.admit(&label, m, cost.tokens, || st.clock.now()) {
                Admission::Accepted(t) => {
                    ticket = Some((d, t));
                    Vec::new()
                }
                Admission::Limited(kind, view) => {
                    info.limited = true;
                    tracing::debug!(route = pattern, "dynamic rate limited");
                    return Err(Exit::Answer(st.dynamic_too_many(d, kind, &view)));
                }
                Admission::Capacity(view) => {
                    let e = ApiError::new(
                        503,
                        "server_error",
                        "The model is over capacity right now (not your usage): retry with backoff.",
                    );
                    let mut resp = json_response(503, &e.body());
                    st.dynamic_headers(d, &mut resp, &view);
                    return Err(Exit::Answer(resp));
                }
            }
        }
        _ => match st
            .limits
            .acquire(key, pattern, model, cost, || st.clock.now())
        {
            Ok(g) => g,
            Err(r) => {
                info.limited = true;
                tracing::debug!(route = pattern, "rate limited");
                return Err(Exit::Answer(st.too_many(r)));
            }
        },
    };
    let (action, latency) = st.faults.decide(pattern, model);
    if !latency.is_zero() {
        tokio::time::sleep(st.clock.to_real(latency)).await;
    }
    match action {
        Some(Action::Close) => return Err(Exit::Close),
        Some(Action::Status(s)) => {
            let (kind, msg) = match s {
                503 => ("server_error", "The server is overloaded or not ready yet."),
                502 => ("server_error", "Bad gateway."),
                _ => ("server_error", "Internal server error."),
            };
            let mut resp = json_response(s, &ApiError::new(s, kind, msg).body());
            if let Some((d, t)) = &ticket {
                st.dynamic_headers(d, &mut resp, &t.view(d, || st.clock.now()));
            }
            return Err(Exit::Answer(resp));
        }
        None => {}
    }
    let now = st.clock.now();
    let jobs = &st.jobs;
    let cat = &st.catalog;
    let v = match route {
        _ if route.inference() => {
            let p = prepared.as_ref().expect("prepared for inference routes");
            cat.answer(pattern, p, &body)
        }
        Route::Models => cat.list(),
        Route::FineTunes(true) => jobs.create_fine_tune(key, &body, cat, now)?,
        Route::FineTunes(false) => jobs.list_fine_tunes(key, now),
        Route::FineTune(id) => jobs.get_fine_tune(key, id, now)?,
        Route::FineTuneCancel(id) => jobs.cancel_fine_tune(key, id, now)?,
        Route::Files(true) => jobs.upload_file(key, &body)?,
        Route::Files(false) => jobs.list_files(key),
        Route::File(id) => jobs.get_file(key, id)?,
        Route::FileContent(id) => {
            let content = jobs.file_content(key, id)?;
            let mut r = Response::new(Full::new(Bytes::from(content)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/jsonl"));
            return Ok(r);
        }
        Route::Batches(true) => jobs.create_batch(key, &body, now)?,
        Route::Batches(false) => jobs.list_batches(key, cat, now),
        Route::Batch(id) => jobs.get_batch(key, id, cat, now)?,
        Route::BatchCancel(id) => jobs.cancel_batch(key, id, cat, now)?,
        _ => Value::Null,
    };
    let mut resp = json_response(200, &v);
    match &ticket {
        Some((d, t)) => {
            let view = t.succeed(d, || st.clock.now());
            st.dynamic_headers(d, &mut resp, &view);
        }
        None => st.success_headers(&mut resp, &grants),
    }
    Ok(resp)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut rx: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = rx.changed() => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(shared.clone(), req));
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = rx.changed() => {}
                    }
                });
            }
        }
    }
}

/// A running simulator. Dropping it shuts the server down (the listener
/// and every connection close); [`shutdown`](SimHandle::shutdown) does the
/// same and waits for the accept loop to end.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// `http://IP:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted API keys (use one as `Authorization: Bearer KEY`).
    pub fn api_keys(&self) -> &[String] {
        &self.shared.config.api_keys
    }

    /// The configuration it runs.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// A snapshot of the counters (cheap; safe while requests run).
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops accepting, closes connections and waits for the accept loop.
    pub async fn shutdown(self) {
        let _ = self.tx.send(true);
        let _ = self.task.await;
    }
}

impl SimBuilder {
    /// Binds the listener and starts serving on the current tokio runtime.
    pub async fn spawn(self) -> Result<SimHandle, SpawnError> {
        self.config.validate().map_err(SpawnError::Config)?;
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(SpawnError::Bind)?;
        let addr = listener.local_addr().map_err(SpawnError::Bind)?;
        let shared = Arc::new(Shared::new(self.config));
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared.clone(), rx));
        Ok(SimHandle {
            addr,
            shared,
            tx,
            task,
        })
    }
}

/// How stats name an API key: `key-1` for the first configured key, and so on.
/// Keys are secrets, even test ones: they never appear in stats or logs.
pub(crate) fn key_label(keys: &[String], key: &str) -> String {
    keys.iter()
        .position(|k| k == key)
        .map_or_else(String::new, |i| format!("key-{}", i + 1))
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
    fn routes() {
        assert_eq!(
            Route::parse(&Method::GET, "/v1/fine-tunes/ft-1"),
            Some(Route::FineTune("ft-1"))
        );
        assert_eq!(Route::parse(&Method::GET, "/v1/chat/completions"), None);
        assert_eq!(
            Route::parse(&Method::POST, "/v1/batches"),
            Some(Route::Batches(true))
        );
    }
}
