//! Slots shared by a layer, its services and its handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::kind::{Compiled, Role, Seen};
use crate::metrics::KindMetrics;

/// Options of a layer.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) reconcile_on_start: bool,
    pub(crate) max_conflict_wait: Duration,
    pub(crate) poll_interval: Duration,
    pub(crate) orphan_timeout: Option<Duration>,
}

#[derive(Debug)]
pub(crate) struct JobSlots {
    pub(crate) kinds: Vec<KindState>,
    pub(crate) options: Options,
}

#[derive(Debug)]
pub(crate) struct KindState {
    pub(crate) spec: Compiled,
    pub(crate) sem: Arc<Semaphore>,
    slots: Mutex<Slots>,
    /// Woken on every release.
    pub(crate) released: Notify,
    /// Held while the first reconcile runs; `true` once it succeeded.
    pub(crate) started: tokio::sync::Mutex<bool>,
    pub(crate) metrics: KindMetrics,
}

#[derive(Debug, Default)]
struct Slots {
    /// Jobs holding a slot, by id. `None`: a job counted by reconciling when
    /// no slot was free; it takes the next slot released.
    jobs: HashMap<String, Option<OwnedSemaphorePermit>>,
    /// Slots of create futures dropped before their response, by number.
    orphans: HashMap<u64, Orphan>,
    next_orphan: u64,
}

#[derive(Debug)]
struct Orphan {
    sent: Instant,
    permit: OwnedSemaphorePermit,
}

impl JobSlots {
    pub(crate) fn route(&self, method: &http::Method, path: &str) -> Option<(usize, Role)> {
        self.kinds
            .iter()
            .enumerate()
            .find_map(|(i, k)| k.spec.role(method, path).map(|r| (i, r)))
    }

    pub(crate) fn kind_index(&self, name: &str) -> Option<usize> {
        self.kinds.iter().position(|k| k.spec.kind.name == name)
    }
}

impl KindState {
    pub(crate) fn new(spec: Compiled) -> Self {
        let cap = spec.kind.cap.get() as usize;
        KindState {
            metrics: KindMetrics::new(&spec.kind.name),
            spec,
            sem: Arc::new(Semaphore::new(cap)),
            slots: Mutex::new(Slots::default()),
            released: Notify::new(),
            started: tokio::sync::Mutex::new(false),
        }
    }

    /// A slot was freed (or taken): wakes waiters, shows how many are in use.
    pub(crate) fn freed(&self) {
        self.released.notify_waiters();
        self.show_in_use();
    }

    /// Sets the slots-in-use gauge.
    pub(crate) fn show_in_use(&self) {
        let cap = self.spec.kind.cap.get() as usize;
        self.metrics
            .in_use(cap.saturating_sub(self.sem.available_permits()));
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn name(&self) -> &str {
        &self.spec.kind.name
    }

    /// Binds a slot to the job a create answered.
    pub(crate) fn bind(&self, id: String, permit: OwnedSemaphorePermit) {
        let mut slots = self.slots();
        match slots.jobs.get_mut(&id) {
            // Already counted by a reconcile that saw it first.
            Some(Some(_)) => {
                drop(slots);
                drop(permit);
                tracing::debug!(kind = self.name(), job = %id, "job already counted: slot released");
                self.freed();
            }
            Some(held @ None) => {
                tracing::debug!(kind = self.name(), job = %id, "job slot bound");
                *held = Some(permit);
            }
            None => {
                tracing::debug!(kind = self.name(), job = %id, "job slot bound");
                slots.jobs.insert(id, Some(permit));
            }
        }
    }

    /// Frees the slot of `id`; `false` if it held none.
    pub(crate) fn release(&self, id: &str, why: &'static str) -> bool {
        let mut slots = self.slots();
        let Some(permit) = slots.jobs.remove(id) else {
            return false;
        };
        if let Some(permit) = permit {
            // A job counted over the cap takes the slot over.
            if let Some(held) = slots.jobs.values_mut().find(|p| p.is_none()) {
                *held = Some(permit);
            } else {
                drop(permit);
            }
        }
        drop(slots);
        tracing::debug!(kind = self.name(), job = %id, reason = why, "job slot released");
        self.freed();
        true
    }

    /// Releases every job of `seen` in a terminal status.
    pub(crate) fn observe(&self, seen: &[Seen]) {
        for s in seen {
            if s.status
                .as_deref()
                .is_some_and(|st| self.spec.is_terminal(st))
            {
                self.release(&s.id, "terminal status");
            }
        }
    }

    /// A full list of the server's jobs, asked for at `sent`: terminal ones
    /// are released, unknown non-terminal ones counted, orphans older than
    /// the list dropped (their jobs, if any, are in it).
    pub(crate) fn reconcile(&self, seen: &[Seen], sent: Instant) {
        self.observe(seen);
        let mut slots = self.slots();
        // Orphans sent before the list: their jobs, if any, are in it, and
        // their slots go to the jobs found first.
        let old: Vec<u64> = slots
            .orphans
            .iter()
            .filter(|(_, o)| o.sent < sent)
            .map(|(&n, _)| n)
            .collect();
        let mut freed: Vec<OwnedSemaphorePermit> = old
            .iter()
            .filter_map(|n| slots.orphans.remove(n))
            .map(|o| o.permit)
            .collect();
        let orphans_dropped = freed.len();
        let mut adopted = 0usize;
        for s in seen {
            let terminal = s
                .status
                .as_deref()
                .is_some_and(|st| self.spec.is_terminal(st));
            if !terminal && !slots.jobs.contains_key(&s.id) {
                let permit = freed
                    .pop()
                    .or_else(|| self.sem.clone().try_acquire_owned().ok());
                tracing::debug!(kind = self.name(), job = %s.id, over_cap = permit.is_none(), "job counted by reconcile");
                slots.jobs.insert(s.id.clone(), permit);
                adopted += 1;
            }
        }
        // Jobs counted over the cap take the rest.
        for held in slots.jobs.values_mut().filter(|p| p.is_none()) {
            match freed.pop() {
                Some(p) => *held = Some(p),
                None => break,
            }
        }
        drop(slots);
        tracing::debug!(
            kind = self.name(),
            adopted,
            orphans_dropped,
            "jobs reconciled"
        );
        if !freed.is_empty() {
            drop(freed);
            self.freed();
        }
    }

    /// Keeps the slot of a create dropped in flight; returns its number.
    pub(crate) fn orphan(&self, permit: OwnedSemaphorePermit, sent: Instant) -> u64 {
        let mut slots = self.slots();
        let n = slots.next_orphan;
        slots.next_orphan += 1;
        slots.orphans.insert(n, Orphan { sent, permit });
        tracing::debug!(kind = self.name(), "create dropped in flight: slot kept");
        n
    }

    pub(crate) fn drop_orphan(&self, n: u64) {
        if self.slots().orphans.remove(&n).is_some() {
            tracing::debug!(kind = self.name(), "orphaned slot timed out: released");
            self.freed();
        }
    }

    pub(crate) fn running(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.slots().jobs.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub(crate) fn orphans(&self) -> usize {
        self.slots().orphans.len()
    }
}
