//! Admitting requests and deciding for the heads of the queues.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use crate::BoxError;
use crate::error::{CostTooHigh, StoreUnavailable, WaitTimeout};
use crate::shared::{OnStoreFailure, SharedCell, SharedDecision};

use super::cell::CellKey;
use super::trial::Trial;
use super::{
    Admission, Ask, Attempt, Cells, Draw, Draws, Engine, Few, MAX_ROUNDS, SWEEP_EVERY, State,
    Waiter,
};

/// Grants a request that never queued: learning cells hear of the grant.
fn grant_free(state: &mut State, mut cells: Draws, decision: Instant, learns: bool) -> Draws {
    // Only learning cells take a server's count (and have an epoch).
    if learns {
        for draw in &mut cells {
            let cell = state.cells.get_mut(&draw.key).expect("cell of the request");
            draw.granted(cell, decision);
        }
    }
    cells
}

impl Engine {
    /// Admits a request that asks `asks` of route `route`'s quotas: granted
    /// at once when every cell is free (nobody queued, no hold, governor
    /// grants now, no shared store to ask), else queued.
    pub(crate) fn admit(&self, route: usize, asks: &Few<Ask<'_>>) -> Result<Admission, BoxError> {
        if asks.is_empty() {
            return Ok(Admission::Pass);
        }
        let now = Instant::now();
        let mut state = self.lock();
        // One reading of the clock's offset serves the sweep and the decision.
        let now_off = self.offset(now);
        if now_off.saturating_sub(state.last_sweep) >= SWEEP_EVERY {
            state.sweep(now_off, now);
        }
        // The fast path decides cell by cell as admission finds them, while
        // every cell so far is free (nobody queued, no hold, no shared store
        // to ask): a cell that does not learn is looked up once.
        let mut free = self.shared.is_none();
        let mut trial = Trial::new(now_off);
        let mut refused = None;
        let margin = self.limits.safety_margin;
        let made = Draws::try_from_each(
            asks,
            |&Ask {
                 quota: q,
                 ref key,
                 cost,
             }| {
                let quota = &self.limits.quotas[q];
                let key = key.as_deref();
                let cell = match state.cells.find_mut(q, key) {
                    Some(cell) => cell,
                    None => state
                        .cells
                        .insert(q, key.map(Arc::from), self.new_cell(q, key, now)),
                };
                cell.last_used = now;
                // A learned cell waits for at most its burst and charges the
                // rest after the grant (Trial::granted): the whole cost stays.
                if cell.fitting(cost) > cell.params.burst {
                    self.route_metrics(route).cost_too_high.increment(1);
                    return Err(BoxError::from(CostTooHigh::new(
                        quota.name.clone(),
                        key.map(str::to_owned),
                        cost.get(),
                        cell.params.burst.get(),
                    )));
                }
                free &= cell.queue.is_empty() && cell.hold_until.is_none_or(|h| h <= now);
                if free && refused.is_none() {
                    refused = trial.check(cell, cost, margin).err();
                }
                let key = CellKey {
                    quota: q,
                    key: cell.key.clone(),
                };
                Ok(Draw::new(key, cost))
            },
        );
        let cells = match made {
            Ok(cells) => cells,
            Err(error) => {
                // Refused for its cost: what earlier cells granted goes back.
                let all = &state.cells;
                trial.roll_back(asks.iter().map(|ask| {
                    all.find(ask.quota, ask.key.as_deref())
                        .expect("an asked cell was found or made")
                }));
                return Err(error);
            }
        };
        // The fast path: nobody ahead, so the request decides now, alone.
        if free && refused.is_none() {
            let learns = trial.granted(&mut state.cells, &cells);
            let m = self.route_metrics(route);
            m.grants.increment(1);
            m.wait.record(0.0);
            return Ok(Admission::Granted(grant_free(
                &mut state, cells, now, learns,
            )));
        }
        // It does not go at once: what the cells it found free granted goes back.
        let all = &state.cells;
        trial.roll_back(cells.iter().map(|d| &all[&d.key]));
        // The earliest a refused fast path named (no sooner than now).
        let earliest = match (free, refused) {
            (true, Some(until)) => now.max(self.base + until),
            _ => now,
        };
        let route_def = self.route(route);
        let deadline = route_def.max_wait.map(|w| (now + w, w));
        if let Some((limit, max_wait)) = deadline {
            let earliest = self.predicted_grant(&state, &cells, earliest, now_off);
            if earliest > limit {
                tracing::debug!(route = %route_def.name, wait = ?(earliest - now), ?max_wait, "rate limit: failing fast");
                self.route_metrics(route).max_wait.increment(1);
                return Err(WaitTimeout::new(route_def.name.clone(), earliest, max_wait).into());
            }
        }
        let id = state.next_id;
        state.next_id += 1;
        for Draw { key, cost, .. } in &cells {
            let cell = state.cells.get_mut(key).expect("inserted above");
            cell.queue.push_back(id);
            cell.queued_cost += u64::from(cost.get());
            cell.metrics.queue.set(cell.queue.len() as f64);
        }
        state.waiters.insert(
            id,
            Waiter {
                cells,
                waker: None,
                due: None,
                deadline,
                route,
                since: now,
            },
        );
        Ok(Admission::Queued(id))
    }

    /// The predicted grant of a request queued now on `cells`: after
    /// everyone already queued, past any hold, if nobody leaves; no sooner
    /// than `from`. Only a route with a `max_wait` asks.
    fn predicted_grant(
        &self,
        state: &State,
        cells: &[Draw],
        from: Instant,
        now_off: Duration,
    ) -> Instant {
        cells.iter().fold(from, |earliest, Draw { key, cost, .. }| {
            let cell = &state.cells[key];
            let ahead = cell
                .params
                .interval
                .saturating_mul(u32::try_from(cell.queued_cost).unwrap_or(u32::MAX));
            let at = self.base + cell.earliest(now_off, cost.get()) + ahead;
            earliest.max(at).max(cell.hold_until.unwrap_or(from))
        })
    }

    /// Asks every cell's governor for `cells` at `decision` (an offset
    /// from the engine's base), all or nothing: on a refusal the cells that
    /// granted are rolled back and the earliest instant the refusing cell
    /// names is returned. A learning cell checks at most its burst; the
    /// rest of its cost is charged. `Ok(true)` when a cell learns (and must
    /// hear of the grant).
    fn check_now(
        &self,
        all: &mut Cells,
        cells: &[Draw],
        decision: Duration,
    ) -> Result<bool, Instant> {
        let mut trial = Trial::new(decision);
        for Draw { key, cost, .. } in cells {
            if let Err(until) = trial.check(&all[key], *cost, self.limits.safety_margin) {
                trial.roll_back(cells.iter().map(|d| &all[&d.key]));
                return Err(self.base + until);
            }
        }
        Ok(trial.granted(all, cells))
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
        // Kept by a head too: a refund wakes it before its timer.
        if !waiter.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            waiter.waker = Some(waker.clone());
        }
        let is_head = waiter
            .cells
            .iter()
            .all(|Draw { key, .. }| cells[key].queue.front() == Some(&id));
        if !is_head {
            return Ok(Attempt::Queued);
        }
        for _ in 0..MAX_ROUNDS {
            // Held cells refuse until the hold passes.
            let hold = waiter
                .cells
                .iter()
                .filter_map(|Draw { key, .. }| cells[key].hold_until)
                .max()
                .filter(|&h| h > now);
            if let Some(until) = hold {
                waiter.due = Some(until);
                return self.wait_or_fail(&mut guard, id, until, now);
            }
            if let Some(shared) = &self.shared {
                if breaker.is_closed(now) {
                    let ask = waiter
                        .cells
                        .iter()
                        .map(|Draw { key, cost, .. }| {
                            let cell = &cells[key];
                            SharedCell {
                                name: self.cell_name(key),
                                interval: cell.params.interval,
                                burst: cell.params.burst.get(),
                                cost: cost.get(),
                            }
                        })
                        .collect();
                    self.asked.fetch_add(1, Ordering::Relaxed);
                    return Ok(Attempt::Ask(ask));
                }
                if shared.options.on_failure != OnStoreFailure::FailClosed {
                    self.decided_locally.fetch_add(1, Ordering::Relaxed);
                    self.decided_locally_metric.increment(1);
                }
                match shared.options.on_failure {
                    OnStoreFailure::LocalShare(_) => {}
                    OnStoreFailure::FailOpen => {
                        return Ok(Attempt::Granted(self.grant_waiter(&mut guard, id, now)));
                    }
                    OnStoreFailure::FailClosed => {
                        let retry_at = breaker.retry_at(now);
                        self.route_metrics(waiter.route)
                            .store_unavailable
                            .increment(1);
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
            let decided = self.check_now(cells, &waiter.cells, self.offset(decision));
            let Err(until) = decided.map(|_| ()) else {
                return Ok(Attempt::Granted(
                    self.grant_waiter(&mut guard, id, decision),
                ));
            };
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
                if guard.breaker.answered() {
                    tracing::info!("rate limit: shared store answers again; deciding there");
                }
                match decision {
                    SharedDecision::Granted => {
                        Ok(Attempt::Granted(self.grant_waiter(&mut guard, id, now)))
                    }
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
                let (failures, backoff) = guard.breaker.failed(now, options);
                tracing::warn!(
                    %error,
                    failures,
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
    pub(super) fn cell_name(&self, key: &CellKey) -> String {
        let quota = &self.limits.quotas[key.quota].name;
        match &key.key {
            Some(k) => format!("{quota}\u{1f}{k}"),
            None => quota.clone(),
        }
    }

    pub(super) fn wait_or_fail(
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
            self.route_metrics(waiter.route).max_wait.increment(1);
            tracing::debug!(%route, wait = ?(until - now), ?max_wait, "rate limit: failing fast");
            state.remove(id);
            return Err(WaitTimeout::new(route, until, max_wait).into());
        }
        tracing::trace!(route = %self.route(waiter.route).name, wait = ?(until - now), "rate limit: waiting");
        Ok(Attempt::WaitUntil(until))
    }

    /// Grants waiter `id` as of `decision`, counting it.
    fn grant_waiter(&self, state: &mut State, id: u64, decision: Instant) -> Draws {
        if let Some(w) = state.waiters.get(&id) {
            let m = self.route_metrics(w.route);
            m.grants.increment(1);
            m.wait
                .record(decision.saturating_duration_since(w.since).as_secs_f64());
        }
        state.grant(id, decision)
    }

    /// Removes a waiter that gave up (its future was dropped): it consumed nothing.
    pub(crate) fn cancel(&self, id: u64) {
        self.lock().remove(id);
    }
}
