//! Server wait hints drive the actual wait.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::support::*;

/// Sends one chat request to a server answering `first` then 200, and
/// returns the wait between the two attempts.
async fn wait_for(first: Reply, policy: tower_retry_after::RetryPolicy) -> Duration {
    let first = std::sync::Mutex::new(Some(first));
    let server = Server::new(move |n| match n {
        0 => first.lock().unwrap().take().unwrap(),
        _ => reply(200, &[]),
    });
    let res = send(policy, &server, chat()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(server.count(), 2);
    server.gaps()[0]
}

#[tokio::test(start_paused = true)]
async fn retry_after_ms_sets_the_wait() {
    let start = Instant::now();
    let wait = wait_for(
        reply(429, &[("retry-after-ms", "1500")]),
        policy().build().unwrap(),
    )
    .await;
    assert_eq!(wait, ms(1500));
    assert_eq!(start.elapsed(), ms(1500));
}

#[tokio::test(start_paused = true)]
async fn retry_after_seconds_sets_the_wait() {
    let wait = wait_for(
        reply(503, &[("retry-after", "3")]),
        policy().build().unwrap(),
    )
    .await;
    assert_eq!(wait, secs(3));
}

#[tokio::test(start_paused = true)]
async fn x_ratelimit_reset_sets_the_wait() {
    let wait = wait_for(
        reply(429, &[("x-ratelimit-reset", "2")]),
        policy().build().unwrap(),
    )
    .await;
    assert_eq!(wait, secs(2));
}

#[tokio::test(start_paused = true)]
async fn hint_precedence_drives_the_wait() {
    let all = reply(
        429,
        &[
            ("retry-after-ms", "250"),
            ("retry-after", "3"),
            ("x-ratelimit-reset", "7"),
        ],
    );
    assert_eq!(wait_for(all, policy().build().unwrap()).await, ms(250));

    let two = reply(429, &[("retry-after", "3"), ("x-ratelimit-reset", "7")]);
    assert_eq!(wait_for(two, policy().build().unwrap()).await, secs(3));

    // A malformed header falls through to the next one.
    let bad_ms = reply(
        429,
        &[("retry-after-ms", "soon"), ("x-ratelimit-reset", "7")],
    );
    assert_eq!(wait_for(bad_ms, policy().build().unwrap()).await, secs(7));
}

// 1994-11-06T08:49:37Z, RFC 9110's example instant.
const RFC_EXAMPLE: u64 = 784_111_777;

/// A wall clock at `at` when called first, advancing with paused tokio time.
fn clock_at(at: SystemTime) -> impl Fn() -> SystemTime + Send + Sync + 'static {
    let start = Instant::now();
    move || at + start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn retry_after_dates_in_all_three_formats_set_the_wait() {
    for date in [
        "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT", // RFC 850
        "Sun Nov  6 08:49:37 1994",       // asctime
    ] {
        let now = UNIX_EPOCH + secs(RFC_EXAMPLE - 10);
        let policy = policy().wall_clock(clock_at(now)).build().unwrap();
        let res = reply(503, &[("retry-after", date)]);
        assert_eq!(wait_for(res, policy).await, secs(10), "{date}");
    }
}

#[tokio::test(start_paused = true)]
async fn past_date_retries_at_once() {
    let now = UNIX_EPOCH + secs(RFC_EXAMPLE + 3600);
    let policy = policy().wall_clock(clock_at(now)).build().unwrap();
    let start = Instant::now();
    let res = reply(503, &[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
    assert_eq!(wait_for(res, policy).await, Duration::ZERO);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn hint_above_the_cap_hands_the_response_back_untouched() {
    let server = Server::new(|_| reply(429, &[("retry-after", "120"), ("x-request-id", "req-1")]));
    let start = Instant::now();
    let res = send(policy().build().unwrap(), &server, chat())
        .await
        .unwrap();
    assert_eq!(server.count(), 1);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "120");
    assert_eq!(res.headers()["x-request-id"], "req-1");
    assert_eq!(res.body(), "status 429");

    // The same hint under a larger cap is obeyed.
    let wait = wait_for(
        reply(429, &[("retry-after", "120")]),
        policy().max_wait_hint(secs(120)).build().unwrap(),
    )
    .await;
    assert_eq!(wait, secs(120));
}

#[tokio::test(start_paused = true)]
async fn default_cap_is_sixty_seconds() {
    let at_cap = reply(503, &[("retry-after-ms", "60000")]);
    assert_eq!(wait_for(at_cap, policy().build().unwrap()).await, secs(60));

    let server = Server::new(|_| reply(503, &[("retry-after-ms", "60001")]));
    let res = send(policy().build().unwrap(), &server, chat())
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), server.count()), (503, 1));
}

#[tokio::test(start_paused = true)]
async fn hint_jitter_adds_at_most_its_bound() {
    for seed in 0..20 {
        let policy = policy().seed(seed).hint_jitter(ms(100)).build().unwrap();
        let wait = wait_for(reply(429, &[("retry-after", "1")]), policy).await;
        assert!(wait >= secs(1) && wait <= ms(1100), "{wait:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn garbage_hint_falls_back_to_backoff() {
    let res = reply(503, &[("retry-after", "soon"), ("retry-after-ms", "-5")]);
    assert_eq!(wait_for(res, policy().build().unwrap()).await, ms(500));
}
