//! The whole stack (Retry over RateLimit over a hyper client) against
//! together-sim enforcing strictly (`sliding`): quota-paced callers meet no 429.
//!
//! Prints the achieved time against the ideal (`-- --nocapture`).

use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use together_rate_limits::quota::{KeyBy, Limits, Quota, RateLimitLayer, Route};
use together_rate_limits::retry::{RetryLayer, RetryPolicy};
use together_sim::config::{CHAT, EMBEDDINGS};
use together_sim::limits::LimitKind;
use together_sim::{Mode, Sim};
use tower::{ServiceBuilder, ServiceExt};

/// Time runs 10x faster in the simulator, so the client's quotas are 10x too.
const SCALE: f64 = 10.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_callers_meet_no_429_in_sliding_mode() {
    // The seed's limits: chat 600/min and embeddings 300/min, enforced per second.
    let sim = Sim::builder()
        .time_scale(SCALE)
        .mode(Mode::Sliding)
        .spawn()
        .await
        .unwrap();
    // 600/min is 10/s, 100/s at 10x; 300/min is 5/s, 50/s at 10x. With
    // windows 10x shorter, the same timer jitter is a 10x larger share of a
    // window: a 3% margin instead of the default 1%.
    let limits = Limits::builder()
        .safety_margin(0.03)
        .quota(
            "chat",
            Quota::new("100/s".parse().unwrap()).keyed_by(KeyBy::model()),
        )
        .quota("embeddings", Quota::new("50/s".parse().unwrap()))
        .route(Route::new(Method::POST, CHAT).quota("chat"))
        .route(Route::new(Method::POST, EMBEDDINGS).quota("embeddings"))
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(RetryLayer::new(RetryPolicy::default()))
        .layer(RateLimitLayer::new(limits))
        .service(Client::builder(TokioExecutor::new()).build_http::<String>());

    let (chats, embeds) = (150usize, 60usize);
    let key = format!("Bearer {}", sim.api_keys()[0]);
    let request = |path: &str, body: String| {
        Request::post(format!("{}{path}", sim.base_url()))
            .header("authorization", &key)
            .header("content-type", "application/json")
            .body(body)
            .unwrap()
    };
    let mut requests = Vec::new();
    for i in 0..chats {
        requests.push(request(
            CHAT,
            format!(r#"{{"model":"meta-llama/Llama-3.3-70B-Instruct-Turbo","messages":[{{"role":"user","content":"q{i}"}}],"max_tokens":4}}"#),
        ));
    }
    for i in 0..embeds {
        requests.push(request(
            EMBEDDINGS,
            format!(r#"{{"model":"BAAI/bge-large-en-v1.5","input":["doc {i}"]}}"#),
        ));
    }
    let start = Instant::now();
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|req| {
            let stack = stack.clone();
            tokio::spawn(async move {
                let res = stack.oneshot(req).await.expect("a response");
                let status = res.status();
                res.into_body().collect().await.unwrap();
                status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let elapsed = start.elapsed();
    let stats = sim.stats();
    // The slower route sets the pace: (n - 1) intervals at burst 1.
    let ideal = Duration::from_secs_f64((chats - 1) as f64 / 100.0)
        .max(Duration::from_secs_f64((embeds - 1) as f64 / 50.0));
    println!(
        "{} requests in {elapsed:.3?} (ideal {ideal:.3?}, {:.1}% of ideal rate); 429s: {}; \
         most accepted in one window: chat {} (limit 10), embeddings {} (limit 5)",
        chats + embeds,
        100.0 * ideal.as_secs_f64() / elapsed.as_secs_f64(),
        stats.total_429,
        stats.max_in_window(CHAT, LimitKind::Requests),
        stats.max_in_window(EMBEDDINGS, LimitKind::Requests),
    );
    assert_eq!(stats.total_429, 0, "paced callers met 429s");
    assert_eq!(
        stats.total_requests,
        (chats + embeds) as u64,
        "no retries were needed"
    );
    assert!(stats.max_in_window(CHAT, LimitKind::Requests) <= 10);
    assert!(stats.max_in_window(EMBEDDINGS, LimitKind::Requests) <= 5);
    // Pacing, not stalling: a gross bound only (this is a test, not a benchmark).
    assert!(
        elapsed < ideal * 2,
        "{elapsed:?} against an ideal of {ideal:?}"
    );
}
