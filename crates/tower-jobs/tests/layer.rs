//! The layer's slot logic against a tiny in-process job server, under
//! tokio's paused clock.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use tower::{BoxError, ServiceExt, service_fn};
use tower_jobs::{JobKind, JobLimitLayer, JobsHandle};

/// A job server: `POST /jobs` creates a `running` job, `GET /jobs/{id}`,
/// `GET /jobs` (`{"data": [...]}`), `POST /jobs/{id}/cancel`.
#[derive(Default)]
struct Server {
    jobs: BTreeMap<String, String>,
    next: u32,
    /// Answer creates with this status (no job made).
    fail: Option<StatusCode>,
    /// Answer creates with a transport error.
    broken: bool,
    /// Make the job at once, answer after this long.
    delay: Duration,
    /// Most non-terminal jobs at once.
    max_active: usize,
    /// The server's own cap on running jobs: 409 beyond.
    cap: Option<usize>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Server>>);

impl Fake {
    fn set(&self, id: &str, status: &str) {
        self.0.lock().unwrap().jobs.insert(id.into(), status.into());
    }
    fn with<T>(&self, f: impl FnOnce(&mut Server) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    async fn serve(self, req: Request<String>) -> Result<Response<Full<Bytes>>, BoxError> {
        let path: Vec<String> = req
            .uri()
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        let reply = |status: u16, v: Value| {
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(v.to_string())))
                .unwrap()
        };
        let (delay, answer) = {
            let mut s = self.0.lock().unwrap();
            match (req.method().clone(), path.as_slice()) {
                (Method::POST, ["jobs"]) => {
                    if s.broken {
                        return Err("connection reset".into());
                    }
                    let running = s.jobs.values().filter(|v| *v == "running").count();
                    if s.cap.is_some_and(|cap| running >= cap) {
                        (Duration::ZERO, reply(409, json!({"error": "conflict"})))
                    } else if let Some(status) = s.fail {
                        (
                            Duration::ZERO,
                            reply(status.as_u16(), json!({"error": "no"})),
                        )
                    } else {
                        s.next += 1;
                        let id = format!("job-{}", s.next);
                        s.jobs.insert(id.clone(), "running".into());
                        let active = s.jobs.values().filter(|v| *v == "running").count();
                        s.max_active = s.max_active.max(active);
                        (s.delay, reply(200, json!({"id": id, "status": "running"})))
                    }
                }
                (Method::GET, ["jobs"]) => {
                    let data: Vec<Value> = s
                        .jobs
                        .iter()
                        .map(|(id, st)| json!({"id": id, "status": st}))
                        .collect();
                    (Duration::ZERO, reply(200, json!({"data": data})))
                }
                (Method::GET, ["jobs", id]) => match s.jobs.get(*id) {
                    Some(st) => (Duration::ZERO, reply(200, json!({"id": id, "status": st}))),
                    None => (Duration::ZERO, reply(404, json!({}))),
                },
                (Method::POST, ["jobs", id, "cancel"]) => match s.jobs.get_mut(*id) {
                    Some(st) => {
                        *st = "cancelled".into();
                        (
                            Duration::ZERO,
                            reply(200, json!({"id": id, "status": "cancelled"})),
                        )
                    }
                    None => (Duration::ZERO, reply(404, json!({}))),
                },
                _ => (Duration::ZERO, reply(404, json!({}))),
            }
        };
        tokio::time::sleep(delay).await;
        Ok(answer)
    }
}

fn kind(cap: u32) -> JobKind {
    JobKind::new("job", NonZeroU32::new(cap).unwrap(), Method::POST, "/jobs")
        .get_route("/jobs/{id}")
        .list_route("/jobs", "/data")
        .cancel_route(Method::POST, "/jobs/{id}/cancel")
        .terminal(["completed", "cancelled", "failed"])
}

type Client = tower::util::BoxCloneSyncService<
    Request<String>,
    Response<tower_jobs::ResponseBody<Full<Bytes>>>,
    BoxError,
>;

fn client(fake: &Fake, layer: &JobLimitLayer) -> Client {
    let fake = fake.clone();
    let svc = service_fn(move |req| fake.clone().serve(req));
    tower::util::BoxCloneSyncService::new(tower::Layer::layer(layer, svc))
}

async fn call(c: &Client, method: Method, path: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .body(String::new())
        .unwrap();
    let resp = c.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn create(c: &Client) -> String {
    let (status, v) = call(c, Method::POST, "/jobs").await;
    assert_eq!(status, 200);
    v["id"].as_str().unwrap().to_string()
}

fn setup(cap: u32) -> (Fake, Client, JobsHandle) {
    let layer = JobLimitLayer::builder().kind(kind(cap)).build().unwrap();
    let fake = Fake::default();
    let c = client(&fake, &layer);
    (fake, c, layer.handle())
}

/// Spawns a create and lets it run as far as it can.
async fn spawn_create(c: &Client) -> tokio::task::JoinHandle<String> {
    let c = c.clone();
    let task = tokio::spawn(async move { create(&c).await });
    tokio::time::sleep(Duration::from_millis(1)).await;
    task
}

#[tokio::test(start_paused = true)]
async fn cap_of_one_serializes_creates() {
    let (fake, c, handle) = setup(1);
    let a = create(&c).await;
    assert_eq!(handle.running(), [("job".to_string(), a.clone())]);
    assert_eq!(handle.available("job"), Some(0));
    let b = spawn_create(&c).await;
    let third = spawn_create(&c).await;
    assert!(!b.is_finished() && !third.is_finished());
    fake.set(&a, "completed");
    call(&c, Method::GET, &format!("/jobs/{a}")).await;
    let b = b.await.unwrap();
    assert!(!third.is_finished());
    fake.set(&b, "completed");
    call(&c, Method::GET, &format!("/jobs/{b}")).await;
    let third = third.await.unwrap();
    assert_eq!(handle.running(), [("job".to_string(), third)]);
    assert_eq!(fake.with(|s| s.max_active), 1);
}

#[tokio::test(start_paused = true)]
async fn running_status_keeps_the_slot() {
    let (_fake, c, handle) = setup(1);
    let a = create(&c).await;
    let (status, v) = call(&c, Method::GET, &format!("/jobs/{a}")).await;
    assert_eq!(
        (status.as_u16(), v["status"].as_str()),
        (200, Some("running"))
    );
    assert_eq!(handle.available("job"), Some(0));
    assert_eq!(handle.running().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn release_on_terminal_status_via_get() {
    let (fake, c, handle) = setup(2);
    let a = create(&c).await;
    let b = create(&c).await;
    assert_eq!(handle.available("job"), Some(0));
    fake.set(&a, "failed");
    let (_, v) = call(&c, Method::GET, &format!("/jobs/{a}")).await;
    assert_eq!(v["status"], "failed", "the body is handed back as it was");
    assert_eq!(handle.available("job"), Some(1));
    assert_eq!(handle.running(), [("job".to_string(), b)]);
}

#[tokio::test(start_paused = true)]
async fn release_on_terminal_status_via_list() {
    let (fake, c, handle) = setup(3);
    let ids = [create(&c).await, create(&c).await, create(&c).await];
    let waiting = spawn_create(&c).await;
    fake.set(&ids[0], "completed");
    fake.set(&ids[2], "cancelled");
    let (_, v) = call(&c, Method::GET, "/jobs").await;
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    let d = waiting.await.unwrap();
    assert_eq!(handle.available("job"), Some(1));
    let mut want = vec![("job".to_string(), ids[1].clone()), ("job".to_string(), d)];
    want.sort();
    assert_eq!(handle.running(), want);
}

#[tokio::test(start_paused = true)]
async fn release_on_cancel() {
    let (_fake, c, handle) = setup(1);
    let a = create(&c).await;
    let waiting = spawn_create(&c).await;
    assert!(!waiting.is_finished());
    let (status, _) = call(&c, Method::POST, &format!("/jobs/{a}/cancel")).await;
    assert_eq!(status, 200);
    let b = waiting.await.unwrap();
    assert_eq!(handle.running(), [("job".to_string(), b)]);
    // A failed cancel (unknown job) frees nothing.
    let (status, _) = call(&c, Method::POST, "/jobs/nope/cancel").await;
    assert_eq!(status, 404);
    assert_eq!(handle.available("job"), Some(0));
}

#[tokio::test(start_paused = true)]
async fn release_on_failed_create() {
    let (fake, c, handle) = setup(1);
    fake.with(|s| s.fail = Some(StatusCode::BAD_REQUEST));
    let (status, v) = call(&c, Method::POST, "/jobs").await;
    assert_eq!(status, 400);
    assert_eq!(v["error"], "no", "the refusal is handed back");
    assert_eq!(handle.available("job"), Some(1));
    fake.with(|s| {
        s.fail = None;
        s.broken = true;
    });
    let req = Request::post("/jobs").body(String::new()).unwrap();
    let err = c.clone().oneshot(req).await.unwrap_err();
    assert_eq!(err.to_string(), "connection reset");
    assert_eq!(handle.available("job"), Some(1));
    assert!(handle.running().is_empty());
    fake.with(|s| s.broken = false);
    create(&c).await;
    assert_eq!(handle.available("job"), Some(0));
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_consumes_nothing() {
    let (fake, c, handle) = setup(1);
    let a = create(&c).await;
    let waiter = spawn_create(&c).await;
    assert!(!waiter.is_finished());
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    fake.set(&a, "completed");
    call(&c, Method::GET, &format!("/jobs/{a}")).await;
    assert_eq!(handle.available("job"), Some(1));
    assert!(handle.running().is_empty());
    assert_eq!(fake.with(|s| s.next), 1, "the dropped waiter sent nothing");
    create(&c).await;
}

#[tokio::test(start_paused = true)]
async fn dropped_in_flight_create_keeps_its_slot_until_reconciled() {
    let (fake, c, handle) = setup(1);
    fake.with(|s| s.delay = Duration::from_secs(10));
    let in_flight = spawn_create(&c).await;
    assert_eq!(fake.with(|s| s.next), 1, "the create reached the server");
    in_flight.abort();
    let _ = in_flight.await;
    assert_eq!(
        handle.available("job"),
        Some(0),
        "the job may exist: the slot is kept"
    );
    assert_eq!(handle.orphaned("job"), Some(1));
    assert!(handle.running().is_empty());
    // A list shows the job: the orphaned slot becomes the job's.
    call(&c, Method::GET, "/jobs").await;
    assert_eq!(handle.orphaned("job"), Some(0));
    assert_eq!(handle.running(), [("job".to_string(), "job-1".to_string())]);
    assert_eq!(handle.available("job"), Some(0));
    fake.set("job-1", "completed");
    call(&c, Method::GET, "/jobs/job-1").await;
    assert_eq!(handle.available("job"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn dropped_in_flight_create_slot_times_out() {
    let layer = JobLimitLayer::builder()
        .kind(kind(1))
        .orphan_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let fake = Fake::default();
    fake.with(|s| s.delay = Duration::from_secs(10));
    let c = client(&fake, &layer);
    let handle = layer.handle();
    let in_flight = spawn_create(&c).await;
    in_flight.abort();
    let _ = in_flight.await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(handle.available("job"), Some(0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(handle.available("job"), Some(1));
    assert_eq!(handle.orphaned("job"), Some(0));
}

#[tokio::test(start_paused = true)]
async fn handle_releases_by_hand() {
    let (_fake, c, handle) = setup(1);
    let a = create(&c).await;
    let waiting = spawn_create(&c).await;
    assert!(!handle.release("job", "nope"));
    assert!(!handle.release("other", &a));
    assert!(handle.release("job", &a));
    waiting.await.unwrap();
    assert_eq!(handle.available("other"), None);
}

#[tokio::test(start_paused = true)]
async fn reconcile_on_start_counts_foreign_jobs() {
    let fake = Fake::default();
    fake.set("old-1", "running");
    fake.set("old-2", "completed");
    let layer = JobLimitLayer::builder()
        .kind(kind(2))
        .reconcile_on_start(true)
        .build()
        .unwrap();
    let c = client(&fake, &layer);
    let handle = layer.handle();
    let a = create(&c).await;
    let mut want = vec![
        ("job".to_string(), a),
        ("job".to_string(), "old-1".to_string()),
    ];
    want.sort();
    assert_eq!(handle.running(), want);
    assert_eq!(handle.available("job"), Some(0));
    let waiting = spawn_create(&c).await;
    assert!(!waiting.is_finished());
    fake.set("old-1", "completed");
    call(&c, Method::GET, "/jobs/old-1").await;
    waiting.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn conflict_is_returned_after_max_wait() {
    let layer = JobLimitLayer::builder()
        .kind(kind(3))
        .max_conflict_wait(Duration::from_secs(30))
        .poll_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    let fake = Fake::default();
    fake.with(|s| s.fail = Some(StatusCode::CONFLICT));
    let c = client(&fake, &layer);
    let start = tokio::time::Instant::now();
    let (status, _) = call(&c, Method::POST, "/jobs").await;
    assert_eq!(status, 409);
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert!(start.elapsed() < Duration::from_secs(40));
    assert_eq!(layer.handle().available("job"), Some(3));
}

#[tokio::test(start_paused = true)]
async fn conflict_is_absorbed_once_a_foreign_job_finishes() {
    let layer = JobLimitLayer::builder()
        .kind(kind(3))
        .poll_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    let fake = Fake::default();
    fake.set("foreign", "running");
    fake.with(|s| s.cap = Some(1));
    let c = client(&fake, &layer);
    let handle = layer.handle();
    let finisher = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(12)).await;
            fake.set("foreign", "completed");
        })
    };
    let start = tokio::time::Instant::now();
    let id = create(&c).await;
    // Refused, reconciled (the foreign job counted), polled every 5 s, and
    // sent again after the poll that saw it completed.
    assert_eq!(start.elapsed(), Duration::from_secs(15));
    finisher.await.unwrap();
    assert_eq!(handle.running(), [("job".to_string(), id)]);
    assert_eq!(handle.available("job"), Some(2));
}

#[tokio::test(start_paused = true)]
async fn kinds_have_their_own_slots() {
    let other = JobKind::new(
        "other",
        NonZeroU32::new(1).unwrap(),
        Method::POST,
        "/others",
    );
    let layer = JobLimitLayer::builder()
        .kind(kind(1))
        .kind(other)
        .build()
        .unwrap();
    let fake = Fake::default();
    let c = client(&fake, &layer);
    let handle = layer.handle();
    create(&c).await;
    assert_eq!(handle.available("job"), Some(0));
    // "other" is not full: its create goes at once (the fake answers 404,
    // a failed create, so its slot comes back).
    let (status, _) = call(&c, Method::POST, "/others").await;
    assert_eq!(status, 404);
    assert_eq!(handle.available("other"), Some(1));
    // Routes of no kind pass through.
    let (status, _) = call(&c, Method::GET, "/nothing").await;
    assert_eq!(status, 404);
}

#[test]
fn invalid_configs_fail_at_build() {
    let cap = NonZeroU32::new(1).unwrap();
    assert!(JobLimitLayer::builder().build().is_err());
    let bad = [
        JobKind::new("a", cap, Method::POST, "jobs"),
        JobKind::new("a", cap, Method::POST, "/jobs").get_route("/jobs"),
        JobKind::new("a", cap, Method::POST, "/jobs").list_route("/jobs/{id}", "/data"),
        JobKind::new("a", cap, Method::POST, "/jobs").id_pointer("id"),
        JobKind::new("a", cap, Method::POST, "/jobs").terminal(Vec::<String>::new()),
    ];
    for kind in bad {
        assert!(JobLimitLayer::builder().kind(kind).build().is_err());
    }
    let twice = JobLimitLayer::builder().kind(kind(1)).kind(kind(2)).build();
    assert!(twice.unwrap_err().to_string().contains("twice"));
    let no_list = JobKind::new("a", cap, Method::POST, "/jobs");
    assert!(
        JobLimitLayer::builder()
            .kind(no_list)
            .reconcile_on_start(true)
            .build()
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn a_create_sent_again_after_a_409_keeps_the_request_extensions() {
    #[derive(Clone, Debug, PartialEq)]
    struct Marker(u32);
    let layer = JobLimitLayer::builder()
        .kind(kind(3))
        .poll_interval(Duration::from_secs(5))
        .build()
        .unwrap();
    let fake = Fake::default();
    fake.set("foreign", "running");
    fake.with(|s| s.cap = Some(1));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let svc = {
        let (fake, seen) = (fake.clone(), seen.clone());
        service_fn(move |req: Request<String>| {
            if req.method() == Method::POST && req.uri().path() == "/jobs" {
                seen.lock()
                    .unwrap()
                    .push(req.extensions().get::<Marker>().cloned());
            }
            fake.clone().serve(req)
        })
    };
    let c = tower::Layer::layer(&layer, svc);
    let finisher = {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(12)).await;
            fake.set("foreign", "completed");
        })
    };
    let mut req = Request::post("/jobs").body(String::new()).unwrap();
    req.extensions_mut().insert(Marker(7));
    let resp = c.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    finisher.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "refused once, then sent again: {seen:?}");
    assert!(
        seen.iter().all(|m| m == &Some(Marker(7))),
        "every attempt carries the caller's extensions: {seen:?}"
    );
}
