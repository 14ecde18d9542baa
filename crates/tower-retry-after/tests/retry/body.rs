//! Bodies are replayed byte for byte; streams are sent once.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request};
use http_body::Frame;
use http_body_util::{BodyExt, Full};

use crate::support::*;

/// Sends `body` on a POST that fails twice with 503, then returns what the
/// server saw each time.
async fn replayed<B>(body: B) -> Vec<Sent>
where
    B: Record + tower_retry_after::ReplayBody,
{
    let server = Server::new(|n| {
        if n < 2 {
            reply(503, &[])
        } else {
            reply(200, &[])
        }
    });
    let req = Request::builder()
        .method(Method::POST)
        .uri("https://api.example.com/v1/embeddings?trace=1")
        .header("authorization", "Bearer k")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let res = send(policy().build().unwrap(), &server, req).await.unwrap();
    assert_eq!(res.status(), 200);
    server.sent()
}

fn assert_identical(sent: &[Sent], body: &[u8]) {
    assert_eq!(sent.len(), 3);
    for s in sent {
        assert_eq!(s.body, body);
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.uri, "https://api.example.com/v1/embeddings?trace=1");
        assert_eq!(s.headers, sent[0].headers);
        assert_eq!(s.headers["authorization"], "Bearer k");
    }
}

#[tokio::test(start_paused = true)]
async fn bodies_are_replayed_byte_identical() {
    let text = r#"{"model":"m","input":["héllo","wörld"]}"#;
    assert_identical(&replayed(text.to_string()).await, text.as_bytes());

    let raw = vec![0u8, 255, 10, 13, 0x80, b'{'];
    assert_identical(&replayed(raw.clone()).await, &raw);
    assert_identical(&replayed(Bytes::from(raw.clone())).await, &raw);
    assert_identical(&replayed(Full::new(Bytes::from(raw.clone()))).await, &raw);
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_sent_once() {
    let body = stream().boxed();
    let server = Server::new(|_| reply(503, &[]));
    let req = Request::post("/v1/files").body(body).unwrap();
    let res = send(policy().build().unwrap(), &server, req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(server.count(), 1);
    assert_eq!(server.sent()[0].body, b"line 1\nline 2\n");

    // Even a request that would be retried (a GET) is sent once.
    let body = stream().boxed();
    let server = Server::new(|_| reply(503, &[]));
    let req = Request::get("/v1/models").body(body).unwrap();
    send(policy().build().unwrap(), &server, req).await.unwrap();
    assert_eq!(server.count(), 1);
}

/// A body that yields two chunks, one per poll, and cannot be rewound.
struct Chunks(VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn stream() -> Chunks {
    Chunks(VecDeque::from([
        Bytes::from_static(b"line 1\n"),
        Bytes::from_static(b"line 2\n"),
    ]))
}
