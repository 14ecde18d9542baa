//! The uncontended cases of `benches/quota.rs` as a plain program, for two
//! measures that hold still on a noisy machine:
//!
//! - `uncontended CASE N` runs CASE N times and nothing else: run it under
//!   `valgrind --tool=cachegrind` for N and 2N and the difference over N is
//!   the instructions per request (deterministic).
//! - `uncontended time` times every case in batches of 10,000 calls,
//!   alternating the cases, 200 batches each, and prints the fastest batch's
//!   time per call: interference from other tenants only ever adds time, so
//!   the fastest batch is the closest reading of the code's own cost.
//!
//! Cases: `bare`, `one` (one quota), `keyed` (per-model + tokens, small
//! body), `bare1k`, `keyed1k` (the 1 KB chat body), `tower`
//! (`tower::limit::RateLimit`), `governor` (governor's `check` alone).
//!
//! ```text
//! cargo build --release -p tower-quota --example uncontended
//! target/release/examples/uncontended time
//! ```
use std::convert::Infallible;
use std::future::Future;
use std::num::NonZeroU32;
use std::time::Duration;

use futures_util::FutureExt;
use http::{Method, Request, Response};
use tower::{Service, service_fn};
use tower_quota::{KeyBy, Limits, Quota, Rate, RateLimit, Route};

fn now<F: Future>(f: F) -> F::Output {
    f.now_or_never().expect("uncontended path never waits")
}

fn ready_and_call<S: Service<Request<String>>>(svc: &mut S, req: Request<String>) -> S::Response
where
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    now(svc.call(req)).unwrap()
}

fn noop() -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(|_: Request<String>| std::future::ready(Ok(Response::new(String::new()))))
}

fn huge() -> Quota {
    Quota::new(
        Rate::new(
            NonZeroU32::new(1_000_000_000).unwrap(),
            Duration::from_secs(1),
        )
        .unwrap(),
    )
    .burst(NonZeroU32::new(1_000_000_000).unwrap())
}

const CASES: [&str; 7] = [
    "bare", "one", "keyed", "bare1k", "keyed1k", "tower", "governor",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().expect("a case, or `time`");
    if case == "time" {
        return time();
    }
    let n: usize = args.next().expect("a count").parse().expect("a count");
    run(&case, n);
}

/// The fastest of 200 batches of 10,000 calls of each case, alternating cases.
fn time() {
    const BATCH: usize = 10_000;
    let mut best = [f64::INFINITY; CASES.len()];
    for _ in 0..200 {
        for (i, case) in CASES.iter().enumerate() {
            let start = std::time::Instant::now();
            run(case, BATCH);
            let per_call = start.elapsed().as_secs_f64() * 1e9 / BATCH as f64;
            best[i] = best[i].min(per_call);
        }
    }
    for (case, ns) in CASES.iter().zip(best) {
        println!("{case:>9} {ns:7.1} ns");
    }
    println!("one - bare {:7.1} ns", best[1] - best[0]);
    println!("keyed1k - bare1k {:7.1} ns", best[4] - best[3]);
}

fn run(case: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let long = format!(
        r#"{{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{{"role":"system","content":"You are terse."}},{{"role":"user","content":"{}"}}],"max_tokens":16,"temperature":0.2}}"#,
        "Summarize: the quick brown fox jumps over the lazy dog. ".repeat(16)
    );
    let req = || {
        Request::post("/v1/chat/completions")
            .body(String::new())
            .unwrap()
    };
    let body = r#"{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{"role":"user","content":"Say hi"}],"max_tokens":16}"#;
    let req_json = || {
        Request::post("/v1/chat/completions")
            .body(body.to_string())
            .unwrap()
    };
    let req_1k = || {
        Request::post("/v1/chat/completions")
            .body(long.clone())
            .unwrap()
    };
    let one = Limits::builder()
        .quota("q", huge())
        .route(Route::new(Method::POST, "/v1/chat/completions").quota("q"))
        .build()
        .unwrap();
    let keyed = Limits::builder()
        .quota("q", huge().keyed_by(KeyBy::model()))
        .quota(
            "tokens",
            huge().cost(tower_quota::Cost::Tokens(Default::default())),
        )
        .route(
            Route::new(Method::POST, "/v1/chat/completions")
                .quota("q")
                .quota("tokens"),
        )
        .build()
        .unwrap();
    match case {
        "bare" => {
            let mut s = noop();
            for _ in 0..n {
                std::hint::black_box(ready_and_call(&mut s, req()));
            }
        }
        "one" => {
            let mut s = RateLimit::new(noop(), one);
            for _ in 0..n {
                std::hint::black_box(ready_and_call(&mut s, req()));
            }
        }
        "bare1k" => {
            let mut s = noop();
            for _ in 0..n {
                std::hint::black_box(ready_and_call(&mut s, req_1k()));
            }
        }
        "keyed1k" => {
            let mut s = RateLimit::new(noop(), keyed);
            for _ in 0..n {
                std::hint::black_box(ready_and_call(&mut s, req_1k()));
            }
        }
        "keyed" => {
            let mut s = RateLimit::new(noop(), keyed);
            for _ in 0..n {
                std::hint::black_box(ready_and_call(&mut s, req_json()));
            }
        }
        "tower" => {
            let rate = tower::limit::rate::Rate::new(u64::MAX / 2, Duration::from_secs(1));
            let mut s = tower::limit::RateLimit::new(noop(), rate);
            for _ in 0..n {
                std::hint::black_box(ready_and_call(&mut s, req()));
            }
        }
        "governor" => {
            let g = governor::RateLimiter::direct(governor::Quota::per_second(
                NonZeroU32::new(1_000_000_000).unwrap(),
            ));
            for _ in 0..n {
                std::hint::black_box(g.check().is_ok());
            }
        }
        other => panic!("unknown case {other:?}: {CASES:?} or `time`"),
    }
}
