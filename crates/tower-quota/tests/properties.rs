//! Property: whatever the arrival pattern, grants in any window never exceed the quota.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use tower_quota::{Limits, Quota, Rate, RateLimit, Route};

/// A current-thread runtime on tokio's paused clock: every case instant and repeatable.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

fn run(
    amount: u32,
    period_ms: u64,
    burst: u32,
    arrivals: Vec<u64>,
    drops: Vec<bool>,
) -> Vec<Duration> {
    paused_runtime().block_on(async move {
        let rate = Rate::new(amount.try_into().unwrap(), Duration::from_millis(period_ms)).unwrap();
        let limits = Limits::builder()
            .quota("q", Quota::new(rate).burst(burst.try_into().unwrap()))
            .route(Route::new(Method::POST, "/x").quota("q"))
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let inner = {
            let log = log.clone();
            service_fn(move |_: Request<String>| {
                log.lock().unwrap().push(start.elapsed());
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            })
        };
        let svc = RateLimit::new(inner, limits);
        let mut tasks = Vec::new();
        for (i, at) in arrivals.into_iter().enumerate() {
            let mut svc = svc.clone();
            let drop_early = drops.get(i).copied().unwrap_or(false);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(at)).await;
                let call = svc
                    .ready()
                    .await
                    .unwrap()
                    .call(Request::post("/x").body(String::new()).unwrap());
                if drop_early {
                    // Give up after a short wait: must consume nothing.
                    let _ = tokio::time::timeout(Duration::from_millis(3), call).await;
                } else {
                    call.await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut log = log.lock().unwrap().clone();
        log.sort();
        log
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn grants_in_any_window_never_exceed_the_quota(
        amount in 1u32..20,
        period_ms in prop::sample::select(vec![200u64, 1_000, 3_000]),
        burst in 1u32..4,
        arrivals in prop::collection::vec(0u64..2_000, 1..60),
        drops in prop::collection::vec(prop::bool::weighted(0.2), 0..60),
    ) {
        let grants = run(amount, period_ms, burst, arrivals, drops);
        let period = Duration::from_millis(period_ms);
        // GCRA with burst b allows at most b + (amount - 1) in any window of one
        // period, and the safety margin keeps it strictly below that edge.
        let bound = (amount + burst - 1) as usize;
        for (i, first) in grants.iter().enumerate() {
            let in_window = grants[i..].iter().take_while(|t| **t - *first < period).count();
            prop_assert!(in_window <= bound, "{in_window} grants within {period:?} from {first:?} (bound {bound}): {grants:?}");
        }
    }
}

/// One scripted answer: to model A or B, a status, and optional header values.
#[derive(Debug, Clone)]
struct Answer {
    to_a: bool,
    status: u16,
    limit: Option<String>,
    dynamic: Option<String>,
    remaining: Option<String>,
    reset: Option<String>,
    after_ms: u64,
}

fn header_value() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        (0.0f64..500.0).prop_map(|v| Some(format!("{v}"))),
        any::<f64>().prop_map(|v| Some(format!("{v}"))),
        any::<i64>().prop_map(|v| Some(v.to_string())),
        "[ -~]{0,12}".prop_map(Some),
        prop::sample::select(vec!["NaN", "inf", "-inf", "-0", "0", "1e308", "", "6m0s"])
            .prop_map(|v| Some(v.to_owned())),
    ]
}

fn answer() -> impl Strategy<Value = Answer> {
    (
        any::<bool>(),
        prop::sample::select(vec![200u16, 200, 200, 429, 503, 500]),
        header_value(),
        header_value(),
        header_value(),
        header_value(),
        0u64..400,
    )
        .prop_map(
            |(to_a, status, limit, dynamic, remaining, reset, after_ms)| Answer {
                to_a,
                status,
                limit,
                dynamic,
                remaining,
                reset,
                after_ms,
            },
        )
}

/// Runs the answers through an adaptive quota keyed by model; returns each
/// step's paces of A and B after the answer.
fn learn(headers: bool, answers: Vec<Answer>) -> Vec<(bool, f64, f64)> {
    use tower_quota::{Adaptive, KeyBy, RateHeaders, RateLimitLayer};
    paused_runtime().block_on(async move {
        let mut learn = Adaptive::new("2/s".parse().unwrap())
            .floor("1/s".parse().unwrap())
            .ceiling("50/s".parse().unwrap());
        if headers {
            learn = learn.headers(RateHeaders::together_requests().reset("x-ratelimit-reset"));
        }
        let limits = Limits::builder()
            .quota("q", Quota::adaptive(learn).keyed_by(KeyBy::model()))
            .route(Route::new(Method::POST, "/x").quota("q"))
            .build()
            .unwrap();
        let layer = RateLimitLayer::new(limits);
        let next = Arc::new(Mutex::new(None::<Answer>));
        let inner = {
            let next = next.clone();
            service_fn(move |_: Request<String>| {
                let a = next.lock().unwrap().clone().unwrap();
                let mut res = Response::builder().status(a.status);
                for (name, value) in [
                    ("x-ratelimit-limit", &a.limit),
                    ("x-ratelimit-limit-dynamic", &a.dynamic),
                    ("x-ratelimit-remaining", &a.remaining),
                    ("x-ratelimit-reset", &a.reset),
                ] {
                    if let Some(v) = value {
                        res = res.header(name, v.as_str());
                    }
                }
                async move { Ok::<_, Infallible>(res.body(String::new()).unwrap()) }
            })
        };
        let svc = tower_layer::Layer::layer(&layer, inner);
        // An idle cell may be evicted (a long hold passes minutes): `None`.
        let pace = |model: &str| layer.snapshot().cell("q", Some(model)).map(|c| c.pace);
        let mut seen = Vec::new();
        for a in answers {
            tokio::time::sleep(Duration::from_millis(a.after_ms)).await;
            let model = if a.to_a { "a" } else { "b" };
            let other_before = pace(if a.to_a { "b" } else { "a" });
            *next.lock().unwrap() = Some(a.clone());
            let req = Request::post("/x")
                .body(format!(r#"{{"model":"{model}"}}"#))
                .unwrap();
            svc.clone().oneshot(req).await.unwrap();
            let (pa, pb) = (pace("a"), pace("b"));
            let other_after = if a.to_a { pb } else { pa };
            if other_before.is_some() && other_after.is_some() {
                assert_eq!(
                    other_before, other_after,
                    "an answer to {model} moved the other model"
                );
            }
            seen.push((a.to_a, pa.unwrap_or(2.0), pb.unwrap_or(2.0)));
        }
        seen
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn learned_paces_stay_finite_and_within_bounds(
        headers in any::<bool>(),
        answers in prop::collection::vec(answer(), 1..40),
    ) {
        for (_, a, b) in learn(headers, answers) {
            for pace in [a, b] {
                prop_assert!(pace.is_finite() && (1.0..=50.0).contains(&pace), "pace {pace}");
            }
        }
    }
}
