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
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use crate::config::ConfigError;
use crate::config::TokenCharge;
use crate::dynamic::Admission;
use crate::fake::ApiError;
use crate::faults::Action;
use crate::limits::{Cost, LimitKind};
use crate::stats::Record;
use crate::wire::{Resp, SimBody, json_response, key_label};
use route::Route;
use state::ServerState;

mod route;
mod spawn;
mod state;
mod stream;

pub use spawn::SimHandle;

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

struct Info<'s> {
    key: &'s str,
    route: &'static str,
    model: Option<String>,
    limited: bool,
}

async fn handle(st: Arc<ServerState>, req: Request<Incoming>) -> Result<Resp, Closed> {
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

async fn read_body(
    st: &ServerState,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Result<Bytes, Exit> {
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
    st: &'s Arc<ServerState>,
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
    let streaming = matches!(route, Route::Chat | Route::Completions)
        .then(|| stream::asked(&body, &st.config.answers))
        .flatten();
    let usage_charge = st.config.answers.token_charge == TokenCharge::Usage;
    let cost = prepared.as_ref().map_or(Cost::default(), |p| Cost {
        tokens: p.tokens(),
        images: if route == Route::Images { p.n } else { 0 },
        tokens_later: usage_charge.then_some(p.input_tokens),
    });
    let model = info.model.as_deref();
    let dynamic = st.dynamic.as_ref().filter(|d| d.governs(pattern));
    let mut ticket = None;
    let mut debt = None;
    let mut grants = match (dynamic, model) {
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
            Ok((g, d)) => {
                debt = d;
                g
            }
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
        // A cut happens in the stream (and spares an answer that does not stream).
        Some(Action::Cut) => {}
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
            let mut r = Response::new(SimBody::full(content));
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
    let used = v["usage"]["total_tokens"].as_u64().unwrap_or(0);
    let mut resp = match streaming {
        Some(include_usage) => {
            let events = stream::events(&v, include_usage, &st.config.answers);
            let cut = action == Some(Action::Cut);
            let body = stream::send(st, events, cut, debt.map(|d| (d, used)));
            let mut r = Response::new(body);
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            r
        }
        None => {
            if let Some(debt) = debt {
                let after = debt.charge(st.clock.now(), used);
                if let Some(g) = grants.iter_mut().find(|g| g.kind == LimitKind::Tokens) {
                    *g = after;
                }
            }
            json_response(200, &v)
        }
    };
    match &ticket {
        Some((d, t)) => {
            let view = t.succeed(d, || st.clock.now());
            st.dynamic_headers(d, &mut resp, &view);
        }
        None => st.success_headers(&mut resp, &grants),
    }
    Ok(resp)
}
