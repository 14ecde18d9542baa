//! Settling a grant once its answer is known: the usage against the
//! estimate ([`Charging::Reconciled`](crate::Charging)).

use tokio::time::Instant;

use crate::learn::CellName;

use super::{Draw, Engine, wake};

impl Engine {
    /// Settles what `cells` were charged against the `used` tokens the
    /// answer reported: refunds an over-estimate (waking the queue's
    /// front, which may go sooner) and charges an under-estimate, at most
    /// one burst (a wrong figure stalls a cell for one burst at most).
    pub(crate) fn settle(&self, cells: &[Draw], used: u64) {
        if cells.is_empty() {
            return;
        }
        let now = Instant::now();
        let now_off = self.offset(now);
        let mut state = self.lock();
        let mut woken = Vec::new();
        for granted in cells {
            let Some(cell) = state.cells.get_mut(&granted.key) else {
                continue;
            };
            if cell.syncs != granted.syncs {
                // A server's count replaced the cell's state since the
                // grant: this request is in it (or in the next one).
                continue;
            }
            let charged = u64::from(granted.cost.get());
            let name = CellName {
                quota: &self.limits.quotas[granted.key.quota].name,
                key: granted.key.key.as_deref(),
            };
            if used < charged {
                let units = (charged - used) as f64;
                tracing::trace!(cell = %name, charged, used, "rate limit: refunding an over-estimate");
                cell.refund(now_off, units);
                cell.window_refunded(units);
                if let Some(learner) = cell.learner.as_mut() {
                    learner.settled(now, -units);
                }
                if let Some(&front) = cell.queue.front() {
                    woken.push(front);
                }
            } else if used > charged {
                let units = (used - charged).min(u64::from(cell.params.burst.get())) as f64;
                tracing::debug!(cell = %name, charged, used, "rate limit: the answer used more than estimated; charging the difference");
                cell.charge(now_off, units);
                cell.note_grant(units);
                if let Some(learner) = cell.learner.as_mut() {
                    learner.settled(now, units);
                }
            }
        }
        for id in woken {
            wake(&mut state.waiters, id);
        }
    }
}
