//! Behaviour of RateLimit under tokio's paused clock: deterministic and instant.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt};
use http::{Method, Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};
use tower_layer::Layer as _;
use tower_quota::error::{CostTooHigh, WaitTimeout};
use tower_quota::{BoxError, KeyBy, Limits, Quota, RateLimit, RateLimitLayer, Route, Unmatched};

type Log = Arc<Mutex<Vec<(Instant, String)>>>;

/// An inner service that records when each request arrived and answers with `respond`.
fn recorder(
    log: Log,
    respond: impl Fn(&str) -> Response<String> + Clone + Send + 'static,
) -> impl Service<
    Request<String>,
    Response = Response<String>,
    Error = Infallible,
    Future = BoxFuture<'static, Result<Response<String>, Infallible>>,
> + Clone {
    service_fn(move |req: Request<String>| {
        let log = log.clone();
        let respond = respond.clone();
        async move {
            let body = req.into_body();
            log.lock().unwrap().push((Instant::now(), body.clone()));
            Ok(respond(&body))
        }
        .boxed()
    })
}

fn ok(_: &str) -> Response<String> {
    Response::new(String::new())
}

/// Answers the first request 429 with one header, every later one 200.
fn first_429_then_ok(
    header: &'static str,
    value: &'static str,
) -> impl Fn(&str) -> Response<String> + Clone + Send + 'static {
    let first = Arc::new(Mutex::new(true));
    move |_: &str| {
        if std::mem::take(&mut *first.lock().unwrap()) {
            Response::builder()
                .status(StatusCode::TOO_MANY_REQUESTS)
                .header(header, value)
                .body(String::new())
                .unwrap()
        } else {
            Response::new(String::new())
        }
    }
}

fn post(path: &str, body: impl Into<String>) -> Request<String> {
    Request::post(path).body(body.into()).unwrap()
}

fn chat_limits(rate: &str) -> Limits {
    Limits::builder()
        .quota("chat", Quota::new(rate.parse().unwrap()))
        .route(Route::new(Method::POST, "/chat").quota("chat"))
        .build()
        .unwrap()
}

/// Calls `svc` once per body, in order, then drives all the futures at once.
async fn burst<S>(
    svc: &mut S,
    path: &str,
    bodies: Vec<String>,
) -> Vec<Result<Response<tower_quota::ResponseBody<String>>, BoxError>>
where
    S: Service<
            Request<String>,
            Response = Response<tower_quota::ResponseBody<String>>,
            Error = BoxError,
        >,
    S::Future: Send + 'static,
{
    let mut handles = Vec::new();
    for body in bodies {
        svc.ready().await.unwrap();
        handles.push(tokio::spawn(svc.call(post(path, body))));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

fn interval(per_sec: f64) -> Duration {
    Duration::from_secs_f64(1.0 / per_sec / (1.0 - tower_quota::DEFAULT_SAFETY_MARGIN))
}

#[tokio::test(start_paused = true)]
async fn grants_are_spaced_exactly_one_interval_apart() {
    let log = Log::default();
    let mut svc = RateLimit::new(recorder(log.clone(), ok), chat_limits("10/s"));
    let start = Instant::now();
    let bodies = (0..20).map(|i| i.to_string()).collect();
    for r in burst(&mut svc, "/chat", bodies).await {
        r.unwrap();
    }
    let log = log.lock().unwrap();
    let t = interval(10.0);
    for (i, (at, _)) in log.iter().enumerate() {
        let ideal = t * i as u32;
        let actual = *at - start;
        // On schedule: never early, and timer lateness does not accumulate.
        assert!(
            actual + Duration::from_micros(1) >= ideal,
            "grant {i} early: {actual:?} < {ideal:?}"
        );
        assert!(
            actual <= ideal + Duration::from_millis(2),
            "grant {i} late: {actual:?} vs {ideal:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn fifo_order_under_contention() {
    let log = Log::default();
    let mut svc = RateLimit::new(recorder(log.clone(), ok), chat_limits("100/s"));
    let bodies: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    burst(&mut svc, "/chat", bodies.clone()).await;
    let order: Vec<String> = log.lock().unwrap().iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(order, bodies);
}

#[tokio::test(start_paused = true)]
async fn dropped_waiter_consumes_nothing() {
    let log = Log::default();
    let mut svc = RateLimit::new(recorder(log.clone(), ok), chat_limits("10/s"));
    let start = Instant::now();
    svc.ready().await.unwrap();
    let a = svc.call(post("/chat", "a"));
    svc.ready().await.unwrap();
    let b = svc.call(post("/chat", "b"));
    svc.ready().await.unwrap();
    let c = svc.call(post("/chat", "c"));
    let a = tokio::spawn(a);
    let b = tokio::spawn(b);
    let c = tokio::spawn(c);
    tokio::time::sleep(Duration::from_millis(10)).await;
    b.abort();
    a.await.unwrap().unwrap();
    c.await.unwrap().unwrap();
    let log = log.lock().unwrap();
    let names: Vec<_> = log.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(names, ["a", "c"]);
    // c took b's slot: one interval after a, not two.
    let c_at = log[1].0 - start;
    assert!(
        c_at >= interval(10.0) && c_at < interval(10.0) + Duration::from_millis(3),
        "{c_at:?}"
    );
    assert_eq!(svc.snapshot().cell("chat", None).unwrap().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn per_model_keys_and_overrides() {
    let limits = Limits::builder()
        .quota(
            "chat",
            Quota::new("10/s".parse().unwrap())
                .keyed_by(KeyBy::model())
                .with_override("slow-model", "9/min".parse().unwrap()),
        )
        .route(Route::new(Method::POST, "/chat").quota("chat"))
        .build()
        .unwrap();
    let log = Log::default();
    let mut svc = RateLimit::new(recorder(log.clone(), ok), limits);
    let start = Instant::now();
    let body = |m: &str, i: u32| format!(r#"{{"model":"{m}","i":{i}}}"#);
    let bodies = vec![
        body("a", 0),
        body("a", 1),
        body("b", 0),
        body("b", 1),
        body("slow-model", 0),
        body("slow-model", 1),
    ];
    burst(&mut svc, "/chat", bodies).await;
    let log = log.lock().unwrap();
    let at = |b: String| log.iter().find(|(_, x)| *x == b).unwrap().0 - start;
    // Different keys do not wait for each other.
    assert_eq!(at(body("a", 0)), Duration::ZERO);
    assert_eq!(at(body("b", 0)), Duration::ZERO);
    assert_eq!(at(body("slow-model", 0)), Duration::ZERO);
    let fast = at(body("b", 1));
    assert!(
        fast >= interval(10.0) && fast < interval(10.0) + Duration::from_millis(2),
        "{fast:?}"
    );
    // The override paces its own key at 9/min.
    let slow = at(body("slow-model", 1));
    let slow_ideal = interval(9.0 / 60.0);
    assert!(
        slow >= slow_ideal && slow < slow_ideal + Duration::from_millis(2),
        "{slow:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn weighted_quota_charges_the_estimated_tokens() {
    // 1000 tokens/s, burst 1000: a request of 500 tokens fits twice at once,
    // then one every half second.
    let limits = Limits::builder()
        .quota("tokens", Quota::new("1000 tokens/s".parse().unwrap()))
        .route(Route::new(Method::POST, "/chat").quota("tokens"))
        .build()
        .unwrap();
    let log = Log::default();
    let mut svc = RateLimit::new(recorder(log.clone(), ok), limits);
    let start = Instant::now();
    // 400 chars = 100 tokens of input, plus max_tokens 400.
    let body = |i: u32| {
        format!(
            r#"{{"prompt":"{}","max_tokens":400,"i":{i}}}"#,
            "x".repeat(400)
        )
    };
    burst(&mut svc, "/chat", (0..4).map(body).collect()).await;
    let times: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| *t - start)
        .collect();
    assert_eq!(times[0], Duration::ZERO);
    assert_eq!(times[1], Duration::ZERO);
    let half = interval(1000.0) * 500;
    for (i, t) in times.iter().enumerate().skip(2) {
        let ideal = half * (i as u32 - 1);
        assert!(
            *t >= ideal && *t < ideal + Duration::from_millis(2),
            "{i}: {t:?} vs {ideal:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_cost_that_can_never_fit_fails_at_once() {
    let limits = Limits::builder()
        .quota("tokens", Quota::new("100 tokens/s".parse().unwrap()))
        .route(Route::new(Method::POST, "/chat").quota("tokens"))
        .build()
        .unwrap();
    let mut svc = RateLimit::new(recorder(Log::default(), ok), limits);
    let start = Instant::now();
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(post("/chat", r#"{"prompt":"hi","max_tokens":5000}"#))
        .await
        .unwrap_err();
    let err = err.downcast_ref::<CostTooHigh>().expect("CostTooHigh");
    assert_eq!(err.capacity(), 100);
    assert!(err.cost() > 5000);
    assert!(err.to_string().contains("split the request"));
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_reset_holds_every_queued_caller() {
    let log = Log::default();
    let respond = first_429_then_ok("x-ratelimit-reset", "2");
    let mut svc = RateLimit::new(recorder(log.clone(), respond), chat_limits("100/s"));
    let start = Instant::now();
    let results = burst(&mut svc, "/chat", (0..5).map(|i| i.to_string()).collect()).await;
    assert_eq!(
        results[0].as_ref().unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 5);
    // The second request was due after 10 ms, but the 429 arrived first and
    // held everyone queued for 2 s.
    for (at, body) in log.iter().skip(1) {
        assert!(
            *at - start >= Duration::from_secs(2),
            "{body} went at {:?}",
            *at - start
        );
    }
    // After the hold they are paced again, not released as a herd (gaps are
    // whole milliseconds of timer ticks around the 10.1 ms schedule).
    let gaps: Vec<_> = log.windows(2).skip(1).map(|w| w[1].0 - w[0].0).collect();
    assert!(
        gaps.iter()
            .all(|g| *g >= interval(100.0) - Duration::from_millis(1)),
        "{gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn remaining_zero_with_reset_holds_but_plain_success_does_not() {
    let log = Log::default();
    let calls = Arc::new(Mutex::new(0));
    let calls_again = calls.clone();
    let respond = move |_: &str| {
        let mut n = calls.lock().unwrap();
        *n += 1;
        let builder = Response::builder().header("x-ratelimit-reset", "1");
        let builder = if *n == 2 {
            builder.header("x-ratelimit-remaining", "0")
        } else {
            builder.header("x-ratelimit-remaining", "5")
        };
        builder.body(String::new()).unwrap()
    };
    let mut svc = RateLimit::new(recorder(log.clone(), respond.clone()), chat_limits("100/s"));
    let start = Instant::now();
    for i in 0..3 {
        svc.ready()
            .await
            .unwrap()
            .call(post("/chat", i.to_string()))
            .await
            .unwrap();
    }
    let times: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| *t - start)
        .collect();
    assert!(
        times[1] < Duration::from_millis(20),
        "a success with remaining 5 does not hold"
    );
    assert!(
        times[2] >= times[1] + Duration::from_secs(1),
        "remaining 0 holds until the reset"
    );

    // Turned off, the same responses never hold.
    *calls_again.lock().unwrap() = 0;
    let limits = Limits::builder()
        .quota("chat", Quota::new("100/s".parse().unwrap()))
        .route(Route::new(Method::POST, "/chat").quota("chat"))
        .hold_on_remaining_zero(false)
        .build()
        .unwrap();
    let mut svc = RateLimit::new(recorder(Log::default(), respond), limits);
    let start = Instant::now();
    for i in 0..3 {
        let req = post("/chat", i.to_string());
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    assert!(
        start.elapsed() < Duration::from_millis(30),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn max_wait_fails_fast_with_the_earliest_instant() {
    let limits = Limits::builder()
        .quota("chat", Quota::new("10/s".parse().unwrap()))
        .route(
            Route::new(Method::POST, "/chat")
                .quota("chat")
                .max_wait(Duration::from_millis(150)),
        )
        .build()
        .unwrap();
    let mut svc = RateLimit::new(recorder(Log::default(), ok), limits);
    let start = Instant::now();
    let results = burst(&mut svc, "/chat", (0..3).map(|i| i.to_string()).collect()).await;
    assert!(results[0].is_ok());
    assert!(
        results[1].is_ok(),
        "one interval (~101 ms) is within 150 ms"
    );
    let err = results[2].as_ref().unwrap_err();
    let timeout = err.downcast_ref::<WaitTimeout>().expect("WaitTimeout");
    let expected = start + interval(10.0) * 2;
    assert!(timeout.earliest() >= expected - Duration::from_micros(1));
    assert!(timeout.earliest() <= expected + Duration::from_millis(1));
    assert_eq!(timeout.max_wait(), Duration::from_millis(150));
    assert_eq!(timeout.route(), "POST /chat");
}

#[tokio::test(start_paused = true)]
async fn unmatched_requests_pass_or_draw_on_a_default_quota() {
    let log = Log::default();
    let mut pass = RateLimit::new(recorder(log.clone(), ok), chat_limits("1/s"));
    let start = Instant::now();
    burst(&mut pass, "/other", (0..5).map(|i| i.to_string()).collect()).await;
    assert_eq!(start.elapsed(), Duration::ZERO);

    let limits = Limits::builder()
        .quota("default", Quota::new("1/s".parse().unwrap()))
        .unmatched(Unmatched::Quotas(vec!["default".into()]))
        .build()
        .unwrap();
    let mut limited = RateLimit::new(recorder(log, ok), limits);
    burst(
        &mut limited,
        "/other",
        (0..3).map(|i| i.to_string()).collect(),
    )
    .await;
    assert!(start.elapsed() >= interval(1.0) * 2);
}

#[tokio::test(start_paused = true)]
async fn routes_match_params_and_methods() {
    let limits = Limits::builder()
        .quota("jobs", Quota::new("1/s".parse().unwrap()))
        .route(Route::new(Method::GET, "/v1/fine-tunes/{id}").quota("jobs"))
        .build()
        .unwrap();
    let log = Log::default();
    let mut svc = RateLimit::new(recorder(log, ok), limits);
    let start = Instant::now();
    for id in ["ft-1", "ft-2"] {
        let req = Request::get(format!("/v1/fine-tunes/{id}"))
            .body(String::new())
            .unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    assert!(
        start.elapsed() >= interval(1.0),
        "GET /v1/fine-tunes/{{id}} is limited"
    );
    let before = Instant::now();
    let req = Request::post("/v1/fine-tunes/ft-1")
        .body(String::new())
        .unwrap();
    svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(before.elapsed(), Duration::ZERO, "POST is another route");
}

#[tokio::test(start_paused = true)]
async fn clones_and_layered_services_share_quotas() {
    let log = Log::default();
    let layer = RateLimitLayer::new(chat_limits("10/s"));
    let mut a = layer.layer(recorder(log.clone(), ok));
    let mut b = layer.layer(recorder(log.clone(), ok)).clone();
    let start = Instant::now();
    a.ready()
        .await
        .unwrap()
        .call(post("/chat", "a"))
        .await
        .unwrap();
    b.ready()
        .await
        .unwrap()
        .call(post("/chat", "b"))
        .await
        .unwrap();
    assert!(start.elapsed() >= interval(10.0));
    assert_eq!(layer.snapshot().cells.len(), 1);
}

/// An inner service that is ready only every other poll, and panics if called unready.
#[derive(Clone)]
struct Flaky {
    ready: bool,
    polls: Arc<Mutex<u32>>,
}

impl Service<Request<String>> for Flaky {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        *self.polls.lock().unwrap() += 1;
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        self.ready = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        assert!(std::mem::take(&mut self.ready), "called an unready service");
        std::future::ready(Ok(Response::new(String::new())))
    }
}

#[tokio::test(start_paused = true)]
async fn inner_service_is_readied_after_the_grant() {
    let polls = Arc::new(Mutex::new(0));
    let inner = Flaky {
        ready: false,
        polls: polls.clone(),
    };
    let mut svc = RateLimit::new(inner, chat_limits("10/s"));
    for i in 0..3 {
        svc.ready()
            .await
            .unwrap()
            .call(post("/chat", i.to_string()))
            .await
            .unwrap();
    }
    assert!(
        *polls.lock().unwrap() >= 6,
        "each request readied its own clone"
    );
}

/// Counts its calls; always ready.
#[derive(Clone, Default)]
struct Counted {
    calls: Arc<Mutex<u32>>,
}

impl Service<Request<String>> for Counted {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<String>) -> Self::Future {
        *self.calls.lock().unwrap() += 1;
        std::future::ready(Ok(Response::new(String::new())))
    }
}

#[tokio::test(start_paused = true)]
async fn call_sends_nothing_the_future_sends() {
    // tower's contract: `call` may run off the task, so it neither polls
    // nor calls the inner service; the request goes when its future runs.
    let inner = Counted::default();
    let calls = inner.calls.clone();
    let mut svc = RateLimit::new(inner, chat_limits("1/s"));
    let granted = svc.call(post("/chat", "a"));
    let unlimited = svc.call(post("/other", "b"));
    assert_eq!(*calls.lock().unwrap(), 0);
    let answers = tokio::join!(granted, unlimited);
    assert!(answers.0.is_ok() && answers.1.is_ok());
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_unready_inner_service_is_readied_by_the_future_and_wakes_it() {
    // One request at a time inside: the second, free by quota, finds the
    // inner service busy; it must be woken when the first is answered.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let released = Arc::new(Mutex::new(Some(released)));
    let inner = tower::limit::ConcurrencyLimit::new(
        service_fn(move |_: Request<String>| {
            let wait = released.lock().unwrap().take();
            async move {
                if let Some(wait) = wait {
                    wait.await.ok();
                }
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        }),
        1,
    );
    let mut svc = RateLimit::new(inner, chat_limits("1000/s"));
    let first = tokio::spawn(svc.call(post("/chat", "a")));
    let second = tokio::spawn(svc.call(post("/chat", "b")));
    tokio::task::yield_now().await;
    assert!(!second.is_finished(), "the inner service is busy");
    release.send(()).unwrap();
    let within = Duration::from_secs(1);
    tokio::time::timeout(within, first)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(within, second).await;
    second
        .expect("woken when the inner service became ready")
        .unwrap()
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn idle_keys_are_evicted() {
    let limits = Limits::builder()
        .quota(
            "chat",
            Quota::new("10/s".parse().unwrap()).keyed_by(KeyBy::model()),
        )
        .route(Route::new(Method::POST, "/chat").quota("chat"))
        .build()
        .unwrap();
    let mut svc = RateLimit::new(recorder(Log::default(), ok), limits);
    for i in 0..100 {
        let body = format!(r#"{{"model":"m{i}"}}"#);
        svc.ready()
            .await
            .unwrap()
            .call(post("/chat", body))
            .await
            .unwrap();
    }
    assert_eq!(svc.snapshot().cells.len(), 100);
    tokio::time::sleep(Duration::from_secs(2)).await;
    svc.ready()
        .await
        .unwrap()
        .call(post("/chat", r#"{"model":"last"}"#))
        .await
        .unwrap();
    let cells = svc.snapshot().cells;
    assert_eq!(cells.len(), 1, "{cells:?}");
    assert_eq!(cells[0].key.as_deref(), Some("last"));
}

#[tokio::test(start_paused = true)]
async fn snapshot_shows_queues_and_holds() {
    let mut svc = RateLimit::new(
        service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(
                Response::builder()
                    .status(429)
                    .header("retry-after", "3")
                    .body(String::new())
                    .unwrap(),
            )
        }),
        chat_limits("1/s"),
    );
    let start = Instant::now();
    svc.ready()
        .await
        .unwrap()
        .call(post("/chat", "x"))
        .await
        .unwrap();
    svc.ready().await.unwrap();
    let waiting = tokio::spawn(svc.call(post("/chat", "y")));
    tokio::task::yield_now().await;
    let snap = svc.snapshot();
    let cell = snap.cell("chat", None).unwrap();
    assert_eq!(cell.queued, 1);
    assert_eq!(cell.hold_until, Some(start + Duration::from_secs(3)));
    assert_eq!(cell.next_free, start + Duration::from_secs(3));
    waiting.await.unwrap().unwrap();
    assert!(start.elapsed() >= Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn absurd_hints_hold_no_longer_than_the_cap() {
    // retry-after a day on a 200, a reset a day away with nothing remaining,
    // retry-after 50 min on a 429: each holds the route for the cap at most.
    let answers: [(u16, &[(&str, &str)]); 3] = [
        (200, &[("retry-after", "86000")]),
        (
            200,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "80000"),
            ],
        ),
        (429, &[("retry-after", "3000")]),
    ];
    for (status, headers) in answers {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let limits = Limits::builder()
            .quota("chat", Quota::new("10/s".parse().unwrap()))
            .route(Route::new(Method::POST, "/chat").quota("chat"))
            .max_hold(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut svc = RateLimit::new(
            service_fn(move |_: Request<String>| {
                let mut res = Response::builder().status(status);
                for (k, v) in &headers {
                    res = res.header(k.as_str(), v.as_str());
                }
                let res = res.body(String::new()).unwrap();
                async move { Ok::<_, Infallible>(res) }
            }),
            limits,
        );
        let start = Instant::now();
        svc.ready()
            .await
            .unwrap()
            .call(post("/chat", "x"))
            .await
            .unwrap();
        let held = svc.snapshot().cell("chat", None).unwrap().hold_until;
        assert_eq!(held, Some(start + Duration::from_secs(5)), "{status}");
    }
}

#[test]
fn config_errors_name_the_entry() {
    let cases: Vec<(Result<Limits, tower_quota::InvalidConfig>, &str, &str)> = vec![
        (
            Limits::builder()
                .route(Route::new(Method::POST, "/chat").quota("nope"))
                .build(),
            "routes[POST /chat]",
            "\"nope\", which is not defined",
        ),
        (
            Limits::builder()
                .quota(
                    "q",
                    Quota::new("1/s".parse().unwrap()).with_override("m", "2/s".parse().unwrap()),
                )
                .build(),
            "quotas.q.overrides.m",
            "keyed quota",
        ),
        (
            Limits::builder().safety_margin(0.9).build(),
            "safety_margin",
            "outside",
        ),
        (
            Limits::builder()
                .quota("q", Quota::new("1/s".parse().unwrap()))
                .route(Route::new(Method::GET, "v1/no-slash").quota("q"))
                .build(),
            "routes[GET v1/no-slash]",
            "must start with '/'",
        ),
        (
            Limits::from_toml("[quotas.chat]\nrate = \"600/fortnight\""),
            "quotas.chat.rate",
            "unknown time unit",
        ),
        (
            Limits::from_toml("[quotas.chat]\nrate = \"1/s\"\nkey = \"model\""),
            "quotas.chat.key",
            "body:<field>",
        ),
        (
            Limits::from_toml("[quotas.chat]\nrate = \"1/s\"\nburst = 0"),
            "quotas.chat.burst",
            "> 0",
        ),
        (
            Limits::from_toml("[quotas.chat]\nrate = \"1/s\"\nbrust = 2"),
            "toml",
            "brust",
        ),
        (
            Limits::from_toml("[[routes]]\nmethod = \"POST\"\npath = \"/x\"\nmax_wait = \"soon\""),
            "routes[0].max_wait",
            "time unit",
        ),
    ];
    for (result, entry, needle) in cases {
        let err = result.expect_err(entry);
        assert_eq!(err.entry(), entry, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[tokio::test(start_paused = true)]
async fn toml_config_drives_the_layer() {
    let limits = Limits::from_toml(
        r#"
        [quotas.chat]
        rate = "10/s"
        key = "body:model"
        overrides = { "m-slow" = { rate = "1/s", burst = 2 } }

        [[routes]]
        method = "post"
        path = "/chat"
        quotas = ["chat"]
        "#,
    )
    .unwrap();
    let table = limits.table();
    assert_eq!(table.len(), 2);
    assert_eq!(table[1].quota, "chat[m-slow]");
    assert_eq!(table[1].burst.get(), 2);
    let log = Log::default();
    let mut svc = RateLimit::new(recorder(log.clone(), ok), limits);
    let start = Instant::now();
    let bodies = (0..3)
        .map(|i| format!(r#"{{"model":"m-slow","i":{i}}}"#))
        .collect();
    burst(&mut svc, "/chat", bodies).await;
    let times: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| *t - start)
        .collect();
    assert_eq!(&times[..2], &[Duration::ZERO, Duration::ZERO], "burst 2");
    assert!(times[2] >= interval(1.0) - Duration::from_millis(1));
}

#[tokio::test(start_paused = true)]
async fn several_quotas_grant_all_or_nothing() {
    // 2 requests/s and 100 tokens/s (burst 100); each request costs 80 tokens.
    // The 2nd request's request slot comes due at ~0.505 s, its tokens only at
    // ~0.606 s: the request slot taken at 0.505 s must be given back, or the
    // 2nd request would wait for a second request slot (~1.01 s).
    let limits = Limits::builder()
        .quota("requests", Quota::new("2/s".parse().unwrap()))
        .quota("tokens", Quota::new("100 tokens/s".parse().unwrap()))
        .route(
            Route::new(Method::POST, "/chat")
                .quota("requests")
                .quota("tokens"),
        )
        .build()
        .unwrap();
    let log = Log::default();
    let mut svc = RateLimit::new(recorder(log.clone(), ok), limits);
    let start = Instant::now();
    let body = |i: u32| format!(r#"{{"prompt":"","max_tokens":80,"i":{i}}}"#);
    burst(&mut svc, "/chat", (0..3).map(body).collect()).await;
    let times: Vec<_> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _)| *t - start)
        .collect();
    let token = interval(100.0);
    // Tokens: 80 now, then room for 80 more once 60 have drained (0.606 s),
    // then once 140 have (1.414 s); the request quota never binds after the first.
    for (i, ideal) in [Duration::ZERO, token * 60, token * 140]
        .into_iter()
        .enumerate()
    {
        assert!(
            times[i] >= ideal && times[i] <= ideal + Duration::from_millis(2),
            "grant {i} at {:?}, expected {ideal:?}",
            times[i]
        );
    }
}

/// 10 requests/s with a burst of 1, then 100 tokens/s: `/chat` draws on
/// both, in that order; `/tokens` on the tokens alone.
fn requests_then_tokens() -> Limits {
    Limits::builder()
        .safety_margin(0.0)
        .quota("requests", Quota::new("10/s".parse().unwrap()))
        .quota("tokens", Quota::new("100 tokens/s".parse().unwrap()))
        .route(
            Route::new(Method::POST, "/chat")
                .quota("requests")
                .quota("tokens"),
        )
        .route(Route::new(Method::POST, "/tokens").quota("tokens"))
        .build()
        .unwrap()
}

fn asking(max_tokens: u32) -> String {
    format!(r#"{{"prompt":"","max_tokens":{max_tokens}}}"#)
}

/// Calls `svc` (admitting the request) with a body asking `max_tokens`.
fn call<S>(svc: &mut S, path: &str, max_tokens: u32) -> S::Future
where
    S: Service<Request<String>>,
{
    svc.call(post(path, asking(max_tokens)))
}

/// When quota `quota`'s (unkeyed) cell could next grant one unit.
fn next_free<S>(svc: &RateLimit<S>, quota: &str) -> Instant {
    svc.snapshot()
        .cell(quota, None)
        .expect("the cell")
        .next_free
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_go_at_once_takes_nothing_from_the_cells_that_could() {
    let start = Instant::now();

    // The tokens refuse after the request slot granted: the slot goes back.
    let mut svc = RateLimit::new(recorder(Log::default(), ok), requests_then_tokens());
    let _drain = call(&mut svc, "/tokens", 95);
    let queued = call(&mut svc, "/chat", 80);
    assert_eq!(next_free(&svc, "requests"), start, "refused by the tokens");
    assert_eq!(svc.snapshot().cell("tokens", None).unwrap().queued, 1);
    drop(queued);

    // The tokens have a queue (nobody goes ahead of it): the slot goes back.
    let mut svc = RateLimit::new(recorder(Log::default(), ok), requests_then_tokens());
    let _drain = call(&mut svc, "/tokens", 95);
    let _waiting = call(&mut svc, "/tokens", 50);
    let _behind = call(&mut svc, "/chat", 1);
    assert_eq!(next_free(&svc, "requests"), start, "behind a queue");
    assert_eq!(svc.snapshot().cell("tokens", None).unwrap().queued, 2);

    // A 429 holds the tokens: the slot goes back.
    let respond = first_429_then_ok("retry-after", "2");
    let mut svc = RateLimit::new(recorder(Log::default(), respond), requests_then_tokens());
    let answer = call(&mut svc, "/tokens", 1).await.unwrap();
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    let _held = call(&mut svc, "/chat", 1);
    assert_eq!(next_free(&svc, "requests"), start, "held by a 429");
    assert!(svc.snapshot().cell("tokens", None).unwrap().hold_until > Some(start));

    // The tokens can never fit: the request fails and the slot goes back.
    let mut svc = RateLimit::new(recorder(Log::default(), ok), requests_then_tokens());
    let err = call(&mut svc, "/chat", 5000).await.unwrap_err();
    assert!(err.is::<CostTooHigh>(), "{err}");
    assert_eq!(
        next_free(&svc, "requests"),
        start,
        "too costly for the tokens"
    );

    // What goes at once takes its slot.
    let _sent = call(&mut svc, "/chat", 1);
    assert_eq!(
        next_free(&svc, "requests"),
        start + Duration::from_millis(100)
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_without_a_usable_hint_holds_for_the_default() {
    let log = Log::default();
    let respond = first_429_then_ok("retry-after", "soon");
    let mut svc = RateLimit::new(recorder(log.clone(), respond), chat_limits("100/s"));
    let start = Instant::now();
    for i in 0..2 {
        svc.ready()
            .await
            .unwrap()
            .call(post("/chat", i.to_string()))
            .await
            .unwrap();
    }
    let second = log.lock().unwrap()[1].0 - start;
    assert!(second >= tower_quota::DEFAULT_HOLD, "{second:?}");
    assert!(
        second < tower_quota::DEFAULT_HOLD + Duration::from_millis(2),
        "{second:?}"
    );
}
