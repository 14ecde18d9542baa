//! Feeding the stack: one feeder per route, each with its own in-flight
//! cap (a slow route never starves a fast one). A feeder admits its jobs to
//! the stack in input order (the rate limiter queues them FIFO), then each
//! job's answer is read in its own task and handed to the collector.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use together_tower::body::BodyLimits;
use together_tower::service::Attempts;
use together_tower::{ApiKey, ClientService, Error};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tower::{Service, ServiceExt};

use super::plan::RouteJobs;
use super::send::{Done, ResponseFuture, Sent, answer, request, unix_ms};
use super::source::{JobRef, Reader, Source};
use super::stop::Blocked;
use super::timeline::{Lane, Timeline};
use crate::input::Job;

/// The running feeders: their results, and the switches that stop them.
pub(crate) struct Feeders {
    pub(crate) results: mpsc::UnboundedReceiver<Done>,
    stop: watch::Sender<bool>,
    abandon: watch::Sender<bool>,
    blocked: watch::Sender<Blocked>,
    in_flight: InFlight,
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

    /// Sends nothing more that `change` blocks (what is queued and not yet
    /// sent is dropped); whether anything new was blocked.
    pub(crate) fn block(&self, change: impl FnOnce(&mut Blocked) -> bool) -> bool {
        self.blocked.send_if_modified(change)
    }

    /// Requests sent (an attempt went out) and not yet answered.
    pub(crate) fn sent_in_flight(&self) -> usize {
        self.in_flight.sent()
    }
}

/// The jobs taken and not yet answered, with their attempt counters.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<u64, Attempts>>>);

impl InFlight {
    fn insert(&self, id: u64, attempts: Attempts) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, attempts);
    }

    fn remove(&self, id: u64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    fn sent(&self) -> usize {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.values().filter(|a| a.get() > 0).count()
    }
}

/// How long and how much one job may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// The body's size cap and idle timeout.
    pub(crate) body: BodyLimits,
    /// From the first attempt to the answer, retries included.
    pub(crate) deadline: Duration,
}

/// Resolves once `deadline` has passed since the job's first attempt.
async fn overdue(attempts: &Attempts, deadline: Duration) {
    let tick = (deadline / 20).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        if attempts
            .first_sent()
            .is_some_and(|first| first.elapsed() >= deadline)
        {
            return;
        }
    }
}

/// Starts one feeder per route.
pub(crate) fn start(
    source: Source,
    routes: Vec<RouteJobs>,
    timeline: &Timeline,
    service: &ClientService,
    key: &ApiKey,
    max_in_flight: usize,
    bounds: Bounds,
) -> Feeders {
    let (tx, results) = mpsc::unbounded_channel::<Done>();
    let (stop, stop_rx) = watch::channel(false);
    let (abandon, abandon_rx) = watch::channel(false);
    let (blocked, blocked_rx) = watch::channel(Blocked::default());
    let in_flight = InFlight::default();
    let ids = Arc::new(AtomicU64::new(0));
    let source = Arc::new(source);
    for RouteJobs { route, jobs, .. } in routes {
        let feeder = Feeder {
            lane: timeline.lane(&route),
            route,
            source: source.clone(),
            service: service.clone(),
            key: key.clone(),
            results: tx.clone(),
            stop: stop_rx.clone(),
            abandon: abandon_rx.clone(),
            blocked: blocked_rx.clone(),
            in_flight: in_flight.clone(),
            ids: ids.clone(),
            bounds,
            slots: Arc::new(Semaphore::new(max_in_flight.max(1))),
        };
        tokio::spawn(feeder.run(jobs));
    }
    Feeders {
        results,
        stop,
        abandon,
        blocked,
        in_flight,
    }
}

/// One route's feeder.
#[derive(Clone)]
struct Feeder {
    route: String,
    /// The route's lane in the run's timeline.
    lane: Lane,
    /// The input, each job read again when its turn comes.
    source: Arc<Source>,
    service: ClientService,
    key: ApiKey,
    results: mpsc::UnboundedSender<Done>,
    stop: watch::Receiver<bool>,
    abandon: watch::Receiver<bool>,
    blocked: watch::Receiver<Blocked>,
    in_flight: InFlight,
    ids: Arc<AtomicU64>,
    bounds: Bounds,
    slots: Arc<Semaphore>,
}

impl Feeder {
    /// Admits the jobs in input order, each once a slot is free.
    async fn run(mut self, jobs: Vec<JobRef>) {
        let mut reader = Reader::new(self.source.clone());
        for r in jobs {
            if *self.stop.borrow() {
                break;
            }
            // Read again from the file only now: what waits is its place.
            let job = match reader.job(&r) {
                Ok(job) => job,
                Err(why) => {
                    tracing::warn!("{why}");
                    continue;
                }
            };
            if self.is_blocked(&job) {
                continue; // left unanswered: sent on the next run
            }
            let permit = tokio::select! {
                p = self.slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = self.stop.wait_for(|s| *s) => break,
            };
            let attempts = Attempts::default();
            let response = match request(&job, &attempts, self.lane) {
                Ok(req) => match self.service.ready().await {
                    // Called here, in input order: the rate limiter queues it now.
                    Ok(svc) => Ok(svc.call(req)),
                    Err(e) => Err(Error::from_service(e, 0, &|t| self.key.scrub(&t))),
                },
                Err(e) => Err(Error::config(e)),
            };
            let id = self.ids.fetch_add(1, Ordering::Relaxed);
            self.in_flight.insert(id, attempts.clone());
            let one = self.clone();
            tokio::spawn(one.finish(id, job, attempts, response, permit));
        }
    }

    fn is_blocked(&self, job: &Job) -> bool {
        self.blocked
            .borrow()
            .blocks(&self.route, job.model.as_deref())
    }

    /// Waits for `job`'s answer and hands its result on, unless it is
    /// dropped before it went out (stopped, blocked) or abandoned: then it
    /// stays unanswered.
    async fn finish(
        mut self,
        id: u64,
        job: Job,
        attempts: Attempts,
        response: Result<ResponseFuture, Error>,
        permit: OwnedSemaphorePermit,
    ) {
        let started_at = unix_ms();
        let t0 = Instant::now();
        let fut = answer(response, &attempts, &self.key, self.bounds.body);
        tokio::pin!(fut);
        let overdue = overdue(&attempts, self.bounds.deadline);
        tokio::pin!(overdue);
        let (route, model) = (self.route.clone(), job.model.clone());
        let mut stopping = false;
        let mut blocked = false;
        let result = loop {
            tokio::select! {
                biased;
                _ = self.abandon.wait_for(|a| *a) => break None,
                () = &mut overdue => break Some(Sent {
                    status: 0,
                    outcome: Err(Error::timeout(format!(
                        "no answer within the request's deadline ({:?} from its first attempt, \
                         retries included)",
                        self.bounds.deadline
                    ))),
                }),
                _ = self.stop.wait_for(|s| *s), if !stopping => {
                    if attempts.get() == 0 {
                        break None;
                    }
                    stopping = true;
                }
                _ = self.blocked.wait_for(|b| b.blocks(&route, model.as_deref())), if !blocked => {
                    if attempts.get() == 0 {
                        break None;
                    }
                    blocked = true;
                }
                // Polled after the stops: a request granted at once still
                // is not sent once the run stopped or blocked it.
                r = &mut fut => break Some(r),
            }
        };
        self.in_flight.remove(id);
        let Some(sent) = result else {
            return;
        };
        let tries = attempts.get();
        let reached_server = sent.status != 0
            || (tries > 0 && sent.outcome.as_ref().err().is_none_or(|e| !e.never_sent()));
        let mut line = json!({
            "custom_id": job.custom_id,
            "line": job.line,
            "method": job.method.as_str(),
            "url": job.path,
            "status": if sent.status == 0 { Value::Null } else { json!(sent.status) },
            "attempts": tries,
            "started_at_ms": started_at,
            "elapsed_ms": (t0.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
            "reached_server": reached_server,
            "fingerprint": job.fingerprint,
        });
        let mut tokens = None;
        let error = match sent.outcome {
            Ok(body) => {
                tokens = body
                    .pointer("/usage/total_tokens")
                    .and_then(Value::as_u64)
                    .map(|used| (u64::from(job.estimate), used));
                line["response"] = body;
                None
            }
            Err(error) => {
                let mut value = serde_json::to_value(&error).unwrap_or(Value::Null);
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("attempts".to_owned(), json!(tries));
                }
                line["error"] = value;
                Some(error)
            }
        };
        let _ = self.results.send(Done {
            route,
            model,
            custom_id: job.custom_id,
            status: sent.status,
            attempts: tries,
            line,
            error,
            tokens,
            permit: Some(permit),
        });
    }
}
