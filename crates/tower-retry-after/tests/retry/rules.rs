//! Which responses and errors are retried, for which requests.

use std::io;

use http::Method;
use tower_retry_after::RequestClass;

use crate::support::*;

/// How many requests the server saw for `req` when it answers `first` then 200.
async fn attempts(req: http::Request<String>, first: fn() -> Reply) -> usize {
    attempts_with(policy().build().unwrap(), req, first).await
}

async fn attempts_with(
    policy: tower_retry_after::RetryPolicy,
    req: http::Request<String>,
    first: fn() -> Reply,
) -> usize {
    let server = Server::new(move |n| if n == 0 { first() } else { reply(200, &[]) });
    let _ = send(policy, &server, req).await;
    server.count()
}

#[tokio::test(start_paused = true)]
async fn retryable_statuses_are_retried() {
    for status in [408, 429, 500, 502, 503, 504] {
        let server = Server::new(move |n| match n {
            0 => reply(status, &[]),
            _ => reply(200, &[]),
        });
        let res = send(policy().build().unwrap(), &server, chat())
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{status}");
        assert_eq!(server.count(), 2, "{status}");

        let server = Server::new(move |n| match n {
            0 => reply(status, &[]),
            _ => reply(200, &[]),
        });
        let get = request(Method::GET, "/v1/models");
        let res = send(policy().build().unwrap(), &server, get).await.unwrap();
        assert_eq!(
            (res.status().as_u16(), server.count()),
            (200, 2),
            "{status}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn other_client_errors_are_not_retried() {
    for status in [400, 401, 402, 403, 404, 409, 422, 501] {
        let server = Server::new(move |_| reply(status, &[]));
        let res = send(policy().build().unwrap(), &server, chat())
            .await
            .unwrap();
        assert_eq!(res.status(), status);
        assert_eq!(server.count(), 1, "{status}");
    }
}

#[tokio::test(start_paused = true)]
async fn success_is_not_retried() {
    assert_eq!(
        attempts(chat(), || reply(200, &[("retry-after", "1")])).await,
        1
    );
    assert_eq!(
        attempts(chat(), || reply(201, &[("x-should-retry", "true")])).await,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_false_overrides_a_retryable_status() {
    assert_eq!(
        attempts(chat(), || reply(503, &[("x-should-retry", "false")])).await,
        1
    );
    assert_eq!(
        attempts(chat(), || reply(429, &[("x-should-retry", "FALSE")])).await,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn x_should_retry_true_overrides_a_client_error() {
    assert_eq!(
        attempts(chat(), || reply(400, &[("x-should-retry", "true")])).await,
        2
    );
    assert_eq!(
        attempts(chat(), || reply(409, &[("x-should-retry", "true")])).await,
        2
    );
    // Unknown values leave the status rules in charge.
    assert_eq!(
        attempts(chat(), || reply(400, &[("x-should-retry", "yes")])).await,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn retry_statuses_are_configurable() {
    let only_409 = || {
        policy()
            .retry_statuses([http::StatusCode::CONFLICT])
            .build()
            .unwrap()
    };
    assert_eq!(
        attempts_with(only_409(), chat(), || reply(409, &[])).await,
        2
    );
    assert_eq!(
        attempts_with(only_409(), chat(), || reply(503, &[])).await,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn job_creating_post_is_not_retried_on_500() {
    for uri in [
        "/v1/fine-tunes",
        "/v1/batches",
        "/v1/files",
        "/v1/fine-tunes/ft-1/cancel",
    ] {
        for status in [
            || reply(500, &[]),
            || reply(502, &[]),
            || reply(504, &[]),
            || reply(408, &[]),
        ] {
            assert_eq!(
                attempts(request(Method::POST, uri), status).await,
                1,
                "{uri}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn job_creating_post_is_retried_on_429_and_503() {
    for uri in ["/v1/fine-tunes", "/v1/batches/b-1/cancel", "/v1/files"] {
        assert_eq!(
            attempts(request(Method::POST, uri), || reply(429, &[])).await,
            2,
            "{uri}"
        );
        assert_eq!(
            attempts(request(Method::POST, uri), || reply(503, &[])).await,
            2,
            "{uri}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn job_creating_post_with_idempotency_key_is_retried_on_500() {
    let mut req = request(Method::POST, "/v1/fine-tunes");
    req.headers_mut()
        .insert("idempotency-key", "ft-create-1".parse().unwrap());
    let server = Server::new(|n| {
        if n == 0 {
            reply(500, &[])
        } else {
            reply(200, &[])
        }
    });
    let res = send(policy().build().unwrap(), &server, req).await.unwrap();
    assert_eq!((res.status().as_u16(), server.count()), (200, 2));
    assert!(
        server
            .sent()
            .iter()
            .all(|s| s.headers["idempotency-key"] == "ft-create-1")
    );
}

#[tokio::test(start_paused = true)]
async fn reads_of_job_routes_are_retried_on_500() {
    let get = request(Method::GET, "/v1/fine-tunes/ft-1");
    assert_eq!(attempts(get, || reply(500, &[])).await, 2);
}

#[tokio::test(start_paused = true)]
async fn unknown_posts_are_retried_only_where_the_server_did_not_act() {
    let post = || request(Method::POST, "/v1/something-new");
    assert_eq!(attempts(post(), || reply(500, &[])).await, 1);
    assert_eq!(attempts(post(), || reply(503, &[])).await, 2);
    let lenient = policy()
        .unmatched_class(RequestClass::Idempotent)
        .build()
        .unwrap();
    assert_eq!(attempts_with(lenient, post(), || reply(500, &[])).await, 2);
}

#[tokio::test(start_paused = true)]
async fn route_classes_are_configurable() {
    let policy = || {
        bare_policy()
            .route_class(Method::POST, "/v1/jobs/{id}/run", RequestClass::Idempotent)
            .route_class(Method::GET, "/v1/models", RequestClass::Once)
            .route_class(Method::POST, "/v1/chat", RequestClass::CreatesResource)
            .build()
            .unwrap()
    };
    let run = request(Method::POST, "/v1/jobs/j-1/run");
    assert_eq!(attempts_with(policy(), run, || reply(500, &[])).await, 2);
    let models = request(Method::GET, "/v1/models");
    assert_eq!(attempts_with(policy(), models, || reply(503, &[])).await, 1);
    assert_eq!(attempts_with(policy(), chat(), || reply(500, &[])).await, 1);

    // The crate knows no API's paths: an undeclared POST is taken to create
    // something, so a 500 is not retried (a 503 is).
    let bare = || bare_policy().build().unwrap();
    assert_eq!(attempts_with(bare(), chat(), || reply(500, &[])).await, 1);
    assert_eq!(attempts_with(bare(), chat(), || reply(503, &[])).await, 2);
}

#[tokio::test(start_paused = true)]
async fn transport_error_is_retried_for_a_get() {
    let server = Server::new(|n| if n == 0 { reset() } else { reply(200, &[]) });
    let get = request(Method::GET, "/v1/fine-tunes/ft-1");
    let res = send(policy().build().unwrap(), &server, get).await.unwrap();
    assert_eq!((res.status().as_u16(), server.count()), (200, 2));
    assert_eq!(server.gaps(), [ms(500)]);
}

#[tokio::test(start_paused = true)]
async fn transport_error_is_not_retried_for_a_job_creating_post() {
    let server = Server::new(|n| if n == 0 { reset() } else { reply(200, &[]) });
    let post = request(Method::POST, "/v1/batches");
    let err = send(policy().build().unwrap(), &server, post)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(server.count(), 1);

    // With an Idempotency-Key it is.
    let server = Server::new(|n| if n == 0 { reset() } else { reply(200, &[]) });
    let mut post = request(Method::POST, "/v1/batches");
    post.headers_mut()
        .insert("idempotency-key", "b-1".parse().unwrap());
    let res = send(policy().build().unwrap(), &server, post)
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), server.count()), (200, 2));
}

#[tokio::test(start_paused = true)]
async fn error_classifier_decides_which_errors_are_retried() {
    let policy = || {
        policy()
            .retry_errors_if(|e: &io::Error| e.kind() == io::ErrorKind::ConnectionReset)
            .build()
            .unwrap()
    };
    let server = Server::new(|n| if n == 0 { reset() } else { reply(200, &[]) });
    let res = send(policy(), &server, chat()).await.unwrap();
    assert_eq!((res.status().as_u16(), server.count()), (200, 2));

    let server = Server::new(|_| Err(io::Error::from(io::ErrorKind::InvalidInput)));
    let err = send(policy(), &server, chat()).await.unwrap_err();
    assert_eq!(
        (err.kind(), server.count()),
        (io::ErrorKind::InvalidInput, 1)
    );
}
