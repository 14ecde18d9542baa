//! What the simulator saw: counts by status, limiter peaks, dynamic limits
//! over time, the arrival log and fine-tune concurrency. Read with
//! [`SimHandle::stats`](crate::SimHandle::stats) or `GET /sim/stats`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{LimitKind, LimiterStats};

/// A snapshot of the simulator's counters (serializable; `GET /sim/stats`
/// answers it as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The time scale.
    pub time_scale: f64,
    /// Simulated seconds since start.
    pub sim_secs: f64,
    /// Requests received (every route, including rejected ones).
    pub total_requests: u64,
    /// Requests answered 429 by a rate limit (not batch caps).
    pub total_429: u64,
    /// Answers by key, route, model and status.
    pub counts: Vec<StatusCount>,
    /// Every limiter that was used.
    pub limiters: Vec<LimiterStats>,
    /// Every (key, model) seen by the [dynamic limits](crate::dynamic),
    /// sorted by key label and model (empty when the mode is off).
    #[serde(default)]
    pub dynamic: Vec<DynamicStats>,
    /// The most recent arrivals, oldest first (bounded).
    pub arrivals: Vec<Arrival>,
    /// Arrivals dropped from the front of the bounded log.
    pub arrivals_dropped: u64,
    /// Fine-tune concurrency.
    pub fine_tunes: FineTuneStats,
    /// Answers per `x-custom-id` header value.
    pub custom_ids: BTreeMap<String, CustomIdStats>,
}

impl Stats {
    /// The largest `max_in_window` over the limiters of `route` and `kind`
    /// (every key and model); 0 if none was used.
    pub fn max_in_window(&self, route: &str, kind: LimitKind) -> u64 {
        self.limiters
            .iter()
            .filter(|l| l.route == route && l.kind == kind)
            .map(|l| l.max_in_window)
            .max()
            .unwrap_or(0)
    }

    /// The limiter of `route`, `model` (when it has its own bucket) and
    /// `kind`, for any key.
    pub fn limiter(
        &self,
        route: &str,
        model: Option<&str>,
        kind: LimitKind,
    ) -> Option<&LimiterStats> {
        self.limiters
            .iter()
            .find(|l| l.route == route && l.model.as_deref() == model && l.kind == kind)
    }

    /// The dynamic limit of key label `key` (`key-1`, ...) and `model`.
    pub fn dynamic(&self, key: &str, model: &str) -> Option<&DynamicStats> {
        self.dynamic
            .iter()
            .find(|d| d.key == key && d.model == model)
    }

    /// The sum of [`DynamicStats::max_accepted_in_1s_over_limit`] over
    /// every key and model: 0 unless the dynamic rule was broken.
    pub fn dynamic_over_limit(&self) -> u64 {
        self.dynamic
            .iter()
            .map(|d| d.max_accepted_in_1s_over_limit)
            .sum()
    }

    /// Answers with `status` on `route` (every key and model).
    pub fn count(&self, route: &str, status: u16) -> u64 {
        self.counts
            .iter()
            .filter(|c| c.route == route && c.status == status)
            .map(|c| c.count)
            .sum()
    }
}

/// One (key, model)'s [dynamic limit](crate::dynamic), in
/// [`Stats::dynamic`]. Rates are per simulated second (unlike the headers,
/// which are in real units).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicStats {
    /// The API key's label (`key-1` for the first configured key).
    pub key: String,
    /// The model.
    pub model: String,
    /// The request rate `r(t)` now.
    pub rate: f64,
    /// The request cap now.
    pub cap: f64,
    /// The token rate now (`None` when tokens are not limited).
    pub token_rate: Option<f64>,
    /// The token cap (`None` when tokens are not limited).
    pub token_cap: Option<f64>,
    /// Requests accepted (charged to the 1-second window).
    pub accepted: u64,
    /// Accepted requests answered 2xx.
    pub successes: u64,
    /// Requests answered 429 (by either limit).
    pub rejected: u64,
    /// Of `rejected`, those answered `dynamic_token_limited`.
    pub rejected_tokens: u64,
    /// Requests within the limit answered a capacity 503.
    pub capacity_503: u64,
    /// Requests accepted in the last simulated second, now.
    pub accepted_in_last_1s: u64,
    /// Acceptances that left more than `r(t)` requests accepted in the last
    /// second. The rule makes this impossible: tests assert 0.
    pub max_accepted_in_1s_over_limit: u64,
    /// The rate over time, oldest first: at most one sample per 250
    /// simulated ms (taken when a request is decided), at most 4,096
    /// (the oldest dropped beyond).
    pub series: Vec<DynamicSample>,
    /// Samples dropped from the front of `series`.
    pub series_dropped: u64,
}

/// One sample of a [`DynamicStats::series`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicSample {
    /// Simulated milliseconds since start.
    pub t_ms: u64,
    /// The request rate `r(t)`, per simulated second.
    pub rate: f64,
    /// The request cap `cap(t)`, per simulated second.
    pub cap: f64,
    /// Requests accepted in the last simulated second (including this one
    /// when it was accepted).
    pub accepted_in_last_1s: u64,
    /// Requests refused (429) so far, this one included.
    #[serde(default)]
    pub rejected: u64,
}

/// Number of answers of one status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCount {
    /// The API key's label: `key-1` for the first configured key (empty when
    /// the request had none or an unknown one). Keys themselves never appear.
    pub key: String,
    /// Route pattern, e.g. `/v1/fine-tunes/{id}`; `unknown` for 404 routes.
    pub route: String,
    /// Model of the request, if any.
    pub model: Option<String>,
    /// HTTP status; 0 when the connection was closed without an answer.
    pub status: u16,
    /// How many.
    pub count: u64,
}

/// One request in the arrival log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    /// Simulated seconds since start, at arrival.
    pub t: f64,
    /// Route pattern.
    pub route: String,
    /// Model, if any.
    pub model: Option<String>,
    /// Status answered (0: connection closed).
    pub status: u16,
    /// The `x-custom-id` header, if sent.
    pub custom_id: Option<String>,
}

/// Answers for one custom id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomIdStats {
    /// Every answer (and closed connection).
    pub answered: u64,
    /// 2xx answers.
    pub ok: u64,
}

/// Fine-tune concurrency, computed exactly from the jobs' intervals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FineTuneStats {
    /// Jobs created.
    pub created: u64,
    /// Jobs `running` now.
    pub running_now: u64,
    /// Jobs in a non-terminal state now.
    pub active_now: u64,
    /// Most jobs `running` at once, ever.
    pub max_running: u64,
    /// Most jobs non-terminal at once, ever.
    pub max_active: u64,
    /// `running` count after each change: (simulated seconds, count).
    pub running_timeline: Vec<(f64, u64)>,
}

const MAX_CUSTOM_IDS: usize = 100_000;
/// The longest `x-custom-id` kept; a longer one is kept cut to this, so a
/// flood of huge values cannot grow the stats.
pub const MAX_CUSTOM_ID_LEN: usize = 256;

/// `id` cut to [`MAX_CUSTOM_ID_LEN`] bytes (at a character boundary).
fn bounded(id: &str) -> &str {
    if id.len() <= MAX_CUSTOM_ID_LEN {
        return id;
    }
    let mut end = MAX_CUSTOM_ID_LEN;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

#[derive(Debug, Default)]
struct Inner {
    counts: HashMap<(String, &'static str, Option<String>, u16), u64>,
    arrivals: VecDeque<Arrival>,
    dropped: u64,
    custom: HashMap<String, CustomIdStats>,
}

/// Records answers (one short lock per request).
#[derive(Debug)]
pub(crate) struct Recorder {
    inner: Mutex<Inner>,
    total: AtomicU64,
    total_429: AtomicU64,
    capacity: usize,
}

/// One answered request, as recorded.
pub(crate) struct Record<'a> {
    pub(crate) at: Duration,
    pub(crate) key: &'a str,
    pub(crate) route: &'static str,
    pub(crate) model: Option<&'a str>,
    pub(crate) status: u16,
    pub(crate) custom_id: Option<&'a str>,
    pub(crate) limited: bool,
}

impl Recorder {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            total: AtomicU64::new(0),
            total_429: AtomicU64::new(0),
            capacity,
        }
    }

    pub(crate) fn record(&self, r: Record<'_>) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if r.limited {
            self.total_429.fetch_add(1, Ordering::Relaxed);
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let k = (
            r.key.to_string(),
            r.route,
            r.model.map(str::to_string),
            r.status,
        );
        *inner.counts.entry(k).or_insert(0) += 1;
        if self.capacity > 0 {
            if inner.arrivals.len() >= self.capacity {
                inner.arrivals.pop_front();
                inner.dropped += 1;
            }
            inner.arrivals.push_back(Arrival {
                t: r.at.as_secs_f64(),
                route: r.route.to_string(),
                model: r.model.map(str::to_string),
                status: r.status,
                custom_id: r.custom_id.map(|id| bounded(id).to_string()),
            });
        }
        if let Some(id) = r.custom_id.map(bounded) {
            let len = inner.custom.len();
            let e = match inner.custom.get_mut(id) {
                Some(e) => Some(e),
                None if len < MAX_CUSTOM_IDS => {
                    Some(inner.custom.entry(id.to_string()).or_default())
                }
                None => None,
            };
            if let Some(e) = e {
                e.answered += 1;
                if (200..300).contains(&r.status) {
                    e.ok += 1;
                }
            }
        }
    }

    pub(crate) fn fill(&self, stats: &mut Stats) {
        stats.total_requests = self.total.load(Ordering::Relaxed);
        stats.total_429 = self.total_429.load(Ordering::Relaxed);
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts: Vec<StatusCount> = inner
            .counts
            .iter()
            .map(|((key, route, model, status), count)| StatusCount {
                key: key.clone(),
                route: (*route).to_string(),
                model: model.clone(),
                status: *status,
                count: *count,
            })
            .collect();
        counts.sort_by(|a, b| {
            (&a.key, &a.route, &a.model, a.status).cmp(&(&b.key, &b.route, &b.model, b.status))
        });
        stats.counts = counts;
        stats.arrivals = inner.arrivals.iter().cloned().collect();
        stats.arrivals_dropped = inner.dropped;
        stats.custom_ids = inner.custom.iter().map(|(k, v)| (k.clone(), *v)).collect();
    }
}
