//! The shared state behind every clone of a rate-limit service: governor
//! cells, their FIFO queues and their holds.
//!
//! # How waiting works
//!
//! A request is admitted in `call`: its route is matched, its keys and costs
//! computed, and it joins the queue of every cell (quota × key) it draws on,
//! all under one lock, so any two requests stand in the same order in every
//! queue they share. Only a request at the front of all its queues (a head)
//! asks governor for a decision; the others park without a timer and are
//! woken when the one before them leaves.
//!
//! A head that is refused sleeps until the instant governor names, and on
//! waking decides *as of that instant* (the schedule, not the late wake-up,
//! is the truth), never further back than the catch-up credit. Decisions over
//! several cells are all-or-nothing: a cell that granted is rolled back when
//! a later one refuses, which is possible because the cells keep their GCRA
//! state in a store this module owns.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, SystemTime};

use governor::RateLimiter;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use tower_retry_after::hint::{HintSource, parse_wait_hint};

use crate::BoxError;
use crate::adaptive::{LearnParams, PaceSource};
use crate::config::{CellParams, CompiledRoute, Limits};
use crate::error::{CostTooHigh, StoreUnavailable, WaitTimeout};
use crate::learn::{Learner, Move};
use crate::shared::{
    OnStoreFailure, PaceNews, SharedCell, SharedDecision, SharedNews, SharedOptions, SharedStore,
};

/// How often idle keyed cells are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The most decision rounds one head makes in one attempt.
const MAX_ROUNDS: usize = 16;
/// How long an idle keyed cell keeps what it learned before it is swept.
const LEARNED_IDLE: Duration = Duration::from_secs(300);

/// A cell a granted request drew on: what to read its answer against.
#[derive(Debug, Clone)]
pub(crate) struct Granted {
    pub(crate) key: CellKey,
    cost: u32,
    /// The cell's learning epoch at the grant.
    epoch: u64,
}

/// The identity of one limiter cell: a quota and, for keyed quotas, a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CellKey {
    pub(crate) quota: usize,
    pub(crate) key: Option<Arc<str>>,
}

/// A governor clock that reads the decision time this module sets before each check.
#[derive(Debug, Clone)]
struct DecisionClock(Arc<AtomicU64>);

impl Clock for DecisionClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

const NO_STATE: u64 = u64::MAX;

/// A governor state store whose theoretical arrival time (TAT) this module can read and restore.
#[derive(Debug)]
struct TatStore(Arc<AtomicU64>);

impl StateStore for TatStore {
    type Key = NotKeyed;

    fn measure_and_replace<T, F, E>(&self, _key: &NotKeyed, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Every access happens under the engine's lock: no compare-and-swap loop needed.
        let current = self.0.load(Ordering::Relaxed);
        let prev = (current != NO_STATE).then(|| Nanos::from(current));
        let (outcome, next) = f(prev)?;
        self.0.store(next.into(), Ordering::Relaxed);
        Ok(outcome)
    }
}

type Governor = RateLimiter<NotKeyed, TatStore, DecisionClock, NoOpMiddleware<Duration>>;

struct Cell {
    governor: Governor,
    tat: Arc<AtomicU64>,
    clock: Arc<AtomicU64>,
    params: CellParams,
    /// The share of the quota this cell enforces (below 1 only as a shared store's fallback).
    share: f64,
    queue: VecDeque<u64>,
    queued_cost: u64,
    hold_until: Option<Instant>,
    /// The learned pace of an adaptive quota's cell.
    learner: Option<Box<Learner>>,
    last_used: Instant,
}

/// A governor limiter pacing at `interval` (after the share) with `burst`,
/// over the cell's own state and clock.
fn limiter(
    interval: Duration,
    burst: NonZeroU32,
    tat: &Arc<AtomicU64>,
    clock: &Arc<AtomicU64>,
) -> Governor {
    let quota = governor::Quota::with_period(interval.max(Duration::from_nanos(1)))
        .expect("interval is never zero")
        .allow_burst(burst);
    // The limiter's start is the clock's reading now: make it the engine's base.
    let decision = clock.swap(0, Ordering::Relaxed);
    let governor = RateLimiter::new(quota, TatStore(tat.clone()), DecisionClock(clock.clone()));
    clock.store(decision, Ordering::Relaxed);
    governor
}

impl Cell {
    /// A cell at `share` of its quota (1.0 but when it is a fallback for a shared store).
    fn new(
        params: &CellParams,
        share: f64,
        learn: Option<&Arc<LearnParams>>,
        margin: f64,
        now: Instant,
    ) -> Self {
        let tat = Arc::new(AtomicU64::new(NO_STATE));
        let clock = Arc::new(AtomicU64::new(0));
        let governor = limiter(params.interval.div_f64(share), params.burst, &tat, &clock);
        let mut cell = Cell {
            governor,
            tat,
            clock,
            params: params.clone(),
            share,
            queue: VecDeque::new(),
            queued_cost: 0,
            hold_until: None,
            learner: learn.map(|l| Box::new(Learner::new(l.clone(), 1.0 / share))),
            last_used: now,
        };
        cell.repace(margin);
        cell
    }

    /// Paces a learning cell at its learner's pace, keeping its GCRA state:
    /// the next grant follows the new interval from where the schedule stands.
    fn repace(&mut self, margin: f64) {
        let Some(learner) = &mut self.learner else {
            return;
        };
        let pace = learner.apply();
        // The pace is finite and above zero; governor takes intervals up to
        // 584 years: a floor of one per many centuries stops at 500.
        const LONGEST: Duration = Duration::from_secs(500 * 365 * 86_400);
        let interval = Duration::try_from_secs_f64(1.0 / (pace * (1.0 - margin)))
            .unwrap_or(LONGEST)
            .min(LONGEST);
        if learner.weighted() {
            // One second's worth at the learned pace.
            let per_sec = pace.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
            self.params.burst = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        }
        self.params.interval = interval.max(Duration::from_nanos(1));
        self.governor = limiter(
            self.params.interval.div_f64(self.share),
            self.params.burst,
            &self.tat,
            &self.clock,
        );
    }

    /// What a request of `cost` must find free to go: all of it, but on a
    /// learning cell no more than its burst, which moves with the pace (a
    /// request admitted under a larger burst, or larger than a second's
    /// worth, waits for a full burst; the rest is charged after its grant).
    fn fitting(&self, cost: NonZeroU32) -> NonZeroU32 {
        if self.learner.is_some() {
            cost.min(self.params.burst)
        } else {
            cost
        }
    }

    /// Charges `units` someone else spent: the schedule moves on as if this
    /// cell had granted them.
    fn charge(&mut self, now_off: Duration, units: f64) {
        let tat = self.tat().unwrap_or(now_off).max(now_off);
        let later = tat + self.params.interval.mul_f64(units.max(0.0));
        self.tat.store(
            u64::try_from(later.as_nanos()).unwrap_or(u64::MAX - 1),
            Ordering::Relaxed,
        );
    }

    /// The TAT as an offset from the base, or `None` before the first grant.
    fn tat(&self) -> Option<Duration> {
        let raw = self.tat.load(Ordering::Relaxed);
        (raw != NO_STATE).then(|| Duration::from_nanos(raw))
    }

    /// Tolerance: how far ahead of now the TAT may run (burst − 1 intervals).
    fn tau(&self) -> Duration {
        self.params.interval * (self.params.burst.get() - 1)
    }

    /// When `cost` units could next be granted, ignoring the queue, as an offset from the base.
    fn earliest(&self, now: Duration, cost: u32) -> Duration {
        let tat = self.tat().unwrap_or(now).max(now);
        (tat + self.params.interval * (cost - 1)).saturating_sub(self.tau())
    }
}

struct Waiter {
    cells: Vec<(CellKey, NonZeroU32)>,
    waker: Option<Waker>,
    due: Option<Instant>,
    deadline: Option<(Instant, Duration)>,
    route: usize,
}

struct State {
    cells: HashMap<CellKey, Cell>,
    waiters: HashMap<u64, Waiter>,
    next_id: u64,
    last_sweep: Instant,
    breaker: Breaker,
}

/// The circuit breaker in front of a shared store.
#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// A shared store and how to use it.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn SharedStore>,
    pub(crate) options: SharedOptions,
}

pub(crate) struct Engine {
    pub(crate) limits: Limits,
    base: Instant,
    state: Mutex<State>,
    shared: Option<Shared>,
}

/// What `call` decided for a request.
pub(crate) enum Admission {
    /// No route or no quotas: pass through.
    Pass,
    /// Queued; the id identifies the waiter.
    Queued(u64),
}

/// What one attempt by a waiter came to.
pub(crate) enum Attempt {
    /// Every cell granted; the request may go. Carries the cells for feedback.
    Granted(Vec<Granted>),
    /// A head refused until this instant.
    WaitUntil(Instant),
    /// Not yet at the front of all its queues; the waker is stored.
    Queued,
    /// A head that must ask the shared store about these cells.
    Ask(Vec<SharedCell>),
}

impl Engine {
    pub(crate) fn new(limits: Limits, shared: Option<Shared>) -> Self {
        let now = Instant::now();
        Engine {
            limits,
            base: now,
            state: Mutex::new(State {
                cells: HashMap::new(),
                waiters: HashMap::new(),
                next_id: 0,
                last_sweep: now,
                breaker: Breaker::default(),
            }),
            shared,
        }
    }

    /// The share of each quota local cells enforce.
    fn local_share(&self) -> f64 {
        match self.shared.as_ref().map(|s| s.options.on_failure) {
            Some(OnStoreFailure::LocalShare(share)) => share,
            _ => 1.0,
        }
    }

    pub(crate) fn shared(&self) -> Option<&Shared> {
        self.shared.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.base)
    }

    pub(crate) fn route_for(&self, method: &http::Method, path: &str) -> Option<usize> {
        let limits = &self.limits;
        match limits
            .routes
            .iter()
            .position(|r| r.matcher.as_ref().is_some_and(|m| m.matches(method, path)))
        {
            Some(i) => Some(i),
            None => limits.unmatched.as_ref().map(|_| limits.routes.len()),
        }
    }

    pub(crate) fn route(&self, index: usize) -> &CompiledRoute {
        let limits = &self.limits;
        limits
            .routes
            .get(index)
            .or(limits.unmatched.as_ref())
            .expect("route index comes from route_for")
    }

    /// Queues a request that draws `cells` on route `route`.
    pub(crate) fn admit(
        &self,
        route: usize,
        cells: Vec<(CellKey, u32)>,
    ) -> Result<Admission, BoxError> {
        if cells.is_empty() {
            return Ok(Admission::Pass);
        }
        let now = Instant::now();
        let now_off = self.offset(now);
        let share = self.local_share();
        let margin = self.limits.safety_margin;
        let mut state = self.lock();
        if now.saturating_duration_since(state.last_sweep) >= SWEEP_EVERY {
            state.sweep(now_off, now);
        }
        let mut checked = Vec::with_capacity(cells.len());
        let mut earliest = now;
        for (key, cost) in cells {
            let quota = &self.limits.quotas[key.quota];
            let cell = state.cells.entry(key.clone()).or_insert_with(|| {
                let (params, learn) = quota.params_for(key.key.as_deref());
                Cell::new(params, share, learn, margin, now)
            });
            cell.last_used = now;
            let cost = cell.fitting(NonZeroU32::new(cost).unwrap_or(NonZeroU32::MIN));
            if cost > cell.params.burst {
                return Err(CostTooHigh::new(
                    quota.name.clone(),
                    key.key.as_deref().map(str::to_owned),
                    cost.get(),
                    cell.params.burst.get(),
                )
                .into());
            }
            // Predicted grant: after everyone already queued, if nobody leaves.
            let ahead = cell
                .params
                .interval
                .saturating_mul(u32::try_from(cell.queued_cost).unwrap_or(u32::MAX));
            let at = self.base + cell.earliest(now_off, cost.get()) + ahead;
            earliest = earliest.max(at).max(cell.hold_until.unwrap_or(now));
            checked.push((key, cost));
        }
        let route_def = self.route(route);
        let deadline = route_def.max_wait.map(|w| (now + w, w));
        if let Some((limit, max_wait)) = deadline
            && earliest > limit
        {
            tracing::debug!(route = %route_def.name, wait = ?(earliest - now), ?max_wait, "rate limit: failing fast");
            return Err(WaitTimeout::new(route_def.name.clone(), earliest, max_wait).into());
        }
        let id = state.next_id;
        state.next_id += 1;
        for (key, cost) in &checked {
            let cell = state.cells.get_mut(key).expect("inserted above");
            cell.queue.push_back(id);
            cell.queued_cost += u64::from(cost.get());
        }
        state.waiters.insert(
            id,
            Waiter {
                cells: checked,
                waker: None,
                due: None,
                deadline,
                route,
            },
        );
        Ok(Admission::Queued(id))
    }

    /// One attempt by waiter `id` to be granted.
    pub(crate) fn attempt(&self, id: u64, waker: &Waker) -> Result<Attempt, BoxError> {
        let now = Instant::now();
        let mut guard = self.lock();
        let State {
            cells,
            waiters,
            breaker,
            ..
        } = &mut *guard;
        let waiter = waiters.get_mut(&id).expect("a live ticket has a waiter");
        let is_head = waiter
            .cells
            .iter()
            .all(|(key, _)| cells[key].queue.front() == Some(&id));
        if !is_head {
            if !waiter.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
                waiter.waker = Some(waker.clone());
            }
            return Ok(Attempt::Queued);
        }
        for _ in 0..MAX_ROUNDS {
            // Held cells refuse until the hold passes.
            let hold = waiter
                .cells
                .iter()
                .filter_map(|(key, _)| cells[key].hold_until)
                .max()
                .filter(|&h| h > now);
            if let Some(until) = hold {
                waiter.due = Some(until);
                return self.wait_or_fail(&mut guard, id, until, now);
            }
            if let Some(shared) = &self.shared {
                if breaker.open_until.is_none_or(|t| now >= t) {
                    let ask = waiter
                        .cells
                        .iter()
                        .map(|(key, cost)| {
                            let cell = &cells[key];
                            SharedCell {
                                name: self.cell_name(key),
                                interval: cell.params.interval,
                                burst: cell.params.burst.get(),
                                cost: cost.get(),
                            }
                        })
                        .collect();
                    return Ok(Attempt::Ask(ask));
                }
                match shared.options.on_failure {
                    OnStoreFailure::LocalShare(_) => {}
                    OnStoreFailure::FailOpen => {
                        return Ok(Attempt::Granted(guard.grant(id, now)));
                    }
                    OnStoreFailure::FailClosed => {
                        let retry_at = breaker.open_until.unwrap_or(now);
                        guard.remove(id);
                        return Err(StoreUnavailable::new(retry_at).into());
                    }
                }
            }
            let decision = waiter
                .due
                .unwrap_or(now)
                .max(now.checked_sub(self.limits.catch_up).unwrap_or(now))
                .min(now);
            let at = u64::try_from(self.offset(decision).as_nanos()).unwrap_or(u64::MAX - 1);
            let mut taken: Vec<(&Cell, u64)> = Vec::with_capacity(waiter.cells.len());
            let mut refused = None;
            for (key, cost) in &waiter.cells {
                let cell = &cells[key];
                cell.clock.store(at, Ordering::Relaxed);
                let saved = cell.tat.load(Ordering::Relaxed);
                match cell.governor.check_n(cell.fitting(*cost)) {
                    Ok(Ok(())) => taken.push((cell, saved)),
                    Ok(Err(not_until)) => {
                        refused = Some(self.base + not_until.earliest_possible());
                        break;
                    }
                    Err(_) => unreachable!(
                        "costs above a static burst are refused at admission; learned ones fit"
                    ),
                }
            }
            let Some(until) = refused else {
                // A learning cell checked at most its burst: the rest of the
                // cost is charged now, so the next grant waits for it.
                let at = self.offset(decision);
                for (key, cost) in &waiter.cells {
                    let cell = cells.get_mut(key).expect("cell of a live waiter");
                    let fitted = cell.fitting(*cost);
                    if fitted < *cost {
                        cell.charge(at, f64::from(cost.get() - fitted.get()));
                    }
                }
                return Ok(Attempt::Granted(guard.grant(id, decision)));
            };
            for (cell, saved) in taken {
                cell.tat.store(saved, Ordering::Relaxed);
            }
            waiter.due = Some(until);
            if until > now {
                return self.wait_or_fail(&mut guard, id, until, now);
            }
        }
        // Unreachable in practice: each round moves the decision to a later cell's due time.
        Ok(Attempt::WaitUntil(now + Duration::from_millis(1)))
    }

    /// Takes the shared store's answer for head `id`: a grant, a wait, or a
    /// failure (which opens the breaker and decides again, locally).
    pub(crate) fn shared_decided(
        &self,
        id: u64,
        answer: Result<SharedDecision, BoxError>,
        waker: &Waker,
    ) -> Result<Attempt, BoxError> {
        let now = Instant::now();
        let mut guard = self.lock();
        match answer {
            Ok(decision) => {
                if guard.breaker.failures > 0 {
                    tracing::info!("rate limit: shared store answers again; deciding there");
                    guard.breaker = Breaker::default();
                }
                match decision {
                    SharedDecision::Granted => Ok(Attempt::Granted(guard.grant(id, now))),
                    SharedDecision::Wait(wait) => {
                        let until = now + wait;
                        if let Some(waiter) = guard.waiters.get_mut(&id) {
                            waiter.due = Some(until);
                        }
                        self.wait_or_fail(&mut guard, id, until, now)
                    }
                }
            }
            Err(error) => {
                let options = &self.shared.as_ref().expect("asked a shared store").options;
                let breaker = &mut guard.breaker;
                breaker.failures = breaker.failures.saturating_add(1);
                let backoff = options
                    .retry_after
                    .saturating_mul(1 << (breaker.failures - 1).min(16))
                    .min(options.max_retry_after);
                breaker.open_until = Some(now + backoff);
                tracing::warn!(
                    %error,
                    failures = breaker.failures,
                    ?backoff,
                    fallback = ?options.on_failure,
                    "rate limit: shared store failed; falling back until it is tried again"
                );
                drop(guard);
                self.attempt(id, waker)
            }
        }
    }

    /// The cell's name in a shared store: the quota's name and the key.
    fn cell_name(&self, key: &CellKey) -> String {
        let quota = &self.limits.quotas[key.quota].name;
        match &key.key {
            Some(k) => format!("{quota}\u{1f}{k}"),
            None => quota.clone(),
        }
    }

    fn wait_or_fail(
        &self,
        state: &mut State,
        id: u64,
        until: Instant,
        now: Instant,
    ) -> Result<Attempt, BoxError> {
        let waiter = &state.waiters[&id];
        if let Some((limit, max_wait)) = waiter.deadline
            && until > limit
        {
            let route = self.route(waiter.route).name.clone();
            tracing::debug!(%route, wait = ?(until - now), ?max_wait, "rate limit: failing fast");
            state.remove(id);
            return Err(WaitTimeout::new(route, until, max_wait).into());
        }
        tracing::trace!(route = %self.route(waiter.route).name, wait = ?(until - now), "rate limit: waiting");
        Ok(Attempt::WaitUntil(until))
    }

    /// Removes a waiter that gave up (its future was dropped): it consumed nothing.
    pub(crate) fn cancel(&self, id: u64) {
        self.lock().remove(id);
    }

    /// What a response asks of every cell it drew on: a hold and why.
    fn hold_for(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<(Duration, &'static str)> {
        if !self.limits.feedback {
            return None;
        }
        let hint = parse_wait_hint(headers, SystemTime::now());
        let remaining_zero = headers
            .get("x-ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|v| v <= 0.0);
        let explicit = hint.filter(|h| h.source != HintSource::RateLimitReset);
        let (delay, reason) = if status == StatusCode::TOO_MANY_REQUESTS {
            (
                hint.map_or(self.limits.default_hold, |h| h.delay),
                "429 Too Many Requests",
            )
        } else if let Some(h) = explicit {
            (h.delay, "retry-after")
        } else if remaining_zero && self.limits.hold_on_remaining_zero {
            (hint?.delay, "x-ratelimit-remaining: 0")
        } else {
            return None;
        };
        (!delay.is_zero()).then_some((delay, reason))
    }

    /// Reads a response to a request granted on `cells`: holds them if the
    /// server asks for a pause, and lets learning cells learn from it.
    pub(crate) fn feedback(
        self: &Arc<Self>,
        cells: &[Granted],
        status: StatusCode,
        headers: &HeaderMap,
    ) {
        let hold = self.hold_for(status, headers);
        let learns = cells
            .iter()
            .any(|g| self.limits.quotas[g.key.quota].learn.is_some());
        if hold.is_none() && !learns {
            return;
        }
        let now = Instant::now();
        let now_off = self.offset(now);
        let margin = self.limits.safety_margin;
        let mut news = Vec::new();
        let mut state = self.lock();
        for granted in cells {
            let Some(cell) = state.cells.get_mut(&granted.key) else {
                continue;
            };
            let before = cell.params.interval;
            let mut pace_news = None;
            let name = CellName {
                quota: &self.limits.quotas[granted.key.quota].name,
                key: granted.key.key.as_deref(),
            };
            let mut hold = hold.map(|(delay, reason)| (now + delay, delay, reason));
            if let Some(learner) = cell.learner.as_mut() {
                let cost = f64::from(granted.cost);
                let learned = learner.answered(now, status, headers, cost, granted.epoch, &name);
                if learned.repace {
                    cell.repace(margin);
                    let to = cell.params.interval;
                    pace_news = learned.moved.map(|moved| match moved {
                        Move::Header => PaceNews::Set(to),
                        Move::Cut => PaceNews::Slower(to),
                        Move::Grow => PaceNews::Faster { from: before, to },
                    });
                }
                if learned.charge > 0.0 {
                    tracing::debug!(cell = %name, units = learned.charge, "rate limit: the server counts more spent than this cell did; charging the difference");
                    cell.charge(now_off, learned.charge);
                }
                if let Some(delay) = learned.hold
                    && hold.is_none_or(|(until, ..)| until < now + delay)
                {
                    hold = Some((now + delay, delay, "remaining: 0"));
                }
            }
            if let Some((until, delay, reason)) = hold
                && cell.hold_until.is_none_or(|h| h < until)
            {
                cell.hold_until = Some(until);
                if status.is_success() {
                    // A spent limit on a success is pacing at the limit, not an incident.
                    tracing::debug!(
                        quota = name.quota,
                        key = name.key,
                        ?delay,
                        reason,
                        "rate limit: holding"
                    );
                } else {
                    tracing::info!(
                        quota = name.quota,
                        key = name.key,
                        ?delay,
                        reason,
                        "rate limit: holding"
                    );
                }
            }
            if self.shared.is_some() && (pace_news.is_some() || hold.is_some()) {
                let mut n = SharedNews::new(self.cell_name(&granted.key));
                n.pace = pace_news;
                n.hold = hold.map(|(_, delay, _)| delay);
                news.push((granted.key.clone(), n));
            }
        }
        drop(state);
        for (key, n) in news {
            self.share(key, n);
        }
    }

    /// Shares `news` of cell `key` through the store, then follows the
    /// shared pace it answers. Failures only cost the sharing: the breaker
    /// is for decisions.
    fn share(self: &Arc<Self>, key: CellKey, news: SharedNews) {
        let Some(shared) = &self.shared else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let share = tokio::time::timeout(shared.options.timeout, shared.store.share(news));
        let engine = self.clone();
        runtime.spawn(async move {
            match share.await {
                Ok(Ok(Some(interval))) => engine.adopt(&key, interval),
                Ok(Ok(None)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, "rate limit: could not share what was learned")
                }
                Err(_) => tracing::debug!("rate limit: sharing what was learned timed out"),
            }
        });
    }

    /// Follows a shared interval (after the margin) in a learning cell.
    fn adopt(&self, key: &CellKey, interval: Duration) {
        if interval.is_zero() {
            return;
        }
        let margin = self.limits.safety_margin;
        let mut state = self.lock();
        let Some(cell) = state.cells.get_mut(key) else {
            return;
        };
        let Some(learner) = cell.learner.as_mut() else {
            return;
        };
        let per_second = 1.0 / (interval.as_secs_f64() * (1.0 - margin));
        if learner.adopt(per_second) {
            cell.repace(margin);
        }
    }

    /// Starts a learning cell at `per_second` (a pace remembered from an
    /// earlier run). Returns false when the quota does not learn or `key`
    /// has a static override.
    pub(crate) fn seed_pace(&self, quota: &str, key: Option<&str>, per_second: f64) -> bool {
        let Some(index) = self.limits.quotas.iter().position(|q| q.name == quota) else {
            return false;
        };
        let q = &self.limits.quotas[index];
        let (params, learn) = q.params_for(key);
        if learn.is_none() || key.is_some() != q.key.is_some() {
            return false;
        }
        let now = Instant::now();
        let share = self.local_share();
        let margin = self.limits.safety_margin;
        let mut state = self.lock();
        let cell = state
            .cells
            .entry(CellKey {
                quota: index,
                key: key.map(Arc::from),
            })
            .or_insert_with(|| Cell::new(params, share, learn, margin, now));
        cell.last_used = now;
        let learner = cell
            .learner
            .as_mut()
            .expect("a learning quota's cell learns");
        if learner.seed(now, per_second, &CellName { quota, key }) {
            cell.repace(margin);
        }
        true
    }

    pub(crate) fn snapshot(&self) -> crate::Snapshot {
        let now = Instant::now();
        let now_off = self.offset(now);
        let state = self.lock();
        let mut cells: Vec<_> = state
            .cells
            .iter()
            .map(|(key, cell)| {
                let next = self.base + cell.earliest(now_off, 1);
                let (pace, source, changed_at) = match &cell.learner {
                    Some(l) => (l.pace, l.source, l.changed_at),
                    None => (cell.params.rate.per_second_f64(), PaceSource::Static, None),
                };
                crate::snapshot::CellSnapshot {
                    pace,
                    source,
                    changed_at,
                    quota: self.limits.quotas[key.quota].name.clone(),
                    key: key.key.as_deref().map(str::to_owned),
                    queued: cell.queue.len(),
                    next_free: next.max(cell.hold_until.unwrap_or(next)),
                    hold_until: cell.hold_until.filter(|&h| h > now),
                }
            })
            .collect();
        cells.sort_by(|a, b| (&a.quota, &a.key).cmp(&(&b.quota, &b.key)));
        crate::Snapshot { at: now, cells }
    }
}

impl State {
    /// Takes a granted head out of its queues and wakes whoever is now in front.
    ///
    /// The new front inherits the grant's decision time as the earliest it
    /// may decide at: it continues the schedule from where this grant stood,
    /// rather than from its own (later) wake-up.
    fn grant(&mut self, id: u64, decision: Instant) -> Vec<Granted> {
        let waiter = self.waiters.remove(&id).expect("granted waiter exists");
        let mut keys = Vec::with_capacity(waiter.cells.len());
        for (key, cost) in waiter.cells {
            let cell = self.cells.get_mut(&key).expect("cell of a live waiter");
            let epoch = cell.learner.as_mut().map_or(0, |l| {
                l.granted(decision, f64::from(cost.get()));
                l.epoch
            });
            let front = cell.queue.pop_front();
            debug_assert_eq!(front, Some(id));
            cell.queued_cost -= u64::from(cost.get());
            if let Some(&next) = cell.queue.front()
                && let Some(waiter) = self.waiters.get_mut(&next)
            {
                waiter.due = Some(waiter.due.map_or(decision, |d| d.max(decision)));
                if let Some(waker) = waiter.waker.take() {
                    waker.wake();
                }
            }
            keys.push(Granted {
                key,
                cost: cost.get(),
                epoch,
            });
        }
        keys
    }

    /// Removes a waiter from wherever it stands, waking any new front.
    fn remove(&mut self, id: u64) {
        let Some(waiter) = self.waiters.remove(&id) else {
            return;
        };
        for (key, cost) in waiter.cells {
            let Some(cell) = self.cells.get_mut(&key) else {
                continue;
            };
            let was_front = cell.queue.front() == Some(&id);
            if let Some(pos) = cell.queue.iter().position(|&w| w == id) {
                cell.queue.remove(pos);
                cell.queued_cost -= u64::from(cost.get());
            }
            if was_front && let Some(&next) = cell.queue.front() {
                wake(&mut self.waiters, next);
            }
        }
    }

    /// Drops keyed cells whose state is the same as a fresh one: nobody
    /// queued, no hold, and the GCRA fully replenished.
    fn sweep(&mut self, now_off: Duration, now: Instant) {
        self.last_sweep = now;
        self.cells.retain(|key, cell| {
            key.key.is_none()
                || !cell.queue.is_empty()
                || (cell.learner.is_some()
                    && now.saturating_duration_since(cell.last_used) < LEARNED_IDLE)
                || cell.hold_until.is_some_and(|h| h > now)
                || cell.tat().is_some_and(|tat| tat > now_off)
        });
    }
}

/// A cell's name in traces: `quota` or `quota[key]`.
pub(crate) struct CellName<'a> {
    pub(crate) quota: &'a str,
    pub(crate) key: Option<&'a str>,
}

impl std::fmt::Display for CellName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key {
            Some(key) => write!(f, "{}[{key}]", self.quota),
            None => f.write_str(self.quota),
        }
    }
}

fn wake(waiters: &mut HashMap<u64, Waiter>, id: u64) {
    if let Some(waker) = waiters.get_mut(&id).and_then(|w| w.waker.take()) {
        waker.wake();
    }
}
