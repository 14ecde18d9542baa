//! One all-or-nothing decision over a request's cells, made a cell at a time.

use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::cell::Cell;
use super::{Cells, Draw};

/// How many cells' states a trial keeps without allocating.
const INLINE: usize = 4;

/// A cell's GCRA state and the decision time its clock read, before a check.
#[derive(Clone, Copy, Default)]
struct Saved {
    tat: u64,
    clock: u64,
}

/// A decision over a request's cells as of one instant, all or nothing.
/// Each cell is asked in turn ([`check`](Self::check)) as the caller finds
/// it, and a cell that grants gives its GCRA state and its clock's reading
/// to the trial first, so the cells that granted can be put back as they
/// were ([`roll_back`](Self::roll_back)) when a later one refuses, cannot
/// fit the cost, or the request must queue after all. Every step happens
/// under the engine's lock.
pub(super) struct Trial {
    /// The decision, as an offset from the engine's base.
    decision: Duration,
    /// The same in nanoseconds, for the cells' clocks.
    at: u64,
    /// The state of each cell that granted, in order, from before its check.
    saved: [Saved; INLINE],
    spill: Vec<Saved>,
    granted: usize,
    /// A learning cell checked less than the cost: the rest is charged
    /// once every cell has granted.
    charge: bool,
    /// A learning cell granted (and must hear of the grant).
    learns: bool,
}

impl Trial {
    /// A trial as of `decision` (an offset from the engine's base).
    #[inline]
    pub(super) fn new(decision: Duration) -> Self {
        Trial {
            decision,
            at: u64::try_from(decision.as_nanos()).unwrap_or(u64::MAX - 1),
            saved: [Saved::default(); INLINE],
            spill: Vec::new(),
            granted: 0,
            charge: false,
            learns: false,
        }
    }

    /// Asks `cell` for `cost` (a learning cell for at most its burst); on
    /// a refusal, the earliest offset the cell names, and only the cell's
    /// clock has moved (to this decision, as when a waiter's check is
    /// refused). Cells are asked in the order [`roll_back`](Self::roll_back)
    /// will be given them.
    pub(super) fn check(
        &mut self,
        cell: &Cell,
        cost: NonZeroU32,
        margin: f64,
    ) -> Result<(), Duration> {
        let clock = cell.clock.load(Ordering::Relaxed);
        cell.clock.store(self.at, Ordering::Relaxed);
        let tat = cell.tat.load(Ordering::Relaxed);
        if let Some(until) = cell.window_refuses(self.decision, f64::from(cost.get()), margin) {
            return Err(until);
        }
        let fitted = cell.fitting(cost);
        match cell.governor.check_n(fitted) {
            Ok(Ok(())) => {}
            Ok(Err(not_until)) => return Err(not_until.earliest_possible()),
            Err(_) => unreachable!(
                "costs above a static burst are refused at admission; learned ones fit"
            ),
        }
        let saved = Saved { tat, clock };
        match self.saved.get_mut(self.granted) {
            Some(slot) => *slot = saved,
            None => self.spill.push(saved),
        }
        self.granted += 1;
        self.charge |= fitted < cost;
        self.learns |= cell.learner.is_some();
        Ok(())
    }

    /// Puts back the state and the clock of the cells that granted:
    /// `cells` are the request's cells in the order they were asked (those
    /// past the ones that granted are not read).
    pub(super) fn roll_back<'c>(&self, cells: impl Iterator<Item = &'c Cell>) {
        let saved = self.saved.iter().chain(&self.spill);
        for (cell, saved) in cells.zip(saved).take(self.granted) {
            cell.tat.store(saved.tat, Ordering::Relaxed);
            cell.clock.store(saved.clock, Ordering::Relaxed);
        }
    }

    /// Every cell of `cells` granted: a learning cell is charged the part
    /// of its cost its check left out. Whether a cell learns.
    #[inline]
    pub(super) fn granted(&self, all: &mut Cells, cells: &[Draw]) -> bool {
        if self.charge {
            for Draw { key, cost, .. } in cells {
                let cell = all.get_mut(key).expect("cell of the request");
                let fitted = cell.fitting(*cost);
                if fitted < *cost {
                    cell.charge(self.decision, f64::from(cost.get() - fitted.get()));
                }
            }
        }
        self.learns
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::Rate;
    use crate::config::CellParams;
    use crate::metrics::CellMetrics;

    /// A cell of one unit per second, burst 1.
    fn cell() -> Cell {
        let params = CellParams {
            rate: Rate::per_second(NonZeroU32::MIN),
            burst: NonZeroU32::MIN,
            interval: Duration::from_secs(1),
        };
        let metrics = CellMetrics::new("q", None, false);
        Cell::new(&params, 1.0, None, 0.0, Instant::now(), metrics)
    }

    fn state(cell: &Cell) -> (u64, u64) {
        (
            cell.tat.load(Ordering::Relaxed),
            cell.clock.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn cells_that_granted_are_put_back_as_they_were_however_many() {
        let one = NonZeroU32::MIN;
        for n in [1, INLINE, INLINE + 3] {
            let cells: Vec<Cell> = (0..n).map(|_| cell()).collect();
            // Each cell has granted once before, at a different instant.
            for (i, c) in cells.iter().enumerate() {
                let mut before = Trial::new(Duration::from_secs(10 + i as u64));
                before.check(c, one, 0.0).unwrap();
            }
            let was: Vec<_> = cells.iter().map(state).collect();
            let mut trial = Trial::new(Duration::from_secs(100));
            for c in &cells {
                trial.check(c, one, 0.0).unwrap();
            }
            assert!(cells.iter().zip(&was).all(|(c, w)| state(c) != *w), "{n}");
            trial.roll_back(cells.iter());
            let now: Vec<_> = cells.iter().map(state).collect();
            assert_eq!(now, was, "{n} cells");
        }
    }

    #[test]
    fn a_refusal_takes_nothing_and_only_the_granted_go_back() {
        let one = NonZeroU32::MIN;
        let (first, second) = (cell(), cell());
        Trial::new(Duration::from_secs(5))
            .check(&second, one, 0.0)
            .unwrap();
        let (first_was, second_tat) = (state(&first), state(&second).0);
        let mut trial = Trial::new(Duration::from_secs(5));
        trial.check(&first, one, 0.0).unwrap();
        // Burst 1, granted at 5 s: the next unit at 6 s.
        let until = trial.check(&second, one, 0.0).unwrap_err();
        assert_eq!(until, Duration::from_secs(6));
        assert_eq!(state(&second).0, second_tat, "a refusal takes nothing");
        trial.roll_back([&first, &second].into_iter());
        assert_eq!(state(&first), first_was);
        assert_eq!(state(&second).0, second_tat);
        assert!(!trial.learns);
    }
}
