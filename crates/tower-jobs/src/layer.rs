use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use crate::error::InvalidConfig;
use crate::handle::JobsHandle;
use crate::kind::JobKind;
use crate::service::JobLimit;
use crate::state::{JobSlots, KindState, Options};

/// Default of [`JobLimitBuilder::max_conflict_wait`]: 10 minutes.
pub const DEFAULT_MAX_CONFLICT_WAIT: Duration = Duration::from_secs(600);
/// Default of [`JobLimitBuilder::poll_interval`]: 5 seconds.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Caps the jobs running on the server per [`JobKind`]; see the
/// [crate docs](crate) for an example.
///
/// # Clone
///
/// Clones of the layer, every service it makes, and its [`JobsHandle`]s
/// share the same slots.
#[derive(Clone)]
pub struct JobLimitLayer {
    shared: Arc<JobSlots>,
}

impl JobLimitLayer {
    /// A builder: add [`JobKind`]s, set options, [`build`](JobLimitBuilder::build).
    pub fn builder() -> JobLimitBuilder {
        JobLimitBuilder {
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
        JobsHandle::new(self.shared.clone())
    }
}

impl fmt::Debug for JobLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobLimitLayer")
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

impl<S> Layer<S> for JobLimitLayer {
    type Service = JobLimit<S>;

    fn layer(&self, inner: S) -> JobLimit<S> {
        JobLimit::from_shared(inner, self.shared.clone())
    }
}

/// Builds a [`JobLimitLayer`].
#[derive(Debug, Clone)]
pub struct JobLimitBuilder {
    kinds: Vec<JobKind>,
    options: Options,
}

impl JobLimitBuilder {
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
    pub fn build(self) -> Result<JobLimitLayer, InvalidConfig> {
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
        Ok(JobLimitLayer {
            shared: Arc::new(JobSlots {
                kinds,
                options: self.options,
            }),
        })
    }
}
