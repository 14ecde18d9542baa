//! Quotas, routes and the validated [`Limits`] a [`RateLimitLayer`](crate::RateLimitLayer) enforces.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use serde::Deserialize;

use crate::adaptive::{Adaptive, LearnParams, RateHeaders};
use crate::cost::{Cost, KeyBy, TokenEstimate};
use crate::rate::{Rate, parse_duration};
use crate::route::RouteMatcher;
use path_pattern::PathPattern;

/// The default safety margin: quotas run 1% under their configured rate.
pub const DEFAULT_SAFETY_MARGIN: f64 = 0.01;
/// How long a 429 without a wait hint holds its route (1 s).
pub const DEFAULT_HOLD: Duration = Duration::from_secs(1);
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
    pub(crate) feedback: bool,
    pub(crate) hold_on_remaining_zero: bool,
    pub(crate) safety_margin: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledQuota {
    pub(crate) name: String,
    pub(crate) default: CellParams,
    pub(crate) overrides: HashMap<String, CellParams>,
    pub(crate) cost: Cost,
    pub(crate) key: Option<KeyBy>,
    /// How the default cells learn their pace; `None` for a static quota.
    pub(crate) learn: Option<Arc<LearnParams>>,
}

impl CompiledQuota {
    /// The parameters of the cell for `key`, and how it learns (an override is static).
    pub(crate) fn params_for(&self, key: Option<&str>) -> (&CellParams, Option<&Arc<LearnParams>>) {
        match key.and_then(|k| self.overrides.get(k)) {
            Some(params) => (params, None),
            None => (&self.default, self.learn.as_ref()),
        }
    }
}

/// The effective parameters of one limiter cell.
#[derive(Debug, Clone)]
pub(crate) struct CellParams {
    pub(crate) rate: Rate,
    pub(crate) burst: NonZeroU32,
    /// The interval between units after the safety margin.
    pub(crate) interval: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRoute {
    pub(crate) name: String,
    pub(crate) matcher: Option<RouteMatcher>,
    pub(crate) quotas: Vec<usize>,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) needs_body: bool,
}

impl Limits {
    /// Starts building limits in code.
    pub fn builder() -> LimitsBuilder {
        LimitsBuilder::default()
    }

    /// Reads limits from TOML text; see [`LimitsFile`] for the format.
    pub fn from_toml(text: &str) -> Result<Self, InvalidConfig> {
        let file: LimitsFile =
            toml::from_str(text).map_err(|e| InvalidConfig::new("toml", e.to_string()))?;
        file.into_limits()
    }

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

    /// The safety margin in force (a fraction of the rate held back).
    pub fn safety_margin(&self) -> f64 {
        self.safety_margin
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

/// Builds [`Limits`] in code.
///
/// ```
/// use std::time::Duration;
/// use http::Method;
/// use tower_quota::{KeyBy, Limits, Quota, Route};
///
/// let limits = Limits::builder()
///     .quota("chat", Quota::new("600/min".parse()?).keyed_by(KeyBy::model()))
///     .quota("tokens", Quota::new("180000 tokens/min".parse()?))
///     .route(Route::new(Method::POST, "/v1/chat/completions").quota("chat").quota("tokens"))
///     .route(Route::new(Method::POST, "/v1/embeddings").quota("chat").max_wait(Duration::from_secs(30)))
///     .build()?;
/// # let _ = limits;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct LimitsBuilder {
    quotas: Vec<(String, Quota)>,
    routes: Vec<Route>,
    unmatched: Unmatched,
    safety_margin: f64,
    catch_up: Duration,
    default_hold: Duration,
    feedback: bool,
    hold_on_remaining_zero: bool,
}

impl Default for LimitsBuilder {
    fn default() -> Self {
        LimitsBuilder {
            quotas: Vec::new(),
            routes: Vec::new(),
            unmatched: Unmatched::Pass,
            safety_margin: DEFAULT_SAFETY_MARGIN,
            catch_up: DEFAULT_CATCH_UP,
            default_hold: DEFAULT_HOLD,
            feedback: true,
            hold_on_remaining_zero: true,
        }
    }
}

impl LimitsBuilder {
    /// Adds a quota under `name`; routes refer to it by name.
    pub fn quota(mut self, name: impl Into<String>, quota: Quota) -> Self {
        self.quotas.push((name.into(), quota));
        self
    }

    /// Adds a route. Routes are tried in the order added; the first match wins.
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// What requests matching no route do (default: pass through).
    pub fn unmatched(mut self, unmatched: Unmatched) -> Self {
        self.unmatched = unmatched;
        self
    }

    /// Runs every quota this fraction under its rate (default 0.01, i.e. 1%).
    ///
    /// Exact pacing at the limit meets a strict server's sliding window with
    /// no slack: timer and network jitter then turn into occasional 429s.
    /// Must be in `0.0..0.5`.
    pub fn safety_margin(mut self, margin: f64) -> Self {
        self.safety_margin = margin;
        self
    }

    /// How much timer lateness a grant may make up (default 2 ms).
    ///
    /// Timers fire late; the queue keeps its schedule rather than the
    /// wake-up time as the truth, so a slot that came due while the timer was
    /// late is granted as of when it came due, but never more than this far
    /// in the past. Keep it well under `safety_margin × 1 s`.
    pub fn catch_up(mut self, catch_up: Duration) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// How long a 429 without any wait hint holds its route (default 1 s).
    pub fn default_hold(mut self, hold: Duration) -> Self {
        self.default_hold = hold;
        self
    }

    /// Whether responses (429s, wait hints, `x-ratelimit-remaining: 0`) hold routes (default on).
    pub fn server_feedback(mut self, on: bool) -> Self {
        self.feedback = on;
        self
    }

    /// Whether a success carrying `x-ratelimit-remaining: 0` and a reset hint
    /// holds the route until the reset (default on).
    ///
    /// Right when the server's reset says when the next request can pass.
    /// Turn it off for a server whose reset on successes means "until the
    /// window is fully replenished": a client paced at the limit would
    /// otherwise sit out most of every window. 429s and `retry-after` still hold.
    pub fn hold_on_remaining_zero(mut self, on: bool) -> Self {
        self.hold_on_remaining_zero = on;
        self
    }

    /// Validates and compiles the configuration.
    pub fn build(self) -> Result<Limits, InvalidConfig> {
        if !(0.0..0.5).contains(&self.safety_margin) {
            return Err(InvalidConfig::new(
                "safety_margin",
                format!("{} is outside 0.0..0.5", self.safety_margin),
            ));
        }
        let margin = self.safety_margin;
        let mut index = HashMap::new();
        let mut quotas = Vec::new();
        for (name, quota) in self.quotas {
            let entry = format!("quotas.{name}");
            if name.is_empty() {
                return Err(InvalidConfig::new("quotas", "a quota has an empty name"));
            }
            if index.insert(name.clone(), quotas.len()).is_some() {
                return Err(InvalidConfig::new(entry, "this quota is defined twice"));
            }
            let weighted = quota.rate.counts_tokens();
            let cost = quota.cost.clone().unwrap_or(if weighted {
                Cost::Tokens(TokenEstimate::default())
            } else {
                Cost::Requests
            });
            let weighted = weighted || !matches!(cost, Cost::Requests);
            let default = cell_params(&quota.rate, quota.burst, weighted, margin);
            let mut overrides = HashMap::new();
            for (key, rate, burst) in &quota.overrides {
                if key.is_empty() {
                    return Err(InvalidConfig::new(
                        format!("{entry}.overrides"),
                        "an override has an empty key",
                    ));
                }
                if quota.key.is_none() {
                    return Err(InvalidConfig::new(
                        format!("{entry}.overrides.{key}"),
                        "overrides need a keyed quota: set `key` (e.g. \"body:model\")",
                    ));
                }
                overrides.insert(key.clone(), cell_params(rate, *burst, weighted, margin));
            }
            let learn = match &quota.learn {
                None => None,
                Some(a) => Some(Arc::new(LearnParams::new(a, weighted).map_err(
                    |(field, reason)| InvalidConfig::new(format!("{entry}.{field}"), reason),
                )?)),
            };
            quotas.push(CompiledQuota {
                name,
                default,
                overrides,
                cost,
                key: quota.key,
                learn,
            });
        }
        let compile = |name: String,
                       matcher: Option<RouteMatcher>,
                       names: &[String],
                       max_wait: Option<Duration>|
         -> Result<CompiledRoute, InvalidConfig> {
            let mut ids = Vec::new();
            for q in names {
                let id = *index.get(q).ok_or_else(|| {
                    InvalidConfig::new(
                        format!("routes[{name}]"),
                        format!("refers to quota {q:?}, which is not defined"),
                    )
                })?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let needs_body = ids.iter().any(|&i| {
                let q: &CompiledQuota = &quotas[i];
                q.cost.needs_body() || q.key.as_ref().is_some_and(KeyBy::needs_body)
            });
            Ok(CompiledRoute {
                name,
                matcher,
                quotas: ids,
                max_wait,
                needs_body,
            })
        };
        let mut routes = Vec::new();
        for route in self.routes {
            let method = route.method.as_ref().map_or("*", Method::as_str);
            let name = format!("{method} {}", route.path);
            let path = PathPattern::parse(&route.path).map_err(|reason| {
                InvalidConfig::new(format!("routes[{name}]"), reason.to_string())
            })?;
            let matcher = RouteMatcher {
                method: route.method.clone(),
                path,
            };
            routes.push(compile(name, Some(matcher), &route.quotas, route.max_wait)?);
        }
        let unmatched = match &self.unmatched {
            Unmatched::Pass => None,
            Unmatched::Quotas(names) => Some(compile("unmatched".into(), None, names, None)?),
        };
        Ok(Limits {
            quotas,
            routes,
            unmatched,
            catch_up: self.catch_up,
            default_hold: self.default_hold,
            feedback: self.feedback,
            hold_on_remaining_zero: self.hold_on_remaining_zero,
            safety_margin: margin,
        })
    }
}

fn cell_params(rate: &Rate, burst: Option<NonZeroU32>, weighted: bool, margin: f64) -> CellParams {
    let burst = burst.unwrap_or_else(|| {
        if weighted {
            // One second's worth, so a request of up to that many units fits.
            let per_sec = rate.per_second_f64().ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
            NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN)
        } else {
            NonZeroU32::MIN
        }
    });
    let interval = rate.interval().div_f64(1.0 - margin);
    CellParams {
        rate: rate.clone(),
        burst,
        interval: interval.max(Duration::from_nanos(1)),
    }
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

/// The TOML form of [`Limits`].
///
/// ```
/// let limits = tower_quota::Limits::from_toml(r#"
///     safety_margin = 0.02      # optional, default 0.01
///     unmatched = "pass"        # or a list of quota names
///
///     [quotas.chat]
///     rate = "600/min"
///     key = "body:model"        # or "header:<name>"
///     overrides = { "black-forest-labs/FLUX.1-schnell" = "9/min" }
///
///     [quotas.tokens]
///     rate = "180000 tokens/min" # a tokens rate is charged by estimated tokens
///
///     [[routes]]
///     method = "POST"
///     path = "/v1/chat/completions"
///     quotas = ["chat", "tokens"]
///     max_wait = "30s"
/// "#).unwrap();
/// assert_eq!(limits.routes().len(), 1);
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LimitsFile {
    /// The safety margin (fraction held back), default 0.01.
    pub safety_margin: Option<f64>,
    /// The catch-up credit, e.g. `"2ms"`.
    pub catch_up: Option<String>,
    /// How long a 429 without a hint holds its route, e.g. `"1s"`.
    pub default_hold: Option<String>,
    /// Whether server feedback holds routes (default true).
    pub server_feedback: Option<bool>,
    /// Whether `x-ratelimit-remaining: 0` on a success holds until its reset (default true).
    pub hold_on_remaining_zero: Option<bool>,
    /// `"pass"` or a list of quota names for requests matching no route.
    pub unmatched: Option<UnmatchedFile>,
    /// The quotas by name.
    #[serde(default)]
    pub quotas: BTreeMap<String, QuotaFile>,
    /// The routes, in matching order.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
}

/// `unmatched = "pass"` or `unmatched = ["quota", ...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UnmatchedFile {
    /// `"pass"`.
    Keyword(String),
    /// Quota names.
    Quotas(Vec<String>),
}

/// A quota in TOML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QuotaFile {
    /// The rate, like `"600/min"` or `"180000 tokens/min"`; `"auto"` (or
    /// `"auto tokens"`) or `{ start = "1/s", min = "6/min", max = "40/s" }`
    /// to learn it (see [`adaptive`](crate::adaptive)).
    pub rate: RateFile,
    /// Where a learned rate is read from: a preset name (`"together-requests"`,
    /// `"together-tokens"`, `"openai-requests"`, `"openai-tokens"`), `"none"`
    /// (probe only, the default), or a table
    /// `{ limit = ["..."], remaining = ["..."], reset = "...", period = "1s" }`.
    pub headers: Option<HeadersFile>,
    /// How a learned rate probes: `{ increase = 0.05, decrease = 0.7, ramp = 2.0, ramp_window = "10s" }`.
    pub learn: Option<LearnFile>,
    /// The burst (default 1 for requests, one second's worth for tokens).
    pub burst: Option<u32>,
    /// `"body:<field>"` or `"header:<name>"`.
    pub key: Option<String>,
    /// `"requests"` or `"tokens"` (default from the rate's unit).
    pub cost: Option<String>,
    /// Per-key rates: `"key" = "9/min"` or `"key" = { rate = "9/min", burst = 2 }`.
    #[serde(default)]
    pub overrides: BTreeMap<String, OverrideFile>,
}

/// A quota's rate in TOML: fixed or learned.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RateFile {
    /// `"600/min"`, or `"auto"` / `"auto tokens"` to learn it from the defaults.
    Text(String),
    /// A learned rate with explicit bounds.
    Learned {
        /// Where learning starts, like `"1/s"` (its unit decides what is counted).
        start: String,
        /// The floor (default a tenth of the start).
        min: Option<String>,
        /// The ceiling (default a thousand times the start).
        max: Option<String>,
    },
}

impl Default for RateFile {
    fn default() -> Self {
        RateFile::Text(String::new())
    }
}

/// Where a learned rate's headers are, in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum HeadersFile {
    /// A preset name or `"none"`.
    Preset(String),
    /// Header names and the period their values count in.
    Names {
        /// Headers carrying the limit (the lowest present binds).
        #[serde(default)]
        limit: Vec<String>,
        /// Headers carrying what is left.
        #[serde(default)]
        remaining: Vec<String>,
        /// A header carrying the reset (seconds or `6m0s`).
        reset: Option<String>,
        /// The period the values count in, like `"1s"` or `"1min"`.
        period: String,
    },
}

/// How a learned rate probes, in TOML; see [`Adaptive`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LearnFile {
    /// See [`Adaptive::increase`].
    pub increase: Option<f64>,
    /// See [`Adaptive::decrease`].
    pub decrease: Option<f64>,
    /// See [`Adaptive::ramp`].
    pub ramp: Option<f64>,
    /// The ramp window, like `"10s"`.
    pub ramp_window: Option<String>,
}

/// The start rate of `rate = "auto"`: one request a second (Together's
/// documented base of 60 per minute).
pub const AUTO_START: &str = "1/s";
/// The start rate of `rate = "auto tokens"`.
pub const AUTO_START_TOKENS: &str = "1000 tokens/s";

/// A learned quota from its TOML parts; errors name `entry`.
fn learned_quota(
    entry: &str,
    rate: &RateFile,
    headers: Option<&HeadersFile>,
    learn: Option<&LearnFile>,
) -> Result<Option<Quota>, InvalidConfig> {
    let parse = |field: &str, text: &str| {
        text.parse::<Rate>()
            .map_err(|e| InvalidConfig::new(format!("{entry}.{field}"), e.to_string()))
    };
    let mut a = match rate {
        RateFile::Text(t) if t.trim() == "auto" => Adaptive::new(parse("rate", AUTO_START)?),
        RateFile::Text(t) if t.split_whitespace().eq(["auto", "tokens"]) => {
            Adaptive::new(parse("rate", AUTO_START_TOKENS)?)
        }
        RateFile::Text(_) => {
            if headers.is_some() || learn.is_some() {
                return Err(InvalidConfig::new(
                    entry,
                    "`headers` and `learn` need a learned rate (rate = \"auto\" or { start = ... })",
                ));
            }
            return Ok(None);
        }
        RateFile::Learned { start, min, max } => {
            let mut a = Adaptive::new(parse("rate.start", start)?);
            if let Some(min) = min {
                a = a.floor(parse("rate.min", min)?);
            }
            if let Some(max) = max {
                a = a.ceiling(parse("rate.max", max)?);
            }
            a
        }
    };
    match headers {
        None => {}
        Some(HeadersFile::Preset(name)) if name == "none" => {}
        Some(HeadersFile::Preset(name)) => {
            a = a.headers(RateHeaders::preset(name).ok_or_else(|| {
                InvalidConfig::new(
                    format!("{entry}.headers"),
                    format!("{name:?}: use together-requests, together-tokens, openai-requests, openai-tokens, none or a table"),
                )
            })?);
        }
        Some(HeadersFile::Names {
            limit,
            remaining,
            reset,
            period,
        }) => {
            let field = format!("{entry}.headers");
            let period = parse_duration(period)
                .map_err(|e| InvalidConfig::new(format!("{field}.period"), e.to_string()))?;
            let check = |name: &String| {
                HeaderName::try_from(name.as_str())
                    .map(|_| ())
                    .map_err(|_| {
                        InvalidConfig::new(&field, format!("{name:?} is not a header name"))
                    })
            };
            let mut h = RateHeaders::new(period);
            for name in limit {
                check(name)?;
                h = h.limit(name);
            }
            for name in remaining {
                check(name)?;
                h = h.remaining(name);
            }
            if let Some(name) = reset {
                check(name)?;
                h = h.reset(name);
            }
            a = a.headers(h);
        }
    }
    if let Some(l) = learn {
        if let Some(v) = l.increase {
            a = a.increase(v);
        }
        if let Some(v) = l.decrease {
            a = a.decrease(v);
        }
        let window = match &l.ramp_window {
            Some(text) => parse_duration(text).map_err(|e| {
                InvalidConfig::new(format!("{entry}.learn.ramp_window"), e.to_string())
            })?,
            None => a.ramp_window,
        };
        let multiple = l.ramp.unwrap_or(a.ramp);
        a = a.ramp(multiple, window);
    }
    Ok(Some(Quota::adaptive(a)))
}

/// A per-key override in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OverrideFile {
    /// Just a rate.
    Rate(String),
    /// A rate and a burst.
    Full {
        /// The rate.
        rate: String,
        /// The burst.
        burst: Option<u32>,
    },
}

/// A route in TOML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RouteFile {
    /// The method; any method when absent.
    pub method: Option<String>,
    /// The path pattern, like `/v1/fine-tunes/{id}`.
    pub path: String,
    /// The quota names it draws on.
    #[serde(default)]
    pub quotas: Vec<String>,
    /// The longest wait before failing fast, like `"30s"`.
    pub max_wait: Option<String>,
}

impl LimitsFile {
    /// Validates and compiles into [`Limits`].
    pub fn into_limits(self) -> Result<Limits, InvalidConfig> {
        self.into_builder()?.build()
    }

    /// Validates and turns into a builder, so code can add to a file's limits.
    pub fn into_builder(self) -> Result<LimitsBuilder, InvalidConfig> {
        let mut b = Limits::builder();
        if let Some(m) = self.safety_margin {
            b = b.safety_margin(m);
        }
        if let Some(text) = &self.catch_up {
            b = b.catch_up(
                parse_duration(text).map_err(|e| InvalidConfig::new("catch_up", e.to_string()))?,
            );
        }
        if let Some(text) = &self.default_hold {
            b = b.default_hold(
                parse_duration(text)
                    .map_err(|e| InvalidConfig::new("default_hold", e.to_string()))?,
            );
        }
        if let Some(on) = self.server_feedback {
            b = b.server_feedback(on);
        }
        if let Some(on) = self.hold_on_remaining_zero {
            b = b.hold_on_remaining_zero(on);
        }
        match self.unmatched {
            None => {}
            Some(UnmatchedFile::Keyword(k)) if k == "pass" => b = b.unmatched(Unmatched::Pass),
            Some(UnmatchedFile::Keyword(k)) => {
                return Err(InvalidConfig::new(
                    "unmatched",
                    format!("{k:?}: use \"pass\" or a list of quota names"),
                ));
            }
            Some(UnmatchedFile::Quotas(q)) => b = b.unmatched(Unmatched::Quotas(q)),
        }
        for (name, q) in self.quotas {
            let entry = format!("quotas.{name}");
            let rate = |field: &str, text: &str| {
                text.parse::<Rate>()
                    .map_err(|e| InvalidConfig::new(format!("{entry}.{field}"), e.to_string()))
            };
            let burst = |field: &str, n: Option<u32>| match n {
                None => Ok(None),
                Some(n) => NonZeroU32::new(n).map(Some).ok_or_else(|| {
                    InvalidConfig::new(format!("{entry}.{field}"), "the burst must be > 0")
                }),
            };
            let mut quota =
                match learned_quota(&entry, &q.rate, q.headers.as_ref(), q.learn.as_ref())? {
                    Some(quota) => quota,
                    None => match &q.rate {
                        RateFile::Text(text) => Quota::new(rate("rate", text)?),
                        RateFile::Learned { .. } => unreachable!("a learned rate makes a quota"),
                    },
                };
            if let Some(n) = burst("burst", q.burst)? {
                quota = quota.burst(n);
            }
            if let Some(key) = &q.key {
                quota = quota.keyed_by(
                    KeyBy::parse(key).map_err(|e| InvalidConfig::new(format!("{entry}.key"), e))?,
                );
            }
            match q.cost.as_deref() {
                None => {}
                Some("requests") => quota = quota.cost(Cost::Requests),
                Some("tokens") => quota = quota.cost(Cost::Tokens(TokenEstimate::default())),
                Some(other) => {
                    return Err(InvalidConfig::new(
                        format!("{entry}.cost"),
                        format!("{other:?}: use \"requests\" or \"tokens\""),
                    ));
                }
            }
            for (key, o) in &q.overrides {
                let field = format!("overrides.{key}");
                let (r, bu) = match o {
                    OverrideFile::Rate(r) => (rate(&field, r)?, None),
                    OverrideFile::Full { rate: r, burst: bu } => {
                        (rate(&field, r)?, burst(&field, *bu)?)
                    }
                };
                quota.overrides.push((key.clone(), r, bu));
            }
            b = b.quota(name, quota);
        }
        for (i, r) in self.routes.into_iter().enumerate() {
            let entry = format!("routes[{i}]");
            let mut route = match &r.method {
                None => Route::any_method(r.path.clone()),
                Some(m) => Route::new(
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                        InvalidConfig::new(
                            format!("{entry}.method"),
                            format!("{m:?} is not a method"),
                        )
                    })?,
                    r.path.clone(),
                ),
            };
            for q in r.quotas {
                route = route.quota(q);
            }
            if let Some(text) = &r.max_wait {
                route =
                    route.max_wait(parse_duration(text).map_err(|e| {
                        InvalidConfig::new(format!("{entry}.max_wait"), e.to_string())
                    })?);
            }
            b = b.route(route);
        }
        Ok(b)
    }
}
