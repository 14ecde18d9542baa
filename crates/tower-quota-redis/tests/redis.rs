//! tower-quota-redis against a real Redis (see `common` for how it is found).

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{PrivateRedis, max_in_window, missing, redis_url, unique_prefix};
use governor::clock::{Clock, FakeRelativeClock};
use redis::AsyncCommands;
use tower::util::BoxCloneService;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;
use tower_quota::{
    BoxError, Limits, OnStoreFailure, Quota, RateLimitLayer, Route, SharedCell, SharedDecision,
    SharedOptions,
};
use tower_quota_redis::RedisStore;

const SECRET: &str = "sk-test-very-secret-key";

fn unix_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

fn limits(rate: &str) -> Limits {
    Limits::builder()
        .quota("chat", Quota::new(rate.parse().unwrap()))
        .route(Route::new(http::Method::POST, "/chat").quota("chat"))
        .build()
        .unwrap()
}

type Svc = BoxCloneService<
    http::Request<String>,
    http::Response<tower_quota::ResponseBody<String>>,
    BoxError,
>;

/// A service recording the wall-clock time of each grant.
fn recorded(layer: &RateLimitLayer, log: Arc<Mutex<Vec<u128>>>) -> Svc {
    BoxCloneService::new(layer.layer(service_fn(move |_: http::Request<String>| {
        log.lock().unwrap().push(unix_us());
        async { Ok::<_, Infallible>(http::Response::new(String::new())) }
    })))
}

fn req() -> http::Request<String> {
    http::Request::post("/chat").body(String::new()).unwrap()
}

async fn send_all(svc: Svc, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(req()).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// A tiny seeded generator, so scenarios repeat.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[tokio::test]
async fn script_decisions_match_governor_for_the_same_arrivals() {
    let Some(url) = redis_url("script_decisions_match_governor_for_the_same_arrivals").await else {
        return;
    };
    let mut rng = Lcg(7);
    for scenario in 0..20 {
        let interval_us = 1_000 * (1 + rng.below(200)); // 1 ms to 200 ms
        let burst = 1 + rng.below(5) as u32;
        let interval = Duration::from_micros(interval_us);
        let quota = governor::Quota::with_period(interval)
            .unwrap()
            .allow_burst(burst.try_into().unwrap());
        let clock = FakeRelativeClock::default();
        let governor = governor::RateLimiter::direct_with_clock(quota, clock.clone());
        let prefix = unique_prefix(&format!("match{scenario}"));
        let mut now_us: u64 = 1_000_000_000_000;
        for step in 0..60 {
            let dt = rng.below(3 * interval_us);
            now_us += dt;
            clock.advance(Duration::from_micros(dt));
            let cost = 1 + rng.below(u64::from(burst)) as u32;
            let store = RedisStore::new(&url, SECRET)
                .unwrap()
                .prefix(prefix.clone())
                .at_time(now_us);
            let cell = SharedCell::new("q".into(), interval, burst, cost);
            let ours = store.decide_now(&[cell], Duration::ZERO).await.unwrap();
            let theirs = match governor.check_n(cost.try_into().unwrap()).unwrap() {
                Ok(()) => SharedDecision::Granted,
                Err(not_until) => SharedDecision::Wait(not_until.wait_time_from(clock.now())),
            };
            assert_eq!(
                ours, theirs,
                "scenario {scenario} step {step}: interval {interval:?} burst {burst} cost {cost}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_several_layers_share_one_quota() {
    let Some(url) = redis_url("tasks_in_several_layers_share_one_quota").await else {
        return;
    };
    let prefix = unique_prefix("tasks");
    let log = Arc::new(Mutex::new(Vec::new()));
    // Three layers stand for three processes: own queues, one Redis quota.
    let mut handles = Vec::new();
    for _ in 0..3 {
        let store = RedisStore::new(&url, SECRET)
            .unwrap()
            .prefix(prefix.clone());
        let layer =
            RateLimitLayer::shared(limits("20/s"), Arc::new(store), SharedOptions::default())
                .unwrap();
        let svc = recorded(&layer, log.clone());
        handles.push(tokio::spawn(async move { send_all(svc.clone(), 15).await }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let mut times = log.lock().unwrap().clone();
    assert_eq!(times.len(), 45);
    let most = max_in_window(&mut times, 1_000_000);
    assert!(most <= 20, "{most} grants in one second against 20/s");
    let span = times.last().unwrap() - times[0];
    assert!(
        span >= 2_150_000,
        "45 grants at 20/s span 2.2 s, not {span} µs"
    );

    // Keys: the secret is nowhere, values are numbers, and they expire.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    for key in &keys {
        assert!(!key.contains(SECRET) && !key.contains("secret"), "{key}");
        let value: String = conn.get(key).await.unwrap();
        assert!(value.bytes().all(|b| b.is_ascii_digit()), "{value}");
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert!(
            ttl > 0 && ttl <= 100,
            "expires once replenished (~50 ms), not {ttl} ms"
        );
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let left: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    assert!(left.is_empty(), "idle keys expire: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn os_processes_share_one_quota() {
    let Some(url) = redis_url("os_processes_share_one_quota").await else {
        return;
    };
    let prefix = unique_prefix("processes");
    // Started together, read after: three processes at once.
    let workers: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_quota-worker"))
                .args([url.as_str(), prefix.as_str(), "20/s", "12"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("worker started")
        })
        .collect();
    let mut times = Vec::new();
    for w in workers {
        let out = w.wait_with_output().expect("worker ran");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        times.extend(text.lines().map(|l| l.parse::<u128>().unwrap()));
    }
    assert_eq!(times.len(), 36);
    let most = max_in_window(&mut times, 1_000_000);
    assert!(
        most <= 20,
        "{most} grants in one second from 3 processes against 20/s"
    );
    let span = times.last().unwrap() - times[0];
    assert!(
        span >= 1_700_000,
        "36 grants at 20/s span 1.75 s, not {span} µs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_redis_falls_back_within_the_timeout() {
    // Nothing listens on port 1: every call fails at once or times out.
    let store =
        RedisStore::with_config("redis://127.0.0.1:1/", SECRET, Duration::from_millis(50)).unwrap();
    let options = SharedOptions::default()
        .timeout(Duration::from_millis(50))
        .on_failure(OnStoreFailure::LocalShare(0.5));
    let layer = RateLimitLayer::shared(limits("20/s"), Arc::new(store), options).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let svc = recorded(&layer, log.clone());
    let start = unix_us();
    send_all(svc.clone(), 11).await;
    let mut times = log.lock().unwrap().clone();
    assert_eq!(times.len(), 11, "nothing lost");
    assert!(
        times[0] - start < 200_000,
        "first grant {} µs after start",
        times[0] - start
    );
    // Half of 20/s locally: 11 grants span at least 10 × 100 ms.
    assert!(max_in_window(&mut times, 1_000_000) <= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_run_falls_back_and_comes_back() {
    let Some(server) = PrivateRedis::start().await else {
        missing(
            "redis_killed_mid_run_falls_back_and_comes_back (needs redis-server to start and kill)",
        );
        return;
    };
    let port = server.port();
    let url = server.url();
    let prefix = unique_prefix("killed");
    let store = RedisStore::with_config(&url, SECRET, Duration::from_millis(50))
        .unwrap()
        .prefix(prefix.clone());
    let options = SharedOptions::default()
        .timeout(Duration::from_millis(50))
        .on_failure(OnStoreFailure::LocalShare(0.5))
        .retry_after(Duration::from_millis(200), Duration::from_millis(200));
    let layer = RateLimitLayer::shared(limits("20/s"), Arc::new(store), options).unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let svc = recorded(&layer, log.clone());

    send_all(svc.clone(), 10).await; // through Redis
    drop(server); // killed
    let down_from = unix_us();
    send_all(svc.clone(), 8).await; // local, at half the rate
    let down_to = unix_us();
    let server = PrivateRedis::start_on(port)
        .await
        .expect("restarted on the same port");
    tokio::time::sleep(Duration::from_millis(300)).await; // past the breaker's backoff
    send_all(svc.clone(), 5).await; // through Redis again

    let times = log.lock().unwrap().clone();
    assert_eq!(times.len(), 23, "no request lost");
    let mut down: Vec<u128> = times
        .iter()
        .copied()
        .filter(|t| (down_from..down_to).contains(t))
        .collect();
    assert_eq!(down.len(), 8);
    assert!(
        max_in_window(&mut down, 1_000_000) <= 10,
        "within the local share while Redis was down"
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    assert_eq!(keys.len(), 1, "decisions went back to the restarted Redis");
    drop(server);
}

#[tokio::test]
async fn the_share_script_takes_headers_cuts_and_growth_as_documented() {
    let Some(url) = redis_url("the_share_script_takes_headers_cuts_and_growth_as_documented").await
    else {
        return;
    };
    use tower_quota::{PaceNews, SharedNews};
    let prefix = unique_prefix("share");
    let now = 2_000_000_000_000u64;
    let store = RedisStore::new(&url, SECRET)
        .unwrap()
        .prefix(prefix.clone())
        .at_time(now);
    let ms = Duration::from_millis;
    let news = |pace: Option<PaceNews>, hold: Option<Duration>| {
        let mut n = SharedNews::new("chat\u{1f}m".to_owned());
        n.pace = pace;
        n.hold = hold;
        n
    };
    // Nothing shared yet: no pace.
    assert_eq!(store.share_now(&news(None, None)).await.unwrap(), None);
    // Headers set it; a faster cut is refused, a slower one taken.
    let set = news(Some(PaceNews::Set(ms(100))), None);
    assert_eq!(store.share_now(&set).await.unwrap(), Some(ms(100)));
    let faster_cut = news(Some(PaceNews::Slower(ms(50))), None);
    assert_eq!(store.share_now(&faster_cut).await.unwrap(), Some(ms(100)));
    let cut = news(Some(PaceNews::Slower(ms(150))), None);
    assert_eq!(store.share_now(&cut).await.unwrap(), Some(ms(150)));
    // Growth from a stale pace (someone cut meanwhile) is refused; from the shared one, taken.
    let stale = news(
        Some(PaceNews::Faster {
            from: ms(100),
            to: ms(90),
        }),
        None,
    );
    assert_eq!(store.share_now(&stale).await.unwrap(), Some(ms(150)));
    let grow = news(
        Some(PaceNews::Faster {
            from: ms(150),
            to: ms(140),
        }),
        None,
    );
    assert_eq!(store.share_now(&grow).await.unwrap(), Some(ms(140)));

    // Decisions use the shared pace, not the caller's, and wait out a shared hold.
    let cell = SharedCell::new("chat\u{1f}m".to_owned(), ms(10), 1, 1);
    let at = |t: u64| {
        RedisStore::new(&url, SECRET)
            .unwrap()
            .prefix(prefix.clone())
            .at_time(t)
    };
    let decide = |t: u64| {
        let store = at(t);
        let cell = cell.clone();
        async move { store.decide_now(&[cell], Duration::ZERO).await.unwrap() }
    };
    assert_eq!(decide(now).await, SharedDecision::Granted);
    assert_eq!(
        decide(now + 10_000).await,
        SharedDecision::Wait(ms(130)),
        "140 ms, not 10 ms, apart"
    );
    at(now + 140_000)
        .share_now(&news(None, Some(Duration::from_secs(2))))
        .await
        .unwrap();
    assert_eq!(
        decide(now + 140_000).await,
        SharedDecision::Wait(Duration::from_secs(2)),
        "held for every process"
    );
    assert_eq!(decide(now + 2_140_000).await, SharedDecision::Granted);

    // Keys hold no secret, only numbers.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    for key in &keys {
        assert!(!key.contains("secret"), "{key}");
        let value: String = conn.get(key).await.unwrap();
        assert!(value.bytes().all(|b| b.is_ascii_digit()), "{key} = {value}");
    }
    let _: () = conn.del(keys).await.unwrap();
}

/// Waits (up to 5 s) until a key matching `pattern` exists.
async fn wait_for_key(url: &str, pattern: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for _ in 0..500 {
        let keys: Vec<String> = conn.keys(pattern).await.unwrap();
        if !keys.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no key {pattern} after 5 s");
}

#[tokio::test]
async fn layers_share_what_they_learn_and_a_429_seen_by_one_holds_all() {
    let Some(url) = redis_url("layers_share_what_they_learn_and_a_429_seen_by_one_holds_all").await
    else {
        return;
    };
    use tower_quota::{Adaptive, KeyBy, PaceSource, RateHeaders};
    let prefix = unique_prefix("learned");
    let learned_limits = || {
        let learn = Adaptive::new("100/s".parse().unwrap())
            .floor("1/s".parse().unwrap())
            .headers(RateHeaders::together_requests());
        Limits::builder()
            .quota("chat", Quota::adaptive(learn).keyed_by(KeyBy::model()))
            .route(Route::new(http::Method::POST, "/chat").quota("chat"))
            .build()
            .unwrap()
    };
    let layer = |answer: &'static [(&'static str, &'static str)],
                 status: u16,
                 log: Arc<Mutex<Vec<u128>>>| {
        let store = RedisStore::new(&url, SECRET)
            .unwrap()
            .prefix(prefix.clone());
        let layer =
            RateLimitLayer::shared(learned_limits(), Arc::new(store), SharedOptions::default())
                .unwrap();
        let svc: Svc =
            BoxCloneService::new(layer.layer(service_fn(move |_: http::Request<String>| {
                log.lock().unwrap().push(unix_us());
                let mut res = http::Response::builder().status(status);
                for (k, v) in answer {
                    res = res.header(*k, *v);
                }
                async move { Ok::<_, Infallible>(res.body(String::new()).unwrap()) }
            })));
        (layer, svc)
    };
    let chat = || {
        http::Request::post("/chat")
            .body(r#"{"model":"m"}"#.to_owned())
            .unwrap()
    };
    // Process A learns 5/s from a header; process B, told nothing, follows it.
    let (a_layer, a) = layer(&[("x-ratelimit-limit", "5")], 200, Arc::default());
    a.clone().oneshot(chat()).await.unwrap();
    assert_eq!(
        a_layer.snapshot().cell("chat", Some("m")).unwrap().source,
        PaceSource::Header
    );
    // The share is sent in the background: wait until Redis has it.
    wait_for_key(&url, &format!("{prefix}:*:pace:*")).await;
    let b_log = Arc::new(Mutex::new(Vec::new()));
    let (_b_layer, b) = layer(&[], 200, b_log.clone());
    for _ in 0..3 {
        b.clone().oneshot(chat()).await.unwrap();
    }
    let times = b_log.lock().unwrap().clone();
    let gap = times[2] - times[1];
    assert!(
        gap >= 190_000,
        "B paced at the shared 5/s (~202 ms), not its own 100/s: {gap} µs"
    );

    // Process C meets a 429 asking for 1 s: D waits it out too.
    let (_c_layer, c) = layer(&[("retry-after", "1")], 429, Arc::default());
    c.clone().oneshot(chat()).await.unwrap();
    wait_for_key(&url, &format!("{prefix}:*:hold:*")).await;
    let d_log = Arc::new(Mutex::new(Vec::new()));
    let (_d_layer, d) = layer(&[], 200, d_log.clone());
    let start = unix_us();
    d.clone().oneshot(chat()).await.unwrap();
    let waited = d_log.lock().unwrap()[0] - start;
    assert!(
        waited >= 850_000,
        "D held by C's 429 (~950 ms left), waited {waited} µs"
    );

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    let _: () = conn.del(keys).await.unwrap();
}

#[tokio::test]
async fn a_cost_above_the_burst_is_charged_in_full_and_a_shared_pace_keeps_the_callers_tolerance() {
    let Some(url) = redis_url("a_cost_above_the_burst_is_charged_in_full").await else {
        return;
    };
    use tower_quota::{PaceNews, SharedNews};
    let prefix = unique_prefix("full-cost");
    let now = 3_000_000_000_000u64;
    let ms = Duration::from_millis;
    let at = |t: u64| {
        RedisStore::new(&url, SECRET)
            .unwrap()
            .prefix(prefix.clone())
            .at_time(t)
    };
    // Burst 10 at 10 ms: a cost of 30 goes once 10 are free, and pays 30.
    let big = SharedCell::new("tokens".to_owned(), ms(10), 10, 30);
    let one = SharedCell::new("tokens".to_owned(), ms(10), 10, 1);
    let decide = |t: u64, cell: SharedCell| {
        let store = at(t);
        async move { store.decide_now(&[cell], Duration::ZERO).await.unwrap() }
    };
    assert_eq!(decide(now, big).await, SharedDecision::Granted);
    // TAT now + 300 ms, tolerance 90 ms: the next unit at now + 210 ms.
    assert_eq!(
        decide(now, one.clone()).await,
        SharedDecision::Wait(ms(210))
    );

    // A slower shared pace (100 ms) keeps the caller's 90 ms of tolerance,
    // not 9 x 100 ms.
    let mut n = SharedNews::new("pace".to_owned());
    n.pace = Some(PaceNews::Set(ms(100)));
    at(now).share_now(&n).await.unwrap();
    let paced = SharedCell::new("pace".to_owned(), ms(10), 10, 1);
    assert_eq!(decide(now, paced.clone()).await, SharedDecision::Granted);
    assert_eq!(decide(now, paced).await, SharedDecision::Wait(ms(10)));

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.unwrap();
    let _: () = conn.del(keys).await.unwrap();
}
