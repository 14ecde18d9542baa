//! Contention: many tasks through one quota in real time, against tower's
//! RateLimit (behind a Buffer, as it is not Clone) and governor's `until_ready`.
//!
//! For each: achieved rate against the ideal, wakeups (polls after the first)
//! per grant, and CPU per grant (this thread's CPU time from
//! /proc/thread-self/schedstat: everything runs on one current-thread runtime).
//!
//! Then the runtime alone and tower-quota again with tokio's clock paused:
//! time jumps to the next timer instead of the runtime sleeping to it, so
//! the CPU per grant is the limiter's and the tasks' own work, without the
//! runtime parking between grants (times and rates are then tokio's
//! virtual ones).
//!
//! `cargo bench -p tower-quota --bench contention` (about two minutes)

use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request, Response};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use tower_quota::{Limits, Quota, Rate, RateLimit, Route};

/// Counts every poll of the wrapped future, and notes when the last task
/// of a run is first polled (it has arrived at the limiter).
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicU64>,
    arrival: Arc<Arrival>,
    arrived: bool,
}

/// When the tasks of a run have all been polled once: everything before
/// is spawning and admitting them, with the runtime's one thread busy.
struct Arrival {
    start: Instant,
    tasks: u64,
    first_polls: AtomicU64,
    /// Nanoseconds from the start to the last first poll.
    at: AtomicU64,
    /// Tasks done by then.
    done_by_then: AtomicU64,
    done: AtomicU64,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        if !self.arrived {
            self.arrived = true;
            let a = &self.arrival;
            if a.first_polls.fetch_add(1, Ordering::Relaxed) + 1 == a.tasks {
                let at = u64::try_from(a.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                a.at.store(at, Ordering::Relaxed);
                a.done_by_then
                    .store(a.done.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        let out = self.inner.as_mut().poll(cx);
        if out.is_ready() {
            self.arrival.done.fetch_add(1, Ordering::Relaxed);
        }
        out
    }
}

/// How a run reads its CPU time.
#[derive(Clone, Copy)]
enum Cpu {
    /// This thread's CPU time (/proc/thread-self/schedstat): exact across
    /// the runtime's sleeps, which update it.
    Schedstat,
    /// Real time: on a paused clock the thread never sleeps, so real time
    /// is its CPU time (schedstat, updated only at scheduler ticks then,
    /// would read a few milliseconds' grain).
    Wall,
}

impl Cpu {
    fn now_ns(self) -> u64 {
        match self {
            Cpu::Schedstat => std::fs::read_to_string("/proc/thread-self/schedstat")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok())
                .unwrap_or(0),
            Cpu::Wall => {
                static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
                let origin = ORIGIN.get_or_init(std::time::Instant::now);
                u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
        }
    }
}

struct Outcome {
    name: &'static str,
    grants: u64,
    elapsed: Duration,
    ideal: Duration,
    polls: u64,
    cpu: Duration,
    per_sec: u64,
    /// When every task had been polled once, and how many were done then.
    arrived: Duration,
    done_by_then: u64,
}

impl Outcome {
    fn print(&self) {
        println!(
            "{:<42} {:>6} grants  {:>8.3} s (ideal {:>7.3} s, {:>5.1}% of ideal rate)  {:>6.2} wakeups/grant  {:>7.2} µs CPU/grant",
            self.name,
            self.grants,
            self.elapsed.as_secs_f64(),
            self.ideal.as_secs_f64(),
            100.0 * self.ideal.as_secs_f64() / self.elapsed.as_secs_f64(),
            (self.polls - self.grants) as f64 / self.grants as f64,
            self.cpu.as_secs_f64() * 1e6 / self.grants as f64,
        );
        // From the last arrival on, the pace alone: the grants after it
        // against the time after it.
        let after = self.elapsed.saturating_sub(self.arrived).as_secs_f64();
        let paced = (self.grants - self.done_by_then) as f64 / after;
        println!(
            "{:<42} {:>6} arrived in {:>6.1} ms ({} done by then); after that {:>5.1}% of the ideal rate",
            "",
            self.grants,
            self.arrived.as_secs_f64() * 1e3,
            self.done_by_then,
            100.0 * paced / self.per_sec as f64,
        );
    }
}

/// Runs `tasks` concurrent tasks, each awaiting `make()` once, and measures them.
async fn measure<F, Fut>(name: &'static str, tasks: u64, per_sec: u64, cpu: Cpu, make: F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let polls = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu.now_ns();
    let start = Instant::now();
    let arrival = Arc::new(Arrival {
        start,
        tasks,
        first_polls: AtomicU64::new(0),
        at: AtomicU64::new(0),
        done_by_then: AtomicU64::new(0),
        done: AtomicU64::new(0),
    });
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            tokio::spawn(Counted {
                inner: Box::pin(make()),
                polls: polls.clone(),
                arrival: arrival.clone(),
                arrived: false,
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = start.elapsed();
    Outcome {
        name,
        grants: tasks,
        elapsed,
        // Burst 1: the first goes at once, then one per interval.
        ideal: Duration::from_secs_f64((tasks - 1) as f64 / per_sec as f64),
        polls: polls.load(Ordering::Relaxed),
        cpu: Duration::from_nanos(cpu.now_ns() - cpu0),
        per_sec,
        arrived: Duration::from_nanos(arrival.at.load(Ordering::Relaxed)),
        done_by_then: arrival.done_by_then.load(Ordering::Relaxed),
    }
}

fn noop() -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<String>, Infallible>>,
> + Clone
+ Send {
    service_fn(|_: Request<String>| std::future::ready(Ok(Response::new(String::new()))))
}

/// A task body that sends one request through a clone of `svc`.
fn one_call<S>(svc: S) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
where
    S: Service<Request<String>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    move || {
        let svc = svc.clone();
        Box::pin(async move {
            svc.oneshot(Request::post("/x").body(String::new()).unwrap())
                .await
                .unwrap();
        })
    }
}

fn limits(per_sec: u32) -> Limits {
    let rate = Rate::per_second(NonZeroU32::new(per_sec).unwrap());
    Limits::builder()
        .safety_margin(0.0)
        .quota("q", Quota::new(rate))
        .route(Route::new(Method::POST, "/x").quota("q"))
        .build()
        .unwrap()
}

/// This process's resident memory, in bytes (Linux).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Memory per queued waiter: `n` tasks waiting on a quota of 1/s, the
/// resident memory they add (the task, its request, the response future,
/// the queue entry) divided by `n`.
async fn memory_per_waiter(n: usize) {
    let svc = RateLimit::new(noop(), limits(1));
    let call = one_call(svc);
    let before = rss();
    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(call())).collect();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    let grown = rss().saturating_sub(before);
    println!(
        "\n{n} waiters queued on one quota: +{:.1} MB resident, {} bytes per waiter \
         (task, request, response future, queue entry)",
        grown as f64 / 1e6,
        grown / n as u64
    );
    for h in handles {
        h.abort();
    }
}

/// The runtime's floor: `tasks` tasks each sleeping until its own turn
/// (`i / per_sec` from the start, the schedule a perfect limiter keeps),
/// with no limiter at all: spawning, one timer each, one wakeup each, and
/// the runtime parking between turns.
async fn run_floor(tasks: u64, per_sec: u32, cpu: Cpu) {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let interval = Duration::from_secs(1) / per_sec;
    measure(
        "the runtime alone: each task sleeps to its turn",
        tasks,
        per_sec.into(),
        cpu,
        || {
            let turn = next.fetch_add(1, Ordering::Relaxed);
            let at = start + interval * u32::try_from(turn).unwrap_or(u32::MAX);
            tokio::time::sleep_until(at)
        },
    )
    .await
    .print();
}

/// tower-quota alone at `per_sec` with `tasks` waiters, and the runtime's floor.
async fn run_quota(tasks: u64, per_sec: u32, cpu: Cpu) {
    println!("\n{tasks} tasks through {per_sec}/s (burst 1):");
    run_floor(tasks, per_sec, cpu).await;
    let svc = RateLimit::new(noop(), limits(per_sec));
    measure(
        "tower-quota RateLimit (margin 0)",
        tasks,
        per_sec.into(),
        cpu,
        one_call(svc),
    )
    .await
    .print();
}

/// tower-quota, then tower's RateLimit and governor, at `per_sec` with `tasks` waiters.
async fn run(tasks: u64, per_sec: u32) {
    run_quota(tasks, per_sec, Cpu::Schedstat).await;

    let tower_limit = tower::buffer::Buffer::new(
        tower::limit::RateLimit::new(
            noop(),
            tower::limit::rate::Rate::new(1, Duration::from_secs(1) / per_sec),
        ),
        tasks as usize,
    );
    measure(
        "tower::limit::RateLimit behind Buffer",
        tasks,
        per_sec.into(),
        Cpu::Schedstat,
        one_call(tower_limit),
    )
    .await
    .print();

    // Burst 1, like the others (`Quota::per_second` would allow a second's worth at once).
    let governor = Arc::new(governor::RateLimiter::direct(
        governor::Quota::with_period(Duration::from_secs(1) / per_sec).unwrap(),
    ));
    measure(
        "governor until_ready",
        tasks,
        per_sec.into(),
        Cpu::Schedstat,
        || {
            let governor = governor.clone();
            async move { governor.until_ready().await }
        },
    )
    .await
    .print();
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        // First, on a fresh heap: memory freed by a later run would be reused.
        memory_per_waiter(20_000).await;
        run(100, 10).await;
        run_quota(1_000, 1_000, Cpu::Schedstat).await;
        run(10_000, 1_000).await;
        run_quota(20_000, 1_000, Cpu::Schedstat).await;
    });
    drop(rt);
    println!("\nWith tokio's clock paused: no parking between grants, virtual time.");
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    paused.block_on(async {
        for tasks in [1_000, 10_000, 20_000] {
            run_quota(tasks, 1_000, Cpu::Wall).await;
        }
    });
}
