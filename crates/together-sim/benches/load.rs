//! Load harness: spawns the simulator and hammers `POST /v1/embeddings`
//! with small bodies from N concurrent hyper http1 keep-alive clients, for a
//! bounded number of requests, then prints the achieved requests/s.
//!
//! ```text
//! cargo bench -p together-sim --bench load
//! LOAD_CONNS=32 LOAD_REQUESTS=200000 cargo bench -p together-sim --bench load
//! ```
//!
//! The embeddings route keeps a (very high) request limit so the limiter,
//! stats and arrival log are on the measured path.
#![allow(missing_docs)]

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use together_sim::config::EMBEDDINGS;
use together_sim::{Rate, Sim};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let conns = env("LOAD_CONNS", 32).max(1);
    let total = env("LOAD_REQUESTS", 200_000).max(conns);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let sim = Sim::builder()
            .no_limits()
            .requests(EMBEDDINGS, Rate::per_second(10_000_000))
            .spawn()
            .await
            .expect("spawn");
        let addr = sim.addr();
        let body = Bytes::from_static(br#"{"model":"BAAI/bge-large-en-v1.5","input":"hello world"}"#);
        let per = total / conns;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                let mut ok = 0usize;
                for _ in 0..per {
                    tx.ready().await.expect("ready");
                    let req = http::Request::post("/v1/embeddings")
                        .header("host", "sim")
                        .header("authorization", "Bearer test-key")
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))
                        .expect("request");
                    let resp = tx.send_request(req).await.expect("send");
                    let status = resp.status();
                    let _ = resp.into_body().collect().await.expect("body");
                    if status == 200 {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += t.await.expect("task");
        }
        let secs = start.elapsed().as_secs_f64();
        let sent = per * conns;
        println!(
            "together-sim load: {sent} requests ({ok} ok) over {conns} keep-alive connections in {secs:.2} s: {:.0} req/s",
            sent as f64 / secs
        );
        let stats = sim.stats();
        assert_eq!(stats.total_requests as usize, sent);
        sim.shutdown().await;
    });
}
