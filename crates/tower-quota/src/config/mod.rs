//! Quotas, routes and the validated [`Limits`] a [`RateLimitLayer`](crate::RateLimitLayer) enforces.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use http::Method;

use crate::adaptive::Adaptive;
use crate::cost::{Cost, KeyBy};
use crate::rate::Rate;

mod builder;
mod compiled;
#[cfg(feature = "toml")]
mod toml;

pub use builder::LimitsBuilder;
pub(crate) use compiled::{CellParams, CompiledQuota, CompiledRoute};
#[cfg(feature = "toml")]
pub use toml::{
    AUTO_START, AUTO_START_TOKENS, HeadersFile, LearnFile, LimitsFile, OverrideFile, QuotaFile,
    RateFile, RouteFile, UnmatchedFile,
};

/// The default safety margin: quotas run 1% under their configured rate.
pub const DEFAULT_SAFETY_MARGIN: f64 = 0.01;
/// How long a 429 without a wait hint holds its route (1 s).
pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);
/// The longest a server's hint holds a route by default (60 s); see
/// [`LimitsBuilder::max_hold`].
pub const DEFAULT_MAX_HOLD: Duration = Duration::from_secs(60);
/// The default catch-up credit (2 ms); see [`LimitsBuilder::catch_up`].
pub const DEFAULT_CATCH_UP: Duration = Duration::from_millis(2);

/// One quota: a rate, a burst, what a request costs, and optionally a key.
///
/// # Defaults
///
/// - **Burst 1** for request quotas: requests are paced one interval apart
///   (600/min means one request every 100 ms, never a burst of 600), which is
///   what a server enforcing per second (as Together does) accepts.
/// - For token quotas (a rate whose unit is `tokens`), the burst defaults to
///   one second's worth of the rate, so any single request up to that size fits.
/// - The cost is one per request, or estimated tokens for a `tokens` rate.
///
/// ```
/// use tower_quota::{KeyBy, Quota};
///
/// let chat = Quota::new("600/min".parse().unwrap())
///     .keyed_by(KeyBy::model())
///     .with_override("black-forest-labs/FLUX.1-schnell", "9/min".parse().unwrap());
/// # let _ = chat;
/// ```
#[derive(Debug, Clone)]
pub struct Quota {
    rate: Rate,
    burst: Option<NonZeroU32>,
    cost: Option<Cost>,
    key: Option<KeyBy>,
    overrides: Vec<(String, Rate, Option<NonZeroU32>)>,
    learn: Option<Adaptive>,
    charging: Charging,
}

/// How a token quota charges a request.
///
/// A token cost is an estimate made before the request goes: the input's
/// length plus the whole output budget (`max_tokens` × `n`). A chat whose
/// answers use 60 of 1,024 allowed tokens is charged 17 times what it
/// used, and a quota that never learns better holds its route to a
/// fraction of what the server allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Charging {
    /// The estimate, and nothing else (the default).
    #[default]
    Estimate,
    /// The estimate at admission, settled by the answer's `usage` when it
    /// is known (from a JSON body, or a stream's usage event): an
    /// over-estimate is refunded, so queued requests go sooner; an
    /// under-estimate is charged (at most one burst). An answer that
    /// reports the quota's remaining count (a learning quota reading
    /// `x-tokenlimit-remaining`) sets the cell to that count instead: the
    /// server's count is the truth, this request in it, whichever way the
    /// server charges. A stream's head comes before the server has counted
    /// it, so a stream is settled by its usage at its end, unless a count
    /// replaced the cell's state meanwhile (the stream is in that count,
    /// or will be in the next). A body without a readable usage keeps the
    /// estimate. Cells decided by a [shared store](crate::shared) keep the
    /// estimate.
    Reconciled,
}

impl Quota {
    /// A quota at `rate`, with the defaults above.
    pub fn new(rate: Rate) -> Self {
        Quota {
            rate,
            burst: None,
            cost: None,
            key: None,
            overrides: Vec::new(),
            learn: None,
            charging: Charging::Estimate,
        }
    }

    /// A quota whose pace is learned from the server (see [`adaptive`](crate::adaptive)),
    /// starting at `learn`'s start rate. Overrides stay static: an override
    /// pins its key to a fixed rate.
    ///
    /// For a token quota the burst follows the learned pace (one second's
    /// worth), and a request estimated above it waits for a full burst
    /// instead of failing with [`CostTooHigh`](crate::error::CostTooHigh).
    pub fn adaptive(learn: Adaptive) -> Self {
        Quota {
            learn: Some(learn.clone()),
            ..Quota::new(learn.start)
        }
    }

    /// Allows `burst` units back to back (default 1 for requests).
    pub fn burst(mut self, burst: NonZeroU32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// Sets what a request costs (default: one, or estimated tokens for a `tokens` rate).
    pub fn cost(mut self, cost: Cost) -> Self {
        self.cost = Some(cost);
        self
    }

    /// How requests are charged (default [`Charging::Estimate`]);
    /// [`Charging::Reconciled`] needs a token cost.
    ///
    /// ```
    /// use tower_quota::{Charging, Quota};
    ///
    /// let tokens = Quota::new("3000 tokens/s".parse()?).charge(Charging::Reconciled);
    /// # let _ = tokens;
    /// # Ok::<(), tower_quota::RateParseError>(())
    /// ```
    pub fn charge(mut self, charging: Charging) -> Self {
        self.charging = charging;
        self
    }

    /// Keeps a separate quota per key (per model, per API key header).
    pub fn keyed_by(mut self, key: KeyBy) -> Self {
        self.key = Some(key);
        self
    }

    /// Gives one key its own rate (one model at 9/min while the rest get the quota's rate).
    pub fn with_override(mut self, key: impl Into<String>, rate: Rate) -> Self {
        self.overrides.push((key.into(), rate, None));
        self
    }

    /// Gives one key its own rate and burst.
    pub fn with_override_burst(
        mut self,
        key: impl Into<String>,
        rate: Rate,
        burst: NonZeroU32,
    ) -> Self {
        self.overrides.push((key.into(), rate, Some(burst)));
        self
    }
}

/// A route: a method and a path pattern, and the quotas it draws on.
///
/// Paths have literal segments and `{param}` segments:
/// `/v1/fine-tunes/{id}/cancel`.
#[derive(Debug, Clone)]
pub struct Route {
    method: Option<Method>,
    path: String,
    quotas: Vec<String>,
    max_wait: Option<Duration>,
}

impl Route {
    /// A route for `method` requests to `path`.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Route {
            method: Some(method),
            path: path.into(),
            quotas: Vec::new(),
            max_wait: None,
        }
    }

    /// A route for any method to `path`.
    pub fn any_method(path: impl Into<String>) -> Self {
        Route {
            method: None,
            ..Route::new(Method::GET, path)
        }
    }

    /// Draws on the quota named `name` (a route may draw on several).
    pub fn quota(mut self, name: impl Into<String>) -> Self {
        self.quotas.push(name.into());
        self
    }

    /// Fails fast with [`WaitTimeout`](crate::error::WaitTimeout) instead of
    /// waiting longer than `max_wait` for this route's quotas.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = Some(max_wait);
        self
    }
}

/// What happens to requests that match no route.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Unmatched {
    /// They pass through unlimited (the default).
    #[default]
    Pass,
    /// They draw on these quotas.
    Quotas(Vec<String>),
}

/// Validated rate-limit configuration, shared by every clone of the layer built from it.
///
/// Build it in code with [`Limits::builder`] or from TOML with
/// [`Limits::from_toml`]; invalid configuration fails here, naming the entry,
/// never at request time.
#[derive(Debug, Clone)]
pub struct Limits {
    pub(crate) quotas: Vec<CompiledQuota>,
    pub(crate) routes: Vec<CompiledRoute>,
    pub(crate) unmatched: Option<CompiledRoute>,
    pub(crate) catch_up: Duration,
    pub(crate) default_hold: Duration,
    pub(crate) max_hold: Duration,
    pub(crate) feedback: bool,
    pub(crate) hold_on_remaining_zero: bool,
    pub(crate) safety_margin: f64,
}

impl Limits {
    /// The quotas as configured, for display: `(name, rate, burst, keyed)`
    /// before the safety margin, and each override as `name[key]`.
    pub fn table(&self) -> Vec<LimitRow> {
        let mut rows = Vec::new();
        for q in &self.quotas {
            let row = |name: String, p: &CellParams, learned: bool| LimitRow {
                quota: name,
                rate: p.rate.clone(),
                burst: p.burst,
                interval: p.interval,
                keyed: q.key.is_some(),
                learned: q
                    .learn
                    .as_ref()
                    .filter(|_| learned)
                    .map(|l| (l.floor, l.ceiling)),
            };
            rows.push(row(q.name.clone(), &q.default, true));
            let mut keys: Vec<_> = q.overrides.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            for (key, p) in keys {
                rows.push(row(format!("{}[{key}]", q.name), p, false));
            }
        }
        rows
    }

    /// The longest a server's hint holds a route.
    pub fn max_hold(&self) -> Duration {
        self.max_hold
    }

    /// The safety margin in force (a fraction of the rate held back).
    pub fn safety_margin(&self) -> f64 {
        self.safety_margin
    }

    /// The name of the route a request to `method path` is paced by, as
    /// [`routes`](Self::routes) lists it (`POST /v1/chat/completions`, or
    /// the unmatched route's), or `None` when it matches none and unmatched
    /// requests pass. `path` is the URI's path: a query is not part of it.
    ///
    /// ```
    /// use http::Method;
    /// use tower_quota::{Limits, Quota, Route};
    ///
    /// let limits = Limits::builder()
    ///     .quota("chat", Quota::new("10/s".parse()?))
    ///     .route(Route::new(Method::POST, "/v1/chat/completions").quota("chat"))
    ///     .build()?;
    /// assert_eq!(
    ///     limits.route_name(&Method::POST, "/v1/chat/completions"),
    ///     Some("POST /v1/chat/completions")
    /// );
    /// assert_eq!(limits.route_name(&Method::POST, "/v1/other"), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn route_name(&self, method: &Method, path: &str) -> Option<&str> {
        let index = self.route_index(method, path)?;
        let route = self.routes.get(index).or(self.unmatched.as_ref())?;
        Some(&route.name)
    }

    /// The index of the route `method path` matches (the unmatched route
    /// after the others), if any.
    pub(crate) fn route_index(&self, method: &Method, path: &str) -> Option<usize> {
        match self
            .routes
            .iter()
            .position(|r| r.matcher.as_ref().is_some_and(|m| m.matches(method, path)))
        {
            Some(i) => Some(i),
            None => self.unmatched.as_ref().map(|_| self.routes.len()),
        }
    }

    /// The names of the routes, in matching order, with the quotas each draws on.
    pub fn routes(&self) -> Vec<(String, Vec<String>)> {
        self.routes
            .iter()
            .chain(self.unmatched.iter())
            .map(|r| {
                let quotas = r.quotas.iter().map(|&i| self.quotas[i].name.clone());
                (r.name.clone(), quotas.collect())
            })
            .collect()
    }
}

/// One row of [`Limits::table`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LimitRow {
    /// The quota's name, `name[key]` for an override.
    pub quota: String,
    /// The configured rate.
    pub rate: Rate,
    /// The burst.
    pub burst: NonZeroU32,
    /// The pacing interval actually used (after the safety margin).
    pub interval: Duration,
    /// Whether the quota is kept per key.
    pub keyed: bool,
    /// For a learned (adaptive) quota, the bounds of its pace in units per
    /// second, `(floor, ceiling)`; `rate` is then the start rate.
    pub learned: Option<(f64, f64)>,
}

/// Configuration that cannot be valid: names the entry and says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    entry: String,
    reason: String,
}

impl InvalidConfig {
    pub(crate) fn new(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidConfig {
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    /// The configuration entry at fault, such as `quotas.chat.rate`.
    pub fn entry(&self) -> &str {
        &self.entry
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid rate-limit config at {}: {}",
            self.entry, self.reason
        )
    }
}

impl std::error::Error for InvalidConfig {}
