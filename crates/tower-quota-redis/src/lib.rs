//! tower-quota's quotas shared by many processes through Redis.
//!
//! Several workers with one API key each believe they own the whole quota
//! and together overshoot it. [`RedisStore`] moves the decision to Redis:
//! GCRA in one Lua script, on the server's clock, in integer microseconds,
//! one round trip per decision (`EVALSHA`, loading the script on a miss),
//! all the request's quotas charged together or not at all. The layer keeps
//! its FIFO queue, holds and server feedback locally; its queue head asks
//! Redis and, when told to wait, sleeps exactly that long before asking again.
//!
//! Keys carry the cell's name and a hash of the API key, never the key
//! itself, and expire as soon as the quota is fully replenished. When
//! Redis fails or is slow, the layer falls back as
//! [`SharedOptions`](tower_quota::SharedOptions) says (by default to a
//! local limiter at half of each quota) and tries Redis again after a backoff.
//!
//! # Learned paces and holds
//!
//! What one process learns from the server is kept beside the GCRA state
//! (`src/share.lua`): a learned pace (as an interval) that every process's
//! decisions then use, and a hold after a 429 that makes every process wait.
//! A pace from headers replaces the shared one; a cut after a 429 is taken
//! unless the shared pace is already slower; growth from probing is taken
//! only if nobody changed the shared pace meanwhile. A shared pace lives
//! 10 minutes past its last news.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use tower_quota::{Limits, OnStoreFailure, RateLimitLayer, SharedOptions};
//! use tower_quota_redis::RedisStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limits = Limits::from_toml(r#"
//!     [quotas.chat]
//!     rate = "600/min"
//!     [[routes]]
//!     method = "POST"
//!     path = "/v1/chat/completions"
//!     quotas = ["chat"]
//! "#)?;
//! let api_key = std::env::var("TOGETHER_API_KEY")?;
//! // Connects lazily: a Redis that is down at start is a fallback, not an error.
//! let store = RedisStore::new("redis://127.0.0.1:6379/", &api_key)?;
//! // Four workers share the key: each falls back to a quarter of the quota.
//! let options = SharedOptions::default().on_failure(OnStoreFailure::LocalShare(0.25));
//! let layer = RateLimitLayer::shared(limits, Arc::new(store), options)?;
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! # Limits
//!
//! Intervals are whole microseconds: a shared quota paces at most 1,000,000
//! units per second.
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};
use tower_quota::shared::{DecisionFuture, ShareFuture};
use tower_quota::{PaceNews, SharedCell, SharedDecision, SharedNews, SharedStore};

/// The GCRA script (see `src/gcra.lua`), after the clock it decides by.
const GCRA: &str = concat!(include_str!("clock.lua"), include_str!("gcra.lua"));
/// The script that shares learned paces and holds (see `src/share.lua`).
const SHARE: &str = concat!(include_str!("clock.lua"), include_str!("share.lua"));
/// How long a shared pace lives without news.
const PACE_TTL: Duration = Duration::from_secs(600);

/// The default prefix of every key this crate writes.
pub const DEFAULT_PREFIX: &str = "trl";

/// Shared GCRA decisions in Redis; see the [crate docs](crate).
///
/// # Clone
///
/// Clones share the connection (a redis-rs `ConnectionManager`, which
/// reconnects by itself).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    script: Arc<Script>,
    share_script: Arc<Script>,
    prefix: String,
    namespace: String,
    now_override: Option<u64>,
}

impl RedisStore {
    /// A store at `url` for the quotas of `secret` (the API key they belong
    /// to). The secret is hashed (SHA-256) into the key namespace and
    /// otherwise dropped. Connects lazily, on the first decision.
    pub fn new(url: &str, secret: &str) -> Result<Self, RedisStoreError> {
        Self::with_config(url, secret, Duration::from_millis(100))
    }

    /// Like [`new`](Self::new), with the per-call response and connect timeout.
    pub fn with_config(
        url: &str,
        secret: &str,
        timeout: Duration,
    ) -> Result<Self, RedisStoreError> {
        let client = redis::Client::open(url).map_err(|e| RedisStoreError::new(url, e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| RedisStoreError::new(url, e))?;
        Ok(RedisStore {
            conn,
            script: Arc::new(Script::new(GCRA)),
            share_script: Arc::new(Script::new(SHARE)),
            prefix: DEFAULT_PREFIX.to_owned(),
            namespace: namespace_of(secret),
            now_override: None,
        })
    }

    /// Uses `prefix` instead of [`DEFAULT_PREFIX`] for every key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The Redis key of a cell's GCRA state: prefix, namespace (hash of the
    /// secret), `tat`, the cell's name. Its interval is not part of it: a
    /// learned pace changes, the schedule stays.
    pub fn key_of(&self, cell: &SharedCell) -> String {
        self.key("tat", &cell.name)
    }

    /// The key of `kind` (`tat`, `pace`, `hold`) for the cell named `name`.
    fn key(&self, kind: &str, name: &str) -> String {
        let name = name.replace('\u{1f}', ":");
        format!("{}:{}:{kind}:{name}", self.prefix, self.namespace)
    }

    /// Decides as if the server's clock read `now_us` (tests compare the
    /// script with governor this way).
    #[doc(hidden)]
    pub fn at_time(mut self, now_us: u64) -> Self {
        self.now_override = Some(now_us);
        self
    }

    /// One decision, awaited (what [`SharedStore::decide`] runs).
    pub async fn decide_now(
        &self,
        cells: &[SharedCell],
        catch_up: Duration,
    ) -> Result<SharedDecision, redis::RedisError> {
        let mut invocation = self.script.prepare_invoke();
        invocation
            .arg(
                self.now_override
                    .map_or_else(String::new, |t| t.to_string()),
            )
            .arg(micros(catch_up));
        for cell in cells {
            invocation
                .key(self.key("tat", &cell.name))
                .key(self.key("pace", &cell.name))
                .key(self.key("hold", &cell.name))
                .arg(micros(cell.interval).max(1))
                .arg(cell.burst.max(1))
                .arg(micros(cell.interval).max(1) * u64::from(cell.burst.saturating_sub(1)))
                .arg(cell.cost);
        }
        let mut conn = self.conn.clone();
        let (granted, wait): (u8, u64) = invocation.invoke_async(&mut conn).await?;
        Ok(if granted == 1 {
            SharedDecision::Granted
        } else {
            SharedDecision::Wait(Duration::from_micros(wait))
        })
    }
}

impl RedisStore {
    /// Shares one process's news about a cell; the shared interval after it.
    pub async fn share_now(
        &self,
        news: &SharedNews,
    ) -> Result<Option<Duration>, redis::RedisError> {
        let (kind, to, from) = match news.pace {
            None => ("", Duration::ZERO, Duration::ZERO),
            Some(PaceNews::Set(to)) => ("set", to, Duration::ZERO),
            Some(PaceNews::Slower(to)) => ("slower", to, Duration::ZERO),
            Some(PaceNews::Faster { from, to }) => ("faster", to, from),
            Some(_) => ("", Duration::ZERO, Duration::ZERO),
        };
        let mut invocation = self.share_script.prepare_invoke();
        invocation
            .key(self.key("pace", &news.name))
            .key(self.key("hold", &news.name))
            .arg(
                self.now_override
                    .map_or_else(String::new, |t| t.to_string()),
            )
            .arg(kind)
            .arg(micros(to).max(1))
            .arg(micros(from).max(1))
            .arg(
                news.hold
                    .map_or_else(String::new, |h| micros(h).to_string()),
            )
            .arg(PACE_TTL.as_millis().to_string());
        let mut conn = self.conn.clone();
        let shared: String = invocation.invoke_async(&mut conn).await?;
        Ok(shared
            .parse::<u64>()
            .ok()
            .filter(|&us| us > 0)
            .map(Duration::from_micros))
    }
}

impl SharedStore for RedisStore {
    fn share(&self, news: SharedNews) -> ShareFuture {
        let store = self.clone();
        Box::pin(async move {
            store
                .share_now(&news)
                .await
                .map_err(|e| Box::new(RedisStoreError::call(e)) as tower_quota::BoxError)
        })
    }

    fn decide(&self, cells: Vec<SharedCell>, catch_up: Duration) -> DecisionFuture {
        let store = self.clone();
        Box::pin(async move {
            store
                .decide_now(&cells, catch_up)
                .await
                .map_err(|e| Box::new(RedisStoreError::call(e)) as tower_quota::BoxError)
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // No URL: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The first 16 hex digits of SHA-256 over the secret: enough to keep keys
/// apart, nothing to recover the secret from.
fn namespace_of(secret: &str) -> String {
    let digest = Sha256::digest(format!("together-rate-limits:{secret}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Redis could not be reached or answered with an error.
#[derive(Debug)]
pub struct RedisStoreError {
    message: String,
}

impl RedisStoreError {
    fn new(url: &str, error: redis::RedisError) -> Self {
        // Keep the host, drop any password in the URL.
        let host = url.rsplit('@').next().unwrap_or(url);
        RedisStoreError {
            message: format!("cannot use Redis at {host}: {error}"),
        }
    }

    fn call(error: redis::RedisError) -> Self {
        RedisStoreError {
            message: format!("Redis decision failed: {error}"),
        }
    }
}

impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        f.write_str(
            " (check that redis-server runs and the URL is right; the layer falls back meanwhile)",
        )
    }
}

impl std::error::Error for RedisStoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_hides_the_secret() {
        let ns = namespace_of("sk-very-secret");
        assert_eq!(ns.len(), 16);
        assert!(!ns.contains("secret"));
        assert_ne!(ns, namespace_of("sk-other"));
    }

    #[test]
    fn errors_do_not_show_url_passwords() {
        let err = RedisStoreError::new(
            "redis://user:hunter2@localhost:6379/",
            redis::RedisError::from((redis::ErrorKind::Io, "refused")),
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
