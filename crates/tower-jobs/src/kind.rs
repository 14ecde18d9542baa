//! What a job kind looks like on the wire: its routes and JSON shapes.

use std::num::NonZeroU32;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::error::InvalidConfig;
use path_pattern::PathPattern;

/// The statuses terminal by default: `completed`, `cancelled`, `failed`,
/// `error`, `user_error`, `expired`.
pub const DEFAULT_TERMINAL: &[&str] = &[
    "completed",
    "cancelled",
    "failed",
    "error",
    "user_error",
    "expired",
];

/// One kind of server-side job (a fine-tune, a batch...) and its cap.
///
/// A kind says which route creates a job, where the job id and status sit
/// in the JSON of responses, which statuses are terminal, which routes report
/// status (one job, or a list) and which cancel one. Patterns use `{id}` for
/// the job id segment (`/v1/jobs/{id}/cancel`). Nothing here is specific to
/// one API; see the [crate docs](crate) for an example.
///
/// The configuration is checked by
/// [`JobLimitBuilder::build`](crate::JobLimitBuilder::build).
#[derive(Debug, Clone)]
pub struct JobKind {
    pub(crate) name: String,
    pub(crate) cap: NonZeroU32,
    pub(crate) create: (Method, String),
    pub(crate) get: Option<String>,
    pub(crate) list: Option<(String, String)>,
    pub(crate) cancel: Option<(Method, String)>,
    pub(crate) create_job: String,
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) terminal: Vec<String>,
    pub(crate) conflict: StatusCode,
}

impl JobKind {
    /// A kind named `name` (as reported by [`JobsHandle`](crate::JobsHandle)),
    /// created by `method` on `path` (e.g. `POST /v1/fine-tunes`), with at
    /// most `cap` jobs running at once.
    ///
    /// Defaults: id at `/id`, status at `/status`, the job object is the
    /// whole create response, terminal statuses [`DEFAULT_TERMINAL`], the
    /// server answers 409 when its own cap is reached.
    pub fn new(
        name: impl Into<String>,
        cap: NonZeroU32,
        method: Method,
        path: impl Into<String>,
    ) -> Self {
        JobKind {
            name: name.into(),
            cap,
            create: (method, path.into()),
            get: None,
            list: None,
            cancel: None,
            create_job: String::new(),
            id: "/id".into(),
            status: "/status".into(),
            terminal: DEFAULT_TERMINAL.iter().map(|s| s.to_string()).collect(),
            conflict: StatusCode::CONFLICT,
        }
    }

    /// `GET path` (e.g. `/v1/fine-tunes/{id}`) answers one job.
    pub fn get_route(mut self, path: impl Into<String>) -> Self {
        self.get = Some(path.into());
        self
    }

    /// `GET path` (a path without parameters, e.g. `/v1/fine-tunes`) answers
    /// every job; `array` is the JSON pointer to the array of jobs (`/data`,
    /// or `""` for a bare array). Needed to reconcile.
    pub fn list_route(mut self, path: impl Into<String>, array: impl Into<String>) -> Self {
        self.list = Some((path.into(), array.into()));
        self
    }

    /// `method path` (e.g. `POST /v1/fine-tunes/{id}/cancel`) cancels a job;
    /// a 2xx answer frees its slot.
    pub fn cancel_route(mut self, method: Method, path: impl Into<String>) -> Self {
        self.cancel = Some((method, path.into()));
        self
    }

    /// JSON pointer to the job id inside a job object (default `/id`).
    pub fn id_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.id = pointer.into();
        self
    }

    /// JSON pointer to the status inside a job object (default `/status`).
    pub fn status_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.status = pointer.into();
        self
    }

    /// JSON pointer to the job object in the create response (default `""`,
    /// the whole body; e.g. `/job` for `{"job": {...}}`).
    pub fn create_job_pointer(mut self, pointer: impl Into<String>) -> Self {
        self.create_job = pointer.into();
        self
    }

    /// The terminal statuses (replacing the default list), compared exactly.
    pub fn terminal<I, T>(mut self, statuses: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.terminal = statuses.into_iter().map(Into::into).collect();
        self
    }

    /// The status the server answers a create with when its own cap is
    /// reached (default 409 Conflict).
    pub fn conflict_status(mut self, status: StatusCode) -> Self {
        self.conflict = status;
        self
    }

    /// The kind's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind's cap.
    pub fn cap(&self) -> NonZeroU32 {
        self.cap
    }

    pub(crate) fn compile(&self) -> Result<Compiled, InvalidConfig> {
        let bad = |what: &str, msg: String| {
            InvalidConfig::new(format!("job kind {:?}: {what}: {msg}", self.name))
        };
        let pointer = |what: &str, p: &str| {
            if p.is_empty() || p.starts_with('/') {
                Ok(())
            } else {
                Err(bad(
                    what,
                    format!("JSON pointer {p:?} must be empty or start with '/'"),
                ))
            }
        };
        pointer("id pointer", &self.id)?;
        pointer("status pointer", &self.status)?;
        pointer("create job pointer", &self.create_job)?;
        if self.terminal.is_empty() {
            return Err(bad("terminal statuses", "at least one is needed".into()));
        }
        let create =
            PathPattern::parse(&self.create.1).map_err(|e| bad("create route", e.to_string()))?;
        let get = self
            .get
            .as_deref()
            .map(|p| {
                let pat = PathPattern::parse(p).map_err(|e| bad("get route", e.to_string()))?;
                if pat.has_param() {
                    Ok(pat)
                } else {
                    Err(bad("get route", format!("{p:?} needs an {{id}} segment")))
                }
            })
            .transpose()?;
        let list = self
            .list
            .as_ref()
            .map(|(p, array)| {
                pointer("list array pointer", array)?;
                let pat = PathPattern::parse(p).map_err(|e| bad("list route", e.to_string()))?;
                if pat.has_param() {
                    return Err(bad("list route", format!("{p:?} cannot have parameters")));
                }
                Ok((pat, array.clone()))
            })
            .transpose()?;
        let cancel = self
            .cancel
            .as_ref()
            .map(|(m, p)| {
                let pat = PathPattern::parse(p).map_err(|e| bad("cancel route", e.to_string()))?;
                if pat.has_param() {
                    Ok((m.clone(), pat))
                } else {
                    Err(bad(
                        "cancel route",
                        format!("{p:?} needs an {{id}} segment"),
                    ))
                }
            })
            .transpose()?;
        Ok(Compiled {
            kind: self.clone(),
            create: (self.create.0.clone(), create),
            get,
            list,
            cancel,
        })
    }
}

/// What a request is to a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Role {
    Create,
    Get(Option<String>),
    List,
    Cancel(String),
}

/// A job seen in a response: its id and status (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) id: String,
    pub(crate) status: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Compiled {
    pub(crate) kind: JobKind,
    create: (Method, PathPattern),
    get: Option<PathPattern>,
    pub(crate) list: Option<(PathPattern, String)>,
    cancel: Option<(Method, PathPattern)>,
}

impl Compiled {
    pub(crate) fn role(&self, method: &Method, path: &str) -> Option<Role> {
        if *method == self.create.0 && self.create.1.capture(path).is_some() {
            return Some(Role::Create);
        }
        if let Some((m, pat)) = &self.cancel
            && m == method
            && let Some(Some(id)) = pat.capture(path)
        {
            return Some(Role::Cancel(id.to_owned()));
        }
        if *method == Method::GET {
            if let Some((pat, _)) = &self.list
                && pat.capture(path).is_some()
            {
                return Some(Role::List);
            }
            if let Some(pat) = &self.get
                && let Some(id) = pat.capture(path)
            {
                return Some(Role::Get(id.map(str::to_owned)));
            }
        }
        None
    }

    pub(crate) fn is_terminal(&self, status: &str) -> bool {
        self.kind.terminal.iter().any(|t| t == status)
    }

    /// The job in a job object.
    pub(crate) fn job(&self, job: &Value) -> Option<Seen> {
        let id = match job.pointer(&self.kind.id)? {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let status = job
            .pointer(&self.kind.status)
            .and_then(Value::as_str)
            .map(str::to_owned);
        Some(Seen { id, status })
    }

    pub(crate) fn created(&self, body: &[u8]) -> Option<Seen> {
        let v: Value = serde_json::from_slice(body).ok()?;
        self.job(v.pointer(&self.kind.create_job)?)
    }

    /// The job in a one-job response; `path_id` stands in for a missing id.
    pub(crate) fn one(&self, body: &[u8], path_id: Option<&str>) -> Option<Seen> {
        let v: Value = serde_json::from_slice(body).ok()?;
        self.job(&v).or_else(|| {
            Some(Seen {
                id: path_id?.to_owned(),
                status: v.pointer(&self.kind.status)?.as_str().map(str::to_owned),
            })
        })
    }

    pub(crate) fn listed(&self, body: &[u8]) -> Option<Vec<Seen>> {
        let (_, array) = self.list.as_ref()?;
        let v: Value = serde_json::from_slice(body).ok()?;
        let items = v.pointer(array)?.as_array()?;
        Some(items.iter().filter_map(|j| self.job(j)).collect())
    }
}
