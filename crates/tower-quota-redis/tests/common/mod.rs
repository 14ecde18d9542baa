//! Finding (or starting) Redis for the tests.
//!
//! In order: `REDIS_URL`; a server on 127.0.0.1:6379; a private
//! `redis-server` started on a free port. With none of these, a test either
//! fails (when `TOGETHER_RATE_LIMITS_REQUIRE_REDIS=1`, as CI sets it) or says
//! loudly on stderr that it did not run and how to make it run.
#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

const HOW: &str = "install redis-server (e.g. `apt-get install redis-server`) or set REDIS_URL=redis://HOST:PORT/";

/// A Redis URL for shared-state tests, or `None` after saying loudly why not.
pub async fn redis_url(test: &str) -> Option<String> {
    static URL: OnceCell<Option<String>> = OnceCell::const_new();
    let url = URL
        .get_or_init(|| async {
            if let Ok(url) = std::env::var("REDIS_URL") {
                return Some(url);
            }
            if TcpStream::connect("127.0.0.1:6379").is_ok() {
                return Some("redis://127.0.0.1:6379/".into());
            }
            // Leaked on purpose: lives as long as the test process.
            PrivateRedis::start().await.map(|r| {
                let url = r.url();
                std::mem::forget(r);
                url
            })
        })
        .await
        .clone();
    if url.is_none() {
        missing(test);
    }
    url
}

/// Fails under CI's `TOGETHER_RATE_LIMITS_REQUIRE_REDIS=1`; otherwise says loudly that `test` did not run.
pub fn missing(test: &str) {
    if std::env::var("TOGETHER_RATE_LIMITS_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
        panic!("{test} needs Redis and TOGETHER_RATE_LIMITS_REQUIRE_REDIS=1: {HOW}");
    }
    eprintln!(
        "\n*** {test} DID NOT RUN: no Redis found (REDIS_URL unset, nothing on 127.0.0.1:6379, \
         no redis-server to start). To run it: {HOW}. ***\n"
    );
}

/// A redis-server of our own on a free port, killed on drop.
pub struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    /// Starts one, or `None` when redis-server is not installed.
    pub async fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        Self::start_on(port).await
    }

    /// Starts one on `port` (to bring a killed server back where it was).
    pub async fn start_on(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let server = PrivateRedis { child, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key prefix no other test run uses.
pub fn unique_prefix(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("trl-test:{test}:{}:{nanos}", std::process::id())
}

/// The most timestamps (µs) inside any window of `window_us`.
pub fn max_in_window(times: &mut [u128], window_us: u128) -> usize {
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < window_us)
                .count()
        })
        .max()
        .unwrap_or(0)
}
