//! Rate-limit and job presets: the seed's table, Together's tiers, an
//! OpenAI-style preset, and TOML overrides.
//!
//! A [`Preset`] is data: routes (by kind: `chat`, `completions`,
//! `embeddings`, `images`, or your own) with request, token and image
//! rates, per-model overrides, the two job kinds (fine-tunes, batches)
//! with their caps and status names, and the sizes the typed helpers split
//! work by. [`Preset::limits`] compiles it into tower-quota's
//! [`Limits`]; [`Preset::concurrency`] into tower-jobs' builder.
//!
//! Rates are paced per second (burst 1): `600/min` sends one request every
//! 100 ms, never a burst of 600, because Together enforces per second.
//!
//! # TOML
//!
//! [`Preset::from_toml`] starts from `base` and applies the rest:
//!
//! ```
//! use together_tower::Preset;
//!
//! let preset = Preset::from_toml(r#"
//!     base = "tier2"              # together | seed | free | tier1 .. tier5 | openai
//!     learn = false               # pin the rates (together and openai learn them)
//!     safety_margin = 0.02
//!     embed_chunk_size = 50
//!
//!     [routes.chat]
//!     requests = "1200/min"       # replaces the tier's chat rate
//!     tokens = "none"             # removes the token quota
//!
//!     [routes.rerank]             # a new route kind
//!     method = "POST"
//!     path = "/v1/rerank"
//!     requests = "100/min"
//!
//!     [models."black-forest-labs/FLUX.1-schnell"]
//!     images = "9/min"            # this model's own cap on the images route
//!
//!     [fine_tunes]
//!     cap = 5
//!
//!     [batches]
//!     cap = 20
//!     max_requests = 50000
//! "#)?;
//! assert_eq!(preset.name(), "tier2");
//! assert_eq!(preset.fine_tunes().cap().get(), 5);
//! let limits = preset.limits()?;
//! assert!(limits.routes().iter().any(|(name, _)| name == "POST /v1/rerank"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Writing a preset for another OpenAI-compatible API
//!
//! Start from [`Preset::openai`] (OpenAI's paths and status names) or
//! [`Preset::empty`], then set each route's rates to your account's limits
//! with [`Preset::route`] and the job routes with [`Preset::with_fine_tunes`]
//! and [`Preset::with_batches`]; point the builder at the API with
//! [`TogetherBuilder::base_url`](crate::TogetherBuilder::base_url).

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use http::{Method, StatusCode};
use serde::Deserialize;
use tower_jobs::{ConcurrencyLayer, ConcurrencyLayerBuilder, JobKind};
use tower_quota::{
    Adaptive, Cost, KeyBy, Limits, LimitsBuilder, Quota, Rate, RateHeaders, Route, TokenEstimate,
};

/// Together's tiers (the historic table of chat, embeddings and images
/// limits; see [`Preset::tier`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Tier {
    /// Chat 60/min, embeddings 3,000/min, images 1/min.
    Free,
    /// Chat 600/min and 180,000 tokens/min, embeddings 3,000/min, images 5/min.
    Tier1,
    /// Chat 1,800/min, embeddings 5,000/min, images 10/min.
    Tier2,
    /// Chat 3,000/min, embeddings 5,000/min, images 15/min.
    Tier3,
    /// Chat 4,500/min, embeddings 10,000/min, images 20/min.
    Tier4,
    /// Chat 6,000/min, embeddings 10,000/min, images 50/min.
    Tier5,
}

impl Tier {
    /// (chat requests, embeddings requests, images) per minute.
    fn table(self) -> (u32, u32, u32) {
        match self {
            Tier::Free => (60, 3000, 1),
            Tier::Tier1 => (600, 3000, 5),
            Tier::Tier2 => (1800, 5000, 10),
            Tier::Tier3 => (3000, 5000, 15),
            Tier::Tier4 => (4500, 10000, 20),
            Tier::Tier5 => (6000, 10000, 50),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Tier1 => "tier1",
            Tier::Tier2 => "tier2",
            Tier::Tier3 => "tier3",
            Tier::Tier4 => "tier4",
            Tier::Tier5 => "tier5",
        }
    }
}

/// The limits of one route: a method and path, and its rates.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteLimit {
    method: Method,
    path: String,
    requests: Option<Rate>,
    tokens: Option<Rate>,
    images: Option<Rate>,
    max_wait: Option<Duration>,
}

impl RouteLimit {
    /// A route with no rates yet.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        RouteLimit {
            method,
            path: path.into(),
            requests: None,
            tokens: None,
            images: None,
            max_wait: None,
        }
    }

    /// Requests per period (`600/min`), paced with burst 1.
    pub fn requests(mut self, rate: Rate) -> Self {
        self.requests = Some(rate);
        self
    }

    /// Estimated tokens per period (`180000 tokens/min`): input characters / 4
    /// plus `max_tokens` x `n`.
    pub fn tokens(mut self, rate: Rate) -> Self {
        self.tokens = Some(rate.with_unit("tokens"));
        self
    }

    /// Images per period: each request costs its `n` (default 1).
    pub fn images(mut self, rate: Rate) -> Self {
        self.images = Some(rate.with_unit("images"));
        self
    }

    /// Fails fast instead of waiting longer than `wait` for a slot.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = Some(wait);
        self
    }

    /// The request rate, if any.
    pub fn request_rate(&self) -> Option<&Rate> {
        self.requests.as_ref()
    }

    /// The token rate, if any.
    pub fn token_rate(&self) -> Option<&Rate> {
        self.tokens.as_ref()
    }

    /// The image rate, if any.
    pub fn image_rate(&self) -> Option<&Rate> {
        self.images.as_ref()
    }
}

/// How a learning preset's quotas learn (see [`Preset::together`] and
/// [`tower_quota::adaptive`]): the headers to read, the bounds, the ramp.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnPreset {
    request_headers: RateHeaders,
    token_headers: RateHeaders,
    request_floor: Rate,
    request_ceiling: Rate,
    token_floor: Rate,
    token_ceiling: Rate,
    ramp: f64,
    ramp_window: Duration,
    /// How many times faster than the wall clock the server's clock runs.
    tempo: f64,
}

impl LearnPreset {
    /// Together's headers (per second), bounds 6/min to 1,000/s requests and
    /// 6,000 tokens/min to 1,000,000 tokens/s, ramp 2x the last 10 s.
    pub fn together() -> Self {
        LearnPreset {
            request_headers: RateHeaders::together_requests(),
            token_headers: RateHeaders::together_tokens(),
            request_floor: Rate::per_minute(nz(6)),
            request_ceiling: Rate::per_second(nz(1000)),
            token_floor: Rate::per_minute(nz(6000)).with_unit("tokens"),
            token_ceiling: Rate::per_second(nz(1_000_000)).with_unit("tokens"),
            ramp: 2.0,
            ramp_window: Duration::from_secs(10),
            tempo: 1.0,
        }
    }

    /// OpenAI's headers (per minute), otherwise as [`together`](Self::together).
    pub fn openai() -> Self {
        LearnPreset {
            request_headers: RateHeaders::openai_requests(),
            token_headers: RateHeaders::openai_tokens(),
            ..Self::together()
        }
    }

    /// The bounds of learned request rates.
    pub fn request_bounds(mut self, floor: Rate, ceiling: Rate) -> Self {
        self.request_floor = floor;
        self.request_ceiling = ceiling;
        self
    }

    /// The bounds of learned token rates.
    pub fn token_bounds(mut self, floor: Rate, ceiling: Rate) -> Self {
        self.token_floor = floor.with_unit("tokens");
        self.token_ceiling = ceiling.with_unit("tokens");
        self
    }

    /// Never probe faster than `multiple` × the successful rate of the last `window`.
    pub fn ramp(mut self, multiple: f64, window: Duration) -> Self {
        self.ramp = multiple;
        self.ramp_window = window;
        self
    }
}

/// One kind of server-side job: its routes, status names and cap.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPreset {
    cap: NonZeroU32,
    create: String,
    get: String,
    list: String,
    list_array: String,
    cancel: String,
    create_job_pointer: String,
    terminal: Vec<String>,
    conflict_status: StatusCode,
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

    fn job_kind(&self, name: &str) -> JobKind {
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

/// Rate limits, job caps and work sizes for one API and account; see the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    name: String,
    learn: Option<LearnPreset>,
    routes: BTreeMap<String, RouteLimit>,
    models: BTreeMap<String, BTreeMap<String, Rate>>,
    safety_margin: Option<f64>,
    fine_tunes: JobPreset,
    batches: JobPreset,
    batch_max_requests: usize,
    embed_chunk_size: usize,
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl Preset {
    /// A preset with no routes, Together's job routes and statuses, and
    /// the seed's caps and sizes; add routes with [`route`](Self::route).
    pub fn empty(name: impl Into<String>) -> Self {
        Preset {
            name: name.into(),
            learn: None,
            routes: BTreeMap::new(),
            models: BTreeMap::new(),
            safety_margin: None,
            fine_tunes: JobPreset::new(nz(3), "/v1/fine-tunes", "/data", FINE_TUNE_TERMINAL),
            batches: JobPreset::new(nz(10), "/v1/batches", "", BATCH_TERMINAL)
                .create_job_pointer("/job")
                .conflict_status(StatusCode::TOO_MANY_REQUESTS),
            batch_max_requests: 100,
            embed_chunk_size: 20,
        }
    }

    /// Together as it is now: limits are dynamic, per organization and per
    /// model, so every inference route (chat, completions, embeddings,
    /// images, rerank) learns its pace per model, requests and tokens, from
    /// Together's rate headers when they come and by probing when they
    /// don't (see [`tower_quota::adaptive`]). It starts at Together's
    /// documented base (60 requests/min, and 60,000 tokens/min), never
    /// learns below 6 requests/min or 6,000 tokens/min nor above 1,000
    /// requests/s or 1,000,000 tokens/s, and never probes faster than twice
    /// the successful rate of the last 10 s. Job caps and sizes are the
    /// seed's. This is [`TogetherBuilder`](crate::TogetherBuilder)'s default.
    pub fn together() -> Self {
        let mut p = Self::empty("together");
        let per_min = |n: u32| Rate::per_minute(nz(n));
        for (kind, path, tokens) in [
            ("chat", "/v1/chat/completions", true),
            ("completions", "/v1/completions", true),
            ("embeddings", "/v1/embeddings", true),
            ("images", "/v1/images/generations", false),
            ("rerank", "/v1/rerank", true),
        ] {
            let mut r = RouteLimit::new(Method::POST, path).requests(per_min(60));
            if tokens {
                r = r.tokens(per_min(60_000));
            }
            p.routes.insert(kind.into(), r);
        }
        p.learn = Some(LearnPreset::together());
        p
    }

    /// Whether this preset learns its rates (its route rates are then where
    /// learning starts); see [`LearnPreset`].
    pub fn learning(&self) -> Option<&LearnPreset> {
        self.learn.as_ref()
    }

    /// Learns every route's pace per model as `learn` says, starting at the
    /// routes' rates; `None` pins the rates (static).
    pub fn with_learning(mut self, learn: Option<LearnPreset>) -> Self {
        self.learn = learn;
        self
    }

    /// The seed's table: chat and completions 600/min each (with Tier 1's
    /// 180,000 tokens/min), embeddings 300/min, images 60/min, fine-tunes 3
    /// at once, batches of at most 100 requests with 10 in flight,
    /// embeddings sent 20 inputs a request.
    pub fn seed() -> Self {
        Self::with_rates("seed", 600, 300, 60, Some(180_000))
    }

    /// Together's historic tier table for chat, completions, embeddings and
    /// images, with the seed's job caps.
    ///
    /// Only Tier 1's token limit (180,000 tokens/min) is documented; the
    /// other tiers get a token quota at the same 300 tokens per request of
    /// their chat rate, an assumption to override from TOML if your
    /// account's page says otherwise.
    pub fn tier(tier: Tier) -> Self {
        let (chat, embeddings, images) = tier.table();
        Self::with_rates(tier.name(), chat, embeddings, images, Some(chat * 300))
    }

    /// An OpenAI-style preset: OpenAI's paths (`/v1/fine_tuning/jobs`),
    /// status names (`succeeded`, `failed`, `cancelled`; batches
    /// `completed`, `failed`, `expired`, `cancelled`) and list shapes
    /// (`{"data": [...]}`), batches up to 50,000 requests. Its rates are
    /// learned per model from OpenAI's headers (`x-ratelimit-limit-requests`,
    /// `x-ratelimit-limit-tokens` and their remaining and reset, per minute),
    /// starting from example rates (chat and completions 500/min and
    /// 200,000 tokens/min, embeddings 3,000/min, images 5/min); pin your
    /// account's rates with `with_learning(None)` and [`route`](Self::route).
    pub fn openai() -> Self {
        let mut p = Self::with_rates("openai", 500, 3000, 5, Some(200_000));
        p.learn = Some(LearnPreset::openai());
        p.fine_tunes = JobPreset::new(
            nz(3),
            "/v1/fine_tuning/jobs",
            "/data",
            ["succeeded", "failed", "cancelled"],
        );
        p.batches = JobPreset::new(
            nz(10),
            "/v1/batches",
            "/data",
            ["completed", "failed", "expired", "cancelled"],
        );
        p.batch_max_requests = 50_000;
        p.embed_chunk_size = 100;
        p
    }

    fn with_rates(name: &str, chat: u32, embed: u32, images: u32, tokens: Option<u32>) -> Self {
        let mut p = Self::empty(name);
        let per_min = |n: u32| Rate::per_minute(nz(n));
        for (kind, path) in [
            ("chat", "/v1/chat/completions"),
            ("completions", "/v1/completions"),
        ] {
            let mut r = RouteLimit::new(Method::POST, path).requests(per_min(chat));
            if let Some(t) = tokens {
                r = r.tokens(per_min(t));
            }
            p.routes.insert(kind.into(), r);
        }
        p.routes.insert(
            "embeddings".into(),
            RouteLimit::new(Method::POST, "/v1/embeddings").requests(per_min(embed)),
        );
        p.routes.insert(
            "images".into(),
            RouteLimit::new(Method::POST, "/v1/images/generations").images(per_min(images)),
        );
        p
    }

    /// Reads a preset from TOML; see the [module docs](self) for the format.
    pub fn from_toml(text: &str) -> Result<Self, InvalidPreset> {
        let file: PresetFile =
            toml::from_str(text).map_err(|e| InvalidPreset::new("toml", e.to_string()))?;
        let base = match file.base.as_deref().unwrap_or("seed") {
            "together" => Preset::together(),
            "seed" => Preset::seed(),
            "free" => Preset::tier(Tier::Free),
            "tier1" => Preset::tier(Tier::Tier1),
            "tier2" => Preset::tier(Tier::Tier2),
            "tier3" => Preset::tier(Tier::Tier3),
            "tier4" => Preset::tier(Tier::Tier4),
            "tier5" => Preset::tier(Tier::Tier5),
            "openai" => Preset::openai(),
            "empty" => Preset::empty("empty"),
            other => {
                return Err(InvalidPreset::new(
                    "base",
                    format!("{other:?}: use together, seed, free, tier1 .. tier5, openai or empty"),
                ));
            }
        };
        base.apply(file)
    }

    /// Reads a preset from a TOML file (see [`from_toml`](Self::from_toml)).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, InvalidPreset> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| InvalidPreset::new(path.display().to_string(), e.to_string()))?;
        Self::from_toml(&text)
    }

    /// Applies TOML overrides to this preset (same format as
    /// [`from_toml`](Self::from_toml); `base` is not allowed here).
    pub fn merge_toml(self, text: &str) -> Result<Self, InvalidPreset> {
        let file: PresetFile =
            toml::from_str(text).map_err(|e| InvalidPreset::new("toml", e.to_string()))?;
        if file.base.is_some() {
            return Err(InvalidPreset::new(
                "base",
                "base only makes sense in Preset::from_toml",
            ));
        }
        self.apply(file)
    }

    fn apply(mut self, file: PresetFile) -> Result<Self, InvalidPreset> {
        if let Some(name) = file.name {
            self.name = name;
        } else if let Some(base) = file.base {
            self.name = base;
        }
        if let Some(m) = file.safety_margin {
            self.safety_margin = Some(m);
        }
        match file.learn {
            Some(false) => self.learn = None,
            Some(true) if self.learn.is_none() => self.learn = Some(LearnPreset::together()),
            _ => {}
        }
        if let Some(n) = file.embed_chunk_size {
            if n == 0 {
                return Err(InvalidPreset::new("embed_chunk_size", "must be above zero"));
            }
            self.embed_chunk_size = n;
        }
        for (kind, r) in file.routes {
            let entry = format!("routes.{kind}");
            let method = match &r.method {
                Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    InvalidPreset::new(format!("{entry}.method"), format!("{m:?} is not a method"))
                })?,
                None => Method::POST,
            };
            let mut route = match (self.routes.remove(&kind), r.path) {
                (Some(mut old), path) => {
                    if let Some(p) = path {
                        old.path = p;
                    }
                    if r.method.is_some() {
                        old.method = method;
                    }
                    old
                }
                (None, Some(path)) => RouteLimit::new(method, path),
                (None, None) => {
                    return Err(InvalidPreset::new(
                        entry,
                        "a new route kind needs a path (e.g. path = \"/v1/rerank\")",
                    ));
                }
            };
            let parse = |field: &str, text: &str| -> Result<Option<Rate>, InvalidPreset> {
                if text == "none" {
                    return Ok(None);
                }
                text.parse::<Rate>()
                    .map(Some)
                    .map_err(|e| InvalidPreset::new(format!("{entry}.{field}"), e.to_string()))
            };
            if let Some(t) = &r.requests {
                route.requests = parse("requests", t)?;
            }
            if let Some(t) = &r.tokens {
                route.tokens = parse("tokens", t)?.map(|r| r.with_unit("tokens"));
            }
            if let Some(t) = &r.images {
                route.images = parse("images", t)?.map(|r| r.with_unit("images"));
            }
            if let Some(t) = &r.max_wait {
                route.max_wait =
                    Some(tower_quota::parse_duration(t).map_err(|e| {
                        InvalidPreset::new(format!("{entry}.max_wait"), e.to_string())
                    })?);
            }
            self.routes.insert(kind, route);
        }
        for (model, kinds) in file.models {
            for (kind, text) in kinds {
                let r = text.parse::<Rate>().map_err(|e| {
                    InvalidPreset::new(format!("models.{model}.{kind}"), e.to_string())
                })?;
                self.models
                    .entry(model.clone())
                    .or_default()
                    .insert(kind, r);
            }
        }
        if let Some(j) = file.fine_tunes {
            self.fine_tunes = j.apply(self.fine_tunes, "fine_tunes")?;
        }
        if let Some(j) = file.batches {
            if let Some(n) = j.max_requests {
                if n == 0 {
                    return Err(InvalidPreset::new(
                        "batches.max_requests",
                        "must be above zero",
                    ));
                }
                self.batch_max_requests = n;
            }
            self.batches = j.apply(self.batches, "batches")?;
        }
        Ok(self)
    }

    /// Adds or replaces the route of `kind` (`chat`, `embeddings`, ... or your own).
    pub fn route(mut self, kind: impl Into<String>, limit: RouteLimit) -> Self {
        self.routes.insert(kind.into(), limit);
        self
    }

    /// Gives `model` its own rate on the route of `kind` (on top of the
    /// route's rate): `model_limit("black-forest-labs/FLUX.1-schnell",
    /// "images", "9/min")`. It counts images on a route limited by images,
    /// requests otherwise.
    pub fn model_limit(
        mut self,
        model: impl Into<String>,
        kind: impl Into<String>,
        rate: Rate,
    ) -> Self {
        self.models
            .entry(model.into())
            .or_default()
            .insert(kind.into(), rate);
        self
    }

    /// Runs every quota this fraction under its rate (tower-quota's default: 0.01).
    pub fn safety_margin(mut self, margin: f64) -> Self {
        self.safety_margin = Some(margin);
        self
    }

    /// Replaces the fine-tune job kind.
    pub fn with_fine_tunes(mut self, jobs: JobPreset) -> Self {
        self.fine_tunes = jobs;
        self
    }

    /// Replaces the batch job kind and the most requests per batch.
    pub fn with_batches(mut self, jobs: JobPreset, max_requests: usize) -> Self {
        self.batches = jobs;
        self.batch_max_requests = max_requests.max(1);
        self
    }

    /// Inputs per embeddings request in [`embed_all`](crate::TogetherClient::embed_all) (default 20).
    pub fn embed_chunk_size(mut self, n: usize) -> Self {
        self.embed_chunk_size = n.max(1);
        self
    }

    /// Every rate multiplied by `factor`: for a server whose time runs
    /// `factor` times faster (together-sim's `time_scale`). A learning
    /// preset's bounds scale too, its ramp window and the period its rate
    /// headers count in shrink by `factor`, and it probes `factor` times faster.
    pub fn time_scaled(mut self, factor: f64) -> Self {
        let scale = |r: &mut Rate| {
            let amount = (f64::from(r.amount().get()) * factor).round();
            let amount = nz(amount.clamp(1.0, f64::from(u32::MAX)) as u32);
            let mut scaled = Rate::new(amount, r.period()).expect("the period is unchanged");
            if let Some(unit) = r.unit() {
                scaled = scaled.with_unit(unit);
            }
            *r = scaled;
        };
        for route in self.routes.values_mut() {
            for r in [&mut route.requests, &mut route.tokens, &mut route.images]
                .into_iter()
                .flatten()
            {
                scale(r);
            }
        }
        for kinds in self.models.values_mut() {
            kinds.values_mut().for_each(scale);
        }
        if let Some(learn) = &mut self.learn {
            for r in [
                &mut learn.request_floor,
                &mut learn.request_ceiling,
                &mut learn.token_floor,
                &mut learn.token_ceiling,
            ] {
                scale(r);
            }
            learn.ramp_window = learn.ramp_window.div_f64(factor);
            learn.tempo *= factor;
            // The server's second is `factor` times shorter: so is the
            // period its headers count in.
            for h in [&mut learn.request_headers, &mut learn.token_headers] {
                *h = h.clone().with_period(h.per().div_f64(factor));
            }
        }
        self
    }

    /// The preset's name (`seed`, `tier1`, `openai`...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The route of `kind`.
    pub fn route_limit(&self, kind: &str) -> Option<&RouteLimit> {
        self.routes.get(kind)
    }

    /// The fine-tune job kind.
    pub fn fine_tunes(&self) -> &JobPreset {
        &self.fine_tunes
    }

    /// The batch job kind.
    pub fn batches(&self) -> &JobPreset {
        &self.batches
    }

    /// The most requests per batch (the seed's 100).
    pub fn batch_max_requests(&self) -> usize {
        self.batch_max_requests
    }

    /// Inputs per embeddings request.
    pub fn embed_inputs_per_request(&self) -> usize {
        self.embed_chunk_size
    }

    /// Compiles the rate limits for tower-quota's [`RateLimitLayer`](tower_quota::RateLimitLayer).
    ///
    /// Each route kind `k` gets quota `k` (requests), `k.tokens` and
    /// `k.images` as configured, and `k.model` (keyed by the body's
    /// `model`) when some model has its own rate on it.
    pub fn limits(&self) -> Result<Limits, InvalidPreset> {
        let mut b = Limits::builder();
        if let Some(m) = self.safety_margin {
            b = b.safety_margin(m);
        }
        for (kind, r) in &self.routes {
            if let Some(learn) = &self.learn {
                b = self.learned_route(b, learn, kind, r);
                continue;
            }
            let mut route = Route::new(r.method.clone(), r.path.clone());
            if let Some(rate) = &r.requests {
                b = b.quota(kind.clone(), Quota::new(rate.clone()));
                route = route.quota(kind.clone());
            }
            if let Some(rate) = &r.tokens {
                let name = format!("{kind}.tokens");
                b = b.quota(
                    name.clone(),
                    Quota::new(rate.clone()).cost(Cost::Tokens(TokenEstimate::default())),
                );
                route = route.quota(name);
            }
            if let Some(rate) = &r.images {
                let name = format!("{kind}.images");
                b = b.quota(
                    name.clone(),
                    Quota::new(rate.clone()).cost(image_cost(rate)),
                );
                route = route.quota(name);
            }
            let overrides: Vec<_> = self
                .models
                .iter()
                .filter_map(|(m, kinds)| kinds.get(kind).map(|rate| (m, rate)))
                .collect();
            if let Some(default) = r.images.as_ref().or(r.requests.as_ref())
                && !overrides.is_empty()
            {
                let name = format!("{kind}.model");
                let mut q = Quota::new(default.clone()).keyed_by(KeyBy::model());
                if r.images.is_some() {
                    q = q.cost(image_cost(default));
                }
                for (model, rate) in overrides {
                    q = q.with_override(model.clone(), rate.clone());
                }
                b = b.quota(name.clone(), q);
                route = route.quota(name);
            }
            if let Some(w) = r.max_wait {
                route = route.max_wait(w);
            }
            b = b.route(route);
        }
        b.build()
            .map_err(|e| InvalidPreset::new(e.entry().to_owned(), e.to_string()))
    }

    /// Adds the route of `kind` with quotas that learn per model: `kind`
    /// (requests, or images per request on an images route) and
    /// `kind.tokens`; a model's own rate pins that model.
    fn learned_route(
        &self,
        mut b: LimitsBuilder,
        learn: &LearnPreset,
        kind: &str,
        r: &RouteLimit,
    ) -> LimitsBuilder {
        let mut route = Route::new(r.method.clone(), r.path.clone());
        let pins: Vec<_> = self
            .models
            .iter()
            .filter_map(|(m, kinds)| kinds.get(kind).map(|rate| (m, rate)))
            .collect();
        let quota = |start: &Rate, tokens: bool| {
            let (floor, ceiling, headers) = if tokens {
                (
                    &learn.token_floor,
                    &learn.token_ceiling,
                    &learn.token_headers,
                )
            } else {
                (
                    &learn.request_floor,
                    &learn.request_ceiling,
                    &learn.request_headers,
                )
            };
            let start = if start.per_second_f64() > ceiling.per_second_f64() {
                ceiling
            } else if start.per_second_f64() < floor.per_second_f64() {
                floor
            } else {
                start
            };
            let a = Adaptive::new(start.clone())
                .floor(floor.clone())
                .ceiling(ceiling.clone())
                .headers(headers.clone())
                .ramp(learn.ramp, learn.ramp_window)
                .tempo(learn.tempo);
            Quota::adaptive(a).keyed_by(KeyBy::model())
        };
        if let Some(start) = r.requests.as_ref().or(r.images.as_ref()) {
            let mut q = quota(&requests(start), false);
            for (model, rate) in &pins {
                q = q.with_override((*model).clone(), requests(rate));
            }
            b = b.quota(kind.to_owned(), q);
            route = route.quota(kind.to_owned());
        }
        if let Some(start) = &r.tokens {
            let name = format!("{kind}.tokens");
            b = b.quota(
                name.clone(),
                quota(start, true).cost(Cost::Tokens(TokenEstimate::default())),
            );
            route = route.quota(name);
        }
        if let Some(w) = r.max_wait {
            route = route.max_wait(w);
        }
        b.route(route)
    }

    /// A tower-jobs builder with the fine-tune and batch kinds (named
    /// `fine-tune` and `batch`); set its options and build it.
    pub fn concurrency(&self) -> ConcurrencyLayerBuilder {
        ConcurrencyLayer::builder()
            .kind(self.fine_tunes.job_kind("fine-tune"))
            .kind(self.batches.job_kind("batch"))
    }
}

/// The same amount and period, counting requests.
fn requests(rate: &Rate) -> Rate {
    Rate::new(rate.amount(), rate.period()).expect("the period is unchanged")
}

/// Charges a request its `n` (default 1), capped at one second's worth of
/// the rate so a large `n` waits instead of failing (the server charges a
/// cost above its window as the whole window).
fn image_cost(rate: &Rate) -> Cost {
    let cap = rate.per_second_f64().ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
    Cost::custom(move |_, body| {
        let n = body
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| v.get("n").and_then(serde_json::Value::as_u64))
            .unwrap_or(1)
            .clamp(1, u64::from(cap));
        n as u32
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    base: Option<String>,
    name: Option<String>,
    learn: Option<bool>,
    safety_margin: Option<f64>,
    embed_chunk_size: Option<usize>,
    #[serde(default)]
    routes: BTreeMap<String, RouteFile>,
    #[serde(default)]
    models: BTreeMap<String, BTreeMap<String, String>>,
    fine_tunes: Option<JobFile>,
    batches: Option<JobFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    method: Option<String>,
    path: Option<String>,
    requests: Option<String>,
    tokens: Option<String>,
    images: Option<String>,
    max_wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    cap: Option<u32>,
    path: Option<String>,
    list_array: Option<String>,
    create_job_pointer: Option<String>,
    terminal: Option<Vec<String>>,
    conflict_status: Option<u16>,
    max_requests: Option<usize>,
}

impl JobFile {
    fn apply(self, mut job: JobPreset, entry: &str) -> Result<JobPreset, InvalidPreset> {
        if let Some(path) = &self.path {
            let fresh = JobPreset::new(job.cap, path, &job.list_array, job.terminal.clone());
            job = JobPreset {
                create_job_pointer: job.create_job_pointer,
                conflict_status: job.conflict_status,
                ..fresh
            };
        }
        if let Some(cap) = self.cap {
            job.cap = NonZeroU32::new(cap)
                .ok_or_else(|| InvalidPreset::new(format!("{entry}.cap"), "must be above zero"))?;
        }
        if let Some(a) = self.list_array {
            job.list_array = a;
        }
        if let Some(p) = self.create_job_pointer {
            job.create_job_pointer = p;
        }
        if let Some(t) = self.terminal {
            if t.is_empty() {
                return Err(InvalidPreset::new(
                    format!("{entry}.terminal"),
                    "at least one terminal status is needed",
                ));
            }
            job.terminal = t;
        }
        if let Some(s) = self.conflict_status {
            job.conflict_status = StatusCode::from_u16(s).map_err(|_| {
                InvalidPreset::new(
                    format!("{entry}.conflict_status"),
                    format!("{s} is not a status"),
                )
            })?;
        }
        Ok(job)
    }
}

/// A preset that cannot be valid: names the entry and says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPreset {
    entry: String,
    reason: String,
}

impl InvalidPreset {
    fn new(entry: impl Into<String>, reason: impl Into<String>) -> Self {
        InvalidPreset {
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    /// The entry at fault, such as `routes.chat.requests`.
    pub fn entry(&self) -> &str {
        &self.entry
    }
}

impl fmt::Display for InvalidPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid preset at {}: {}", self.entry, self.reason)
    }
}

impl std::error::Error for InvalidPreset {}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(text: &str) -> Rate {
        text.parse().unwrap()
    }

    #[test]
    fn together_learns_per_model_on_every_inference_route() {
        let limits = Preset::together().limits().unwrap();
        let routes = limits.routes();
        for path in [
            "/v1/chat/completions",
            "/v1/completions",
            "/v1/embeddings",
            "/v1/images/generations",
            "/v1/rerank",
        ] {
            let (_, quotas) = routes
                .iter()
                .find(|(name, _)| name == &format!("POST {path}"))
                .unwrap_or_else(|| panic!("{path} has a route"));
            assert!(!quotas.is_empty());
        }
        for row in limits.table() {
            assert!(row.keyed, "{} is keyed by model", row.quota);
            let (floor, ceiling) = row.learned.expect("learned");
            if row.quota.ends_with(".tokens") {
                assert_eq!((floor, ceiling), (100.0, 1_000_000.0), "{}", row.quota);
                assert_eq!(row.rate.per_second_f64(), 1000.0);
            } else {
                assert_eq!((floor, ceiling), (0.1, 1000.0), "{}", row.quota);
                assert_eq!(row.rate.per_second_f64(), 1.0);
            }
        }
        // A pinned model is static; the tiers stay static; base "together" in TOML.
        let pinned = Preset::together().model_limit("m", "chat", rate("9/min"));
        let table = pinned.limits().unwrap().table();
        let pin = table.iter().find(|r| r.quota == "chat[m]").unwrap();
        assert_eq!(pin.learned, None);
        assert!(
            Preset::tier(Tier::Tier1)
                .limits()
                .unwrap()
                .table()
                .iter()
                .all(|r| r.learned.is_none())
        );
        let from_toml = Preset::from_toml("base = \"together\"").unwrap();
        assert_eq!(from_toml.learning(), Some(&LearnPreset::together()));
        let pinned = Preset::from_toml("base = \"openai\"\nlearn = false").unwrap();
        assert_eq!(pinned.learning(), None);
        let learned_tier = Preset::from_toml("base = \"tier1\"\nlearn = true").unwrap();
        assert_eq!(learned_tier.learning(), Some(&LearnPreset::together()));
        // Time-scaled: the bounds scale, the ramp window shrinks.
        let fast = Preset::together().time_scaled(10.0).limits().unwrap();
        let chat = fast
            .table()
            .into_iter()
            .find(|r| r.quota == "chat")
            .unwrap();
        assert_eq!(chat.learned, Some((1.0, 10_000.0)));
        assert_eq!(chat.rate.per_second_f64(), 10.0);
        let learn = Preset::together()
            .time_scaled(10.0)
            .learning()
            .cloned()
            .unwrap();
        assert_eq!(learn.request_headers.per(), Duration::from_millis(100));
        assert_eq!(learn.ramp_window, Duration::from_secs(1));
    }

    #[test]
    fn openai_learns_from_openai_headers() {
        let learn = Preset::openai().learning().cloned().unwrap();
        assert_eq!(learn.request_headers, RateHeaders::openai_requests());
        assert_eq!(learn.token_headers, RateHeaders::openai_tokens());
        assert!(
            Preset::openai()
                .with_learning(None)
                .limits()
                .unwrap()
                .table()
                .iter()
                .all(|r| r.learned.is_none())
        );
    }

    #[test]
    fn seed_table() {
        let p = Preset::seed();
        let rows = p.limits().unwrap().table();
        let find = |q: &str| rows.iter().find(|r| r.quota == q).unwrap().rate.to_string();
        assert_eq!(find("chat"), "600/min");
        assert_eq!(find("chat.tokens"), "180000 tokens/min");
        assert_eq!(find("embeddings"), "300/min");
        assert_eq!(find("images.images"), "60 images/min");
        assert_eq!(p.fine_tunes().cap().get(), 3);
        assert_eq!(p.batches().cap().get(), 10);
        assert_eq!(p.batch_max_requests(), 100);
        assert_eq!(p.embed_inputs_per_request(), 20);
        // Paced per second: one request every 100 ms (plus the 1% margin), burst 1.
        let chat = rows.iter().find(|r| r.quota == "chat").unwrap();
        assert_eq!(chat.burst.get(), 1);
        assert!(chat.interval > Duration::from_millis(100));
        assert!(chat.interval < Duration::from_millis(102));
    }

    #[test]
    fn tiers() {
        let t1 = Preset::tier(Tier::Tier1);
        assert_eq!(
            t1.route_limit("chat")
                .unwrap()
                .token_rate()
                .unwrap()
                .to_string(),
            "180000 tokens/min"
        );
        let t5 = Preset::tier(Tier::Tier5);
        assert_eq!(
            t5.route_limit("embeddings")
                .unwrap()
                .request_rate()
                .unwrap()
                .to_string(),
            "10000/min"
        );
        assert_eq!(
            t5.route_limit("images")
                .unwrap()
                .image_rate()
                .unwrap()
                .to_string(),
            "50 images/min"
        );
        let free = Preset::tier(Tier::Free);
        assert_eq!(
            free.route_limit("chat")
                .unwrap()
                .request_rate()
                .unwrap()
                .to_string(),
            "60/min"
        );
        assert_eq!(free.name(), "free");
    }

    #[test]
    fn model_overrides_make_a_keyed_quota() {
        let p =
            Preset::seed().model_limit("black-forest-labs/FLUX.1-schnell", "images", rate("9/min"));
        let limits = p.limits().unwrap();
        let rows = limits.table();
        assert!(
            rows.iter().any(
                |r| r.quota == "images.model[black-forest-labs/FLUX.1-schnell]"
                    && r.rate.to_string() == "9/min"
            ),
            "{rows:?}"
        );
        let routes = limits.routes();
        let images = routes
            .iter()
            .find(|(n, _)| n == "POST /v1/images/generations")
            .unwrap();
        assert_eq!(images.1, ["images.images", "images.model"]);
    }

    #[test]
    fn toml_overrides_and_errors() {
        let p = Preset::seed()
            .merge_toml("[routes.chat]\nrequests = \"60/min\"\ntokens = \"none\"\n[fine_tunes]\ncap = 1\nterminal = [\"done\"]")
            .unwrap();
        assert_eq!(
            p.route_limit("chat")
                .unwrap()
                .request_rate()
                .unwrap()
                .to_string(),
            "60/min"
        );
        assert!(p.route_limit("chat").unwrap().token_rate().is_none());
        assert_eq!(p.fine_tunes().cap().get(), 1);
        assert!(p.fine_tunes().is_terminal("done"));
        for (bad, entry) in [
            ("[routes.chat]\nrequests = \"lots\"", "routes.chat.requests"),
            ("[routes.new]\nrequests = \"1/s\"", "routes.new"),
            ("base = \"tier9\"", "base"),
            ("[fine_tunes]\ncap = 0", "fine_tunes.cap"),
            ("typo = 1", "toml"),
        ] {
            let err = Preset::from_toml(bad).unwrap_err();
            assert_eq!(err.entry(), entry, "{bad}: {err}");
        }
    }

    #[test]
    fn time_scaling_keeps_units() {
        let p = Preset::seed().time_scaled(10.0);
        let chat = p.route_limit("chat").unwrap();
        assert_eq!(chat.request_rate().unwrap().to_string(), "6000/min");
        assert_eq!(chat.token_rate().unwrap().to_string(), "1800000 tokens/min");
        assert!(p.limits().is_ok());
    }

    #[test]
    fn openai_preset_builds() {
        let p = Preset::openai();
        assert!(p.fine_tunes().is_terminal("succeeded"));
        assert_eq!(p.fine_tunes().path(), "/v1/fine_tuning/jobs");
        p.limits().unwrap();
        p.concurrency().build().unwrap();
        Preset::seed().concurrency().build().unwrap();
    }
}
