//! What answers tell the cells: holds, learned paces, news for a shared store.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use limit_text::hint::{HintSource, X_RATELIMIT_REMAINING, has_wait_hint, parse_wait_hint};
use tokio::time::Instant;

use crate::learn::{Answered, CellName, Move};
use crate::shared::{PaceNews, SharedNews};

use super::cell::CellKey;
use super::{Draw, Engine};

impl Engine {
    /// What a response asks of every cell it drew on: a hold and why.
    pub(super) fn hold_for(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<(Duration, &'static str)> {
        if !self.limits.feedback {
            return None;
        }
        // Most answers carry nothing to hold on: no clock, no parsing.
        let remaining = headers.get(X_RATELIMIT_REMAINING);
        if status != StatusCode::TOO_MANY_REQUESTS && remaining.is_none() && !has_wait_hint(headers)
        {
            return None;
        }
        let hint = parse_wait_hint(headers, SystemTime::now());
        let remaining_zero = remaining
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
        let max = self.limits.max_hold;
        if delay > max {
            tracing::warn!(
                ?delay,
                ?max,
                reason,
                "rate limit: the server asked for a longer hold than the cap; holding for the cap"
            );
        }
        let delay = delay.min(max);
        (!delay.is_zero()).then_some((delay, reason))
    }

    /// Reads a response to a request granted on `cells`: holds them if the
    /// server asks for a pause, and lets learning cells learn from it.
    /// Returns the cells whose charge the answer's usage settles: those of
    /// reconciled quotas whose count the answer did not report.
    pub(crate) fn feedback(
        self: &Arc<Self>,
        cells: &[Draw],
        status: StatusCode,
        headers: &HeaderMap,
        streaming: bool,
    ) -> Vec<Draw> {
        let hold = self.hold_for(status, headers);
        let quota = |g: &Draw| &self.limits.quotas[g.key.quota];
        let learns = cells.iter().any(|g| quota(g).learn.is_some());
        let settles = status.is_success()
            && self.shared.is_none()
            && cells.iter().any(|g| quota(g).reconciles);
        // Most answers: nothing to hold, learn or settle.
        if hold.is_none() && !learns && !settles {
            return Vec::new();
        }
        self.feedback_cells(cells, status, headers, streaming, hold, learns)
    }

    /// [`feedback`](Self::feedback) when the answer holds, teaches or
    /// settles a cell (apart, so the common answer does not pay this
    /// function's frame).
    #[inline(never)]
    fn feedback_cells(
        self: &Arc<Self>,
        cells: &[Draw],
        status: StatusCode,
        headers: &HeaderMap,
        streaming: bool,
        hold: Option<(Duration, &'static str)>,
        learns: bool,
    ) -> Vec<Draw> {
        let mut settle: Vec<Draw> = Vec::new();
        if status.is_success() && self.shared.is_none() {
            for granted in cells {
                if self.limits.quotas[granted.key.quota].reconciles {
                    settle.push(granted.clone());
                }
            }
        }
        if hold.is_none() && !learns {
            return settle;
        }
        let now = Instant::now();
        let now_off = self.offset(now);
        let margin = self.limits.safety_margin;
        let mut news = Vec::new();
        let mut woken = Vec::new();
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
                let cost = f64::from(granted.cost.get());
                let quota = &self.limits.quotas[granted.key.quota];
                // A complete answer (not a stream's head: the server counts
                // a stream when it ends) that reports the remaining count
                // settles a reconciled cell: the count is the truth, this
                // request in it, however the server charged it.
                let follows = quota.reconciles && !streaming && self.shared.is_none();
                let request = Answered {
                    cost,
                    epoch: granted.epoch,
                    follows,
                };
                let learned = learner.answered(now, status, headers, request, &name);
                // The source can change with too small a move to re-pace.
                cell.metrics.show_source(learner.source);
                if learned.repace {
                    cell.repace(margin);
                    let to = cell.params.interval;
                    pace_news = learned.moved.map(|moved| match moved {
                        Move::Header => PaceNews::Set(to),
                        Move::Cut => PaceNews::Slower(to),
                        Move::Grow => PaceNews::Faster { from: before, to },
                    });
                }
                if let Some(remaining) = learned.remaining.filter(|_| follows) {
                    settle.retain(|g| g.key != granted.key);
                    cell.window_counted(now_off, remaining);
                    if cell.set_available(now_off, remaining)
                        && let Some(&front) = cell.queue.front()
                    {
                        woken.push(front);
                    }
                }
                if learned.charge > 0.0 {
                    tracing::debug!(cell = %name, units = learned.charge, "rate limit: the server counts more spent than this cell did; charging the difference");
                    cell.charge(now_off, learned.charge);
                }
                if let Some(delay) = learned.hold.map(|d| d.min(self.limits.max_hold))
                    && hold.is_none_or(|(until, ..)| until < now + delay)
                {
                    hold = Some((now + delay, delay, "remaining: 0"));
                }
            }
            if let Some((until, delay, reason)) = hold
                && cell.hold_until.is_none_or(|h| h < until)
            {
                cell.hold_until = Some(until);
                cell.metrics.holds.record(delay.as_secs_f64());
                macro_rules! holding {
                    ($level:expr) => {
                        tracing::event!(
                            $level,
                            quota = name.quota,
                            key = name.key,
                            ?delay,
                            reason,
                            "rate limit: holding"
                        )
                    };
                }
                if status.is_success() {
                    // A spent limit on a success is pacing at the limit, not an incident.
                    holding!(tracing::Level::TRACE);
                } else {
                    holding!(tracing::Level::INFO);
                }
            }
            if self.shared.is_some() && (pace_news.is_some() || hold.is_some()) {
                let mut n = SharedNews::new(self.cell_name(&granted.key));
                n.pace = pace_news;
                n.hold = hold.map(|(_, delay, _)| delay);
                news.push((granted.key.clone(), n));
            }
        }
        for id in woken {
            super::wake(&mut state.waiters, id);
        }
        drop(state);
        for (key, n) in news {
            self.share(key, n);
        }
        settle
    }

    /// Shares `news` of cell `key` through the store, then follows the
    /// shared pace it answers. Failures only cost the sharing: the breaker
    /// is for decisions.
    pub(super) fn share(self: &Arc<Self>, key: CellKey, news: SharedNews) {
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
    pub(super) fn adopt(&self, key: &CellKey, interval: Duration) {
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
        let (_, learn) = q.params_for(key);
        if learn.is_none() || key.is_some() != q.key.is_some() {
            return false;
        }
        let now = Instant::now();
        let margin = self.limits.safety_margin;
        let mut state = self.lock();
        let cell = match state.cells.find_mut(index, key) {
            Some(cell) => cell,
            None => {
                let cell = self.new_cell(index, key, now);
                state.cells.insert(index, key.map(Arc::from), cell)
            }
        };
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
}
