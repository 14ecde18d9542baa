//! What every connection shares: limits, jobs, faults, stats; and the rate headers it answers with.

use std::time::{Duration, SystemTime};

use crate::config::{HeaderConfig, RetryAfter, SimConfig};
use crate::dynamic::{Dynamic, Exceeded, View};
use crate::fake::{ApiError, Catalog};
use crate::faults::Faults;
use crate::jobs::Jobs;
use crate::limits::{Clock, Grant, LimitKind, Limits, Refusal};
use crate::stats::{Recorder, Stats};
use crate::wire::{Resp, ceil_ms, fmt_secs, json_response, put};

/// State shared by every connection.
#[derive(Debug)]
pub(crate) struct ServerState {
    pub(super) config: SimConfig,
    pub(super) clock: Clock,
    pub(super) limits: Limits,
    pub(super) recorder: Recorder,
    pub(super) jobs: Jobs,
    pub(super) faults: Faults,
    pub(super) catalog: Catalog,
    pub(super) dynamic: Option<Dynamic>,
}

impl ServerState {
    pub(super) fn new(config: SimConfig) -> Self {
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

    pub(super) fn key<'s>(&'s self, headers: &http::HeaderMap) -> Option<&'s str> {
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

    pub(super) fn too_many(&self, r: Refusal) -> Resp {
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
    pub(super) fn retry_hints(&self, hs: &mut http::HeaderMap, real: Duration) {
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
    pub(super) fn dynamic_headers(&self, d: &Dynamic, resp: &mut Resp, view: &View) {
        if d.headers() {
            view.write(resp.headers_mut(), self.config.time_scale);
        }
    }

    /// A dynamic route's 429.
    pub(super) fn dynamic_too_many(&self, d: &Dynamic, kind: Exceeded, view: &View) -> Resp {
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
    pub(super) fn per_second(&self, limit: u64, window: Duration) -> String {
        crate::dynamic::fmt_num(limit as f64 / window.as_secs_f64())
    }

    pub(super) fn success_headers(&self, resp: &mut Resp, grants: &[Grant]) {
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
