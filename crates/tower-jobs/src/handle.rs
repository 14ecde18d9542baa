//! [`JobsHandle`]: what a layer's slots hold, from outside the stack.

use std::fmt;
use std::sync::Arc;

use crate::state::JobSlots;

/// Sees and frees the slots of a [`JobLimitLayer`](crate::JobLimitLayer) (and its services).
#[derive(Clone)]
pub struct JobsHandle {
    shared: Arc<JobSlots>,
}

impl JobsHandle {
    pub(crate) fn new(shared: Arc<JobSlots>) -> Self {
        JobsHandle { shared }
    }

    /// The jobs holding slots, as (kind, id), sorted by kind then id. Creates
    /// in flight (not yet answered) and orphaned slots are not listed.
    pub fn running(&self) -> Vec<(String, String)> {
        self.shared
            .kinds
            .iter()
            .flat_map(|k| {
                k.running()
                    .into_iter()
                    .map(move |id| (k.spec.kind.name.clone(), id))
            })
            .collect()
    }

    /// Frees the slot of job `id` of `kind`; `false` if it held none.
    pub fn release(&self, kind: &str, id: &str) -> bool {
        self.shared
            .kind_index(kind)
            .is_some_and(|i| self.shared.kinds[i].release(id, "released by hand"))
    }

    /// Free slots of `kind` now; `None` for an unknown kind.
    pub fn available(&self, kind: &str) -> Option<usize> {
        self.shared
            .kind_index(kind)
            .map(|i| self.shared.kinds[i].sem.available_permits())
    }

    /// Slots of `kind` kept for creates dropped before their response;
    /// `None` for an unknown kind.
    pub fn orphaned(&self, kind: &str) -> Option<usize> {
        self.shared
            .kind_index(kind)
            .map(|i| self.shared.kinds[i].orphans())
    }
}

impl fmt::Debug for JobsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobsHandle")
            .field("running", &self.running())
            .finish()
    }
}
