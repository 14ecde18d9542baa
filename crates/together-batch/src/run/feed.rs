//! Feeding the stack: one feeder per route, each with its own in-flight
//! cap (a slow route never starves a fast one), each job sent once through
//! the stack and its result line handed to the collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use together_tower::service::Attempts;
use together_tower::{ApiKey, ClientService, Error};
use tokio::sync::{Semaphore, mpsc, watch};
use tower::ServiceExt;

use super::plan::RouteJobs;
use crate::input::Job;

/// A job's result, as the collector takes it.
pub(crate) struct Done {
    pub(crate) route: String,
    pub(crate) model: Option<String>,
    pub(crate) ok: bool,
    /// The HTTP status (0: no answer).
    pub(crate) status: u16,
    pub(crate) attempts: u32,
    /// The output line.
    pub(crate) line: Value,
}

/// The running feeders: their results, and the switches that stop them.
pub(crate) struct Feeders {
    pub(crate) results: mpsc::UnboundedReceiver<Done>,
    stop: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
    in_flight: Arc<AtomicU64>,
}

impl Feeders {
    /// Takes no new jobs; requests already sent finish, queued ones are
    /// dropped (unanswered: sent on resume).
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Drops the requests in flight too.
    pub(crate) fn abandon(&self) {
        self.stop();
        let _ = self.abandon.send(true);
    }

    /// Jobs taken and not yet answered (sent or queued for quota).
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Starts one feeder per route.
pub(crate) fn start(
    routes: Vec<RouteJobs>,
    service: &ClientService,
    key: &ApiKey,
    max_in_flight: usize,
) -> Feeders {
    let (tx, results) = mpsc::unbounded_channel::<Done>();
    let (stop, stop_rx) = watch::channel(false);
    let (abandon, abandon_rx) = watch::channel(false);
    let in_flight = Arc::new(AtomicU64::new(0));
    for RouteJobs { route, jobs } in routes {
        let feeder = Feeder {
            route,
            service: service.clone(),
            key: key.clone(),
            results: tx.clone(),
            stop: stop_rx.clone(),
            abandon: abandon_rx.clone(),
            in_flight: in_flight.clone(),
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
        };
        tokio::spawn(feeder.run(jobs));
    }
    Feeders {
        results,
        stop,
        abandon,
        in_flight,
    }
}

/// One route's feeder.
#[derive(Clone)]
struct Feeder {
    route: String,
    service: ClientService,
    key: ApiKey,
    results: mpsc::UnboundedSender<Done>,
    stop: watch::Receiver<bool>,
    abandon: watch::Receiver<bool>,
    in_flight: Arc<AtomicU64>,
    slots: Arc<Semaphore>,
}

impl Feeder {
    async fn run(mut self, jobs: Vec<Job>) {
        for job in jobs {
            if *self.stop.borrow() {
                break;
            }
            let permit = tokio::select! {
                p = self.slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = self.stop.wait_for(|s| *s) => break,
            };
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let one = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                one.send(job).await;
            });
        }
    }

    /// Sends `job` and hands its result on, unless stopped before it went
    /// out (or abandoned): then it stays unanswered.
    async fn send(mut self, job: Job) {
        let attempts = Attempts::default();
        let started_at = unix_ms();
        let t0 = Instant::now();
        let fut = send(self.service.clone(), &job, attempts.clone(), &self.key);
        tokio::pin!(fut);
        let mut stopping = false;
        let result = loop {
            tokio::select! {
                biased;
                _ = self.abandon.wait_for(|a| *a) => break None,
                r = &mut fut => break Some(r),
                _ = self.stop.wait_for(|s| *s), if !stopping => {
                    // Not sent yet (still queued for its quota): drop it,
                    // it stays unanswered and goes out on resume.
                    if attempts.get() == 0 {
                        break None;
                    }
                    stopping = true;
                }
            }
        };
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let Some(sent) = result else {
            return;
        };
        let tries = attempts.get();
        let mut line = json!({
            "custom_id": job.custom_id,
            "line": job.line,
            "method": job.method.as_str(),
            "url": job.path,
            "status": if sent.status == 0 { Value::Null } else { json!(sent.status) },
            "attempts": tries,
            "started_at_ms": started_at,
            "elapsed_ms": (t0.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        });
        let ok = sent.outcome.is_ok();
        line[if ok { "response" } else { "error" }] = match sent.outcome {
            Ok(body) => body,
            Err(error) => {
                let mut value = serde_json::to_value(&error).unwrap_or(Value::Null);
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("attempts".to_owned(), json!(tries));
                }
                value
            }
        };
        let _ = self.results.send(Done {
            route: self.route,
            model: job.model.clone(),
            ok,
            status: sent.status,
            attempts: tries,
            line,
        });
    }
}

/// What one job came to: the status (0: no answer) and the body or error.
struct Sent {
    status: u16,
    outcome: Result<Value, Error>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sends one job through the stack; errors are together-tower's, scrubbed
/// of the key.
async fn send(service: ClientService, job: &Job, attempts: Attempts, key: &ApiKey) -> Sent {
    let scrub = |text: String| key.scrub(&text);
    let no_answer = |outcome| Sent { status: 0, outcome };
    let mut req = Request::builder()
        .method(job.method.clone())
        .uri(job.path.as_str());
    if let Ok(v) = HeaderValue::from_str(&job.custom_id) {
        req = req.header("x-custom-id", v);
    }
    let mut req = match req.body(job.body.clone()) {
        Ok(r) => r,
        Err(e) => return no_answer(Err(Error::config(e))),
    };
    req.extensions_mut().insert(attempts.clone());
    let res = match service.oneshot(req).await {
        Ok(res) => res,
        Err(e) => return no_answer(Err(Error::from_service(e, attempts.retries(), &scrub))),
    };
    let status = res.status();
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = match res.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Sent {
                status: status.as_u16(),
                outcome: Err(Error::from_service(e, attempts.retries(), &scrub)),
            };
        }
    };
    let outcome = if status.is_success() {
        Ok(serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
    } else {
        Err(Error::from_status(
            status,
            &bytes,
            request_id,
            attempts.retries(),
            &scrub,
        ))
    };
    Sent {
        status: status.as_u16(),
        outcome,
    }
}
