//! Backoff, deadline and exhaustion.

use std::io;

use http::Method;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_the_cap() {
    let server = Server::new(|_| reply(503, &[]));
    let policy = policy()
        .max_retries(6)
        .backoff(ms(500), secs(2))
        .build()
        .unwrap();
    let start = Instant::now();
    let res = send(policy, &server, chat()).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        server.gaps(),
        [ms(500), secs(1), secs(2), secs(2), secs(2), secs(2)]
    );
    assert_eq!(start.elapsed(), ms(9500));
}

#[tokio::test(start_paused = true)]
async fn default_backoff_with_jitter_is_bounded_and_seeded() {
    let run = |seed| async move {
        let server = Server::new(|_| reply(503, &[]));
        let policy = tower_retry_after::RetryPolicy::builder()
            .seed(seed)
            .no_budget()
            .build()
            .unwrap();
        send(policy, &server, chat()).await.unwrap();
        server.gaps()
    };
    let gaps = run(42).await;
    assert_eq!(gaps.len(), 4, "default: 4 retries");
    for (gap, nominal) in gaps.iter().zip([500, 1000, 2000, 4000]) {
        // (1 - 0.25 r) * nominal, rounded up to tokio's millisecond.
        assert!(
            *gap <= ms(nominal) && *gap >= ms(nominal * 3 / 4),
            "{gap:?}"
        );
    }
    assert_eq!(run(42).await, gaps, "same seed, same delays");
    assert_ne!(run(43).await, gaps, "another seed, other delays");
}

#[tokio::test(start_paused = true)]
async fn deadline_stops_retries() {
    let server = Server::new(|_| reply(503, &[("x-attempt", "any")]));
    let policy = policy().deadline(secs(3)).build().unwrap();
    let start = Instant::now();
    let res = send(policy, &server, chat()).await.unwrap();
    // Attempts at 0, 0.5 s and 1.5 s; the next would start at 3.5 s.
    assert_eq!(server.gaps(), [ms(500), secs(1)]);
    assert_eq!(start.elapsed(), ms(1500));
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["x-attempt"], "any");
}

#[tokio::test(start_paused = true)]
async fn deadline_applies_to_hints() {
    let server = Server::new(|_| reply(429, &[("retry-after", "5")]));
    let policy = policy().deadline(secs(4)).build().unwrap();
    let res = send(policy, &server, chat()).await.unwrap();
    assert_eq!((res.status().as_u16(), server.count()), (429, 1));
}

#[tokio::test(start_paused = true)]
async fn deadline_starts_with_each_call() {
    let server = Server::new(|_| reply(503, &[]));
    let policy = policy().deadline(secs(3)).build().unwrap();
    // One service instance for both calls: tower's Retry prepares each call
    // with its own policy before cloning it into the call's future.
    let mut client = client(policy, &server);
    ServiceExt::<http::Request<String>>::ready(&mut client)
        .await
        .unwrap()
        .call(chat())
        .await
        .unwrap();
    assert_eq!(server.count(), 3);
    tokio::time::sleep(secs(60)).await;
    ServiceExt::<http::Request<String>>::ready(&mut client)
        .await
        .unwrap()
        .call(chat())
        .await
        .unwrap();
    assert_eq!(server.count(), 6, "the second call gets its own deadline");
}

#[tokio::test(start_paused = true)]
async fn exhaustion_returns_the_last_response_with_its_headers() {
    let server = Server::new(|n| {
        let n = n.to_string();
        let mut res = reply(503, &[("x-attempt", &n), ("retry-after-ms", "10")])?;
        *res.body_mut() = format!("attempt {n}");
        Ok(res)
    });
    let policy = policy().max_retries(2).build().unwrap();
    let res = send(policy, &server, chat()).await.unwrap();
    assert_eq!(server.count(), 3);
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["x-attempt"], "2");
    assert_eq!(res.headers()["retry-after-ms"], "10");
    assert_eq!(res.body(), "attempt 2");
}

#[tokio::test(start_paused = true)]
async fn exhaustion_returns_the_last_error() {
    let server = Server::new(|n| Err(io::Error::other(format!("reset {n}"))));
    let policy = policy().max_retries(3).build().unwrap();
    let get = request(Method::GET, "/v1/models");
    let err = send(policy, &server, get).await.unwrap_err();
    assert_eq!(server.count(), 4);
    assert_eq!(err.to_string(), "reset 3");
}

#[tokio::test(start_paused = true)]
async fn zero_retries_sends_once() {
    let server = Server::new(|_| reply(503, &[]));
    let policy = policy().max_retries(0).build().unwrap();
    let res = send(policy, &server, chat()).await.unwrap();
    assert_eq!((res.status().as_u16(), server.count()), (503, 1));
}
