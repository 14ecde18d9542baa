//! Learned paces: a quota whose rate is learned from the server's answers
//! instead of taken from a table.
//!
//! A quota built with [`Quota::adaptive`](crate::Quota::adaptive) keeps one
//! learned pace per cell (quota × key, so per model when keyed by model),
//! between a floor and a ceiling, starting from a start rate:
//!
//! - **From headers**, when the server sends them ([`RateHeaders`]): the
//!   cell paces at the reported limit (the lowest of the limit headers
//!   present, so a `-dynamic` variant below the plain limit binds), less the
//!   safety margin, from the next grant on. A reported remaining lower than
//!   the cell's own view (what the cell itself spent in the server's
//!   period) means someone else spends from the same limit: the difference
//!   is charged to the cell, so its queue waits. Headers beat probing
//!   whenever they are present. A token cell that reads them also keeps
//!   its grants of the server's last period and admits a request only when
//!   it fits among them (a bucket of one period's worth would let two
//!   periods' worth go in one, which a server counting whole requests in a
//!   sliding window refuses); with [`Charging::Reconciled`](crate::Charging)
//!   each count a complete answer reports corrects that log.
//! - **By probing**, when they are not: the pace grows while answers
//!   succeed (doubling each second until the first 429, then additively),
//!   is cut by [`Adaptive::decrease`] on a 429 (once per 429 episode, not
//!   once per 429), and never grows faster than [`Adaptive::ramp`] times the
//!   successful rate over a recent window (servers such as Together throttle
//!   spikes far above recent usage). A cut goes no lower than 90% of the
//!   rate the server accepted over the last second. After a cut it climbs back fast to 90%
//!   of where it was cut, then additively, the step doubling each second
//!   without a 429 (a dynamic limit grows with use).
//!   A 503 is capacity, not a rate signal: it changes nothing.
//!
//! With a shared store each process learns from its own answers and shares
//! what it learned; a probing ramp bound counts this process's successes as
//! many times as there are processes, which it takes from
//! [`OnStoreFailure::LocalShare`](crate::OnStoreFailure::LocalShare)`(1/N)`:
//! set it to the real number of processes (other fallbacks count one).
//!
//! A learned pace never becomes zero or infinite and never leaves
//! `[floor, ceiling]`: garbage, negative, zero, non-finite or absurd header
//! values are ignored with a `debug` event. Each change is visible in
//! [`Snapshot`](crate::Snapshot) (the pace, its [`PaceSource`], when it
//! changed) and as a `tracing` event (`info` for large changes, at most once
//! a second per cell; `trace` otherwise).
//!
//! # Example
//!
//! ```
//! use http::{Method, Request, Response};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_quota::{Adaptive, KeyBy, Limits, PaceSource, Quota, RateHeaders, RateLimitLayer, Route};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower_quota::BoxError> {
//! let learn = Adaptive::new("1/s".parse()?)
//!     .floor("6/min".parse()?)
//!     .ceiling("100/s".parse()?)
//!     .headers(RateHeaders::together_requests());
//! let limits = Limits::builder()
//!     .quota("requests", Quota::adaptive(learn).keyed_by(KeyBy::model()))
//!     .route(Route::new(Method::POST, "/v1/embeddings").quota("requests"))
//!     .build()?;
//! let layer = RateLimitLayer::new(limits);
//!
//! // A server that says each model may send 20 requests per second.
//! let client = ServiceBuilder::new().layer(layer.clone()).service(service_fn(|_req: Request<String>| async {
//!     let res = Response::builder().header("x-ratelimit-limit", "20").body(String::new()).unwrap();
//!     Ok::<_, std::convert::Infallible>(res)
//! }));
//! let req = Request::post("/v1/embeddings").body(r#"{"model":"m","input":"hi"}"#.to_string())?;
//! client.oneshot(req).await?;
//!
//! let cell = layer.snapshot().cell("requests", Some("m")).cloned().unwrap();
//! assert_eq!(cell.pace, 20.0);
//! assert_eq!(cell.source, PaceSource::Header);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use http::HeaderName;

use crate::rate::Rate;

/// Where a cell's pace comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PaceSource {
    /// Configured: a fixed rate.
    Static,
    /// An adaptive quota's start rate: nothing learned yet.
    Start,
    /// Remembered from an earlier run ([`RateLimitLayer::seed_pace`](crate::RateLimitLayer::seed_pace)).
    Saved,
    /// The server's rate headers.
    Header,
    /// Probing: grown on successes, cut on 429s.
    Probe,
}

impl PaceSource {
    /// A short lowercase name: `static`, `start`, `saved`, `header`, `probe`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaceSource::Static => "static",
            PaceSource::Start => "start",
            PaceSource::Saved => "saved",
            PaceSource::Header => "header",
            PaceSource::Probe => "probe",
        }
    }
}

impl fmt::Display for PaceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which response headers report a quota's limit, and the period they count in.
///
/// Every header is optional on the wire; where several limit (or remaining)
/// headers are present, the lowest (the binding one) counts.
///
/// ```
/// use std::time::Duration;
/// use tower_quota::RateHeaders;
///
/// // A server reporting requests per minute, resets as "1m30s".
/// let headers = RateHeaders::new(Duration::from_secs(60))
///     .limit("x-ratelimit-limit-requests")
///     .remaining("x-ratelimit-remaining-requests")
///     .reset("x-ratelimit-reset-requests");
/// # let _ = headers;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateHeaders {
    pub(crate) limit: Vec<HeaderName>,
    pub(crate) remaining: Vec<HeaderName>,
    pub(crate) reset: Option<HeaderName>,
    pub(crate) period: Duration,
}

impl RateHeaders {
    /// No headers yet; values count per `period`.
    pub fn new(period: Duration) -> Self {
        RateHeaders {
            limit: Vec::new(),
            remaining: Vec::new(),
            reset: None,
            period,
        }
    }

    /// The period the values count in.
    pub fn per(&self) -> Duration {
        self.period
    }

    /// The same headers, counting in `period` (a time-scaled server's
    /// second is shorter).
    pub fn with_period(mut self, period: Duration) -> Self {
        self.period = period;
        self
    }

    /// A header carrying the limit per period (may be given several times).
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name (a programming error).
    pub fn limit(mut self, name: &str) -> Self {
        self.limit.push(header(name));
        self
    }

    /// A header carrying what is left of the limit (may be given several times).
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name.
    pub fn remaining(mut self, name: &str) -> Self {
        self.remaining.push(header(name));
        self
    }

    /// A header carrying when the limit is back (seconds such as `0.075`, or
    /// a duration such as `6m0s`, `20ms`): with a remaining of 0 it holds the cell.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid header name.
    pub fn reset(mut self, name: &str) -> Self {
        self.reset = Some(header(name));
        self
    }

    /// Together's request headers, per second: `x-ratelimit-limit`,
    /// `x-ratelimit-limit-dynamic`, `x-ratelimit-remaining`,
    /// `x-ratelimit-remaining-dynamic`. (The reset is read by the hold every
    /// quota has.)
    pub fn together_requests() -> Self {
        RateHeaders::new(Duration::from_secs(1))
            .limit("x-ratelimit-limit")
            .limit("x-ratelimit-limit-dynamic")
            .remaining("x-ratelimit-remaining")
            .remaining("x-ratelimit-remaining-dynamic")
    }

    /// Together's token headers, per second: `x-tokenlimit-limit`,
    /// `x-tokenlimit-limit-dynamic`, `x-tokenlimit-remaining`,
    /// `x-tokenlimit-remaining-dynamic`.
    pub fn together_tokens() -> Self {
        RateHeaders::new(Duration::from_secs(1))
            .limit("x-tokenlimit-limit")
            .limit("x-tokenlimit-limit-dynamic")
            .remaining("x-tokenlimit-remaining")
            .remaining("x-tokenlimit-remaining-dynamic")
    }

    /// OpenAI's request headers, per minute: `x-ratelimit-limit-requests`,
    /// `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests`.
    pub fn openai_requests() -> Self {
        RateHeaders::new(Duration::from_secs(60))
            .limit("x-ratelimit-limit-requests")
            .remaining("x-ratelimit-remaining-requests")
            .reset("x-ratelimit-reset-requests")
    }

    /// OpenAI's token headers, per minute: `x-ratelimit-limit-tokens`,
    /// `x-ratelimit-remaining-tokens`, `x-ratelimit-reset-tokens`.
    pub fn openai_tokens() -> Self {
        RateHeaders::new(Duration::from_secs(60))
            .limit("x-ratelimit-limit-tokens")
            .remaining("x-ratelimit-remaining-tokens")
            .reset("x-ratelimit-reset-tokens")
    }

    /// A preset by name: `together-requests`, `together-tokens`,
    /// `openai-requests`, `openai-tokens`.
    pub fn preset(name: &str) -> Option<Self> {
        Some(match name {
            "together-requests" => Self::together_requests(),
            "together-tokens" => Self::together_tokens(),
            "openai-requests" => Self::openai_requests(),
            "openai-tokens" => Self::openai_tokens(),
            _ => return None,
        })
    }
}

fn header(name: &str) -> HeaderName {
    HeaderName::try_from(name).unwrap_or_else(|_| panic!("{name:?} is not a valid header name"))
}

/// How a quota learns its pace; see the [module docs](self).
///
/// ```
/// use std::time::Duration;
/// use tower_quota::{Adaptive, RateHeaders};
///
/// let learn = Adaptive::new("60/min".parse().unwrap())  // start
///     .floor("6/min".parse().unwrap())
///     .ceiling("6000/min".parse().unwrap())
///     .headers(RateHeaders::together_requests())
///     .ramp(2.0, Duration::from_secs(10));
/// # let _ = learn;
/// ```
#[derive(Debug, Clone)]
pub struct Adaptive {
    pub(crate) start: Rate,
    pub(crate) floor: Option<Rate>,
    pub(crate) ceiling: Option<Rate>,
    pub(crate) headers: Option<RateHeaders>,
    pub(crate) increase: f64,
    pub(crate) decrease: f64,
    pub(crate) ramp: f64,
    pub(crate) ramp_window: Duration,
    pub(crate) tempo: f64,
}

/// The default additive increase: 2% of the rate at the last cut, per second.
pub const DEFAULT_INCREASE: f64 = 0.02;
/// The default multiplicative cut on a 429.
pub const DEFAULT_DECREASE: f64 = 0.7;
/// The default ramp bound: at most twice the successful rate of the ramp window.
pub const DEFAULT_RAMP: f64 = 2.0;
/// The default ramp window (10 s).
pub const DEFAULT_RAMP_WINDOW: Duration = Duration::from_secs(10);

impl Adaptive {
    /// Learns from `start`. The floor defaults to a tenth of the start, the
    /// ceiling to a thousand times it; no headers are read until
    /// [`headers`](Self::headers) names them.
    ///
    /// The start's unit decides what the quota counts: `"1000 tokens/s"`
    /// makes a token quota.
    pub fn new(start: Rate) -> Self {
        Adaptive {
            start,
            floor: None,
            ceiling: None,
            headers: None,
            increase: DEFAULT_INCREASE,
            decrease: DEFAULT_DECREASE,
            ramp: DEFAULT_RAMP,
            ramp_window: DEFAULT_RAMP_WINDOW,
            tempo: 1.0,
        }
    }

    /// The lowest pace it may learn (a 429 never cuts below it).
    pub fn floor(mut self, floor: Rate) -> Self {
        self.floor = Some(floor);
        self
    }

    /// The highest pace it may learn, whatever a header says.
    pub fn ceiling(mut self, ceiling: Rate) -> Self {
        self.ceiling = Some(ceiling);
        self
    }

    /// Reads the limit from these headers when the server sends them.
    pub fn headers(mut self, headers: RateHeaders) -> Self {
        self.headers = Some(headers);
        self
    }

    /// The additive increase after the first 429: this fraction of the rate
    /// at the last cut, per second of successful traffic (default 0.02).
    /// Until the pace is back at 90% of the rate at the last cut it climbs
    /// faster (a quarter of that rate per second); from there the increase
    /// doubles each second no 429 comes.
    pub fn increase(mut self, fraction_per_second: f64) -> Self {
        self.increase = fraction_per_second;
        self
    }

    /// The factor a 429 cuts the pace by (default 0.7); in `(0, 1)`.
    pub fn decrease(mut self, factor: f64) -> Self {
        self.decrease = factor;
        self
    }

    /// For a server whose clock runs `factor` times faster than the wall
    /// clock (a time-scaled simulator): probing grows `factor` times faster
    /// per wall-clock second (default 1). Scale the ramp window and the
    /// headers' period yourself.
    pub fn tempo(mut self, factor: f64) -> Self {
        self.tempo = factor;
        self
    }

    /// Never probe above `multiple` × the successful rate over the last
    /// `window` (default 2 × the last 10 s). A pace of `start` is always allowed.
    pub fn ramp(mut self, multiple: f64, window: Duration) -> Self {
        self.ramp = multiple;
        self.ramp_window = window;
        self
    }
}

/// Checked learning parameters, in units per second.
#[derive(Debug, Clone)]
pub(crate) struct LearnParams {
    pub(crate) start: f64,
    pub(crate) floor: f64,
    pub(crate) ceiling: f64,
    pub(crate) headers: Option<RateHeaders>,
    pub(crate) increase: f64,
    pub(crate) decrease: f64,
    pub(crate) ramp: f64,
    pub(crate) ramp_window: Duration,
    pub(crate) tempo: f64,
    pub(crate) weighted: bool,
}

impl LearnParams {
    /// Validates `a`; the error is `(field, reason)`.
    pub(crate) fn new(a: &Adaptive, weighted: bool) -> Result<Self, (&'static str, String)> {
        let start = a.start.per_second_f64();
        let floor = a.floor.as_ref().map_or(start / 10.0, Rate::per_second_f64);
        let ceiling = a
            .ceiling
            .as_ref()
            .map_or(start * 1000.0, Rate::per_second_f64);
        if floor > ceiling {
            return Err((
                "min",
                format!("the floor ({floor}/s) is above the ceiling ({ceiling}/s)"),
            ));
        }
        if !(floor..=ceiling).contains(&start) {
            return Err((
                "start",
                format!("the start ({start}/s) is outside [{floor}/s, {ceiling}/s]"),
            ));
        }
        if !(a.increase.is_finite() && a.increase > 0.0 && a.increase <= 10.0) {
            return Err(("increase", format!("{} is outside (0, 10]", a.increase)));
        }
        if !(a.decrease > 0.0 && a.decrease < 1.0) {
            return Err(("decrease", format!("{} is outside (0, 1)", a.decrease)));
        }
        if !(a.ramp.is_finite() && a.ramp >= 1.0) {
            return Err(("ramp", format!("{} must be at least 1", a.ramp)));
        }
        if !(0.001..=1e6).contains(&a.tempo) {
            return Err(("tempo", format!("{} is outside [0.001, 1000000]", a.tempo)));
        }
        if a.ramp_window.is_zero() {
            return Err(("ramp_window", "must be longer than zero".into()));
        }
        if let Some(h) = &a.headers
            && h.period.is_zero()
        {
            return Err(("headers.period", "must be longer than zero".into()));
        }
        Ok(LearnParams {
            start,
            floor,
            ceiling,
            headers: a.headers.clone(),
            increase: a.increase,
            decrease: a.decrease,
            ramp: a.ramp,
            ramp_window: a.ramp_window,
            tempo: a.tempo,
            weighted,
        })
    }
}
