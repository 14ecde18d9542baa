//! Property: whatever the arrival pattern, grants in any window never exceed the quota.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use tower_quota::{Limits, Quota, Rate, RateLimit, Route};

fn run(
    amount: u32,
    period_ms: u64,
    burst: u32,
    arrivals: Vec<u64>,
    drops: Vec<bool>,
) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async move {
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
