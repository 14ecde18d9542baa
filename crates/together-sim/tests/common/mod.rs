//! Shared helpers of the integration tests: a tiny keep-alive hyper client.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// An answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Checks Together's error shape and returns `error.type`.
    pub fn error_type(&self) -> String {
        let v = self.json();
        let e = v
            .get("error")
            .unwrap_or_else(|| panic!("no error object: {v}"));
        for f in ["message", "type", "param", "code"] {
            assert!(e.get(f).is_some(), "error body lacks {f}: {v}");
        }
        assert!(e["message"].is_string(), "{v}");
        e["type"].as_str().expect("type is a string").to_string()
    }
}

/// One keep-alive http1 connection, reopened after a failure.
pub struct Client {
    addr: SocketAddr,
    key: Option<String>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(addr: SocketAddr, key: &str) -> Self {
        Self {
            addr,
            key: Some(key.to_string()),
            sender: None,
        }
    }

    pub fn without_key(addr: SocketAddr) -> Self {
        Self {
            addr,
            key: None,
            sender: None,
        }
    }

    async fn sender(&mut self) -> &mut SendRequest<Full<Bytes>> {
        let alive = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !alive {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .expect("connect");
            stream.set_nodelay(true).unwrap();
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        self.sender.as_mut().expect("just set")
    }

    /// Sends a request; `Err` when the connection failed (e.g. a close fault).
    pub async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, hyper::Error> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        if let Some(k) = &self.key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        let typed = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !body.is_empty() && !typed {
            b = b.header("content-type", "application/json");
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body)).expect("request");
        let sender = self.sender().await;
        let result = async {
            let resp = sender.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Answer {
        self.try_send(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> Answer {
        self.send(Method::POST, path, &[], Bytes::from(body.to_string()))
            .await
    }

    pub async fn post_raw(&mut self, path: &str, body: &str) -> Answer {
        self.send(Method::POST, path, &[], Bytes::from(body.to_string()))
            .await
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }
}

pub const CHAT_MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";
pub const OTHER_CHAT_MODEL: &str = "Qwen/Qwen2.5-7B-Instruct-Turbo";
pub const EMBED_MODEL: &str = "BAAI/bge-large-en-v1.5";
pub const IMAGE_MODEL: &str = "black-forest-labs/FLUX.1-schnell";

pub fn chat_body(model: &str, max_tokens: u64) -> Value {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": max_tokens,
    })
}

pub fn embed_body(input: &str) -> Value {
    serde_json::json!({"model": EMBED_MODEL, "input": input})
}

/// Seconds in a `x-ratelimit-reset`-style header.
pub fn secs(a: &Answer, name: &str) -> f64 {
    a.header(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}
