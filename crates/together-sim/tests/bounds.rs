//! The simulator under careless or hostile clients: idle connections are
//! closed after the idle timeout, and a flood of huge `x-custom-id` values
//! keeps the stats (and memory) bounded.
//!
//! Prints the measured figures (`cargo test -p together-sim --test bounds -- --nocapture`).

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Method;
use together_sim::Sim;
use tokio::io::AsyncReadExt;

/// This process's resident memory, in bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_are_closed_after_the_timeout() {
    let sim = Sim::builder()
        .idle_timeout(Duration::from_millis(300))
        .spawn()
        .await
        .unwrap();
    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        idle.push(tokio::net::TcpStream::connect(sim.addr()).await.unwrap());
    }
    let start = Instant::now();
    let mut closed = 0;
    for mut stream in idle {
        let mut buf = [0u8; 16];
        // The server closes: the read ends (EOF or a reset), well before 5 s.
        let left = Duration::from_secs(5).saturating_sub(start.elapsed());
        if let Ok(Ok(_)) = tokio::time::timeout(left, stream.read(&mut buf)).await {
            closed += 1;
        }
    }
    let took = start.elapsed();
    println!("2,000 idle connections closed in {took:.2?} (idle timeout 0.3 s)");
    assert_eq!(closed, 2000, "closed {closed} of 2000");
    assert!(
        took >= Duration::from_millis(250),
        "closed before the timeout: {took:?}"
    );
    // And the server still answers.
    let mut client = Client::new(sim.addr(), &sim.api_keys()[0]);
    let answer = client.get("/v1/models").await;
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_huge_custom_ids_keeps_the_stats_bounded() {
    let sim = Sim::builder().no_limits().spawn().await.unwrap();
    let mut client = Client::new(sim.addr(), &sim.api_keys()[0]);
    let before = rss();
    let body = Bytes::from(embed_body("hi").to_string());
    for i in 0..3000 {
        let id = format!("{i:05}{}", "x".repeat(100 * 1024));
        let answer = client
            .send(
                Method::POST,
                "/v1/embeddings",
                &[("x-custom-id", id.as_str())],
                body.clone(),
            )
            .await;
        assert_eq!(answer.status, 200);
    }
    let grown = rss().saturating_sub(before);
    let stats = sim.stats();
    let json = serde_json::to_vec(&stats).unwrap().len();
    println!(
        "3,000 requests with 100 KB x-custom-id values: resident memory +{:.1} MB, \
         stats {:.2} MB as JSON, longest id kept {} bytes",
        grown as f64 / 1e6,
        json as f64 / 1e6,
        stats.custom_ids.keys().map(String::len).max().unwrap_or(0)
    );
    assert_eq!(stats.custom_ids.len(), 3000);
    assert!(stats.custom_ids.keys().all(|k| k.len() <= 256));
    assert!(json < 4 << 20, "stats {json} bytes");
    assert!(grown < 64 << 20, "memory grew {grown} bytes");
}
