//! `--metrics ADDR`: the layers' metrics (tower-quota, tower-retry-after,
//! tower-jobs; the names are in each crate's docs) in Prometheus's text
//! format at `http://ADDR/metrics` while a run goes, rendered by
//! metrics-exporter-prometheus and served by hyper.
//!
//! The address is checked before anything is sent: it must be an IP and a
//! port (or `localhost:PORT`), on loopback unless `--metrics-public`, and
//! free. Port 0 takes a free one; the address served is printed on stderr.
//! One request per connection, 16 connections at once, 30 s each at most.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Scrapers served at once; more wait for a free place.
const MAX_CONNECTIONS: usize = 16;
/// How long a scraper may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may last, its answer read included (a scraper
/// that stops reading loses its place after this).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How often histograms are kept to their window.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Reads `--metrics`: `IP:PORT` or `localhost:PORT`, on loopback unless
/// `public`.
pub(crate) fn parse_address(text: &str, public: bool) -> Result<SocketAddr, String> {
    let addr = match text.strip_prefix("localhost:") {
        Some(port) => port
            .parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .ok(),
        None => text.parse::<SocketAddr>().ok(),
    }
    .ok_or_else(|| {
        format!(
            "--metrics {text:?} is not an address: give an IP and a port, \
             such as 127.0.0.1:9464 (nothing was sent)"
        )
    })?;
    if !public && !addr.ip().is_loopback() {
        return Err(format!(
            "--metrics {addr} would serve the metrics beyond this machine: give a loopback \
             address such as 127.0.0.1:{}, or add --metrics-public (nothing was sent)",
            addr.port()
        ));
    }
    Ok(addr)
}

/// The metrics being served: dropping it stops the server.
pub(crate) struct Serving {
    /// Where they are served (the port chosen when 0 was asked).
    pub(crate) addr: SocketAddr,
    _task: AbortOnDrop,
}

/// Binds `addr`, installs the process's metrics recorder, and serves it.
/// Fails (nothing sent yet) when the address is taken or unusable, or a
/// recorder is already installed.
pub(crate) async fn serve(addr: SocketAddr) -> Result<Serving, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("--metrics {addr}: cannot listen there: {e} (nothing was sent)"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| format!("--metrics: {e} (nothing was sent)"))?;
    let task = AbortOnDrop(tokio::spawn(accept(listener, handle)));
    Ok(Serving { addr, _task: task })
}

async fn accept(listener: TcpListener, handle: PrometheusHandle) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let upkeep = handle.clone();
    let _upkeep = AbortOnDrop(tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    }));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let handle = handle.clone();
                async move { Ok::<_, Infallible>(answer(&req, &handle)) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, served).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!("metrics: a scrape failed: {e}"),
                Err(_) => {
                    tracing::debug!("metrics: a scrape took over {CONNECTION_TIMEOUT:?}: closed")
                }
            }
            drop(place);
        });
    }
}

/// A task stopped when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `GET /metrics`: the text format; anything else: 404 or 405.
fn answer(req: &Request<Incoming>, handle: &PrometheusHandle) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => (StatusCode::OK, handle.render()),
        (_, "/metrics") => (StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "the metrics are at /metrics\n".to_owned(),
        ),
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    let kind = if status == StatusCode::OK {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    res.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_loopback_unless_public() {
        assert_eq!(
            parse_address("127.0.0.1:9464", false).unwrap(),
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            parse_address("localhost:0", false).unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(parse_address("[::1]:9464", false).is_ok());
        let e = parse_address("0.0.0.0:9464", false).unwrap_err();
        assert!(e.contains("--metrics-public"), "{e}");
        assert!(parse_address("0.0.0.0:9464", true).is_ok());
        for bad in ["9464", "localhost", "example.com:80", "127.0.0.1:99999", ""] {
            let e = parse_address(bad, false).unwrap_err();
            assert!(e.contains("is not an address"), "{bad}: {e}");
        }
    }
}
