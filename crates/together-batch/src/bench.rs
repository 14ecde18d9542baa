//! `together-batch bench` (hidden): this CLI's path and a plain client
//! doing its own retries, each against a fresh together-sim (seed limits,
//! sliding, time-scaled), on the same workload: wall time and 429s.
//!
//! The plain client is what an SDK user writes: N requests in flight, no
//! limiter, the openai SDK's backoff (0.5 s doubling to 8 s, times a jitter
//! of 0.75 to 1, `retry-after-ms` / `retry-after` honoured up to 60 s),
//! a few retries. Backoff times are divided by the time scale, like the
//! simulator's windows and hints.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::demo::{sim_options, spawn_sim, workload};
use crate::input::{self, Entry};
use crate::run;

/// Options of `bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Chat completions in the workload.
    #[arg(long, default_value_t = 400)]
    chats: usize,
    /// Embedding requests in the workload.
    #[arg(long, default_value_t = 200)]
    embeddings: usize,
    /// Time speed-up of the simulator (and of the quotas and backoffs).
    #[arg(long, default_value_t = 10.0)]
    time_scale: f64,
    /// Requests the plain client keeps in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Retries of the plain client, one run each (the openai SDK's default is 2).
    #[arg(long, default_value = "2,5", value_delimiter = ',',
          value_parser = clap::value_parser!(u32).range(0..=10))]
    retries: Vec<u32>,
    /// Writes the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
}

struct Plain {
    wall: Duration,
    ok: u64,
    failed: u64,
    retries: u64,
}

/// The openai SDK's wait before retry `n` (0-based), or the server's hint.
fn sdk_wait(
    n: u32,
    headers: Option<&http::HeaderMap>,
    time_scale: f64,
    rng: &mut SmallRng,
) -> Duration {
    let hint = headers.and_then(|h| {
        let ms = h
            .get("retry-after-ms")
            .and_then(|v| v.to_str().ok()?.parse::<f64>().ok())
            .map(|ms| ms / 1000.0);
        let secs = || {
            h.get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse::<f64>().ok())
        };
        ms.or_else(secs).filter(|s| *s > 0.0 && *s <= 60.0)
    });
    if let Some(s) = hint {
        return Duration::from_secs_f64(s);
    }
    let backoff = (0.5 * 2f64.powi(n as i32)).min(8.0);
    let jitter = 1.0 - 0.25 * rng.random::<f64>();
    Duration::from_secs_f64(backoff * jitter / time_scale)
}

async fn plain_client(
    base_url: String,
    key: String,
    text: &str,
    args: &BenchArgs,
    max_retries: u32,
) -> Result<Plain, String> {
    let entries = input::parse(text.as_bytes(), None)?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let (ok, failed, retries) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for e in entries {
        let Entry::Job(job) = e else { continue };
        let (client, sem, base, key) = (client.clone(), sem.clone(), base_url.clone(), key.clone());
        let (ok, failed, retries) = (ok.clone(), failed.clone(), retries.clone());
        let scale = args.time_scale;
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("never closed");
            let mut rng = SmallRng::seed_from_u64(job.line as u64);
            for attempt in 0..=max_retries {
                let req = Request::builder()
                    .method(job.method.clone())
                    .uri(format!("{base}{}", job.path))
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .header("x-custom-id", job.custom_id.as_str())
                    .body(Full::new(Bytes::from(job.body.clone())))
                    .expect("a valid request");
                let headers = match client.request(req).await {
                    Ok(res) => {
                        let status = res.status();
                        let headers = res.headers().clone();
                        let _ = res.into_body().collect().await;
                        if status.is_success() {
                            ok.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        if !matches!(status.as_u16(), 408 | 409 | 429 | 500..=599) {
                            break;
                        }
                        Some(headers)
                    }
                    Err(_) => None,
                };
                if attempt == max_retries {
                    break;
                }
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(sdk_wait(attempt, headers.as_ref(), scale, &mut rng)).await;
            }
            failed.fetch_add(1, Ordering::Relaxed);
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    Ok(Plain {
        wall: start.elapsed(),
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        retries: retries.load(Ordering::Relaxed),
    })
}

/// Runs the comparison and prints the figures.
pub(crate) async fn bench(args: BenchArgs) -> ExitCode {
    match bench_inner(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("together-batch: error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn bench_inner(args: BenchArgs) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("together-batch-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let text = workload(args.embeddings, args.chats, 11);

    // This CLI's path.
    let sim = spawn_sim(args.time_scale).await?;
    let opts = sim_options(&sim, &dir, args.time_scale, true);
    std::fs::write(&opts.input, &text).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&opts.output);
    let batch = run::run(opts).await?;
    let batch_429 = sim.stats().total_429;
    sim.shutdown().await;

    // The plain client, once per retry count.
    let mut plains = Vec::new();
    for &retries in &args.retries {
        let sim = spawn_sim(args.time_scale).await?;
        let plain = plain_client(
            sim.base_url(),
            sim.api_keys()[0].clone(),
            &text,
            &args,
            retries,
        )
        .await?;
        plains.push((retries, plain, sim.stats().total_429));
        sim.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Seed limits: chat 10/s, embeddings 5/s, scaled.
    let ideal = ((args.chats.max(1) - 1) as f64 / (10.0 * args.time_scale))
        .max((args.embeddings.max(1) - 1) as f64 / (5.0 * args.time_scale));
    println!(
        "workload: {} chats + {} embedding requests; seed limits (chat 600/min, embeddings \
         300/min) per 1 s sliding window, time x{}; ideal {ideal:.2} s",
        args.chats, args.embeddings, args.time_scale
    );
    println!(
        "{:<44} {:>8} {:>9} {:>6} {:>8} {:>7} {:>7}",
        "client", "wall s", "of ideal", "429s", "retries", "ok", "failed"
    );
    println!(
        "{:<44} {:>8.2} {:>8.1}% {:>6} {:>8} {:>7} {:>7}",
        "together-batch (paced, retries outside)",
        batch.wall_secs,
        100.0 * ideal / batch.wall_secs,
        batch_429,
        batch.retries,
        batch.ok,
        batch.failed
    );
    let mut plain_figures = Vec::new();
    for (retries, plain, n429) in &plains {
        let ratio = plain.wall.as_secs_f64() / batch.wall_secs;
        // A share of the ideal means nothing when requests were given up on.
        let of_ideal = if plain.failed == 0 {
            format!("{:.1}%", 100.0 * ideal / plain.wall.as_secs_f64())
        } else {
            "n/a".to_owned()
        };
        println!(
            "{:<44} {:>8.2} {:>9} {:>6} {:>8} {:>7} {:>7}",
            format!(
                "plain, {} in flight, SDK backoff, {retries} retries",
                args.concurrency
            ),
            plain.wall.as_secs_f64(),
            of_ideal,
            n429,
            plain.retries,
            plain.ok,
            plain.failed
        );
        plain_figures.push(json!({
            "max_retries": retries, "concurrency": args.concurrency,
            "wall_secs": plain.wall.as_secs_f64(), "sim_429": n429,
            "retries": plain.retries, "ok": plain.ok, "failed": plain.failed,
            "wall_ratio_plain_over_batch": ratio,
        }));
    }
    for (retries, plain, _) in &plains {
        println!(
            "wall time ratio plain ({retries} retries) / together-batch: {:.2} \
             ({} of {} requests answered successfully vs {})",
            plain.wall.as_secs_f64() / batch.wall_secs,
            plain.ok,
            args.chats + args.embeddings,
            batch.ok
        );
    }
    if let Some(path) = &args.report {
        let figures = json!({
            "chats": args.chats, "embeddings": args.embeddings, "time_scale": args.time_scale,
            "ideal_secs": ideal,
            "batch": {"wall_secs": batch.wall_secs, "sim_429": batch_429, "retries": batch.retries,
                      "ok": batch.ok, "failed": batch.failed},
            "plain": plain_figures,
        });
        std::fs::write(path, figures.to_string()).map_err(|e| e.to_string())?;
    }
    Ok(())
}
