//! Dynamic limits: the base, growth up to the cap, per-model isolation,
//! headers on and off (rates per simulated second, durations real), capacity 503s, a scheduled cap drop,
//! token limits, TOML and validation, and `/sim/stats`.

mod common;

use std::time::Duration;

use common::*;
use together_sim::config::{CHAT, CapChange, DynamicLimits, EMBEDDINGS, HeaderConfig, RetryAfter};
use together_sim::{Sim, SimConfig, SpawnError};

const CHAT_PATH: &str = "/v1/chat/completions";

fn dynamic(f: impl FnOnce(&mut DynamicLimits)) -> DynamicLimits {
    let mut d = DynamicLimits::default();
    f(&mut d);
    d
}

fn num(a: &Answer, name: &str) -> f64 {
    secs(a, name)
}

/// The names of the rate headers of an answer.
fn rate_headers(a: &Answer) -> Vec<String> {
    let mut v: Vec<String> = a
        .headers
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("x-ratelimit") || k.starts_with("x-tokenlimit"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn fresh_key_and_model_start_at_base() {
    // 1 simulated second is 250 ms real.
    let sim = Sim::builder()
        .time_scale(4.0)
        .dynamic(dynamic(|d| d.base = 3.0))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    for (a, left) in answers.iter().zip(["2", "1", "0"]) {
        // Per simulated second, like the counts: 3 and 40.
        assert_eq!(a.header("x-ratelimit-limit-dynamic"), Some("3"));
        assert_eq!(a.header("x-ratelimit-limit"), Some("40"));
        assert_eq!(a.header("x-ratelimit-remaining"), Some(left));
        assert_eq!(a.header("x-ratelimit-remaining-dynamic"), Some(left));
    }
    assert_eq!(answers[0].header("x-ratelimit-reset"), Some("0"));
    assert!(answers[0].header("x-tokenlimit-limit").is_none());
    let limited = &answers[3];
    assert_eq!(limited.error_type(), "dynamic_request_limited");
    let reset = secs(limited, "x-ratelimit-reset");
    assert!(reset > 0.0 && reset <= 0.25, "reset {reset}");
    assert_ne!(reset.fract(), 0.0, "reset {reset}");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    let stats = sim.stats();
    assert_eq!(stats.total_429, 3);
    let d = stats.dynamic("key-1", CHAT_MODEL).unwrap();
    assert_eq!((d.accepted, d.successes, d.rejected), (3, 3, 3));
    assert_eq!(d.rate, 3.0);
    // The static chat limit (10/s) was not used.
    assert!(stats.limiters.is_empty(), "{:?}", stats.limiters);
}

#[tokio::test]
async fn steady_success_raises_the_rate_up_to_the_cap() {
    // 20x: a 2 s window is 100 ms real; the cap reads 8 (per simulated second).
    let sim = Sim::builder()
        .time_scale(20.0)
        .dynamic(dynamic(|d| {
            d.window = Duration::from_secs(2);
            d.base = 1.0;
            d.cap = 8.0;
        }))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let start = tokio::time::Instant::now();
    let mut limits = Vec::new();
    let mut refused = 0;
    while start.elapsed() < Duration::from_millis(800) {
        let a = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
        assert_eq!(a.header("x-ratelimit-limit"), Some("8"));
        limits.push(num(&a, "x-ratelimit-limit-dynamic"));
        if a.status == 429 {
            refused += 1;
            let reset = secs(&a, "x-ratelimit-reset");
            assert!(reset > 0.0 && reset <= 0.05, "reset {reset} (real seconds)");
            tokio::time::sleep(Duration::from_secs_f64(reset)).await;
        } else {
            assert_eq!(a.status, 200);
        }
    }
    assert!(refused > 0);
    assert_eq!(limits[0], 1.0, "the base");
    assert!(limits.iter().all(|l| *l <= 8.0), "{limits:?}");
    let top = limits.iter().copied().fold(0.0, f64::max);
    assert_eq!(top, 8.0, "steady traffic reaches the cap");
    let stats = sim.stats();
    assert_eq!(stats.dynamic_over_limit(), 0);
    let d = stats.dynamic("key-1", CHAT_MODEL).unwrap();
    assert!(d.series.len() >= 10, "{}", d.series.len());
    assert!(d.series.iter().all(|s| s.rate <= 8.0 && s.cap == 8.0));
    assert!(d.series.windows(2).all(|w| w[0].t_ms + 250 <= w[1].t_ms));
}

#[tokio::test]
async fn models_do_not_share_limits() {
    let sim = Sim::builder()
        .time_scale(4.0)
        .dynamic(dynamic(|d| {
            d.multiple = 10.0;
            d.base = 2.0;
        }))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    for expected in [200, 200, 429] {
        let a = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
        assert_eq!(a.status, expected);
    }
    // Model A is exhausted; model B still has its whole base.
    let b = c.post(CHAT_PATH, &chat_body(OTHER_CHAT_MODEL, 8)).await;
    assert_eq!(b.status, 200);
    assert_eq!(b.header("x-ratelimit-remaining"), Some("1"));
    assert_eq!(b.header("x-ratelimit-limit-dynamic"), Some("2"));
    // A second later A's successes have raised its rate, not B's.
    tokio::time::sleep(Duration::from_millis(260)).await;
    for _ in 0..4 {
        c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
    }
    let stats = sim.stats();
    let a = stats.dynamic("key-1", CHAT_MODEL).unwrap();
    let b = stats.dynamic("key-1", OTHER_CHAT_MODEL).unwrap();
    assert!(a.successes >= 4, "{a:?}");
    assert_eq!(a.rate, a.successes as f64);
    assert_eq!((b.rate, b.accepted, b.rejected), (2.0, 1, 0));
}

#[tokio::test]
async fn headers_can_be_switched_off() {
    let sim = Sim::builder()
        .time_scale(4.0)
        .headers(HeaderConfig {
            retry_after: RetryAfter::None,
            retry_after_ms: false,
            ..HeaderConfig::default()
        })
        .dynamic(dynamic(|d| {
            d.headers = false;
            d.token_base = Some(1000.0);
            d.token_cap = Some(5000.0);
        }))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let ok = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
    assert_eq!(ok.status, 200);
    assert!(rate_headers(&ok).is_empty(), "{:?}", ok.headers);
    let limited = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.error_type(), "dynamic_request_limited");
    assert_eq!(rate_headers(&limited), ["x-ratelimit-reset"]);
    assert!(secs(&limited, "x-ratelimit-reset") > 0.0);
    assert!(limited.header("retry-after").is_none());
    assert!(limited.header("retry-after-ms").is_none());
}

async fn capacity_run(seed: u64) -> (Vec<u16>, together_sim::Stats) {
    // Every request is under the base; 10 x successes / 10 s is the rate.
    let sim = Sim::builder()
        .seed(seed)
        .dynamic(dynamic(|d| {
            d.multiple = 100.0;
            d.base = 40.0;
            d.cap = 1000.0;
            d.capacity_503 = 0.3;
        }))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let a = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
        if a.status == 503 {
            assert_eq!(a.error_type(), "server_error");
            assert!(a.header("x-ratelimit-limit-dynamic").is_some());
        }
        statuses.push(a.status);
    }
    (statuses, sim.stats())
}

#[tokio::test]
async fn capacity_503s_are_seeded_and_not_successes() {
    let (statuses, stats) = capacity_run(7).await;
    let ok = statuses.iter().filter(|s| **s == 200).count() as u64;
    let unavailable = statuses.iter().filter(|s| **s == 503).count() as u64;
    assert_eq!(ok + unavailable, 30, "{statuses:?}");
    assert!((2..=20).contains(&unavailable), "{statuses:?}");
    let d = stats.dynamic("key-1", CHAT_MODEL).unwrap();
    assert_eq!((d.successes, d.accepted), (ok, ok));
    assert_eq!(d.capacity_503, unavailable);
    assert_eq!(d.rate, (10.0 * ok as f64).max(40.0));
    assert_eq!(capacity_run(7).await.0, statuses, "same seed, same faults");
}

#[tokio::test]
async fn scheduled_cap_drop_applies() {
    // 10x: the cap drops from 10/s to 3/s at 1 s simulated (100 ms real).
    let sim = Sim::builder()
        .time_scale(10.0)
        .dynamic(dynamic(|d| {
            d.base = 10.0;
            d.cap = 10.0;
            d.cap_schedule = vec![CapChange {
                at: Duration::from_secs(1),
                cap: 3.0,
            }];
        }))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let before = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
    assert_eq!(before.header("x-ratelimit-limit"), Some("10"));
    assert_eq!(before.header("x-ratelimit-limit-dynamic"), Some("10"));
    tokio::time::sleep(Duration::from_millis(250)).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let a = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
        assert_eq!(a.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(a.header("x-ratelimit-limit-dynamic"), Some("3"));
        statuses.push(a.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let stats = sim.stats();
    let d = stats.dynamic("key-1", CHAT_MODEL).unwrap();
    assert_eq!((d.cap, d.rate), (3.0, 3.0));
    assert_eq!(d.max_accepted_in_1s_over_limit, 0);
    assert_eq!(d.series.first().map(|s| s.cap), Some(10.0));
    assert_eq!(d.series.last().map(|s| s.cap), Some(3.0));
}

#[tokio::test]
async fn token_heavy_requests_are_token_limited() {
    // "hi" + max_tokens 8 is 9 tokens; 20 tokens per second.
    let sim = Sim::builder()
        .time_scale(10.0)
        .dynamic(dynamic(|d| {
            d.base = 50.0;
            d.cap = 50.0;
            d.token_base = Some(20.0);
            d.token_cap = Some(100.0);
        }))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    for left in ["11", "2"] {
        let a = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header("x-tokenlimit-limit"), Some("100"));
        assert_eq!(a.header("x-tokenlimit-limit-dynamic"), Some("20"));
        assert_eq!(a.header("x-tokenlimit-remaining"), Some(left));
        assert_eq!(a.header("x-tokenlimit-remaining-dynamic"), Some(left));
    }
    let a = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.error_type(), "dynamic_token_limited");
    let reset = secs(&a, "x-ratelimit-reset");
    assert!(reset > 0.0 && reset <= 0.1, "reset {reset}");
    // Once the window is empty, one request above the rate passes, alone.
    tokio::time::sleep(Duration::from_millis(110)).await;
    let big = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 100)).await;
    assert_eq!(big.status, 200);
    assert_eq!(big.header("x-tokenlimit-remaining"), Some("0"));
    let a = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
    assert_eq!(a.error_type(), "dynamic_token_limited");
    let d = sim.stats().dynamic("key-1", CHAT_MODEL).cloned().unwrap();
    assert_eq!((d.rejected, d.rejected_tokens, d.accepted), (2, 2, 3));
    assert_eq!(d.token_cap, Some(100.0));
}

#[tokio::test]
async fn static_limits_still_apply_to_other_routes() {
    let sim = Sim::builder()
        .dynamic(dynamic(|d| d.routes = vec![CHAT.to_string()]))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let e = c.post("/v1/embeddings", &embed_body("x")).await;
    assert_eq!(e.status, 200);
    assert_eq!(e.header("x-ratelimit-limit"), Some("5"), "300/min static");
    assert!(e.header("x-ratelimit-limit-dynamic").is_none());
    let chat = c.post(CHAT_PATH, &chat_body(CHAT_MODEL, 8)).await;
    assert_eq!(chat.header("x-ratelimit-limit-dynamic"), Some("1"));
    let stats = sim.stats();
    assert!(
        stats
            .limiter(EMBEDDINGS, None, together_sim::LimitKind::Requests)
            .is_some()
    );
    assert!(stats.limiters.iter().all(|l| l.route != CHAT));
}

#[test]
fn toml_dynamic_table_and_validation() {
    let c = SimConfig::from_toml_str(
        r#"
        [dynamic]
        multiple = 3.0
        window = "30s"
        base = 2.0
        cap = 20.0
        token_base = 100.0
        token_cap = 1000.0
        capacity_503 = 0.1
        headers = false
        routes = ["/v1/chat/completions"]
        [[dynamic.cap_schedule]]
        at = "1500ms"
        cap = 5.0
        "#,
    )
    .unwrap();
    let d = c.dynamic.unwrap();
    assert_eq!(d.window, Duration::from_secs(30));
    assert_eq!((d.multiple, d.base, d.cap), (3.0, 2.0, 20.0));
    assert_eq!((d.token_base, d.token_cap), (Some(100.0), Some(1000.0)));
    assert_eq!(
        d.cap_schedule,
        [CapChange {
            at: Duration::from_millis(1500),
            cap: 5.0
        }]
    );
    assert!(!d.headers);
    assert_eq!(d.routes, [CHAT]);
    let empty = SimConfig::from_toml_str("[dynamic]").unwrap();
    assert_eq!(empty.dynamic, Some(DynamicLimits::default()));
    assert_eq!(SimConfig::from_toml_str("").unwrap().dynamic, None);

    for (toml, field) in [
        ("multiple = 0.0", "dynamic.multiple"),
        ("multiple = -1.0", "dynamic.multiple"),
        ("multiple = nan", "dynamic.multiple"),
        ("window = \"0s\"", "dynamic.window"),
        ("base = 5.0\ncap = 2.0", "dynamic.base"),
        ("base = -1.0", "dynamic.base"),
        ("cap = inf", "dynamic.cap"),
        ("token_base = 10.0", "dynamic.token_cap"),
        ("token_base = 10.0\ntoken_cap = -5.0", "dynamic.token_cap"),
        ("token_base = 50.0\ntoken_cap = 5.0", "dynamic.token_base"),
        ("capacity_503 = 1.5", "dynamic.capacity_503"),
        ("capacity_503 = -0.1", "dynamic.capacity_503"),
        ("routes = [\"/v1/models\"]", "dynamic.routes"),
        (
            "[[dynamic.cap_schedule]]\nat = \"1s\"\ncap = 0.0",
            "cap_schedule",
        ),
    ] {
        let err = SimConfig::from_toml_str(&format!("[dynamic]\n{toml}"))
            .expect_err(toml)
            .to_string();
        assert!(err.contains(field), "{toml}: {err}");
    }
    assert!(SimConfig::from_toml_str("[dynamic]\nsurprise = 1").is_err());
}

#[tokio::test]
async fn invalid_dynamic_limits_refuse_to_spawn() {
    let err = Sim::builder()
        .dynamic(dynamic(|d| d.capacity_503 = f64::NAN))
        .spawn()
        .await
        .unwrap_err();
    assert!(matches!(err, SpawnError::Config(_)), "{err}");
    assert!(err.to_string().contains("dynamic.capacity_503"), "{err}");
}

#[tokio::test]
async fn stats_show_the_dynamic_series_and_never_a_key() {
    let secret = "sk-dynamic-very-secret";
    let sim = Sim::builder()
        .time_scale(20.0)
        .api_keys([secret])
        .dynamic(dynamic(|d| d.base = 2.0))
        .spawn()
        .await
        .unwrap();
    let mut c = Client::new(sim.addr(), secret);
    for _ in 0..3 {
        for model in [CHAT_MODEL, OTHER_CHAT_MODEL] {
            c.post(CHAT_PATH, &chat_body(model, 8)).await;
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let a = c.get("/sim/stats").await;
    assert_eq!(a.status, 200);
    let text = String::from_utf8_lossy(&a.body);
    assert!(!text.contains(secret), "{text}");
    let v = a.json();
    let cells = v["dynamic"].as_array().expect("dynamic section");
    assert_eq!(cells.len(), 2, "{v}");
    for model in [CHAT_MODEL, OTHER_CHAT_MODEL] {
        let cell = cells
            .iter()
            .find(|c| c["model"] == model)
            .unwrap_or_else(|| panic!("no {model} in {v}"));
        assert_eq!(cell["key"], "key-1");
        assert_eq!(cell["rate"], 2.0);
        assert_eq!(cell["max_accepted_in_1s_over_limit"], 0);
        for f in ["accepted", "rejected", "capacity_503", "successes"] {
            assert!(cell[f].is_u64(), "{f}: {cell}");
        }
        assert!(cell["token_rate"].is_null());
        let series = cell["series"].as_array().unwrap();
        assert!(series.len() >= 2, "{cell}");
        for s in series {
            assert!(s["t_ms"].is_u64() && s["rate"].is_f64(), "{s}");
            assert!(s["accepted_in_last_1s"].as_u64().unwrap() <= 2, "{s}");
        }
    }
}
