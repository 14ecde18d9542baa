use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::error::InvalidConfig;
use crate::kind::JobKind;
use crate::service::Concurrency;
use crate::state::{KindState, Options, Shared};

/// Default of [`ConcurrencyLayerBuilder::max_conflict_wait`]: 10 minutes.
pub const DEFAULT_MAX_CONFLICT_WAIT: Duration = Duration::from_secs(600);
/// Default of [`ConcurrencyLayerBuilder::poll_interval`]: 5 seconds.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Caps the jobs running on the server per [`JobKind`]; see the
/// [crate docs](crate) for an example.
///
/// # Clone
///
/// Clones of the layer, every service it makes, and its [`JobsHandle`]s
/// share the same slots.
#[derive(Clone)]
pub struct ConcurrencyLayer {
    shared: Arc<Shared>,
}

impl ConcurrencyLayer {
    /// A builder: add [`JobKind`]s, set options, [`build`](ConcurrencyLayerBuilder::build).
    pub fn builder() -> ConcurrencyLayerBuilder {
        ConcurrencyLayerBuilder {
            kinds: Vec::new(),
            options: Options {
                reconcile_on_start: false,
                max_conflict_wait: DEFAULT_MAX_CONFLICT_WAIT,
                poll_interval: DEFAULT_POLL_INTERVAL,
                orphan_timeout: None,
            },
        }
    }

    /// A handle on the slots: which jobs hold them, free one by hand.
    pub fn handle(&self) -> JobsHandle {
        JobsHandle {
            shared: self.shared.clone(),
        }
    }
}

impl fmt::Debug for ConcurrencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcurrencyLayer")
            .field(
                "kinds",
                &self
                    .shared
                    .kinds
                    .iter()
                    .map(|k| &k.spec.kind)
                    .collect::<Vec<_>>(),
            )
            .field("options", &self.shared.options)
            .finish()
    }
}

impl<S> Layer<S> for ConcurrencyLayer {
    type Service = Concurrency<S>;

    fn layer(&self, inner: S) -> Concurrency<S> {
        Concurrency::from_shared(inner, self.shared.clone())
    }
}

/// Builds a [`ConcurrencyLayer`].
#[derive(Debug, Clone)]
pub struct ConcurrencyLayerBuilder {
    kinds: Vec<JobKind>,
    options: Options,
}

impl ConcurrencyLayerBuilder {
    /// Caps one more kind of job (each kind has its own slots).
    pub fn kind(mut self, kind: JobKind) -> Self {
        self.kinds.push(kind);
        self
    }

    /// Before the first create of a kind, list the server's jobs (its
    /// [list route](JobKind::list_route)) and count the non-terminal ones
    /// (started by another process, or before a restart). Default `false`;
    /// a create answered with the server's conflict status reconciles anyway.
    pub fn reconcile_on_start(mut self, yes: bool) -> Self {
        self.options.reconcile_on_start = yes;
        self
    }

    /// How long a create answered with the conflict status (409) keeps
    /// waiting and trying again before the 409 goes back to the caller.
    /// Default [`DEFAULT_MAX_CONFLICT_WAIT`]; zero returns the first 409.
    pub fn max_conflict_wait(mut self, wait: Duration) -> Self {
        self.options.max_conflict_wait = wait;
        self
    }

    /// After a 409, how often to list the server's jobs and try again when
    /// no slot frees sooner. Default [`DEFAULT_POLL_INTERVAL`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.options.poll_interval = interval;
        self
    }

    /// Frees the slot of a create future dropped before its response after
    /// `timeout` (default: kept until a reconcile); see
    /// [Cancellation](crate#cancellation).
    pub fn orphan_timeout(mut self, timeout: Duration) -> Self {
        self.options.orphan_timeout = Some(timeout);
        self
    }

    /// Checks the kinds and builds the layer.
    pub fn build(self) -> Result<ConcurrencyLayer, InvalidConfig> {
        if self.kinds.is_empty() {
            return Err(InvalidConfig::new("no job kind configured"));
        }
        if self.options.poll_interval.is_zero() {
            return Err(InvalidConfig::new("poll interval must be above zero"));
        }
        let mut kinds = Vec::with_capacity(self.kinds.len());
        for (i, kind) in self.kinds.iter().enumerate() {
            if self.kinds[..i].iter().any(|k| k.name == kind.name) {
                return Err(InvalidConfig::new(format!(
                    "job kind {:?} configured twice",
                    kind.name
                )));
            }
            if self.options.reconcile_on_start && kind.list.is_none() {
                return Err(InvalidConfig::new(format!(
                    "job kind {:?}: reconcile_on_start needs a list route",
                    kind.name
                )));
            }
            kinds.push(KindState::new(kind.compile()?));
        }
        Ok(ConcurrencyLayer {
            shared: Arc::new(Shared {
                kinds,
                options: self.options,
            }),
        })
    }
}

/// Sees and frees the slots of a [`ConcurrencyLayer`] (and its services).
#[derive(Clone)]
pub struct JobsHandle {
    shared: Arc<Shared>,
}

impl JobsHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
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
