//! The dynamic rule's state per (key label, model) and its decisions.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderMap;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::DynamicLimits;
use crate::stats::{DynamicSample, DynamicStats};

/// The enforcement window.
const SECOND: Duration = Duration::from_secs(1);
/// Shortest simulated time between two samples of a series.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Most samples kept per series (the oldest are dropped beyond).
pub(crate) const MAX_SAMPLES: usize = 4096;

/// One (key, model)'s logs and counters.
#[derive(Debug, Default)]
struct Cell {
    /// 2xx answers inside the history window: (time, tokens).
    successes: VecDeque<(Duration, u64)>,
    success_tokens: u64,
    /// Accepted requests inside the last second: (time, tokens).
    accepted: VecDeque<(Duration, u64)>,
    accepted_tokens: u64,
    accepted_total: u64,
    successes_total: u64,
    rejected: u64,
    rejected_tokens: u64,
    capacity_503: u64,
    over_limit: u64,
    series: VecDeque<DynamicSample>,
    series_dropped: u64,
    last_sample: Option<Duration>,
}

/// The rates in force at one instant, per simulated second.
#[derive(Debug, Clone, Copy)]
struct Rates {
    cap: f64,
    rate: f64,
    /// (token cap, token rate) when tokens are limited.
    tokens: Option<(f64, f64)>,
}

/// What the rate headers report (simulated units; converted when written).
#[derive(Debug, Clone, Copy)]
pub(crate) struct View {
    cap: f64,
    rate: f64,
    remaining: u64,
    reset: Duration,
    tokens: Option<(f64, f64, u64)>,
}

/// Which dynamic limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    Requests,
    Tokens,
}

/// The outcome of [`Dynamic::admit`].
#[derive(Debug)]
pub(crate) enum Admission {
    /// Within the limit and charged: answer it, then report a 2xx with
    /// [`Ticket::succeed`].
    Accepted(Ticket),
    /// Above the limit: 429, retry after `view.reset` (simulated).
    Limited(Exceeded, View),
    /// Within the limit but answered 503 for lack of capacity (not charged).
    Capacity(View),
}

/// An accepted request, to report its answer with.
#[derive(Debug)]
pub(crate) struct Ticket {
    cell: Arc<Mutex<Cell>>,
    tokens: u64,
}

/// The cells by (key label, model).
type Cells = HashMap<(String, String), Arc<Mutex<Cell>>>;

/// Every (key, model)'s dynamic limit.
#[derive(Debug)]
pub(crate) struct Dynamic {
    limits: DynamicLimits,
    cells: RwLock<Cells>,
    rng: Mutex<SmallRng>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many accepted requests may be in the window for one more to pass.
fn keep_for(rate: f64) -> usize {
    (rate.floor() as usize).saturating_sub(1)
}

fn floor_left(limit: f64, used: u64) -> u64 {
    (limit - used as f64).floor().max(0.0) as u64
}

impl Cell {
    fn prune(&mut self, now: Duration, window: Duration) {
        while let Some(&(t, c)) = self.successes.front() {
            if t + window > now {
                break;
            }
            self.successes.pop_front();
            self.success_tokens -= c;
        }
        while let Some(&(t, c)) = self.accepted.front() {
            if t + SECOND > now {
                break;
            }
            self.accepted.pop_front();
            self.accepted_tokens -= c;
        }
    }

    fn rates(&self, l: &DynamicLimits, now: Duration) -> Rates {
        let w = l.window.as_secs_f64();
        let cap = l.cap_at(now);
        let rate = (l.multiple * self.successes.len() as f64 / w)
            .max(l.base)
            .min(cap);
        let tokens = match (l.token_base, l.token_cap) {
            (Some(base), Some(cap)) => Some((
                cap,
                (l.multiple * self.success_tokens as f64 / w)
                    .max(base)
                    .min(cap),
            )),
            _ => None,
        };
        Rates { cap, rate, tokens }
    }

    /// Simulated wait until at most `keep` accepted requests are left in
    /// the window.
    fn wait_until_at_most(&self, keep: usize, now: Duration) -> Duration {
        let n = self.accepted.len();
        if n <= keep {
            return Duration::ZERO;
        }
        let (t, _) = self.accepted[n - keep - 1];
        (t + SECOND).saturating_sub(now)
    }

    /// Simulated wait until `cost` more tokens fit `rate` (or the window
    /// is empty).
    fn token_wait(&self, cost: u64, rate: f64, now: Duration) -> Duration {
        let mut left = self.accepted_tokens;
        let last = self.accepted.len().saturating_sub(1);
        for (i, &(t, c)) in self.accepted.iter().enumerate() {
            left -= c;
            if (left + cost) as f64 <= rate || i == last {
                return (t + SECOND).saturating_sub(now);
            }
        }
        Duration::ZERO
    }

    fn view(&self, r: &Rates, now: Duration) -> View {
        let remaining = floor_left(r.rate, self.accepted.len() as u64);
        let reset = if remaining > 0 {
            Duration::ZERO
        } else {
            self.wait_until_at_most(keep_for(r.rate), now)
        };
        View {
            cap: r.cap,
            rate: r.rate,
            remaining,
            reset,
            tokens: r
                .tokens
                .map(|(cap, rate)| (cap, rate, floor_left(rate, self.accepted_tokens))),
        }
    }

    fn sample(&mut self, now: Duration, r: &Rates) {
        if self.last_sample.is_some_and(|l| now < l + SAMPLE_EVERY) {
            return;
        }
        self.last_sample = Some(now);
        if self.series.len() >= MAX_SAMPLES {
            self.series.pop_front();
            self.series_dropped += 1;
        }
        self.series.push_back(DynamicSample {
            t_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
            rate: r.rate,
            cap: r.cap,
            accepted_in_last_1s: self.accepted.len() as u64,
            rejected: self.rejected,
        });
    }
}

impl Dynamic {
    /// The rule of `limits`; capacity 503s draw from `SmallRng(seed)`.
    pub(crate) fn new(limits: DynamicLimits, seed: u64) -> Self {
        Self {
            limits,
            cells: RwLock::new(HashMap::new()),
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
        }
    }

    /// Whether `route` is governed by the dynamic rule.
    pub(crate) fn governs(&self, route: &str) -> bool {
        self.limits.routes.iter().any(|r| r == route)
    }

    /// Whether every answer carries the rate headers.
    pub(crate) fn headers(&self) -> bool {
        self.limits.headers
    }

    fn cell(&self, key: &str, model: &str) -> Arc<Mutex<Cell>> {
        let id = (key.to_string(), model.to_string());
        if let Some(c) = self
            .cells
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            return c.clone();
        }
        let mut w = self.cells.write().unwrap_or_else(|e| e.into_inner());
        w.entry(id).or_default().clone()
    }

    /// Decides a request of `tokens` estimated tokens for (`key` label,
    /// `model`), charging it when accepted. `now` is read under the lock so
    /// the logs stay in time order.
    pub(crate) fn admit(
        &self,
        key: &str,
        model: &str,
        tokens: u64,
        now: impl Fn() -> Duration,
    ) -> Admission {
        let cell = self.cell(key, model);
        let mut c = lock(&cell);
        let now = now();
        c.prune(now, self.limits.window);
        let r = c.rates(&self.limits, now);
        let requests_ok = (c.accepted.len() + 1) as f64 <= r.rate;
        let tokens_ok = r.tokens.is_none_or(|(_, rate)| {
            c.accepted.is_empty() || (c.accepted_tokens + tokens) as f64 <= rate
        });
        if !(requests_ok && tokens_ok) {
            let request_wait = (!requests_ok).then(|| c.wait_until_at_most(keep_for(r.rate), now));
            let token_wait = r
                .tokens
                .filter(|_| !tokens_ok)
                .map(|(_, rate)| c.token_wait(tokens, rate, now));
            let (kind, wait) = match (request_wait, token_wait) {
                (Some(a), Some(b)) if b > a => (Exceeded::Tokens, b),
                (Some(a), _) => (Exceeded::Requests, a),
                (None, b) => (Exceeded::Tokens, b.unwrap_or_default()),
            };
            c.rejected += 1;
            if kind == Exceeded::Tokens {
                c.rejected_tokens += 1;
            }
            c.sample(now, &r);
            let mut view = c.view(&r, now);
            view.reset = wait;
            return Admission::Limited(kind, view);
        }
        if self.limits.capacity_503 > 0.0
            && lock(&self.rng).random::<f64>() < self.limits.capacity_503
        {
            c.capacity_503 += 1;
            c.sample(now, &r);
            return Admission::Capacity(c.view(&r, now));
        }
        c.accepted.push_back((now, tokens));
        c.accepted_tokens += tokens;
        c.accepted_total += 1;
        if c.accepted.len() as f64 > r.rate {
            c.over_limit += 1;
        }
        c.sample(now, &r);
        drop(c);
        Admission::Accepted(Ticket { cell, tokens })
    }

    /// Every (key, model) seen, sorted, at simulated time `now`.
    pub(crate) fn snapshot(&self, now: Duration) -> Vec<DynamicStats> {
        let cells = self.cells.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<DynamicStats> = cells
            .iter()
            .map(|((key, model), cell)| {
                let mut c = lock(cell);
                c.prune(now, self.limits.window);
                let r = c.rates(&self.limits, now);
                DynamicStats {
                    key: key.clone(),
                    model: model.clone(),
                    rate: r.rate,
                    cap: r.cap,
                    token_rate: r.tokens.map(|(_, rate)| rate),
                    token_cap: r.tokens.map(|(cap, _)| cap),
                    accepted: c.accepted_total,
                    successes: c.successes_total,
                    rejected: c.rejected,
                    rejected_tokens: c.rejected_tokens,
                    capacity_503: c.capacity_503,
                    accepted_in_last_1s: c.accepted.len() as u64,
                    max_accepted_in_1s_over_limit: c.over_limit,
                    series: c.series.iter().cloned().collect(),
                    series_dropped: c.series_dropped,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.key, &a.model).cmp(&(&b.key, &b.model)));
        out
    }
}

impl Ticket {
    /// Records the 2xx answer of the accepted request; the view after it.
    pub(crate) fn succeed(&self, d: &Dynamic, now: impl Fn() -> Duration) -> View {
        let mut c = lock(&self.cell);
        let now = now();
        c.prune(now, d.limits.window);
        c.successes.push_back((now, self.tokens));
        c.success_tokens += self.tokens;
        c.successes_total += 1;
        let r = c.rates(&d.limits, now);
        c.view(&r, now)
    }

    /// The view now, for an answer that is not a success (a fault).
    pub(crate) fn view(&self, d: &Dynamic, now: impl Fn() -> Duration) -> View {
        let mut c = lock(&self.cell);
        let now = now();
        c.prune(now, d.limits.window);
        let r = c.rates(&d.limits, now);
        c.view(&r, now)
    }
}

/// A number without trailing zeros, to the thousandth: `40`, `12.5`,
/// `2.667`.
pub(crate) fn fmt_num(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

impl View {
    /// Simulated time until the next request could be accepted (on a
    /// 429: until this one would be).
    pub(crate) fn reset(&self) -> Duration {
        self.reset
    }

    /// The request rate, per simulated second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// The token rate, per simulated second, when tokens are limited.
    pub(crate) fn token_rate(&self) -> Option<f64> {
        self.tokens.map(|(_, rate, _)| rate)
    }

    /// Writes every rate header in real units: rates x `scale`, durations
    /// / `scale`; remaining counts as they are.
    pub(crate) fn write(&self, hs: &mut HeaderMap, scale: f64) {
        use crate::wire::{fmt_secs, put};
        put(hs, "x-ratelimit-limit", fmt_num(self.cap));
        put(hs, "x-ratelimit-limit-dynamic", fmt_num(self.rate));
        put(hs, "x-ratelimit-remaining", self.remaining.to_string());
        put(
            hs,
            "x-ratelimit-remaining-dynamic",
            self.remaining.to_string(),
        );
        put(hs, "x-ratelimit-reset", fmt_secs(self.reset.div_f64(scale)));
        if let Some((cap, rate, remaining)) = self.tokens {
            put(hs, "x-tokenlimit-limit", fmt_num(cap));
            put(hs, "x-tokenlimit-limit-dynamic", fmt_num(rate));
            put(hs, "x-tokenlimit-remaining", remaining.to_string());
            put(hs, "x-tokenlimit-remaining-dynamic", remaining.to_string());
        }
    }
}

#[cfg(test)]
mod tests;
