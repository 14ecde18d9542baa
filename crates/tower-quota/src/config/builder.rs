//! Building [`Limits`](super::Limits) in code.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use path_pattern::PathPattern;

use super::compiled::cell_params;
use super::*;
use crate::adaptive::LearnParams;
use crate::cost::{Cost, KeyBy, TokenEstimate};
use crate::route::RouteMatcher;

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
    max_hold: Duration,
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
            max_hold: DEFAULT_MAX_HOLD,
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

    /// The longest a server's hint may hold a route (default 60 s, the retry
    /// policy's longest obeyed hint): a `retry-after: 86000`, or a reset a
    /// day away on a success, holds for this long at most (with a warning),
    /// so a garbage or hostile hint cannot stall every queued caller.
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.max_hold = max;
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
            let reconciles = quota.charging == Charging::Reconciled;
            if reconciles && !matches!(cost, Cost::Tokens(_)) {
                return Err(InvalidConfig::new(
                    format!("{entry}.charge"),
                    "reconciled charging settles by the answer's token usage: it needs a token cost (a `tokens` rate)",
                ));
            }
            quotas.push(CompiledQuota {
                name,
                default,
                overrides,
                cost,
                key: quota.key,
                learn,
                reconciles,
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
            let needs_parts = ids.iter().any(|&i| {
                let q: &CompiledQuota = &quotas[i];
                q.key.is_some() || !matches!(q.cost, Cost::Requests)
            });
            let mut body_fields: Vec<String> = Vec::new();
            for &i in &ids {
                if let Some(KeyBy::BodyField(field)) = &quotas[i].key
                    && !body_fields.contains(field)
                {
                    body_fields.push(field.clone());
                }
            }
            Ok(CompiledRoute {
                name,
                matcher,
                quotas: ids,
                max_wait,
                needs_body,
                needs_parts,
                body_fields,
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
            max_hold: self.max_hold,
            feedback: self.feedback,
            hold_on_remaining_zero: self.hold_on_remaining_zero,
            safety_margin: margin,
        })
    }
}

impl Limits {
    /// Starts building limits in code.
    pub fn builder() -> LimitsBuilder {
        LimitsBuilder::default()
    }
}
