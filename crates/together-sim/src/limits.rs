//! Rate-limit enforcement: per key, per route (and model) limiters in
//! `gcra` or `sliding` mode, with exact "most accepted in any window"
//! bookkeeping for [`Stats`](crate::Stats).
//!
//! Time is simulated: the clock runs `time_scale` times faster than the
//! wall clock; windows are simulated durations.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::{Mode, RouteLimits, SimConfig};

/// Simulated clock: `time_scale` times faster than real time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
    scale: f64,
}

impl Clock {
    pub(crate) fn new(scale: f64) -> Self {
        Self {
            start: Instant::now(),
            scale,
        }
    }

    /// Simulated time since start.
    pub(crate) fn now(&self) -> Duration {
        self.start.elapsed().mul_f64(self.scale)
    }

    /// The real duration of a simulated one.
    pub(crate) fn to_real(self, sim: Duration) -> Duration {
        sim.div_f64(self.scale)
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitKind {
    /// Requests.
    Requests,
    /// Estimated tokens.
    Tokens,
    /// Generated images.
    Images,
}

impl LimitKind {
    const ALL: [LimitKind; 3] = [LimitKind::Requests, LimitKind::Tokens, LimitKind::Images];

    fn pick(self, l: &RouteLimits) -> Option<crate::config::Rate> {
        match self {
            LimitKind::Requests => l.requests,
            LimitKind::Tokens => l.tokens,
            LimitKind::Images => l.images,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Limiter {
    mode: Mode,
    window: Duration,
    limit: u64,
    burst: u64,
    interval: Duration,
    tat: Duration,
    log: VecDeque<(Duration, u64)>,
    in_window: u64,
    accepted: u64,
    accepted_cost: u64,
    rejected: u64,
    max_in_window: u64,
}

impl Limiter {
    fn new(mode: Mode, window: Duration, limit: u64, burst: Option<u64>) -> Self {
        let limit = limit.max(1);
        Self {
            mode,
            window,
            limit,
            burst: burst.unwrap_or(limit).max(1),
            interval: window.div_f64(limit as f64),
            tat: Duration::ZERO,
            log: VecDeque::new(),
            in_window: 0,
            accepted: 0,
            accepted_cost: 0,
            rejected: 0,
            max_in_window: 0,
        }
    }

    fn capacity(&self) -> u64 {
        match self.mode {
            Mode::Sliding => self.limit,
            Mode::Gcra => self.burst,
        }
    }

    fn prune(&mut self, now: Duration) {
        while let Some(&(t, c)) = self.log.front() {
            if t + self.window <= now {
                self.log.pop_front();
                self.in_window -= c;
            } else {
                break;
            }
        }
    }

    /// `Ok` when `cost` fits now, else the simulated wait until it would.
    fn check(&mut self, now: Duration, cost: u64) -> Result<(), Duration> {
        let cost = cost.min(self.capacity());
        self.prune(now);
        match self.mode {
            Mode::Sliding => {
                if self.in_window + cost <= self.limit {
                    return Ok(());
                }
                let mut excess = self.in_window + cost - self.limit;
                for &(t, c) in &self.log {
                    if c >= excess {
                        return Err((t + self.window).saturating_sub(now));
                    }
                    excess -= c;
                }
                Err(self.window)
            }
            Mode::Gcra => {
                let new_tat = self.tat.max(now) + self.interval.mul_f64(cost as f64);
                let tau = self.interval.mul_f64(self.burst as f64);
                let ahead = new_tat.saturating_sub(now);
                if ahead <= tau {
                    Ok(())
                } else {
                    Err(ahead - tau)
                }
            }
        }
    }

    fn commit(&mut self, now: Duration, cost: u64) {
        let cost = cost.min(self.capacity());
        if self.mode == Mode::Gcra {
            self.tat = self.tat.max(now) + self.interval.mul_f64(cost as f64);
        }
        self.log.push_back((now, cost));
        self.in_window += cost;
        self.accepted += 1;
        self.accepted_cost += cost;
        self.max_in_window = self.max_in_window.max(self.in_window);
    }

    /// (remaining, simulated time until one more unit is accepted).
    ///
    /// The reset is what a client must wait before its next request can
    /// pass: 0 while units remain, else until the oldest unit in the window
    /// leaves it (sliding) or the next cell conforms (gcra). This is what
    /// `x-ratelimit-reset` means on a 429 too, so both read the same way.
    fn remaining(&self, now: Duration) -> (u64, Duration) {
        match self.mode {
            Mode::Sliding => {
                let remaining = self.limit.saturating_sub(self.in_window);
                let reset = if remaining > 0 {
                    Duration::ZERO
                } else {
                    self.log
                        .front()
                        .map(|&(t, _)| (t + self.window).saturating_sub(now))
                        .unwrap_or_default()
                };
                (remaining, reset)
            }
            Mode::Gcra => {
                let ahead = self.tat.saturating_sub(now);
                let tau = self.interval.mul_f64(self.burst as f64);
                let free = tau.saturating_sub(ahead).as_secs_f64() / self.interval.as_secs_f64();
                let remaining = (free.floor() as u64).min(self.burst);
                let reset = if remaining > 0 {
                    Duration::ZERO
                } else {
                    // One more cell conforms once the TAT is within tau - interval.
                    ahead.saturating_sub(tau.saturating_sub(self.interval))
                };
                (remaining, reset)
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    route: String,
    model: Option<String>,
    kind: LimitKind,
}

/// The limiters of one API key.
#[derive(Debug, Default)]
pub(crate) struct KeyLimits {
    buckets: RwLock<HashMap<BucketKey, Arc<Mutex<Limiter>>>>,
}

/// Costs of one request.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cost {
    pub(crate) tokens: u64,
    pub(crate) images: u64,
    /// Tokens are charged when the answer is complete
    /// ([`TokenCharge::Usage`](crate::config::TokenCharge)): admission only
    /// checks that these (the input) fit.
    pub(crate) tokens_later: Option<u64>,
}

/// A token limit to charge when the answer is complete.
#[derive(Debug)]
pub(crate) struct TokenDebt {
    limiter: Arc<Mutex<Limiter>>,
}

impl TokenDebt {
    /// Charges `tokens` now, past the limit if need be; the limit's state after.
    pub(crate) fn charge(&self, now: Duration, tokens: u64) -> Grant {
        let mut l = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        l.commit(now, tokens);
        let (remaining, reset) = l.remaining(now);
        Grant {
            kind: LimitKind::Tokens,
            limit: l.limit,
            window: l.window,
            remaining,
            reset,
        }
    }
}

/// A limit's state after a grant, for the success headers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grant {
    pub(crate) kind: LimitKind,
    pub(crate) limit: u64,
    /// The simulated window `limit` counts in.
    pub(crate) window: Duration,
    pub(crate) remaining: u64,
    pub(crate) reset: Duration,
}

/// A refusal: the limit kind that refused and the simulated wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Refusal {
    pub(crate) kind: LimitKind,
    pub(crate) wait: Duration,
    pub(crate) limit: u64,
    pub(crate) window: Duration,
}

/// Every key's limiters and the configuration they are built from.
#[derive(Debug)]
pub(crate) struct Limits {
    mode: Mode,
    per_second: bool,
    routes: HashMap<String, RouteLimits>,
    models: HashMap<String, RouteLimits>,
    keys: HashMap<String, KeyLimits>,
    key_order: Vec<String>,
}

impl Limits {
    pub(crate) fn new(config: &SimConfig) -> Self {
        Self {
            mode: config.mode,
            per_second: config.enforce_per_second,
            routes: config.routes.clone().into_iter().collect(),
            models: config.model_limits.clone().into_iter().collect(),
            keys: config
                .api_keys
                .iter()
                .map(|k| (k.clone(), KeyLimits::default()))
                .collect(),
            key_order: config.api_keys.clone(),
        }
    }

    fn bucket(
        &self,
        key: &KeyLimits,
        bk: BucketKey,
        rate: crate::config::Rate,
        burst: Option<u64>,
    ) -> Arc<Mutex<Limiter>> {
        if let Some(l) = key
            .buckets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&bk)
        {
            return l.clone();
        }
        let mut w = key.buckets.write().unwrap_or_else(|e| e.into_inner());
        w.entry(bk)
            .or_insert_with(|| {
                let (window, limit) = rate.window(self.per_second);
                Arc::new(Mutex::new(Limiter::new(self.mode, window, limit, burst)))
            })
            .clone()
    }

    /// Checks and, when every limit allows it, charges the request.
    pub(crate) fn acquire(
        &self,
        api_key: &str,
        route: &str,
        model: Option<&str>,
        cost: Cost,
        now_fn: impl Fn() -> Duration,
    ) -> Result<(Vec<Grant>, Option<TokenDebt>), Refusal> {
        let Some(key) = self.keys.get(api_key) else {
            return Ok((Vec::new(), None));
        };
        let route_limits = self.routes.get(route);
        let model_limits = model.and_then(|m| self.models.get(m));
        if route_limits.is_none() && model_limits.is_none() {
            return Ok((Vec::new(), None));
        }
        let mut plan: Vec<(LimitKind, Arc<Mutex<Limiter>>, u64)> = Vec::with_capacity(3);
        for kind in LimitKind::ALL {
            let (rate, own, burst) = match model_limits.and_then(|l| kind.pick(l)) {
                Some(r) => (r, true, model_limits.and_then(|l| l.burst)),
                None => match route_limits.and_then(|l| kind.pick(l)) {
                    Some(r) => (
                        r,
                        route_limits.is_some_and(|l| l.per_model),
                        route_limits.and_then(|l| l.burst),
                    ),
                    None => continue,
                },
            };
            let c = match kind {
                LimitKind::Requests => 1,
                LimitKind::Tokens => cost.tokens_later.unwrap_or(cost.tokens),
                LimitKind::Images => cost.images.max(1),
            };
            let bk = BucketKey {
                route: route.to_string(),
                model: if own { model.map(str::to_string) } else { None },
                kind,
            };
            plan.push((kind, self.bucket(key, bk, rate, burst), c));
        }
        let mut guards: Vec<_> = plan
            .iter()
            .map(|(_, l, _)| l.lock().unwrap_or_else(|e| e.into_inner()))
            .collect();
        let now = now_fn();
        let mut refusal: Option<Refusal> = None;
        for (g, (kind, _, c)) in guards.iter_mut().zip(&plan) {
            if let Err(wait) = g.check(now, *c) {
                let worse = refusal.is_none_or(|r| wait > r.wait);
                if worse {
                    refusal = Some(Refusal {
                        kind: *kind,
                        wait,
                        limit: g.limit,
                        window: g.window,
                    });
                }
            }
        }
        if let Some(r) = refusal {
            for g in guards.iter_mut() {
                g.rejected += 1;
            }
            return Err(r);
        }
        let mut grants = Vec::with_capacity(plan.len());
        let mut debt = None;
        for (g, (kind, limiter, c)) in guards.iter_mut().zip(&plan) {
            if *kind == LimitKind::Tokens && cost.tokens_later.is_some() {
                debt = Some(TokenDebt {
                    limiter: limiter.clone(),
                });
            } else {
                g.commit(now, *c);
            }
            let (remaining, reset) = g.remaining(now);
            grants.push(Grant {
                kind: *kind,
                limit: g.limit,
                window: g.window,
                remaining,
                reset,
            });
        }
        Ok((grants, debt))
    }

    /// A snapshot of every limiter.
    pub(crate) fn snapshot(&self) -> Vec<LimiterStats> {
        let mut out = Vec::new();
        for (key, kl) in &self.keys {
            let label = crate::wire::key_label(&self.key_order, key);
            let buckets = kl.buckets.read().unwrap_or_else(|e| e.into_inner());
            for (bk, l) in buckets.iter() {
                let l = l.lock().unwrap_or_else(|e| e.into_inner());
                out.push(LimiterStats {
                    key: label.clone(),
                    route: bk.route.clone(),
                    model: bk.model.clone(),
                    kind: bk.kind,
                    mode: l.mode,
                    limit: l.limit,
                    burst: l.burst,
                    window_secs: l.window.as_secs_f64(),
                    accepted: l.accepted,
                    accepted_cost: l.accepted_cost,
                    rejected: l.rejected,
                    max_in_window: l.max_in_window,
                });
            }
        }
        out.sort_by(|a, b| {
            (&a.key, &a.route, &a.model, a.kind).cmp(&(&b.key, &b.route, &b.model, b.kind))
        });
        out
    }
}

/// One limiter's counters, in [`Stats::limiters`](crate::Stats::limiters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimiterStats {
    /// API key.
    pub key: String,
    /// Route pattern.
    pub route: String,
    /// The model, when it has its own bucket.
    pub model: Option<String>,
    /// What is counted.
    pub kind: LimitKind,
    /// Enforcement mode.
    pub mode: Mode,
    /// Most allowed per window (sliding) or rate per window (gcra).
    pub limit: u64,
    /// GCRA burst (equal to `limit` unless configured).
    pub burst: u64,
    /// Window length, simulated seconds.
    pub window_secs: f64,
    /// Requests accepted.
    pub accepted: u64,
    /// Units accepted (requests, tokens or images).
    pub accepted_cost: u64,
    /// Requests refused by any limit they drew on (counted on each).
    pub rejected: u64,
    /// Most units accepted in any window of `window_secs`, computed exactly
    /// from accepted timestamps (costs above the capacity count as the
    /// capacity). In sliding mode it never exceeds `limit`.
    pub max_in_window: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn sliding_is_strict() {
        let mut l = Limiter::new(Mode::Sliding, S, 3, None);
        let t0 = Duration::from_millis(100);
        for _ in 0..3 {
            assert!(l.check(t0, 1).is_ok());
            l.commit(t0, 1);
        }
        assert_eq!(l.check(t0, 1), Err(S));
        let t1 = t0 + Duration::from_millis(999);
        assert_eq!(l.check(t1, 1), Err(Duration::from_millis(1)));
        assert!(l.check(t0 + S, 1).is_ok());
        assert_eq!(l.max_in_window, 3);
    }

    #[test]
    fn gcra_rate_and_burst() {
        let mut l = Limiter::new(Mode::Gcra, S, 10, Some(2));
        let t = Duration::from_secs(5);
        l.commit(t, 1);
        l.commit(t, 1);
        let wait = l.check(t, 1).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(l.check(t + wait, 1).is_ok());
    }

    #[test]
    fn weighted_costs_clamped() {
        let mut l = Limiter::new(Mode::Sliding, S, 100, None);
        assert!(l.check(Duration::ZERO, 1000).is_ok());
        l.commit(Duration::ZERO, 1000);
        assert_eq!(l.max_in_window, 100);
        assert!(l.check(Duration::from_millis(10), 1).is_err());
    }
}
