//! Limits written in TOML.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use http::{HeaderName, Method};
use serde::Deserialize;

use super::*;
use crate::adaptive::{Adaptive, RateHeaders};
use crate::cost::{Cost, KeyBy, TokenEstimate};
use crate::rate::{Rate, parse_duration};

impl Limits {
    /// Reads limits from TOML text; see [`LimitsFile`] for the format.
    pub fn from_toml(text: &str) -> Result<Self, InvalidConfig> {
        let file: LimitsFile =
            ::toml::from_str(text).map_err(|e| InvalidConfig::new("toml", e.to_string()))?;
        file.into_limits()
    }
}

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
    /// The longest a server's hint holds a route (`"60s"`).
    pub max_hold: Option<String>,
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
    /// `"estimate"` (the default) or `"reconciled"`: see [`Charging`](crate::Charging).
    pub charge: Option<String>,
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
        if let Some(text) = &self.max_hold {
            b = b.max_hold(
                parse_duration(text).map_err(|e| InvalidConfig::new("max_hold", e.to_string()))?,
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
            match q.charge.as_deref() {
                None | Some("estimate") => {}
                Some("reconciled") => quota = quota.charge(Charging::Reconciled),
                Some(other) => {
                    return Err(InvalidConfig::new(
                        format!("{entry}.charge"),
                        format!("{other:?}: use \"estimate\" or \"reconciled\""),
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
