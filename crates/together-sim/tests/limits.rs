//! Rate limits: each kind in both modes, per-model overrides, headers and
//! the time scale.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use together_sim::config::{CHAT, EMBEDDINGS, HeaderConfig, IMAGES, RetryAfter, RouteLimits};
use together_sim::{LimitKind, Mode, Rate, Sim, SimConfig};

const MODES: [Mode; 2] = [Mode::Sliding, Mode::Gcra];

#[tokio::test]
async fn request_limit_enforced_in_both_modes() {
    for mode in MODES {
        let sim = Sim::builder()
            .mode(mode)
            .requests(CHAT, "300/min".parse().unwrap())
            .spawn()
            .await
            .unwrap();
        let mut c = Client::new(sim.addr(), "test-key");
        for i in 0..5 {
            let a = c
                .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 8))
                .await;
            assert_eq!(a.status, 200, "{mode:?} request {i}");
        }
        let a = c
            .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 8))
            .await;
        assert_eq!(a.status, 429, "{mode:?}");
        assert_eq!(a.error_type(), "dynamic_request_limited");
        let reset = secs(&a, "x-ratelimit-reset");
        assert!(reset > 0.0 && reset <= 1.0, "{mode:?} reset {reset}");
        assert!(a.header("retry-after-ms").is_some());
        assert_eq!(a.header("retry-after"), Some("1"));
        let stats = sim.stats();
        assert_eq!(stats.total_429, 1);
        assert_eq!(stats.count(CHAT, 200), 5);
        assert_eq!(stats.count(CHAT, 429), 1);
        let l = stats.limiter(CHAT, None, LimitKind::Requests).unwrap();
        assert_eq!((l.limit, l.window_secs, l.max_in_window), (5, 1.0, 5));
        assert_eq!(l.rejected, 1);
    }
}

#[tokio::test]
async fn token_limit_enforced_in_both_modes() {
    for mode in MODES {
        let sim = Sim::builder()
            .mode(mode)
            .no_limits()
            .tokens(CHAT, "600 tokens/min".parse().unwrap())
            .spawn()
            .await
            .unwrap();
        let mut c = Client::new(sim.addr(), "test-key");
        // "hi" is 1 token, + max_tokens 4: 5 tokens a request, 10 per second.
        for _ in 0..2 {
            let a = c
                .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 4))
                .await;
            assert_eq!(a.status, 200, "{mode:?}");
            assert_eq!(a.header("x-tokenlimit-limit"), Some("10"));
        }
        let a = c
            .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 4))
            .await;
        assert_eq!(a.status, 429, "{mode:?}");
        assert_eq!(a.error_type(), "dynamic_token_limited");
        assert!(secs(&a, "x-ratelimit-reset") > 0.0);
        assert_eq!(sim.stats().max_in_window(CHAT, LimitKind::Tokens), 10);
    }
}

#[tokio::test]
async fn image_limit_preset_is_one_per_second() {
    for mode in MODES {
        let sim = Sim::builder().mode(mode).spawn().await.unwrap();
        let mut c = Client::new(sim.addr(), "test-key");
        let body = json!({"model": IMAGE_MODEL, "prompt": "a cat"});
        let a = c.post("/v1/images/generations", &body).await;
        assert_eq!(a.status, 200, "{mode:?}");
        assert_eq!(a.json()["data"][0]["index"], 0);
        let a = c.post("/v1/images/generations", &body).await;
        assert_eq!(a.status, 429, "{mode:?}");
        assert_eq!(a.error_type(), "dynamic_request_limited");
        assert_eq!(sim.stats().max_in_window(IMAGES, LimitKind::Images), 1);
    }
}

#[tokio::test]
async fn within_limits_no_429() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    for i in 0..5 {
        let a = c
            .post("/v1/embeddings", &embed_body(&format!("text {i}")))
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            a.header("x-ratelimit-remaining"),
            Some(&*(4 - i).to_string())
        );
        assert!(secs(&a, "x-ratelimit-reset") <= 1.0);
    }
    assert_eq!(sim.stats().total_429, 0);
}

#[tokio::test]
async fn per_model_override() {
    let sim = Sim::builder()
        .requests(CHAT, Rate::per_second(10))
        .model_limits(
            CHAT_MODEL,
            RouteLimits {
                requests: Some(Rate::per_second(2)),
                ..RouteLimits::default()
            },
        )
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    for _ in 0..2 {
        assert_eq!(
            c.post("/v1/chat/completions", &chat_body(CHAT_MODEL, 4))
                .await
                .status,
            200
        );
    }
    let a = c
        .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 4))
        .await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("x-ratelimit-limit"), Some("2"));
    // Other models draw on the route's own bucket.
    for _ in 0..5 {
        let a = c
            .post("/v1/chat/completions", &chat_body(OTHER_CHAT_MODEL, 4))
            .await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-ratelimit-limit"), Some("10"));
    }
    let stats = sim.stats();
    let own = stats
        .limiter(CHAT, Some(CHAT_MODEL), LimitKind::Requests)
        .unwrap();
    assert_eq!((own.limit, own.max_in_window, own.rejected), (2, 2, 1));
    assert_eq!(
        stats
            .limiter(CHAT, None, LimitKind::Requests)
            .unwrap()
            .max_in_window,
        5
    );
}

#[tokio::test]
async fn per_model_override_from_toml_below_one_per_second() {
    let config = SimConfig::from_toml_str(&format!(
        r#"
        [model_limits."{IMAGE_MODEL}"]
        images = "9/min"
        "#
    ))
    .unwrap();
    let sim = Sim::builder().config(config).spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let body = json!({"model": IMAGE_MODEL, "prompt": "x"});
    assert_eq!(c.post("/v1/images/generations", &body).await.status, 200);
    let a = c.post("/v1/images/generations", &body).await;
    assert_eq!(a.status, 429);
    // 9/min is enforced as 1 per 6.67 s.
    let reset = secs(&a, "x-ratelimit-reset");
    assert!(reset > 6.0 && reset <= 6.667, "{reset}");
    let l = sim.stats();
    let l = l
        .limiter(IMAGES, Some(IMAGE_MODEL), LimitKind::Images)
        .unwrap();
    assert!((l.window_secs - 60.0 / 9.0).abs() < 1e-6);
}

#[tokio::test]
async fn keys_have_their_own_limits() {
    let sim = Sim::builder()
        .api_key("second")
        .requests(EMBEDDINGS, Rate::per_second(1))
        .spawn()
        .await
        .unwrap();
    assert_eq!(sim.api_keys(), ["test-key", "second"]);
    let mut a = Client::new(sim.addr(), "test-key");
    let mut b = Client::new(sim.addr(), "second");
    assert_eq!(a.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    assert_eq!(b.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    assert_eq!(a.post("/v1/embeddings", &embed_body("x")).await.status, 429);
}

#[tokio::test]
async fn time_scale_applies_to_windows_and_hints() {
    // 10 per (1 s / 10 = 100 ms real).
    let sim = Sim::builder()
        .time_scale(10.0)
        .requests(EMBEDDINGS, Rate::per_second(10))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let start = tokio::time::Instant::now();
    for _ in 0..10 {
        assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    }
    let a = c.post("/v1/embeddings", &embed_body("x")).await;
    let burst = start.elapsed().as_secs_f64();
    assert_eq!(a.status, 429);
    let reset = secs(&a, "x-ratelimit-reset");
    assert!(
        reset <= 0.1 && reset >= 0.1 - burst - 0.002,
        "reset {reset}, burst {burst}"
    );
    let ms: u64 = a.header("retry-after-ms").unwrap().parse().unwrap();
    assert!(ms <= 100, "{ms}");
    // Limits and counts are per simulated second; only durations are real.
    assert_eq!(a.header("x-ratelimit-limit"), Some("10"));
    // Obeying the hint is enough: the window has passed in real time.
    tokio::time::sleep(Duration::from_secs_f64(reset) + Duration::from_millis(2)).await;
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    let stats = sim.stats();
    assert_eq!(stats.time_scale, 10.0);
    assert!(stats.max_in_window(EMBEDDINGS, LimitKind::Requests) <= 10);
}

#[tokio::test]
async fn sliding_never_exceeds_limit_under_concurrent_load() {
    let sim = Sim::builder()
        .time_scale(50.0)
        .requests(EMBEDDINGS, Rate::per_second(4))
        .spawn()
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let addr = sim.addr();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::new(addr, "test-key");
            let mut ok = 0;
            for _ in 0..50 {
                if c.post("/v1/embeddings", &embed_body("x")).await.status == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let stats = sim.stats();
    assert!(ok >= 4);
    assert_eq!(stats.total_429 + ok, 200);
    assert_eq!(stats.max_in_window(EMBEDDINGS, LimitKind::Requests), 4);
}

#[tokio::test]
async fn gcra_refills_at_the_rate_with_burst() {
    // 10/s with burst 2 at scale 2: one slot every 50 ms real.
    let sim = Sim::builder()
        .mode(Mode::Gcra)
        .time_scale(2.0)
        .requests(EMBEDDINGS, Rate::per_second(10))
        .burst(EMBEDDINGS, 2)
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    let a = c.post("/v1/embeddings", &embed_body("x")).await;
    assert_eq!(a.status, 429);
    let reset = secs(&a, "x-ratelimit-reset");
    assert!(reset > 0.0 && reset <= 0.05, "{reset}");
    tokio::time::sleep(Duration::from_millis(75)).await;
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 200);
    assert_eq!(c.post("/v1/embeddings", &embed_body("x")).await.status, 429);
}

#[tokio::test]
async fn headers_are_configurable() {
    let sim = Sim::builder()
        .requests(EMBEDDINGS, Rate::per_second(1))
        .headers(HeaderConfig {
            retry_after: RetryAfter::HttpDate,
            retry_after_ms: false,
            reset_on_429: true,
            success_headers: false,
        })
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let a = c.post("/v1/embeddings", &embed_body("x")).await;
    assert_eq!(a.status, 200);
    assert!(a.header("x-ratelimit-limit").is_none());
    let a = c.post("/v1/embeddings", &embed_body("x")).await;
    assert_eq!(a.status, 429);
    assert!(a.header("retry-after-ms").is_none());
    let date = httpdate::parse_http_date(a.header("retry-after").unwrap()).unwrap();
    assert!(date > std::time::SystemTime::now() - Duration::from_secs(1));
    assert!(a.header("x-ratelimit-reset").is_some());
}

#[tokio::test]
async fn success_headers_carry_token_limits() {
    let sim = Sim::builder().spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let a = c
        .post("/v1/chat/completions", &chat_body(CHAT_MODEL, 16))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header("x-ratelimit-limit"), Some("10"));
    assert_eq!(a.header("x-ratelimit-remaining"), Some("9"));
    assert_eq!(a.header("x-tokenlimit-limit"), Some("3000"));
    assert_eq!(a.header("x-tokenlimit-remaining"), Some("2983"));
}

#[tokio::test]
async fn success_reset_is_the_wait_for_the_next_slot() {
    // 2 per second, sliding: after 2 quick requests none remain, and the
    // reset says when the oldest leaves the window (not a full window later
    // than the newest). While requests remain, the reset is 0.
    let sim = Sim::builder()
        .mode(Mode::Sliding)
        .requests(EMBEDDINGS, Rate::per_second(2))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let a = c.post("/v1/embeddings", &embed_body("x")).await;
    assert_eq!(a.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(secs(&a, "x-ratelimit-reset"), 0.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let a = c.post("/v1/embeddings", &embed_body("x")).await;
    assert_eq!(a.header("x-ratelimit-remaining"), Some("0"));
    let reset = secs(&a, "x-ratelimit-reset");
    assert!(
        reset > 0.6 && reset <= 0.7,
        "{reset}: the first leaves the window ~0.7 s from now"
    );
}
