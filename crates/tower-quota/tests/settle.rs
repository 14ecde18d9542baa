//! Reconciled charging under tokio's paused clock: a token quota charges
//! the estimate at admission and settles it by the answer's usage.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer as _;
use tower_quota::{Adaptive, Charging, Limits, Quota, RateHeaders, RateLimitLayer, Route};

/// 1 input token + 99 output tokens: the estimate is 100.
const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"abcd"}],"max_tokens":99}"#;

fn limits(quota: Quota) -> Limits {
    Limits::builder()
        .quota("tokens", quota)
        .route(Route::new(Method::POST, "/chat").quota("tokens"))
        .build()
        .unwrap()
}

fn tokens(charging: Charging) -> Quota {
    Quota::new("100 tokens/s".parse().unwrap()).charge(charging)
}

/// Sends `n` chats at once through `svc` and reads every answer to its end.
async fn chat_all<S, B>(svc: S, n: usize)
where
    S: tower::Service<Request<String>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let res = svc.oneshot(Request::post("/chat").body(CHAT.to_owned()).unwrap());
                res.await.unwrap().into_body().collect().await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Sends `n` chats at once through `layer` over a server answering `body`
/// with `headers`; reads every answer to its end. Returns when each
/// reached the server, from the start.
async fn run(
    layer: RateLimitLayer,
    n: usize,
    body: &'static str,
    headers: Vec<(&'static str, String)>,
) -> Vec<Duration> {
    let start = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let svc = layer.layer(service_fn(move |_: Request<String>| {
        seen.lock().unwrap().push(start.elapsed());
        let mut res = Response::new(body.to_owned());
        for (name, value) in &headers {
            res.headers_mut()
                .insert(*name, http::HeaderValue::from_str(value).unwrap());
        }
        async move { Ok::<_, Infallible>(res) }
    }));
    chat_all(svc, n).await;
    let mut at = log.lock().unwrap().clone();
    at.sort();
    at
}

const USED_10: &str = r#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1,"completion_tokens":9,"total_tokens":10}}"#;

#[tokio::test(start_paused = true)]
async fn refunds_release_queued_requests_earlier() {
    let estimate = run(
        RateLimitLayer::new(limits(tokens(Charging::Estimate))),
        5,
        USED_10,
        vec![],
    )
    .await;
    let reconciled = run(
        RateLimitLayer::new(limits(tokens(Charging::Reconciled))),
        5,
        USED_10,
        vec![],
    )
    .await;
    // Estimate: 100 tokens each at 100/s, one a second.
    assert!(estimate[4] > Duration::from_millis(3900), "{estimate:?}");
    // Reconciled: each answer gives back 90, the next goes 0.1 s later.
    assert!(reconciled[4] < Duration::from_millis(500), "{reconciled:?}");
    assert!(reconciled[1] >= Duration::from_millis(90), "{reconciled:?}");
}

#[tokio::test(start_paused = true)]
async fn an_under_estimate_is_charged_and_nonsense_keeps_the_estimate() {
    let used_190 = r#"{"usage":{"prompt_tokens":1,"completion_tokens":189,"total_tokens":190}}"#;
    let over = run(
        RateLimitLayer::new(limits(tokens(Charging::Reconciled))),
        3,
        used_190,
        vec![],
    )
    .await;
    // 90 more per answer (within one burst): about 1.9 s apart.
    assert!(over[2] > Duration::from_millis(3700), "{over:?}");
    for nonsense in [
        r#"{"usage":{"total_tokens":-10}}"#,
        r#"{"usage":{"total_tokens":"10"}}"#,
        r#"{"usage":{"prompt_tokens":50,"completion_tokens":50,"total_tokens":1}}"#,
        r#"{"usage":null}"#,
        r#"{"usage":{"total_tokens":10"#,
    ] {
        let at = run(
            RateLimitLayer::new(limits(tokens(Charging::Reconciled))),
            3,
            nonsense,
            vec![],
        )
        .await;
        assert!(
            at[2] > Duration::from_millis(1900) && at[2] < Duration::from_millis(2300),
            "{nonsense}: {at:?}"
        );
    }
}

/// Six chats at once through a learning token quota (100 tokens/s, reading
/// Together's token headers) over a server whose own bucket (100 a second)
/// charges each request `charged` and reports what is left. Returns when
/// each reached the server, and what its bucket held after.
async fn against_counting_server(charging: Charging, charged: f64) -> Vec<(Duration, f64)> {
    let quota = Quota::adaptive(
        Adaptive::new("100 tokens/s".parse().unwrap()).headers(RateHeaders::together_tokens()),
    )
    .charge(charging);
    let layer = RateLimitLayer::new(limits(quota));
    let server_count = Arc::new(Mutex::new((Instant::now(), 100.0f64)));
    let start = Instant::now();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    let svc = layer.layer(service_fn(move |_: Request<String>| {
        let mut count = server_count.lock().unwrap();
        let now = Instant::now();
        let refill = now.duration_since(count.0).as_secs_f64() * 100.0;
        count.1 = (count.1 + refill).min(100.0) - charged;
        count.0 = now;
        seen.lock().unwrap().push((start.elapsed(), count.1));
        let res = Response::builder()
            .header("x-tokenlimit-limit", "100")
            .header(
                "x-tokenlimit-remaining",
                count.1.max(0.0).floor().to_string(),
            )
            .body(USED_10.to_owned())
            .unwrap();
        async move { Ok::<_, Infallible>(res) }
    }));
    chat_all(svc, 6).await;
    log.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn an_answer_reporting_the_remaining_count_is_settled_by_it() {
    // A server charging the estimate (100): its count says so, and the
    // usage in the body (10) must not be refunded on top.
    let log = against_counting_server(Charging::Reconciled, 100.0).await;
    assert!(log.iter().all(|&(_, left)| left > -1.0), "{log:?}");
    // A server charging the usage (10): its count says 90 are left, and
    // the cell takes them, where charging the estimate waits a second each.
    let log = against_counting_server(Charging::Reconciled, 10.0).await;
    assert!(log[5].0 < Duration::from_millis(600), "{log:?}");
    assert!(log.iter().all(|&(_, left)| left > -1.0), "{log:?}");
    let log = against_counting_server(Charging::Estimate, 10.0).await;
    assert!(log[5].0 > Duration::from_millis(4500), "{log:?}");
}

/// A server-sent event stream, one event per message on `rx`.
fn event_stream(rx: mpsc::Receiver<&'static str>) -> Response<UnsyncBoxBody<Bytes, Infallible>> {
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((Ok(Frame::data(Bytes::from(event))), rx))
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(StreamBody::new(frames).boxed_unsync())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_stream_passes_unbuffered_and_settles_at_its_end() {
    let layer = RateLimitLayer::new(limits(tokens(Charging::Reconciled)));
    let senders = Arc::new(Mutex::new(Vec::new()));
    let keep = senders.clone();
    let start = Instant::now();
    let arrived = Arc::new(Mutex::new(Vec::new()));
    let seen = arrived.clone();
    let svc = layer.layer(service_fn(move |_: Request<String>| {
        seen.lock().unwrap().push(start.elapsed());
        let (tx, rx) = mpsc::channel(8);
        keep.lock().unwrap().push(tx);
        async move { Ok::<_, Infallible>(event_stream(rx)) }
    }));
    let first = svc
        .clone()
        .oneshot(Request::post("/chat").body(CHAT.to_owned()).unwrap())
        .await
        .unwrap();
    let second = tokio::spawn(
        svc.clone()
            .oneshot(Request::post("/chat").body(CHAT.to_owned()).unwrap()),
    );
    let tx = senders.lock().unwrap()[0].clone();
    let mut body = first.into_body().into_data_stream();
    // The first event reaches the caller while the server is still sending.
    tx.send("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}],\"usage\":null}\n\n")
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_millis(1), body.next())
        .await
        .expect("the first event comes through at once")
        .unwrap()
        .unwrap();
    assert!(event.starts_with(b"data: "));
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":9,\"total_tokens\":10}}\n\ndata: [DONE]\n\n")
        .await
        .unwrap();
    body.next().await.unwrap().unwrap();
    drop(tx);
    senders.lock().unwrap().clear();
    assert!(body.next().await.is_none());
    let settled_at = start.elapsed();
    second.await.unwrap().unwrap();
    let arrived = arrived.lock().unwrap().clone();
    // The second waited for the refund (it needed 100, 10 were spent): it
    // went about 0.1 s after the stream ended, not a second after the first.
    assert!(arrived[1] >= settled_at, "{arrived:?} {settled_at:?}");
    assert!(
        arrived[1] < settled_at + Duration::from_millis(150),
        "{arrived:?} {settled_at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_count_taken_while_a_stream_runs_is_not_credited_again_at_its_end() {
    // A learning token cell (100/s, burst 100) over a server that counts
    // usage when an answer completes. A stream (estimate 50) and a chat
    // (estimate 50) go at once; the chat's answer says 90 are left (the
    // stream is not counted yet): the cell takes that. The stream then
    // ends having used 10: its 40 unused are already in the count, and
    // crediting them again would let a request of 100 go at once.
    let quota = Quota::adaptive(
        Adaptive::new("100 tokens/s".parse().unwrap()).headers(RateHeaders::together_tokens()),
    )
    .charge(Charging::Reconciled);
    let layer = RateLimitLayer::new(limits(quota));
    let start = Instant::now();
    let arrived = Arc::new(Mutex::new(Vec::new()));
    let seen = arrived.clone();
    let streams = Arc::new(Mutex::new(Vec::new()));
    let keep = streams.clone();
    let svc = layer.layer(service_fn(move |req: Request<String>| {
        seen.lock()
            .unwrap()
            .push((start.elapsed(), req.body().len()));
        let res = if req.body().contains("\"stream\"") {
            let (tx, rx) = mpsc::channel(4);
            keep.lock().unwrap().push(tx);
            event_stream(rx)
        } else {
            Response::builder()
                .header("x-tokenlimit-limit", "100")
                .header("x-tokenlimit-remaining", "90")
                .body(String::from(USED_10).boxed_unsync())
                .unwrap()
        };
        async move { Ok::<_, Infallible>(res) }
    }));
    let body = |max: u32, stream: bool| {
        let s = if stream { r#","stream":true"# } else { "" };
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"abcd"}}],"max_tokens":{max}{s}}}"#
        )
    };
    let post = |b: String| Request::post("/chat").body(b).unwrap();
    let stream = svc.clone().oneshot(post(body(49, true))).await.unwrap();
    let chat = svc.clone().oneshot(post(body(49, false))).await.unwrap();
    chat.into_body().collect().await.unwrap();
    let tx = streams.lock().unwrap()[0].clone();
    tx.send("data: {\"choices\":[],\"usage\":{\"total_tokens\":10}}\n\ndata: [DONE]\n\n")
        .await
        .unwrap();
    drop(tx);
    streams.lock().unwrap().clear();
    stream.into_body().collect().await.unwrap();
    let big = svc.clone().oneshot(post(body(99, false))).await.unwrap();
    big.into_body().collect().await.unwrap();
    let arrived = arrived.lock().unwrap().clone();
    // 90 were left; 100 are needed: 10 more come in 0.1 s.
    assert!(arrived[2].0 >= Duration::from_millis(95), "{arrived:?}");
}

#[tokio::test(start_paused = true)]
async fn a_token_cell_reading_counts_keeps_within_a_strict_window() {
    // A server that counts tokens in a strict 1 s window of whole requests
    // (3,000) and reports them. Chats of 1,027: two fit a window, a third
    // does not. A bucket of one second's worth would send it 0.34 s later.
    let quota = Quota::adaptive(
        Adaptive::new("3000 tokens/s".parse().unwrap()).headers(RateHeaders::together_tokens()),
    );
    let layer = RateLimitLayer::new(limits(quota));
    let start = Instant::now();
    let log: Arc<Mutex<Vec<(Duration, u32)>>> = Arc::default();
    let seen = log.clone();
    let svc = layer.layer(service_fn(move |_: Request<String>| {
        let now = start.elapsed();
        let mut log = seen.lock().unwrap();
        let spent: u32 = log
            .iter()
            .filter(|(at, _)| *at + Duration::from_secs(1) > now)
            .map(|(_, c)| *c)
            .sum();
        let ok = spent + 1027 <= 3000;
        if ok {
            log.push((now, 1027));
        }
        let left = 3000 - spent - if ok { 1027 } else { 0 };
        let res = Response::builder()
            .status(if ok { 200 } else { 429 })
            .header("x-tokenlimit-limit", "3000")
            .header("x-tokenlimit-remaining", left.to_string())
            .body(String::new())
            .unwrap();
        async move { Ok::<_, Infallible>(res) }
    }));
    let body =
        r#"{"model":"m","messages":[{"role":"user","content":"abcdefghijkl"}],"max_tokens":1024}"#;
    let mut refused = 0;
    for _ in 0..12 {
        let res = svc
            .clone()
            .oneshot(Request::post("/chat").body(body.to_owned()).unwrap())
            .await
            .unwrap();
        refused += usize::from(res.status() == 429);
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(refused, 0, "{log:?}");
    assert!(log[11].0 < Duration::from_millis(5200), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn a_cost_above_a_learned_burst_is_charged_whole() {
    // A learned token cell at 100/s holds a burst of 100: a request of 300
    // waits for a full burst, goes, and the 200 beyond it are charged.
    let quota = Quota::adaptive(Adaptive::new("100 tokens/s".parse().unwrap()));
    let layer = RateLimitLayer::new(limits(quota));
    let start = Instant::now();
    let arrived = Arc::new(Mutex::new(Vec::new()));
    let seen = arrived.clone();
    let svc = layer.layer(service_fn(move |_: Request<String>| {
        seen.lock().unwrap().push(start.elapsed());
        async move { Ok::<_, Infallible>(Response::new(String::new())) }
    }));
    let body = |max: u32| {
        format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"abcd"}}],"max_tokens":{max}}}"#
        )
    };
    for max in [299, 99] {
        let res = svc
            .clone()
            .oneshot(Request::post("/chat").body(body(max)).unwrap());
        res.await.unwrap().into_body().collect().await.unwrap();
    }
    let arrived = arrived.lock().unwrap().clone();
    // The second (100) waits for the 300 to be paid: about 3 s.
    assert!(arrived[1] >= Duration::from_millis(2900), "{arrived:?}");
}
