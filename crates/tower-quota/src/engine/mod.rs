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

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use crate::adaptive::PaceSource;
use crate::config::{CompiledRoute, Limits};
use crate::metrics::{CellMetrics, RouteMetrics};
use crate::shared::{OnStoreFailure, SharedCell, SharedOptions, SharedStore};

mod admission;
mod breaker;
mod cell;
mod cells;
mod draws;
mod feedback;
mod settle;
mod trial;
mod window;

use breaker::Breaker;
use cell::Cell;
use cells::Cells;
pub(crate) use draws::{Ask, Draw, Draws, Few};

/// How often idle keyed cells are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The most decision rounds one head makes in one attempt.
const MAX_ROUNDS: usize = 16;
/// How long an idle keyed cell keeps what it learned before it is swept.
const LEARNED_IDLE: Duration = Duration::from_secs(300);

struct Waiter {
    cells: Draws,
    waker: Option<Waker>,
    due: Option<Instant>,
    deadline: Option<(Instant, Duration)>,
    route: usize,
    /// When it was admitted (for the wait histogram).
    since: Instant,
}

struct State {
    cells: Cells,
    waiters: HashMap<u64, Waiter>,
    next_id: u64,
    /// When the last sweep was, as an offset from the engine's base.
    last_sweep: Duration,
    breaker: Breaker,
}

/// A shared store and how this layer uses it.
pub(crate) struct Sharing {
    pub(crate) store: Arc<dyn SharedStore>,
    pub(crate) options: SharedOptions,
}

pub(crate) struct Engine {
    pub(crate) limits: Limits,
    base: Instant,
    state: Mutex<State>,
    shared: Option<Sharing>,
    /// Decisions asked of the shared store.
    asked: AtomicU64,
    /// Decisions made locally because the shared store was failing.
    decided_locally: AtomicU64,
    decided_locally_metric: crate::metrics::Counter,
    /// Each route's metric handles (the unmatched route's last).
    route_metrics: Vec<RouteMetrics>,
    /// What a request asks of each route's quotas when none reads it: one
    /// unit of each unkeyed cell (the unmatched route's last).
    plain_asks: Vec<Few<Ask<'static>>>,
}

/// What `call` decided for a request.
pub(crate) enum Admission {
    /// No route or no quotas: pass through.
    Pass,
    /// Queued; the id identifies the waiter.
    Queued(u64),
    /// Granted at once (nobody was ahead): the cells, for feedback.
    Granted(Draws),
}

/// What one attempt by a waiter came to.
pub(crate) enum Attempt {
    /// Every cell granted; the request may go. Carries the cells for feedback.
    Granted(Draws),
    /// A head refused until this instant.
    WaitUntil(Instant),
    /// Not yet at the front of all its queues; the waker is stored.
    Queued,
    /// A head that must ask the shared store about these cells.
    Ask(Vec<SharedCell>),
}

impl Engine {
    pub(crate) fn new(limits: Limits, shared: Option<Sharing>) -> Self {
        let now = Instant::now();
        Engine {
            base: now,
            state: Mutex::new(State {
                cells: Cells::new(limits.quotas.len()),
                waiters: HashMap::new(),
                next_id: 0,
                last_sweep: Duration::ZERO,
                breaker: Breaker::default(),
            }),
            route_metrics: limits
                .routes
                .iter()
                .chain(limits.unmatched.iter())
                .map(|r| RouteMetrics::new(&r.name))
                .collect(),
            plain_asks: limits
                .routes
                .iter()
                .chain(limits.unmatched.iter())
                .map(|r| {
                    Few::from_each(&r.quotas, |&quota| Ask {
                        quota,
                        key: None,
                        cost: NonZeroU32::MIN,
                    })
                })
                .collect(),
            decided_locally_metric: crate::metrics::decided_locally(),
            limits,
            shared,
            asked: AtomicU64::new(0),
            decided_locally: AtomicU64::new(0),
        }
    }

    /// The metric handles of route `index` (from [`route_for`](Self::route_for)).
    fn route_metrics(&self, index: usize) -> &RouteMetrics {
        let last = self.route_metrics.len().saturating_sub(1);
        &self.route_metrics[index.min(last)]
    }

    /// How decisions went with a shared store; `None` without one.
    pub(crate) fn sharing_stats(&self) -> Option<crate::shared::SharingStats> {
        self.shared.as_ref()?;
        let store_failing = !self.lock().breaker.is_closed(Instant::now());
        Some(crate::shared::SharingStats {
            asked: self.asked.load(Ordering::Relaxed),
            decided_locally: self.decided_locally.load(Ordering::Relaxed),
            store_failing,
        })
    }

    /// A fresh cell for quota `quota` and `key`: the quota's parameters
    /// for that key (an override's, or its default and how it learns).
    /// Made once per key, so kept out of admission's hot path.
    #[cold]
    fn new_cell(&self, quota: usize, key: Option<&str>, now: Instant) -> Cell {
        let q = &self.limits.quotas[quota];
        let (params, learn) = q.params_for(key);
        let metrics = CellMetrics::new(&q.name, key, learn.is_some());
        let margin = self.limits.safety_margin;
        Cell::new(params, self.local_share(), learn, margin, now, metrics)
    }

    /// The share of each quota local cells enforce.
    fn local_share(&self) -> f64 {
        match self.shared.as_ref().map(|s| s.options.on_failure) {
            Some(OnStoreFailure::LocalShare(share)) => share,
            _ => 1.0,
        }
    }

    pub(crate) fn shared(&self) -> Option<&Sharing> {
        self.shared.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn offset(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.base)
    }

    pub(crate) fn route_for(&self, method: &http::Method, path: &str) -> Option<usize> {
        self.limits.route_index(method, path)
    }

    /// What a request asks of route `index`'s quotas when none of them
    /// reads it (the route does not [need its parts](CompiledRoute::needs_parts)).
    pub(crate) fn plain_asks(&self, index: usize) -> &Few<Ask<'static>> {
        let last = self.plain_asks.len().saturating_sub(1);
        &self.plain_asks[index.min(last)]
    }

    pub(crate) fn route(&self, index: usize) -> &CompiledRoute {
        let limits = &self.limits;
        limits
            .routes
            .get(index)
            .or(limits.unmatched.as_ref())
            .expect("route index comes from route_for")
    }

    pub(crate) fn snapshot(&self) -> crate::Snapshot {
        let now = Instant::now();
        let now_off = self.offset(now);
        let state = self.lock();
        let mut cells: Vec<_> = state
            .cells
            .iter()
            .map(|(quota, cell)| {
                let next = self.base + cell.earliest(now_off, 1);
                let (pace, source, changed_at) = match &cell.learner {
                    Some(l) => (l.pace, l.source, l.changed_at),
                    None => (cell.params.rate.per_second_f64(), PaceSource::Static, None),
                };
                crate::snapshot::CellSnapshot {
                    pace,
                    source,
                    changed_at,
                    quota: self.limits.quotas[quota].name.clone(),
                    key: cell.key.as_deref().map(str::to_owned),
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
    fn grant(&mut self, id: u64, decision: Instant) -> Draws {
        let mut cells = self
            .waiters
            .remove(&id)
            .expect("granted waiter exists")
            .cells;
        for draw in &mut cells {
            let cell = self
                .cells
                .get_mut(&draw.key)
                .expect("cell of a live waiter");
            draw.granted(cell, decision);
            let front = cell.queue.pop_front();
            debug_assert_eq!(front, Some(id));
            cell.queued_cost -= u64::from(draw.cost.get());
            cell.metrics.queue.set(cell.queue.len() as f64);
            if let Some(&next) = cell.queue.front()
                && let Some(waiter) = self.waiters.get_mut(&next)
            {
                waiter.due = Some(waiter.due.map_or(decision, |d| d.max(decision)));
                if let Some(waker) = waiter.waker.take() {
                    waker.wake();
                }
            }
        }
        cells
    }

    /// Removes a waiter from wherever it stands, waking any new front.
    fn remove(&mut self, id: u64) {
        let Some(waiter) = self.waiters.remove(&id) else {
            return;
        };
        for Draw { key, cost, .. } in waiter.cells.iter() {
            let Some(cell) = self.cells.get_mut(key) else {
                continue;
            };
            let was_front = cell.queue.front() == Some(&id);
            if let Some(pos) = cell.queue.iter().position(|&w| w == id) {
                cell.queue.remove(pos);
                cell.queued_cost -= u64::from(cost.get());
                cell.metrics.queue.set(cell.queue.len() as f64);
            }
            if was_front && let Some(&next) = cell.queue.front() {
                wake(&mut self.waiters, next);
            }
        }
    }

    /// Drops keyed cells whose state is the same as a fresh one: nobody
    /// queued, no hold, and the GCRA fully replenished.
    fn sweep(&mut self, now_off: Duration, now: Instant) {
        self.last_sweep = now_off;
        self.cells.retain_keyed(|cell| {
            !cell.queue.is_empty()
                || (cell.learner.is_some()
                    && now.saturating_duration_since(cell.last_used) < LEARNED_IDLE)
                || cell.hold_until.is_some_and(|h| h > now)
                || cell.tat().is_some_and(|tat| tat > now_off)
        });
    }
}

fn wake(waiters: &mut HashMap<u64, Waiter>, id: u64) {
    if let Some(waker) = waiters.get_mut(&id).and_then(|w| w.waker.take()) {
        waker.wake();
    }
}
