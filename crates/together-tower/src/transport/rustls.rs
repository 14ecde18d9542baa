//! The default inner client: hyper-util's pooled client over hyper-rustls
//! (feature `rustls`, on by default).

use std::time::Duration;

use http::Response;
use http::header::AUTHORIZATION;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::HttpClient;
use crate::BoxError;

/// hyper-util's legacy client over hyper-rustls (ring provider, webpki
/// roots, HTTP/1.1 and HTTP/2 by ALPN, plain HTTP allowed for local
/// servers), pooled, behind tower-http's sensitive-headers marking of
/// `Authorization`, its trace spans and its timeout: an attempt whose head
/// takes longer than `timeout` answers 408 (which the retry policy
/// retries), and its body fails with [`AttemptTimeout`](crate::AttemptTimeout)
/// once `timeout` has passed since the attempt began (head and body in all).
///
/// # Panics
///
/// Must be called inside a tokio runtime (the client spawns its
/// connections on it).
pub fn default_http_client(timeout: Duration) -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    let client: Client<_, String> = Client::builder(TokioExecutor::new()).build(https);
    let service = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([AUTHORIZATION]))
        .map_response(|res: Response<_>| res.map(BodyExt::boxed_unsync))
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .map_response(
            |res: Response<super::timed::TimedBody<hyper::body::Incoming>>| {
                res.map(BodyExt::boxed_unsync)
            },
        )
        .layer(super::timed::AttemptDeadlineLayer::new(timeout))
        .map_err(BoxError::from)
        .service(client);
    BoxCloneSyncService::new(service)
}
