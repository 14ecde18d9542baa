//! [`Builder`] for [`RetryPolicy`].

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tower::retry::budget::{Budget, TpsBudget};

use crate::backoff::Backoff;
use crate::classify::{RequestClass, RetryAllErrors, RouteRule};
use crate::error::InvalidConfig;
use crate::policy::RetryPolicy;
use crate::settings::{Settings, WallClock};

/// The statuses retried by default: 408, 429, 500, 502, 503, 504.
pub const DEFAULT_RETRY_STATUSES: [StatusCode; 6] = [
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

/// Configures a [`RetryPolicy`]; start from [`RetryPolicy::builder`].
///
/// | setting | default |
/// |---|---|
/// | [`max_retries`](Self::max_retries) | 4 (5 attempts) |
/// | [`backoff`](Self::backoff) | 0.5 s doubling to 8 s |
/// | [`jitter`](Self::jitter) | 0.25 (a delay is shortened by up to 25 %) |
/// | [`max_wait_hint`](Self::max_wait_hint) | 60 s |
/// | [`hint_jitter`](Self::hint_jitter) | none |
/// | [`deadline`](Self::deadline) | none |
/// | [`budget`](Self::budget) | [`TpsBudget::default()`]: 10 retries a second plus 20 % of requests, over 10 s |
/// | [`retry_statuses`](Self::retry_statuses) | [`DEFAULT_RETRY_STATUSES`] |
/// | [`route_class`](Self::route_class) | none: the crate knows no API's paths; together-tower's preset supplies OpenAI-compatible ones |
/// | [`unmatched_class`](Self::unmatched_class) | [`RequestClass::CreatesResource`] |
/// | [`retry_errors_if`](Self::retry_errors_if) | [`RetryAllErrors`] |
pub struct Builder<C = RetryAllErrors> {
    max_retries: u32,
    backoff: Backoff,
    max_wait_hint: Duration,
    hint_jitter: Duration,
    deadline: Option<Duration>,
    statuses: Vec<StatusCode>,
    routes: Vec<(Method, String, RequestClass)>,
    unmatched: RequestClass,
    budget: BudgetChoice,
    seed: Option<u64>,
    wall_clock: Option<WallClock>,
    classify_error: C,
}

enum BudgetChoice {
    Default,
    None,
    Shared(Arc<dyn Budget + Send + Sync>),
}

impl Builder {
    pub(crate) fn new() -> Self {
        Builder {
            max_retries: 4,
            backoff: Backoff::DEFAULT,
            max_wait_hint: Duration::from_secs(60),
            hint_jitter: Duration::ZERO,
            deadline: None,
            statuses: DEFAULT_RETRY_STATUSES.to_vec(),
            routes: Vec::new(),
            unmatched: RequestClass::CreatesResource,
            budget: BudgetChoice::Default,
            seed: None,
            wall_clock: None,
            classify_error: RetryAllErrors,
        }
    }
}

impl<C> Builder<C> {
    /// The most retries per call; a call makes at most `max_retries + 1`
    /// attempts. `0` disables retries.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    /// Backoff when the server gave no wait hint: retry `n` (from 1) waits
    /// `min(base * 2^(n-1), cap) * (1 - jitter * r)`, `r` uniform in `[0, 1)`.
    ///
    /// [`build`](Self::build) fails when `base > cap`.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff.base = base;
        self.backoff.cap = cap;
        self
    }

    /// The share of a backoff delay removed at random, in `[0, 1]`; `0`
    /// makes backoff deterministic. [`build`](Self::build) fails outside the
    /// range.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.backoff.jitter = fraction;
        self
    }

    /// The longest server wait hint obeyed. A response asking for longer is
    /// not retried: it is handed back to the caller untouched.
    pub fn max_wait_hint(mut self, max: Duration) -> Self {
        self.max_wait_hint = max;
        self
    }

    /// Adds a random wait in `[0, max)` to a server hint, so callers told the
    /// same instant do not all come back at it.
    pub fn hint_jitter(mut self, max: Duration) -> Self {
        self.hint_jitter = max;
        self
    }

    /// An overall bound per call, from its first attempt: a retry whose wait
    /// would end past it is not scheduled, and the last response or error is
    /// returned.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The retry budget shared by every clone of the policy: each call
    /// deposits into it, each retry withdraws, and a retry the budget cannot
    /// pay for is not made. Keeps retries a bounded share of traffic when the
    /// server is down. See [`TpsBudget::new`] for its parameters.
    pub fn budget(mut self, budget: impl Budget + Send + Sync + 'static) -> Self {
        self.budget = BudgetChoice::Shared(Arc::new(budget));
        self
    }

    /// Like [`budget`](Self::budget), with a budget also shared by other
    /// policies (for example one per route class).
    pub fn shared_budget(mut self, budget: Arc<dyn Budget + Send + Sync>) -> Self {
        self.budget = BudgetChoice::Shared(budget);
        self
    }

    /// No retry budget: only [`max_retries`](Self::max_retries) and the
    /// [`deadline`](Self::deadline) bound retries.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetChoice::None;
        self
    }

    /// The statuses that are retried (replacing [`DEFAULT_RETRY_STATUSES`]).
    /// Statuses below 400 are never retried; an `x-should-retry` header
    /// overrides this set either way.
    pub fn retry_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.statuses = statuses.into_iter().collect();
        self
    }

    /// Classifies requests with this method whose path starts with
    /// `pattern` (segment by segment; `{id}` or `*` matches any one
    /// segment). Rules are tried in the order they were
    /// added; the first match wins. [`build`](Self::build) fails when the
    /// pattern does not start with `/` or a segment mixes text and a
    /// `{param}`.
    pub fn route_class(mut self, method: Method, pattern: &str, class: RequestClass) -> Self {
        self.routes.push((method, pattern.to_owned(), class));
        self
    }

    /// The class of requests with a non-idempotent method (POST, PATCH...)
    /// that match no route. Defaults to [`RequestClass::CreatesResource`]:
    /// an unknown POST is retried only where the server did not act.
    pub fn unmatched_class(mut self, class: RequestClass) -> Self {
        self.unmatched = class;
        self
    }

    /// Seeds the jitter generator, for reproducible delays in tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The clock HTTP-dates in `retry-after` are compared with (default
    /// [`SystemTime::now`]). Tests under paused tokio time can pass a clock
    /// that advances with it.
    pub fn wall_clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.wall_clock = Some(Arc::new(clock));
        self
    }

    /// Which transport errors are worth a retry (for requests safe to
    /// repeat); the default retries all of them.
    ///
    /// ```
    /// use std::io;
    /// use tower_retry_after::RetryPolicy;
    ///
    /// let policy = RetryPolicy::builder()
    ///     .retry_errors_if(|e: &io::Error| e.kind() != io::ErrorKind::InvalidInput)
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn retry_errors_if<E, F>(self, classify: F) -> Builder<F>
    where
        F: Fn(&E) -> bool,
    {
        self.classify_errors(classify)
    }

    /// Which transport errors are worth a retry, decided by a
    /// [`ClassifyError`](crate::ClassifyError) (a named type rather than a
    /// closure keeps the service's futures provably `Send` where a
    /// `fn(&E) -> bool` over a higher-ranked error type would not be).
    pub fn classify_errors<C2>(self, classify: C2) -> Builder<C2> {
        Builder {
            max_retries: self.max_retries,
            backoff: self.backoff,
            max_wait_hint: self.max_wait_hint,
            hint_jitter: self.hint_jitter,
            deadline: self.deadline,
            statuses: self.statuses,
            routes: self.routes,
            unmatched: self.unmatched,
            budget: self.budget,
            seed: self.seed,
            wall_clock: self.wall_clock,
            classify_error: classify,
        }
    }

    /// The policy, or what is wrong with the settings.
    pub fn build(self) -> Result<RetryPolicy<C>, InvalidConfig> {
        let Backoff { base, cap, jitter } = self.backoff;
        if base > cap {
            return Err(InvalidConfig::new(format!(
                "backoff base {base:?} exceeds its cap {cap:?}; pass base <= cap"
            )));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(InvalidConfig::new(format!(
                "jitter {jitter} is not a fraction in [0, 1]"
            )));
        }
        let mut rules = Vec::with_capacity(self.routes.len());
        for (method, pattern, class) in self.routes {
            let rule = RouteRule::new(method, &pattern, class)
                .map_err(|e| InvalidConfig::new(format!("route_class: {e}")))?;
            rules.push(rule);
        }
        let budget = match self.budget {
            BudgetChoice::Default => Some(Arc::new(TpsBudget::default()) as Arc<_>),
            BudgetChoice::None => None,
            BudgetChoice::Shared(budget) => Some(budget),
        };
        let seed = self
            .seed
            .unwrap_or_else(|| RandomState::new().hash_one(SystemTime::now()));
        let settings = Settings {
            max_retries: self.max_retries,
            backoff: self.backoff,
            max_wait_hint: self.max_wait_hint,
            hint_jitter: self.hint_jitter,
            deadline: self.deadline,
            statuses: self.statuses,
            rules,
            unmatched: self.unmatched,
            budget,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            wall_clock: self.wall_clock,
            metrics: crate::metrics::RetryMetrics::new(),
        };
        Ok(RetryPolicy::from_parts(settings, self.classify_error))
    }
}

impl<C> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("max_wait_hint", &self.max_wait_hint)
            .field("hint_jitter", &self.hint_jitter)
            .field("deadline", &self.deadline)
            .field("statuses", &self.statuses)
            .field("routes", &self.routes)
            .field("unmatched", &self.unmatched)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl RetryPolicy {
    /// A builder starting from the defaults (see [`Builder`]).
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Builder::new()
            .build()
            .expect("the default retry policy is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_retries(), 4);
    }

    #[test]
    fn bad_settings_fail_at_build() {
        let err = RetryPolicy::builder()
            .backoff(Duration::from_secs(10), Duration::from_secs(1))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("exceeds its cap"), "{err}");
        for jitter in [-0.1, 1.5, f64::NAN] {
            assert!(RetryPolicy::builder().jitter(jitter).build().is_err());
        }
        let err = RetryPolicy::builder()
            .route_class(Method::POST, "v1/x", RequestClass::Once)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("must start with '/'"), "{err}");
    }

    #[test]
    fn user_routes_come_before_defaults() {
        let policy = RetryPolicy::builder()
            .route_class(
                Method::POST,
                "/v1/files/{id}/content",
                RequestClass::Idempotent,
            )
            .build()
            .unwrap();
        let req = |uri: &str| http::Request::post(uri).body(()).unwrap();
        assert_eq!(
            policy.classify(&req("/v1/files/f-1/content")),
            RequestClass::Idempotent
        );
        assert_eq!(
            policy.classify(&req("/v1/files")),
            RequestClass::CreatesResource
        );

        let bare = RetryPolicy::builder()
            .unmatched_class(RequestClass::Once)
            .build()
            .unwrap();
        assert_eq!(
            bare.classify(&req("/v1/chat/completions")),
            RequestClass::Once
        );
    }
}
