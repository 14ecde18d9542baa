//! The stack a run sends through: together-tower's, over its default HTTP
//! client, with a count of the 429s it saw before retries hid them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::Response;
use together_tower::{ApiKey, ClientService, HttpBody, TogetherClient};
use tower::ServiceBuilder;
use tower_quota::{Limits, OnStoreFailure, RateLimitLayer, SharedOptions};
use tower_quota_redis::RedisStore;

use super::options::RunOptions;
use super::timeline::Timeline;
use crate::config;

/// The stack, its limits and rate-limit layer, and the 429s it saw.
pub(crate) struct Client {
    pub(crate) service: ClientService,
    /// The typed client over the same stack (the model list, for suggestions).
    pub(crate) together: TogetherClient,
    pub(crate) limits: Limits,
    /// The stack's rate-limit layer: its snapshots show the learned paces.
    pub(crate) quota: RateLimitLayer,
    pub(crate) responses_429: Arc<AtomicU64>,
}

impl Client {
    /// 429 answers so far (retried ones included).
    pub(crate) fn responses_429(&self) -> u64 {
        self.responses_429.load(Ordering::Relaxed)
    }
}

/// Reads the key: the one given in-process (demo, bench), else the
/// variable `--api-key-env` names (default `TOGETHER_API_KEY`).
pub(crate) fn read_key(opts: &RunOptions) -> Result<ApiKey, String> {
    if let Some(key) = &opts.api_key {
        return Ok(key.clone());
    }
    match std::env::var(&opts.api_key_env) {
        Ok(text) if !text.trim().is_empty() => {
            ApiKey::new(text).map_err(|e| format!("{}: {e} (nothing was sent)", opts.api_key_env))
        }
        _ => Err(format!(
            "no API key: set {} (or name another variable with --api-key-env); \
             the key is never taken as an argument (nothing was sent)",
            opts.api_key_env
        )),
    }
}

/// Builds the client: together-tower's stack over its default HTTP client,
/// the preset time-scaled and margined as asked, quotas shared through
/// Redis with `--redis`.
pub(crate) fn build(
    opts: &RunOptions,
    key: &ApiKey,
    timeline: &Timeline,
) -> Result<Client, String> {
    let mut preset = opts.limits.preset.clone();
    if opts.time_scale != 1.0 {
        preset = preset.time_scaled(opts.time_scale);
    }
    if let Some(m) = opts.safety_margin {
        preset = preset.safety_margin(m);
    }
    preset = preset.max_hold(opts.bounds.max_hold);
    let limits = preset
        .limits()
        .map_err(|e| format!("invalid limits: {e}"))?;
    let quota = match &opts.redis {
        Some(url) => {
            let store = RedisStore::new(url, key.expose_secret())
                .map_err(|e| key.scrub(&format!("--redis {}: {e}", config::redact_url(url))))?;
            let share = 1.0 / f64::from(opts.processes.max(1));
            RateLimitLayer::shared(
                limits.clone(),
                Arc::new(store),
                SharedOptions::default().on_failure(OnStoreFailure::LocalShare(share)),
            )
            .map_err(|e| format!("--redis: {e}"))?
        }
        None => RateLimitLayer::new(limits.clone()),
    };
    let responses_429 = Arc::new(AtomicU64::new(0));
    let counter = responses_429.clone();
    let http = ServiceBuilder::new()
        .map_response(move |res: Response<HttpBody>| {
            if res.status() == http::StatusCode::TOO_MANY_REQUESTS {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            res
        })
        .service(timeline.observe(together_tower::default_http_client(opts.bounds.attempt)));
    let retry = preset
        .retry_policy()
        .deadline(opts.bounds.deadline)
        .max_wait_hint(opts.bounds.max_hold)
        .build()
        .map_err(|e| format!("the retry policy: {e}"))?;
    let client = TogetherClient::builder()
        .api_key(key.expose_secret())
        .base_url(&opts.base_url)
        .preset(preset)
        .retry(retry)
        .rate_limit(quota.clone())
        .build_with(http)
        .map_err(|e| key.scrub(&format!("{e} (nothing was sent)")))?;
    Ok(Client {
        service: client.service(),
        together: client,
        limits,
        quota,
        responses_429,
    })
}
