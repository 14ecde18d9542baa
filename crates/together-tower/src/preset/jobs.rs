//! Server-side job kinds: routes, status names, caps.

use std::num::NonZeroU32;

use http::{Method, StatusCode};
use tower_jobs::JobKind;

/// One kind of server-side job: its routes, status names and cap.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPreset {
    pub(super) cap: NonZeroU32,
    pub(super) create: String,
    pub(super) get: String,
    pub(super) list: String,
    pub(super) list_array: String,
    pub(super) cancel: String,
    pub(super) create_job_pointer: String,
    pub(super) terminal: Vec<String>,
    pub(super) conflict_status: StatusCode,
}

impl JobPreset {
    /// A job kind created by `POST {path}`, read at `GET {path}/{id}`,
    /// listed at `GET {path}` (the jobs at JSON pointer `list_array`, `""`
    /// for a bare array), cancelled by `POST {path}/{id}/cancel`.
    pub fn new<I, S>(cap: NonZeroU32, path: &str, list_array: &str, terminal: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        JobPreset {
            cap,
            create: path.to_owned(),
            get: format!("{path}/{{id}}"),
            list: path.to_owned(),
            list_array: list_array.to_owned(),
            cancel: format!("{path}/{{id}}/cancel"),
            create_job_pointer: String::new(),
            terminal: terminal
                .into_iter()
                .map(|s| s.as_ref().to_owned())
                .collect(),
            conflict_status: StatusCode::CONFLICT,
        }
    }

    /// The cap on jobs running at once.
    pub fn cap(&self) -> NonZeroU32 {
        self.cap
    }

    /// Sets the cap.
    pub fn with_cap(mut self, cap: NonZeroU32) -> Self {
        self.cap = cap;
        self
    }

    /// The JSON pointer to the job in the create response (`/job` for Together's batches).
    pub fn create_job_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.create_job_pointer = pointer.into();
        self
    }

    /// The status the server answers a create with at its cap (default 409).
    pub fn conflict_status(mut self, status: StatusCode) -> Self {
        self.conflict_status = status;
        self
    }

    /// The terminal status names.
    pub fn terminal(&self) -> &[String] {
        &self.terminal
    }

    /// Whether `status` is terminal.
    pub fn is_terminal(&self, status: &str) -> bool {
        self.terminal.iter().any(|t| t == status)
    }

    /// The create (and list) path.
    pub fn path(&self) -> &str {
        &self.create
    }

    /// The JSON pointer to the job in a create response (`""`: the whole body).
    pub fn job_pointer(&self) -> &str {
        &self.create_job_pointer
    }

    /// The JSON pointer to the jobs in a list response.
    pub fn list_array(&self) -> &str {
        &self.list_array
    }

    pub(super) fn job_kind(&self, name: &str) -> JobKind {
        JobKind::new(name, self.cap, Method::POST, self.create.clone())
            .get_route(self.get.clone())
            .list_route(self.list.clone(), self.list_array.clone())
            .cancel_route(Method::POST, self.cancel.clone())
            .terminal(self.terminal.clone())
            .create_job_pointer(self.create_job_pointer.clone())
            .conflict_status(self.conflict_status)
    }
}

/// Together's fine-tune statuses that are terminal.
pub const FINE_TUNE_TERMINAL: &[&str] = &["completed", "cancelled", "error", "user_error"];
/// Together's fine-tune statuses: pending, queued, running, compressing,
/// uploading, cancel_requested, then one of [`FINE_TUNE_TERMINAL`].
pub const FINE_TUNE_STATUSES: &[&str] = &[
    "pending",
    "queued",
    "running",
    "compressing",
    "uploading",
    "cancel_requested",
    "cancelled",
    "error",
    "user_error",
    "completed",
];
/// Together's batch statuses that are terminal.
pub const BATCH_TERMINAL: &[&str] = &["COMPLETED", "FAILED", "EXPIRED", "CANCELLED"];
/// Together's batch statuses: VALIDATING, IN_PROGRESS, CANCELING, then one of [`BATCH_TERMINAL`].
pub const BATCH_STATUSES: &[&str] = &[
    "VALIDATING",
    "IN_PROGRESS",
    "COMPLETED",
    "FAILED",
    "EXPIRED",
    "CANCELLED",
    "CANCELING",
];
