//! Learned paces under tokio's paused clock: header following, probing
//! (growth, cuts, the ramp bound, 503s), per-model isolation and bounds.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use http::{Method, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use tower_quota::{Adaptive, KeyBy, Limits, PaceSource, Quota, RateHeaders, RateLimitLayer, Route};

type Answer = Arc<dyn Fn(&str) -> Response<String> + Send + Sync>;

/// A server answering each request (by model) with `answer`, logging arrivals.
fn server(
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    answer: Answer,
) -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = BoxFuture<'static, Result<Response<String>, Infallible>>,
> + Clone {
    slow_server(log, answer, Duration::ZERO)
}

/// [`server`], answering `delay` after each arrival.
fn slow_server(
    log: Arc<Mutex<Vec<(Instant, String)>>>,
    answer: Answer,
    delay: Duration,
) -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = BoxFuture<'static, Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(move |req: Request<String>| {
        let (log, answer) = (log.clone(), answer.clone());
        async move {
            let body: serde_json::Value = serde_json::from_str(req.body()).unwrap();
            let model = body["model"].as_str().unwrap().to_owned();
            log.lock().unwrap().push((Instant::now(), model.clone()));
            let res = answer(&model);
            tokio::time::sleep(delay).await;
            Ok(res)
        }
        .boxed()
    })
}

fn answer(status: u16, headers: &[(&str, &str)]) -> Response<String> {
    let mut res = Response::builder().status(status);
    for (k, v) in headers {
        res = res.header(*k, *v);
    }
    res.body(String::new()).unwrap()
}

fn layer(learn: Adaptive) -> RateLimitLayer {
    let limits = Limits::builder()
        .quota("requests", Quota::adaptive(learn).keyed_by(KeyBy::model()))
        .route(Route::new(Method::POST, "/v1/embeddings").quota("requests"))
        .build()
        .unwrap();
    RateLimitLayer::new(limits)
}

fn req(model: &str) -> Request<String> {
    Request::post("/v1/embeddings")
        .body(format!(r#"{{"model":"{model}","input":"hi"}}"#))
        .unwrap()
}

fn rate(text: &str) -> tower_quota::Rate {
    text.parse().unwrap()
}

fn pace(layer: &RateLimitLayer, model: &str) -> (f64, PaceSource) {
    let snap = layer.snapshot();
    let cell = snap.cell("requests", Some(model)).expect("cell exists");
    (cell.pace, cell.source)
}

/// Sends `n` requests for `model`, one after another.
async fn send_sequentially<S>(svc: &S, model: &str, n: usize) -> Vec<StatusCode>
where
    S: Service<
            Request<String>,
            Response = Response<tower_quota::ResponseBody<String>>,
            Error = tower_quota::BoxError,
        > + Clone,
{
    let mut statuses = Vec::new();
    for _ in 0..n {
        let res = svc.clone().oneshot(req(model)).await.unwrap();
        statuses.push(res.status());
    }
    statuses
}

#[tokio::test(start_paused = true)]
async fn the_binding_header_limit_paces_from_the_next_grant() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let layer = layer(Adaptive::new(rate("1/s")).headers(RateHeaders::together_requests()));
    let answer: Answer = Arc::new(|_| {
        answer(
            200,
            &[
                ("x-ratelimit-limit", "40"),
                ("x-ratelimit-limit-dynamic", "10"),
            ],
        )
    });
    let svc = layer.layer_service(server(log.clone(), answer));
    send_sequentially(&svc, "m", 6).await;
    assert_eq!(pace(&layer, "m"), (10.0, PaceSource::Header));
    let times: Vec<_> = log.lock().unwrap().iter().map(|(t, _)| *t).collect();
    // The first two at the start pace (1/s), then 10/s less the 1% margin.
    let gap = |i: usize| times[i + 1] - times[i];
    assert!(gap(0) >= Duration::from_millis(1010), "{:?}", gap(0));
    // Paused time moves in whole milliseconds: allow one either side.
    let ideal = Duration::from_secs_f64(0.1 / 0.99);
    let ms = Duration::from_millis(1);
    for i in 1..5 {
        assert!(
            gap(i) >= ideal - ms && gap(i) <= ideal + ms,
            "gap {i}: {:?}",
            gap(i)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn openai_headers_count_per_minute_and_hold_on_a_spent_limit() {
    for (max_hold, expected) in [(None, 60), (Some(600), 359)] {
        openai_spent_limit_holds(max_hold, expected).await;
    }
}

/// A spent OpenAI limit resetting in 6 minutes holds for the reset, up to
/// the layer's cap (60 s unless raised).
async fn openai_spent_limit_holds(max_hold: Option<u64>, expected_secs: u64) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let learn = Adaptive::new(rate("1/s")).headers(RateHeaders::openai_requests());
    let mut limits = Limits::builder()
        .quota("requests", Quota::adaptive(learn).keyed_by(KeyBy::model()))
        .route(Route::new(Method::POST, "/v1/embeddings").quota("requests"));
    if let Some(secs) = max_hold {
        limits = limits.max_hold(Duration::from_secs(secs));
    }
    let layer = RateLimitLayer::new(limits.build().unwrap());
    let answer: Answer = Arc::new(|_| {
        answer(
            200,
            &[
                ("x-ratelimit-limit-requests", "600"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "6m0s"),
            ],
        )
    });
    let svc = layer.layer_service(server(log, answer));
    send_sequentially(&svc, "m", 1).await;
    assert_eq!(pace(&layer, "m"), (10.0, PaceSource::Header));
    let snap = layer.snapshot();
    let cell = snap.cell("requests", Some("m")).unwrap();
    let held = cell.hold_until.expect("remaining 0 with a reset holds") - snap.at;
    assert!(held >= Duration::from_secs(expected_secs), "{held:?}");
    assert!(held <= Duration::from_secs(360), "{held:?}");
    if max_hold.is_none() {
        assert!(held <= Duration::from_secs(60), "capped: {held:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_remaining_below_the_cells_own_view_makes_the_queue_wait() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let layer = layer(Adaptive::new(rate("1/s")).headers(RateHeaders::together_requests()));
    // Limit 10/s, but somebody else spent 8 of this second's 10 (the first
    // answer: 1 left after ours); later answers see only our own use.
    let first = Arc::new(Mutex::new(true));
    let answer: Answer = Arc::new(move |_| {
        let remaining = if std::mem::take(&mut *first.lock().unwrap()) {
            "1"
        } else {
            "9"
        };
        answer(
            200,
            &[
                ("x-ratelimit-limit", "10"),
                ("x-ratelimit-remaining", remaining),
            ],
        )
    });
    let svc = layer.layer_service(server(log.clone(), answer));
    send_sequentially(&svc, "m", 3).await;
    let times: Vec<_> = log.lock().unwrap().iter().map(|(t, _)| *t).collect();
    // The first answer teaches 10/s and charges the foreign units beyond a
    // unit of rounding (10 - 1 own - 1 left - 1 = 7): the second request
    // waits 7 intervals beyond the start pace's 1.01 s.
    let interval = Duration::from_secs_f64(0.1 / 0.99);
    let expected = Duration::from_secs_f64(1.0 / 0.99) + interval * 7;
    let gap = times[1] - times[0];
    assert!(
        gap + Duration::from_millis(1) >= expected,
        "{gap:?} < {expected:?}"
    );
    // A plain answer charges nothing: the third follows one interval later.
    let gap = times[2] - times[1];
    assert!(gap <= interval + Duration::from_millis(1), "{gap:?}");
}

/// A server allowing `limit` requests in any second per model, with a 429
/// carrying `x-ratelimit-reset` above it (no other header), like Together
/// with headers off.
fn strict_server(limit: usize, log: Arc<Mutex<Vec<(Instant, String)>>>) -> Answer {
    let windows: Arc<Mutex<HashMap<String, VecDeque<Instant>>>> = Arc::default();
    Arc::new(move |model| {
        let now = Instant::now();
        let mut windows = windows.lock().unwrap();
        let w = windows.entry(model.to_owned()).or_default();
        while w
            .front()
            .is_some_and(|t| now - *t >= Duration::from_secs(1))
        {
            w.pop_front();
        }
        if w.len() < limit {
            w.push_back(now);
            log.lock().unwrap().push((now, "ok".into()));
            answer(200, &[])
        } else {
            let reset = Duration::from_secs(1) - (now - w[0]);
            answer(
                429,
                &[("x-ratelimit-reset", &format!("{:.3}", reset.as_secs_f64()))],
            )
        }
    })
}

/// Runs `tasks` callers sending `model` requests until `until`, returning the statuses.
async fn drive<S>(svc: S, model: &'static str, tasks: usize, until: Instant) -> Vec<StatusCode>
where
    S: Service<
            Request<String>,
            Response = Response<tower_quota::ResponseBody<String>>,
            Error = tower_quota::BoxError,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let svc = svc.clone();
        handles.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while Instant::now() < until {
                let res = svc.clone().oneshot(req(model)).await.unwrap();
                statuses.push(res.status());
            }
            statuses
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

#[tokio::test(start_paused = true)]
async fn probing_grows_within_the_ramp_bound_and_settles_under_the_limit() {
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let layer = layer(Adaptive::new(rate("2/s")).ceiling(rate("1000/s")));
    let svc = layer.layer_service(server(Arc::default(), strict_server(20, accepted.clone())));
    let start = Instant::now();
    // Sample the pace every 250 ms while 8 callers push.
    let sampler = {
        let layer = layer.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < start + Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Some(c) = layer.snapshot().cell("requests", Some("m")) {
                    samples.push((c.changed_at.unwrap_or(start), c.pace));
                }
            }
            samples
        })
    };
    let statuses = drive(svc, "m", 8, start + Duration::from_secs(60)).await;
    let samples = sampler.await.unwrap();
    let accepted = accepted.lock().unwrap().clone();
    // The ramp bound: a pace never exceeds twice the successes of the 10 s
    // before it was set (or the start).
    for &(at, p) in &samples {
        let recent = accepted
            .iter()
            .filter(|(t, _)| *t <= at && at - *t < Duration::from_secs(10))
            .count() as f64;
        // What is sent (the pace less the 1% margin) stays within twice the
        // successes of the 10 s before (one more for the learner's estimate
        // of its oldest bucket), or the start.
        assert!(
            p * 0.99 <= (2.0 * (recent + 1.0) / 10.0).max(2.0 * 0.99) * 1.0001,
            "pace {p} at {:?} above the ramp bound ({recent} successes in 10 s)",
            at - start
        );
    }
    // It grew from 2/s to near the server's 20/s ...
    let late: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t - start > Duration::from_secs(40))
        .map(|s| s.1)
        .collect();
    let mean = late.iter().sum::<f64>() / late.len() as f64;
    assert!((15.0..=21.0).contains(&mean), "late mean pace {mean}");
    // ... and the last 20 s ran at >= 80% of the limit with few 429s.
    let last20 = accepted
        .iter()
        .filter(|(t, _)| *t - start >= Duration::from_secs(40))
        .count();
    assert!(
        last20 >= 320,
        "{last20} accepted in the last 20 s of 400 possible"
    );
    let rejected = statuses.iter().filter(|s| s.as_u16() == 429).count();
    assert!(
        rejected * 100 <= statuses.len() * 3,
        "{rejected} 429s of {}",
        statuses.len()
    );
    assert_eq!(pace(&layer, "m").1, PaceSource::Probe);
}

#[tokio::test(start_paused = true)]
async fn a_429_episode_cuts_once_and_a_503_changes_nothing() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let layer = layer(Adaptive::new(rate("10/s")).decrease(0.5));
    let status = Arc::new(Mutex::new(503u16));
    let answer: Answer = {
        let status = status.clone();
        Arc::new(move |_| answer(*status.lock().unwrap(), &[("retry-after-ms", "1")]))
    };
    // Answers take 2 s: all ten below are sent before the first 429 is read.
    let svc = layer.layer_service(slow_server(log, answer, Duration::from_secs(2)));
    // 503s: capacity, not a rate signal.
    send_sequentially(&svc, "m", 5).await;
    assert_eq!(pace(&layer, "m"), (10.0, PaceSource::Start));
    // Ten requests in flight together all meet 429: one cut, not ten.
    *status.lock().unwrap() = 429;
    let futures: Vec<_> = (0..10).map(|_| svc.clone().oneshot(req("m"))).collect();
    for r in futures_util::future::join_all(futures).await {
        assert_eq!(r.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(pace(&layer, "m"), (5.0, PaceSource::Probe));
    // A later 429 (a new episode) cuts again.
    send_sequentially(&svc, "m", 1).await;
    assert_eq!(pace(&layer, "m").0, 2.5);
}

#[tokio::test(start_paused = true)]
async fn one_models_answers_never_move_another_models_pace() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let layer = layer(Adaptive::new(rate("1/s")).headers(RateHeaders::together_requests()));
    let answer: Answer = Arc::new(|model| {
        if model == "a" {
            answer(200, &[("x-ratelimit-limit", "30")])
        } else {
            answer(429, &[("x-ratelimit-reset", "0.01")])
        }
    });
    let svc = layer.layer_service(server(log, answer));
    send_sequentially(&svc, "a", 3).await;
    let b = svc.clone().oneshot(req("b")).await.unwrap();
    assert_eq!(b.status(), 429);
    assert_eq!(pace(&layer, "a"), (30.0, PaceSource::Header));
    assert_eq!(pace(&layer, "b").0, 0.7, "b cut on its own 429, from 1/s");
    send_sequentially(&svc, "a", 2).await;
    assert_eq!(pace(&layer, "a"), (30.0, PaceSource::Header));
}

#[tokio::test(start_paused = true)]
async fn header_values_stay_within_floor_and_ceiling_and_garbage_is_ignored() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let layer = layer(
        Adaptive::new(rate("5/s"))
            .floor(rate("2/s"))
            .ceiling(rate("50/s"))
            .headers(RateHeaders::together_requests()),
    );
    let value = Arc::new(Mutex::new(String::from("1000000")));
    let answer: Answer = {
        let value = value.clone();
        Arc::new(move |_| {
            answer(
                200,
                &[("x-ratelimit-limit", value.lock().unwrap().as_str())],
            )
        })
    };
    let svc = layer.layer_service(server(log, answer));
    send_sequentially(&svc, "m", 1).await;
    assert_eq!(pace(&layer, "m"), (50.0, PaceSource::Header));
    *value.lock().unwrap() = "0.001".into();
    send_sequentially(&svc, "m", 1).await;
    assert_eq!(pace(&layer, "m").0, 2.0);
    // From mid-range, garbage moves nothing.
    *value.lock().unwrap() = "10".into();
    send_sequentially(&svc, "m", 1).await;
    assert_eq!(pace(&layer, "m"), (10.0, PaceSource::Header));
    for garbage in ["-4", "0", "NaN", "inf", "lots", "1e300", ""] {
        *value.lock().unwrap() = garbage.into();
        send_sequentially(&svc, "m", 1).await;
        assert_eq!(
            pace(&layer, "m"),
            (10.0, PaceSource::Header),
            "after {garbage:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn one_unreadable_limit_header_does_not_hide_a_readable_one() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let layer = layer(Adaptive::new(rate("1/s")).headers(RateHeaders::together_requests()));
    let answer: Answer = Arc::new(|_| {
        answer(
            200,
            &[
                ("x-ratelimit-limit", "12"),
                ("x-ratelimit-limit-dynamic", "soon"),
            ],
        )
    });
    let svc = layer.layer_service(server(log, answer));
    send_sequentially(&svc, "m", 1).await;
    assert_eq!(pace(&layer, "m"), (12.0, PaceSource::Header));
}

#[tokio::test(start_paused = true)]
async fn a_saved_pace_is_where_learning_starts() {
    let layer = layer(Adaptive::new(rate("1/s")).ceiling(rate("100/s")));
    assert!(layer.seed_pace("requests", Some("m"), 25.0));
    assert_eq!(pace(&layer, "m"), (25.0, PaceSource::Saved));
    assert!(layer.seed_pace("requests", Some("n"), 1e9));
    assert_eq!(pace(&layer, "n").0, 100.0, "kept within the ceiling");
    assert!(!layer.seed_pace("nope", Some("m"), 3.0));
    assert!(
        !layer.seed_pace("requests", None, 3.0),
        "a keyed quota needs a key"
    );
    // Requests go at the seeded pace at once.
    let log = Arc::new(Mutex::new(Vec::new()));
    let svc = layer.layer_service(server(log.clone(), Arc::new(|_| answer(200, &[]))));
    send_sequentially(&svc, "m", 3).await;
    let times: Vec<_> = log.lock().unwrap().iter().map(|(t, _)| *t).collect();
    assert!(times[2] - times[0] < Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn toml_learned_quotas() {
    let limits = Limits::from_toml(
        r#"
        [quotas.requests]
        rate = { start = "2/s", min = "1/s", max = "40/s" }
        key = "body:model"
        headers = "together-requests"
        learn = { decrease = 0.5, ramp = 3.0, ramp_window = "5s" }

        [quotas.tokens]
        rate = "auto tokens"
        headers = { limit = ["x-tokenlimit-limit"], period = "1s" }

        [[routes]]
        method = "POST"
        path = "/v1/embeddings"
        quotas = ["requests", "tokens"]
        "#,
    )
    .unwrap();
    let table = limits.table();
    assert_eq!(table[0].learned, Some((1.0, 40.0)));
    assert_eq!(table[1].learned, Some((100.0, 1_000_000.0)));
    let layer = RateLimitLayer::new(limits);
    let svc = layer.layer_service(server(
        Arc::default(),
        Arc::new(|_| {
            answer(
                200,
                &[("x-ratelimit-limit", "7"), ("x-tokenlimit-limit", "5000")],
            )
        }),
    ));
    send_sequentially(&svc, "m", 1).await;
    let snap = layer.snapshot();
    assert_eq!(snap.cell("requests", Some("m")).unwrap().pace, 7.0);
    assert_eq!(snap.cell("tokens", None).unwrap().pace, 5000.0);

    for (toml, entry) in [
        (
            r#"rate = { start = "50/s", max = "40/s" }"#,
            "quotas.q.start",
        ),
        (
            r#"rate = { start = "2/s", min = "5/s", max = "4/s" }"#,
            "quotas.q.min",
        ),
        (
            r#"rate = "auto"
            learn = { decrease = 1.5 }"#,
            "quotas.q.decrease",
        ),
        (
            r#"rate = "auto"
            learn = { ramp = 0.5 }"#,
            "quotas.q.ramp",
        ),
        (
            r#"rate = "auto"
            headers = "bogus""#,
            "quotas.q.headers",
        ),
        (
            r#"rate = "auto"
            headers = { limit = ["bad header"], period = "1s" }"#,
            "quotas.q.headers",
        ),
        (
            r#"rate = "10/s"
            headers = "together-requests""#,
            "quotas.q",
        ),
        (r#"rate = { start = "fast" }"#, "quotas.q.rate.start"),
    ] {
        let err = Limits::from_toml(&format!("[quotas.q]\n{toml}")).unwrap_err();
        assert_eq!(err.entry(), entry, "{toml}: {err}");
    }
}

/// A layer as a service over `inner`.
trait LayerService {
    fn layer_service<S>(&self, inner: S) -> tower_quota::RateLimit<S>;
}

impl LayerService for RateLimitLayer {
    fn layer_service<S>(&self, inner: S) -> tower_quota::RateLimit<S> {
        tower_layer::Layer::layer(self, inner)
    }
}

#[tokio::test(start_paused = true)]
async fn a_queued_request_above_a_burst_that_shrank_waits_for_a_full_burst() {
    // A learned token quota: its burst is one second's worth of its pace.
    let learn = Adaptive::new("1000 tokens/s".parse().unwrap())
        .floor("10 tokens/s".parse().unwrap())
        .headers(RateHeaders::together_tokens());
    let limits = Limits::builder()
        .quota("tokens", Quota::adaptive(learn))
        .route(Route::new(Method::POST, "/v1/embeddings").quota("tokens"))
        .build()
        .unwrap();
    let layer = RateLimitLayer::new(limits);
    let log = Arc::new(Mutex::new(Vec::new()));
    // Every answer says the limit is 100 tokens/s, half a second after the request.
    let svc = layer.layer_service(slow_server(
        log.clone(),
        Arc::new(|_| answer(200, &[("x-tokenlimit-limit", "100")])),
        Duration::from_millis(500),
    ));
    // 1,000 tokens each (3,936 characters / 4 + 16 for the answer): the
    // start's whole burst. The second is due at 1 s, after the first's
    // answer has shrunk the burst to 100.
    let big = || {
        Request::post("/v1/embeddings")
            .body(format!(r#"{{"model":"m","input":"{}"}}"#, "x".repeat(3936)))
            .unwrap()
    };
    let first = tokio::spawn(svc.clone().oneshot(big()));
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Queued behind the first while the burst is still 1,000; the first's
    // answer then shrinks the burst to 100, below this request's cost.
    let second = tokio::spawn(svc.clone().oneshot(big()));
    tokio::time::sleep(Duration::from_millis(1)).await;
    // A small one behind: it waits until the second's whole cost is paid.
    let small = Request::post("/v1/embeddings")
        .body(r#"{"model":"m","input":"x"}"#.to_owned())
        .unwrap();
    let third = tokio::spawn(svc.clone().oneshot(small));
    for task in [first, second, third] {
        assert_eq!(task.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(pace_of(&layer, "tokens"), 100.0);
    let times: Vec<_> = log.lock().unwrap().iter().map(|(t, _)| *t).collect();
    assert_eq!(times.len(), 3);
    // The second went once a whole burst (100) was free, at 1 s; its other
    // 900 tokens at 100/s (less the margin) hold the third ~9 s more.
    let paid = times[2] - times[1];
    assert!(
        paid >= Duration::from_secs(9),
        "{paid:?}: the second was charged in full"
    );
}

fn pace_of(layer: &RateLimitLayer, quota: &str) -> f64 {
    layer.snapshot().cell(quota, None).unwrap().pace
}
