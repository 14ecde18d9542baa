//! The layer in front of a real HTTP client against together-sim, whose
//! fine-tunes answer 409 beyond 3 non-terminal jobs.

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use together_sim::config::FineTuneConfig;
use together_sim::{Sim, SimHandle};
use tower::{BoxError, Service, ServiceExt};
use tower_jobs::{JobKind, JobLimitLayer};

const FT: &str = "/v1/fine-tunes";

/// Pending 1 s, queued 1 s, running 10 s (simulated) at scale 100: 120 ms
/// real per job.
async fn sim() -> SimHandle {
    sim_at(100.0).await
}

/// The same at `scale` (20: 600 ms real per job, for tests that need a
/// foreign job still running when the client starts, even on a slow machine).
async fn sim_at(scale: f64) -> SimHandle {
    Sim::builder()
        .time_scale(scale)
        .fine_tunes(FineTuneConfig {
            max_concurrent: 3,
            pending: Duration::from_secs(1),
            queued: Duration::from_secs(1),
            running: Duration::from_secs(10),
        })
        .spawn()
        .await
        .unwrap()
}

fn fine_tunes(cap: u32) -> JobKind {
    JobKind::new("fine-tune", NonZeroU32::new(cap).unwrap(), Method::POST, FT)
        .get_route("/v1/fine-tunes/{id}")
        .list_route(FT, "/data")
        .cancel_route(Method::POST, "/v1/fine-tunes/{id}/cancel")
        .terminal(["completed", "cancelled", "error", "user_error"])
}

fn layer(reconcile_on_start: bool) -> JobLimitLayer {
    JobLimitLayer::builder()
        .kind(fine_tunes(3))
        .reconcile_on_start(reconcile_on_start)
        .poll_interval(Duration::from_millis(20))
        .max_conflict_wait(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn request(sim: &SimHandle, method: Method, path: &str, body: &Value) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(format!("{}{path}", sim.base_url()))
        .header("authorization", format!("Bearer {}", sim.api_keys()[0]))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn ft_body() -> Value {
    json!({"model": "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "training_file": "file-abc"})
}

async fn send<S, B>(svc: &S, req: Request<Full<Bytes>>) -> (StatusCode, Value)
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let resp = svc.clone().oneshot(req).await.map_err(Into::into).unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Creates a fine-tune through `svc` and polls it through `svc` until it
/// is terminal; returns the create's status and the final status.
async fn run_job<S, B>(sim: &SimHandle, svc: S) -> (StatusCode, String)
where
    S: Service<Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: Into<BoxError>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (status, job) = send(&svc, request(sim, Method::POST, FT, &ft_body())).await;
    if !status.is_success() {
        return (status, String::new());
    }
    let path = format!("{FT}/{}", job["id"].as_str().unwrap());
    for _ in 0..2000 {
        let (_, v) = send(&svc, request(sim, Method::GET, &path, &json!(null))).await;
        let s = v["status"].as_str().unwrap().to_string();
        if ["completed", "cancelled", "error", "user_error"].contains(&s.as_str()) {
            return (status, s);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{path} never finished");
}

fn http_client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_fine_tunes_through_a_cap_of_3_meet_no_409() {
    let sim = std::sync::Arc::new(sim().await);
    let svc = tower::Layer::layer(&layer(false), http_client());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (sim, svc) = (sim.clone(), svc.clone());
            tokio::spawn(async move { run_job(&sim, svc).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), (StatusCode::OK, "completed".to_string()));
    }
    let stats = sim.stats();
    assert_eq!(stats.count(FT, 409), 0);
    assert_eq!(stats.fine_tunes.created, 10);
    assert!(stats.fine_tunes.max_active <= 3, "{:?}", stats.fine_tunes);
    assert!(stats.fine_tunes.max_running <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_fine_tunes_without_the_layer_meet_409s() {
    let sim = std::sync::Arc::new(sim().await);
    let svc = http_client();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (sim, svc) = (sim.clone(), svc.clone());
            tokio::spawn(async move { run_job(&sim, svc).await.0 })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        if t.await.unwrap() == StatusCode::CONFLICT {
            conflicts += 1;
        }
    }
    // 3 fit; the other 7 arrive while those run (unless the machine stalls
    // for a whole job's 120 ms).
    assert!(conflicts > 0, "no create was refused");
    assert_eq!(sim.stats().count(FT, 409), conflicts);
}

/// Starts one fine-tune directly (another process); returns its id.
async fn foreign_job(sim: &SimHandle) -> String {
    let (status, v) = send(&http_client(), request(sim, Method::POST, FT, &ft_body())).await;
    assert_eq!(status, 200);
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_job_is_counted_on_start() {
    let sim = std::sync::Arc::new(sim_at(20.0).await);
    let foreign = foreign_job(&sim).await;
    let layer = layer(true);
    let handle = layer.handle();
    let svc = tower::Layer::layer(&layer, http_client());
    let (status, _) = send(&svc, request(&sim, Method::POST, FT, &ft_body())).await;
    assert_eq!(status, 200);
    assert!(
        handle.running().iter().any(|(_, id)| *id == foreign),
        "{:?}",
        handle.running()
    );
    assert_eq!(handle.available("fine-tune"), Some(1));
    // One slot left: these two run one after the other and meet no 409.
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let (sim, svc) = (sim.clone(), svc.clone());
            tokio::spawn(async move { run_job(&sim, svc).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), (StatusCode::OK, "completed".to_string()));
    }
    let stats = sim.stats();
    assert_eq!(
        stats.count(FT, 409),
        0,
        "the foreign job was counted: no 409"
    );
    assert!(stats.fine_tunes.max_active <= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflict_caused_by_a_foreign_job_is_absorbed() {
    let sim = std::sync::Arc::new(sim_at(20.0).await);
    let foreign = foreign_job(&sim).await;
    let layer = layer(false);
    let handle = layer.handle();
    let svc = tower::Layer::layer(&layer, http_client());
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (sim, svc) = (sim.clone(), svc.clone());
            tokio::spawn(async move { run_job(&sim, svc).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), (StatusCode::OK, "completed".to_string()));
    }
    let stats = sim.stats();
    assert!(stats.count(FT, 409) >= 1, "the server did refuse a create");
    assert_eq!(stats.fine_tunes.created, 4);
    assert!(stats.fine_tunes.max_active <= 3);
    // The foreign job holds its slot until a response shows it finished.
    let (_, list) = send(&svc, request(&sim, Method::GET, FT, &json!(null))).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 4);
    assert!(!handle.running().iter().any(|(_, id)| *id == foreign));
    assert_eq!(handle.available("fine-tune"), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_through_the_layer_frees_the_slot() {
    let sim = sim().await;
    let layer = JobLimitLayer::builder()
        .kind(fine_tunes(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let svc = tower::Layer::layer(&layer, http_client());
    let (_, job) = send(&svc, request(&sim, Method::POST, FT, &ft_body())).await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(handle.available("fine-tune"), Some(0));
    let (status, v) = send(
        &svc,
        request(&sim, Method::POST, &format!("{FT}/{id}/cancel"), &json!({})),
    )
    .await;
    assert_eq!(
        (status, v["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    assert_eq!(handle.available("fine-tune"), Some(1));
    // A list through the layer shows it cancelled too; nothing left to free.
    let (_, list) = send(&svc, request(&sim, Method::GET, FT, &json!(null))).await;
    assert_eq!(list["data"][0]["status"], "cancelled");
    assert!(handle.running().is_empty());
}
