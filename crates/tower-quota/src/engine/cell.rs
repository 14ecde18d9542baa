//! One limiter cell: a governor limiter over state this module owns, its queue, hold and learned pace.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::RateLimiter;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{NotKeyed, StateStore};
use tokio::time::Instant;

use crate::adaptive::LearnParams;
use crate::config::CellParams;
use crate::learn::Learner;
use crate::metrics::CellMetrics;

use super::window::Window;

/// The identity of one limiter cell: a quota and, for keyed quotas, a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CellKey {
    pub(crate) quota: usize,
    pub(crate) key: Option<Arc<str>>,
}

/// A fast hasher for a keyed quota's cells (the Fx hash: a rotate, a xor
/// and a multiply per word). Its keys are model names (or hashed header
/// values) from the caller's own requests, not an attacker's, so a
/// DoS-resistant hash buys nothing here and costs a third of an
/// uncontended request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let (words, tail) = bytes.as_chunks::<8>();
        for word in words {
            self.add(u64::from_le_bytes(*word));
        }
        // The tail and its length in one word, not a multiply a byte.
        if !tail.is_empty() {
            let packed = match bytes.last_chunk::<8>() {
                // The tail is the high end of the last 8 bytes.
                Some(last) => u64::from_le_bytes(*last) >> (8 * (8 - tail.len())),
                None => tail
                    .iter()
                    .rev()
                    .fold(0, |word, &byte| word << 8 | u64::from(byte)),
            };
            self.add(packed | (tail.len() as u64) << 56);
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The cell map's hasher.
pub(crate) type CellHash = std::hash::BuildHasherDefault<FxHasher>;

/// A governor clock that reads the decision time this module sets before each check.
#[derive(Debug, Clone)]
pub(super) struct DecisionClock(Arc<AtomicU64>);

impl Clock for DecisionClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }
}

const NO_STATE: u64 = u64::MAX;

/// A governor state store whose theoretical arrival time (TAT) this module can read and restore.
#[derive(Debug)]
pub(super) struct TatStore(Arc<AtomicU64>);

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

pub(super) type Governor = RateLimiter<NotKeyed, TatStore, DecisionClock, NoOpMiddleware<Duration>>;

pub(super) struct Cell {
    /// The key it was made for (set by [`Cells::insert`](super::cells::Cells::insert)):
    /// draws on the cell share it instead of making their own.
    pub(super) key: Option<Arc<str>>,
    pub(super) governor: Governor,
    pub(super) tat: Arc<AtomicU64>,
    pub(super) clock: Arc<AtomicU64>,
    pub(super) params: CellParams,
    /// The share of the quota this cell enforces (below 1 only as a shared store's fallback).
    pub(super) share: f64,
    pub(super) queue: VecDeque<u64>,
    pub(super) queued_cost: u64,
    pub(super) hold_until: Option<Instant>,
    /// The learned pace of an adaptive quota's cell.
    pub(super) learner: Option<Box<Learner>>,
    pub(super) last_used: Instant,
    /// A learned token cell's grants over the server's last period.
    pub(super) window: Option<Box<Window>>,
    pub(super) metrics: CellMetrics,
    /// Bumped each time a server's count replaces the cell's state: a
    /// grant made before it is in that count, and settles nothing after.
    /// Compared for equality only, so it wraps (4 billion syncs within
    /// one request's flight would be needed to mistake one for another).
    pub(super) syncs: u32,
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
    pub(super) fn new(
        params: &CellParams,
        share: f64,
        learn: Option<&Arc<LearnParams>>,
        margin: f64,
        now: Instant,
        metrics: CellMetrics,
    ) -> Self {
        let tat = Arc::new(AtomicU64::new(NO_STATE));
        let clock = Arc::new(AtomicU64::new(0));
        let governor = limiter(params.interval.div_f64(share), params.burst, &tat, &clock);
        let mut cell = Cell {
            key: None,
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
            window: learn
                .filter(|l| l.weighted && l.headers.is_some())
                .map(|_| Box::default()),
            syncs: 0,
            metrics,
        };
        cell.repace(margin);
        cell.show_pace();
        cell
    }

    /// Sets the pace gauges: units per second after the margin and the
    /// share, and where the pace comes from.
    pub(super) fn show_pace(&self) {
        let interval = self.params.interval.div_f64(self.share).as_secs_f64();
        if interval > 0.0 {
            self.metrics.pace.set(1.0 / interval);
        }
        let source = self
            .learner
            .as_ref()
            .map_or(crate::PaceSource::Static, |l| l.source);
        self.metrics.show_source(source);
    }

    /// Paces a learning cell at its learner's pace, keeping its GCRA state:
    /// the next grant follows the new interval from where the schedule stands.
    pub(super) fn repace(&mut self, margin: f64) {
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
        self.show_pace();
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
    pub(super) fn fitting(&self, cost: NonZeroU32) -> NonZeroU32 {
        if self.learner.is_some() {
            cost.min(self.params.burst)
        } else {
            cost
        }
    }

    /// Charges `units` someone else spent: the schedule moves on as if this
    /// cell had granted them.
    pub(super) fn charge(&mut self, now_off: Duration, units: f64) {
        let tat = self.tat().unwrap_or(now_off).max(now_off);
        let later = tat + self.params.interval.mul_f64(units.max(0.0));
        self.tat.store(
            u64::try_from(later.as_nanos()).unwrap_or(u64::MAX - 1),
            Ordering::Relaxed,
        );
    }

    /// Gives back `units` granted earlier: the schedule moves back, never
    /// before now (a cell banks no more than its burst).
    pub(super) fn refund(&mut self, now_off: Duration, units: f64) {
        let Some(tat) = self.tat() else {
            return;
        };
        let back = self.params.interval.mul_f64(units.max(0.0));
        let earlier = tat.saturating_sub(back).max(now_off.min(tat));
        self.tat.store(
            u64::try_from(earlier.as_nanos()).unwrap_or(u64::MAX - 1),
            Ordering::Relaxed,
        );
    }

    /// Notes a grant of `units` in the window, at the decision the cell last made.
    pub(super) fn note_grant(&mut self, units: f64) {
        let Some(window) = &mut self.window else {
            return;
        };
        // Logged before the first count comes too: it counts them.
        if let Some(period) = self.learner.as_ref().and_then(|l| l.window_period()) {
            let at = Duration::from_nanos(self.clock.load(Ordering::Relaxed));
            window.granted(at, period, units);
        }
    }

    /// Whether the window refuses `units` at `now_off` (until when), for a
    /// margin of `margin` under the server's limit.
    pub(super) fn window_refuses(
        &self,
        now_off: Duration,
        units: f64,
        margin: f64,
    ) -> Option<Duration> {
        let window = self.window.as_ref()?;
        let (period, limit) = self.learner.as_ref()?.window_limit()?;
        // A grant leaves the server's window when the request that carried
        // it arrived there a period before, a little after it left here:
        // the window is kept a margin longer (at least 5 ms) for that.
        let slack = period.mul_f64(margin).max(Duration::from_millis(5));
        window.refuses(now_off, period + slack, limit * (1.0 - margin), units)
    }

    /// The server counts `remaining` units left now: the window follows.
    pub(super) fn window_counted(&mut self, now_off: Duration, remaining: f64) {
        let Some(window) = &mut self.window else {
            return;
        };
        if let Some((period, limit)) = self.learner.as_ref().and_then(|l| l.window_limit()) {
            window.counted(now_off, period, limit - remaining);
        }
    }

    /// `units` of an earlier grant given back: the window follows.
    pub(super) fn window_refunded(&mut self, units: f64) {
        if let Some(window) = &mut self.window {
            window.refunded(units);
        }
    }

    /// Makes `units` available now (at most the burst): the server's count
    /// of what is left. Returns whether that is more than the cell had.
    pub(super) fn set_available(&mut self, now_off: Duration, units: f64) -> bool {
        let burst = self.params.burst.get();
        let free = units.clamp(0.0, f64::from(burst));
        let tat = now_off + self.params.interval.mul_f64(f64::from(burst) - free);
        let before = self.tat().unwrap_or(now_off).max(now_off);
        self.tat.store(
            u64::try_from(tat.as_nanos()).unwrap_or(u64::MAX - 1),
            Ordering::Relaxed,
        );
        self.syncs = self.syncs.wrapping_add(1);
        tat < before
    }

    /// The TAT as an offset from the base, or `None` before the first grant.
    pub(super) fn tat(&self) -> Option<Duration> {
        let raw = self.tat.load(Ordering::Relaxed);
        (raw != NO_STATE).then(|| Duration::from_nanos(raw))
    }

    /// Tolerance: how far ahead of now the TAT may run (burst − 1 intervals).
    pub(super) fn tau(&self) -> Duration {
        self.params.interval * (self.params.burst.get() - 1)
    }

    /// When `cost` units could next be granted, ignoring the queue, as an offset from the base.
    pub(super) fn earliest(&self, now: Duration, cost: u32) -> Duration {
        let tat = self.tat().unwrap_or(now).max(now);
        (tat + self.params.interval * (cost - 1)).saturating_sub(self.tau())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn the_cell_hash_tells_short_and_long_keys_apart() {
        // Keys of every length to 24, differing in their last byte, in
        // trailing zero bytes or in length alone: no two hash alike.
        let mut keys: Vec<String> = Vec::new();
        for len in 0..=24 {
            let stem = "m".repeat(len);
            keys.extend([
                stem.clone(),
                format!("{stem}\0"),
                format!("{stem}\0\0"),
                format!("{stem}n"),
            ]);
        }
        keys.sort();
        keys.dedup();
        let hashes: HashSet<u64> = keys
            .iter()
            .map(|k| CellHash::default().hash_one(k.as_str()))
            .collect();
        assert_eq!(hashes.len(), keys.len());
        // The same text hashes alike, whichever string holds it.
        let model = "meta-llama/Llama-3.3-70B-Instruct-Turbo";
        assert_eq!(
            CellHash::default().hash_one(model),
            CellHash::default().hash_one(Arc::<str>::from(model).as_ref())
        );
    }
}
