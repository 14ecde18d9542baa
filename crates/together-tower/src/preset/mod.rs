//! Rate-limit and job presets: the seed's table, Together's tiers, an
//! OpenAI-style preset, and TOML overrides.
//!
//! A [`Preset`] is data: routes (by kind: `chat`, `completions`,
//! `embeddings`, `images`, or your own) with request, token and image
//! rates, per-model overrides, the two job kinds (fine-tunes, batches)
//! with their caps and status names, and the sizes the typed helpers split
//! work by. [`Preset::limits`] compiles it into tower-quota's
//! [`Limits`](tower_quota::Limits); [`Preset::job_limit`] into tower-jobs' builder;
//! [`Preset::retry_policy`] declares its routes to the retry policy.
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
//!     charge = "reconciled"       # estimate | reconciled: token quotas settled by usage
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
use std::time::Duration;

use http::{Method, StatusCode};
use tower_jobs::{JobLimitBuilder, JobLimitLayer};
use tower_quota::{Charging, Rate};

use route::nz;

mod jobs;
mod learn;
mod limits;
mod retry;
mod route;
mod tier;
#[cfg(feature = "toml")]
mod toml;

pub use jobs::{BATCH_STATUSES, BATCH_TERMINAL, FINE_TUNE_STATUSES, FINE_TUNE_TERMINAL, JobPreset};
pub use learn::LearnPreset;
pub use retry::{CREATING_ROUTES, INFERENCE_ROUTES};
pub use route::RouteLimit;
pub use tier::{Tier, UnknownTier};

/// Rate limits, job caps and work sizes for one API and account; see the
/// [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    name: String,
    learn: Option<LearnPreset>,
    routes: BTreeMap<String, RouteLimit>,
    models: BTreeMap<String, BTreeMap<String, Rate>>,
    safety_margin: Option<f64>,
    max_hold: Option<Duration>,
    charging: Charging,
    fine_tunes: JobPreset,
    batches: JobPreset,
    batch_max_requests: usize,
    embed_chunk_size: usize,
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
            max_hold: None,
            charging: Charging::Estimate,
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
        p.charging = Charging::Reconciled;
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

    /// A built-in preset by name: `together`, `seed`, `openai`, `empty`, or a
    /// [`Tier`] in any spelling (`free`, `tier1`, `tier-1`, `1`). What TOML's
    /// `base` and together-batch's `--tier` read.
    ///
    /// ```
    /// use together_tower::Preset;
    ///
    /// assert_eq!(Preset::named("tier-2").unwrap().name(), "tier2");
    /// assert_eq!(Preset::named("together").unwrap(), Preset::together());
    /// assert!(Preset::named("tier9").unwrap_err().to_string().contains("seed"));
    /// ```
    pub fn named(name: &str) -> Result<Self, UnknownPreset> {
        match name.trim() {
            "together" => Ok(Preset::together()),
            "seed" => Ok(Preset::seed()),
            "openai" => Ok(Preset::openai()),
            "empty" => Ok(Preset::empty("empty")),
            other => other
                .parse::<Tier>()
                .map(Preset::tier)
                .map_err(|_| UnknownPreset(name.to_owned())),
        }
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

    /// The longest a server's hint may hold a route (default
    /// [`tower_quota::DEFAULT_MAX_HOLD`], 60 s, the retry policy's longest
    /// obeyed hint); see [`tower_quota::LimitsBuilder::max_hold`].
    pub fn max_hold(mut self, max: Duration) -> Self {
        self.max_hold = Some(max);
        self
    }

    /// How token quotas charge (see [`Charging`]): [`Preset::together`]
    /// reconciles the estimate with each answer's usage (and follows
    /// `x-tokenlimit-remaining` when the server reports it); the other
    /// presets charge the estimate (OpenAI counts `max_tokens` itself).
    pub fn charging(mut self, charging: Charging) -> Self {
        self.charging = charging;
        self
    }

    /// How token quotas charge.
    pub fn token_charging(&self) -> Charging {
        self.charging
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

    /// A tower-jobs builder with the fine-tune and batch kinds (named
    /// `fine-tune` and `batch`); set its options and build it.
    pub fn job_limit(&self) -> JobLimitBuilder {
        JobLimitLayer::builder()
            .kind(self.fine_tunes.job_kind("fine-tune"))
            .kind(self.batches.job_kind("batch"))
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

/// A name that is none of the built-in presets ([`Preset::named`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPreset(String);

impl fmt::Display for UnknownPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown preset {:?}: use together, seed, free, tier1 .. tier5 (tier-1 and 1 \
             are read too), openai or empty",
            self.0
        )
    }
}

impl std::error::Error for UnknownPreset {}

#[cfg(test)]
mod tests;
