//! [`RetryPolicy`]: when to send a request again, and after how long.

use std::fmt;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, Response, StatusCode};
use rand::Rng;
use tokio::time::Instant;
use tower::retry::Policy;

use crate::body::ReplayBody;
use crate::classify::{ClassifyError, RequestClass, RetryAllErrors, classify};
use crate::future::RetryWait;
use crate::settings::Settings;
use limit_text::hint::parse_wait_hint;

/// A [`tower::retry::Policy`] for HTTP: retries 408, 429 and 5xx responses
/// and transport errors of requests that are safe to repeat, waits as long
/// as the server asked (`retry-after-ms`, `retry-after`,
/// `x-ratelimit-reset`) or backs off exponentially with jitter, and stays
/// within a retry budget shared by all its clones.
///
/// Build one with [`RetryPolicy::builder`] (or take the [`Default`]) and wrap
/// a service with [`RetryLayer`](crate::RetryLayer). The
/// [crate docs](crate) describe every rule and carry a runnable example.
///
/// # Clone
///
/// tower's `Retry` clones the policy for every call. The clone carries the
/// call's own state (retries made, when the call started); the
/// configuration, the budget and the jitter generator are shared through an
/// `Arc` by every clone.
pub struct RetryPolicy<C = RetryAllErrors> {
    settings: Arc<Settings>,
    classify_error: C,
    /// Retries made so far in this call.
    retries: u32,
    /// When this call sent its first attempt (for the deadline).
    started: Option<Instant>,
}

/// Why a request is retried, for the trace event.
enum Reason {
    Status(StatusCode),
    Error,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Status(status) => write!(f, "status {}", status.as_u16()),
            Reason::Error => f.write_str("transport error"),
        }
    }
}

impl<C> RetryPolicy<C> {
    pub(crate) fn from_parts(settings: Settings, classify_error: C) -> Self {
        RetryPolicy {
            settings: Arc::new(settings),
            classify_error,
            retries: 0,
            started: None,
        }
    }

    /// The most retries one call makes (attempts are this plus one).
    pub fn max_retries(&self) -> u32 {
        self.settings.max_retries
    }

    /// The class this policy gives a request (see [`RequestClass`]).
    pub fn classify<B>(&self, req: &Request<B>) -> RequestClass {
        classify(&self.settings.rules, self.settings.unmatched, req)
    }

    fn random(&self) -> f64 {
        self.settings
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random::<f64>()
    }

    fn wall_now(&self) -> SystemTime {
        match &self.settings.wall_clock {
            Some(clock) => clock(),
            None => SystemTime::now(),
        }
    }

    /// Whether a response with this status and these headers is retried for
    /// a request of this class; `Err` carries the reason not to, for logs.
    fn response_allows_retry<B>(
        &self,
        req: &Request<B>,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Result<(), &'static str> {
        let should_retry = headers.get("x-should-retry").and_then(|v| {
            let v = v.to_str().ok()?.trim();
            if v.eq_ignore_ascii_case("true") {
                Some(true)
            } else if v.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            }
        });
        match should_retry {
            Some(false) => return Err("x-should-retry: false"),
            Some(true) => {}
            None if self.settings.statuses.contains(&status) => {}
            None => return Err("status not retryable"),
        }
        match self.classify(req) {
            RequestClass::Idempotent => Ok(()),
            RequestClass::CreatesResource
                if status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE =>
            {
                Ok(())
            }
            RequestClass::CreatesResource => {
                Err("request creates a resource and the server may have acted")
            }
            RequestClass::Once => Err("route is never retried"),
        }
    }
}

impl<C: Clone> Clone for RetryPolicy<C> {
    fn clone(&self) -> Self {
        RetryPolicy {
            settings: Arc::clone(&self.settings),
            classify_error: self.classify_error.clone(),
            retries: self.retries,
            started: self.started,
        }
    }
}

impl<C> fmt::Debug for RetryPolicy<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        f.debug_struct("RetryPolicy")
            .field("max_retries", &s.max_retries)
            .field("backoff_base", &s.backoff.base)
            .field("backoff_cap", &s.backoff.cap)
            .field("jitter", &s.backoff.jitter)
            .field("max_wait_hint", &s.max_wait_hint)
            .field("hint_jitter", &s.hint_jitter)
            .field("deadline", &s.deadline)
            .field("statuses", &s.statuses)
            .field("routes", &s.rules)
            .field("unmatched", &s.unmatched)
            .field("budget", &s.budget.as_ref().map(|_| "shared"))
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl<B, R, E, C> Policy<Request<B>, Response<R>, E> for RetryPolicy<C>
where
    B: ReplayBody,
    C: ClassifyError<E>,
{
    type Future = RetryWait;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<R>, E>,
    ) -> Option<RetryWait> {
        let method = req.method();
        let path = req.uri().path();
        let (reason, hint) = match result {
            Ok(res) => {
                let status = res.status();
                if status.as_u16() < 400 {
                    // Successes (and redirects) are never retried: the cheap path.
                    return None;
                }
                if let Err(why) = self.response_allows_retry(req, status, res.headers()) {
                    tracing::debug!(%method, path, status = status.as_u16(), why, "not retrying");
                    return None;
                }
                let hint = parse_wait_hint(res.headers(), self.wall_now());
                (Reason::Status(status), hint)
            }
            Err(error) => {
                if !self.classify_error.is_retryable(error) {
                    tracing::debug!(%method, path, "not retrying: error classified as permanent");
                    return None;
                }
                let class = self.classify(req);
                if class != RequestClass::Idempotent {
                    tracing::debug!(
                        %method,
                        path,
                        ?class,
                        "not retrying a transport error: request not safe to repeat"
                    );
                    return None;
                }
                (Reason::Error, None)
            }
        };

        let s = &*self.settings;
        if self.retries >= s.max_retries {
            tracing::debug!(
                %method,
                path,
                %reason,
                retries = self.retries,
                "not retrying: attempts exhausted"
            );
            return None;
        }
        let retry = self.retries + 1;
        let (delay, source) = match hint {
            Some(hint) if hint.delay > s.max_wait_hint => {
                tracing::debug!(
                    %method, path, %reason,
                    hint_ms = duration_ms(hint.delay),
                    max_wait_hint_ms = duration_ms(s.max_wait_hint),
                    source = hint.source.header_name(),
                    "not retrying: server asked to wait longer than max_wait_hint"
                );
                return None;
            }
            Some(hint) => {
                let jitter = if s.hint_jitter.is_zero() {
                    Duration::ZERO
                } else {
                    s.hint_jitter.mul_f64(self.random())
                };
                (hint.delay.saturating_add(jitter), hint.source.header_name())
            }
            None => (s.backoff.delay(retry, self.random()), "backoff"),
        };
        if let Some(deadline) = s.deadline {
            let elapsed = self.started.map(|t| t.elapsed()).unwrap_or_default();
            if elapsed.saturating_add(delay) > deadline {
                tracing::debug!(
                    %method, path, %reason,
                    elapsed_ms = duration_ms(elapsed),
                    delay_ms = duration_ms(delay),
                    deadline_ms = duration_ms(deadline),
                    "not retrying: the wait would pass the deadline"
                );
                return None;
            }
        }
        if let Some(budget) = &s.budget
            && !budget.withdraw()
        {
            tracing::debug!(%method, path, %reason, "not retrying: retry budget exhausted");
            s.metrics.budget_refused();
            return None;
        }
        self.retries = retry;
        s.metrics.retried(match reason {
            Reason::Status(status) => Some(status),
            Reason::Error => None,
        });
        tracing::info!(
            %method,
            path,
            attempt = retry + 1,
            %reason,
            delay_ms = duration_ms(delay),
            source,
            "retrying request"
        );
        Some(RetryWait::new(delay))
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        if self.retries == 0 {
            // The first attempt of a call: tower's `Retry::call` asks its own
            // policy here, then clones it into the call's future.
            self.started = Some(Instant::now());
            if let Some(budget) = &self.settings.budget {
                budget.deposit();
            }
        }
        let body = req.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
