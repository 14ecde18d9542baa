//! The `metrics` feature: job slots in use and 409s absorbed, through a
//! recorder that keeps what it is given (run with `--features metrics`; CI does).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use tower::{BoxError, Layer, ServiceExt, service_fn};
use tower_jobs::{JobKind, JobLimitLayer};

/// Keeps counters and gauges by `name{label=value,...}`.
#[derive(Default)]
struct Keep(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Keep {
    fn entry(&self, key: &Key) -> Arc<AtomicU64> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        self.0.lock().unwrap().entry(name).or_default().clone()
    }

    fn get(&self, name: &str) -> u64 {
        self.0.lock().unwrap()[name].load(Ordering::Relaxed)
    }

    /// A gauge keeps its `f64` as bits.
    fn gauge(&self, name: &str) -> f64 {
        f64::from_bits(self.get(name))
    }
}

impl Recorder for Keep {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.entry(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.entry(key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// A server with a cap of one running job (409 beyond); `GET /jobs` lists them.
#[derive(Default)]
struct Server {
    jobs: BTreeMap<String, &'static str>,
}

fn reply(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn slots_in_use_and_conflicts_absorbed_are_counted() {
    let keep: &'static Keep = Box::leak(Box::default());
    metrics::set_global_recorder(keep).expect("the only recorder of this test binary");
    let kind = JobKind::new("job", NonZeroU32::new(2).unwrap(), Method::POST, "/jobs")
        .get_route("/jobs/{id}")
        .list_route("/jobs", "/data")
        .terminal(["completed"]);
    let layer = JobLimitLayer::builder()
        .kind(kind)
        .poll_interval(Duration::from_secs(1))
        .build()
        .unwrap();
    let server = Arc::new(Mutex::new(Server::default()));
    let state = server.clone();
    let svc = layer.layer(service_fn(move |req: Request<String>| {
        let mut s = state.lock().unwrap();
        let running = s.jobs.values().filter(|st| **st == "running").count();
        let res = match (req.method().as_str(), req.uri().path()) {
            ("POST", "/jobs") if running >= 1 => reply(409, serde_json::json!({"error": "cap"})),
            ("POST", "/jobs") => {
                let id = format!("j{}", s.jobs.len());
                s.jobs.insert(id.clone(), "running");
                reply(200, serde_json::json!({"id": id, "status": "running"}))
            }
            ("GET", "/jobs") => {
                let data: Vec<_> = s
                    .jobs
                    .iter()
                    .map(|(id, st)| serde_json::json!({"id": id, "status": st}))
                    .collect();
                reply(200, serde_json::json!({"data": data}))
            }
            _ => reply(404, serde_json::json!({})),
        };
        async move { Ok::<_, BoxError>(res) }
    }));
    let create = || Request::post("/jobs").body(String::new()).unwrap();
    let first = svc.clone().oneshot(create()).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(keep.gauge("tower_jobs_slots_in_use{kind=job}"), 1.0);
    // The second meets the server's cap (409), waits, and goes once the
    // first job is seen completed.
    let second = tokio::spawn(svc.clone().oneshot(create()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.lock().unwrap().jobs.insert("j0".into(), "completed");
    let second = second.await.unwrap().unwrap();
    assert_eq!(second.status(), 200);
    second.into_body().collect().await.unwrap();
    assert!(keep.get("tower_jobs_conflicts_absorbed_total{kind=job}") >= 1);
    assert_eq!(keep.gauge("tower_jobs_slots_in_use{kind=job}"), 1.0);
}
