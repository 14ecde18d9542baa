//! The API key never shows: not in `Debug` of the client or its parts, not
//! in errors (`Display` and `Debug`), not in trace output at TRACE level.
//! Its own test binary: it installs a global tracing subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use together_sim::config::{CHAT, FaultKind, FaultRule};
use together_sim::{Mode, Sim};
use together_tower::types::{ChatRequest, Message};
use together_tower::{Preset, TogetherClient, retry_policy};

const KEY: &str = "sk-leak-check-4b1d7e0c";
const WRONG_KEY: &str = "sk-wrong-key-90f3a2";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_never_leaks() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let model = "meta-llama/Llama-3.3-70B-Instruct-Turbo";
    let sim = Sim::builder()
        .api_keys([KEY])
        .time_scale(10.0)
        .mode(Mode::Sliding)
        .fault(
            FaultRule::new(FaultKind::Overloaded)
                .route(CHAT)
                .requests(1, 1),
        )
        .spawn()
        .await
        .unwrap();
    let builder = |key: &str| {
        TogetherClient::builder()
            .api_key(key)
            .base_url(sim.base_url())
            .preset(Preset::seed().time_scaled(10.0))
            .retry(
                retry_policy()
                    .backoff(Duration::from_millis(1), Duration::from_millis(5))
                    .build()
                    .unwrap(),
            )
    };
    let mut shown = vec![format!("{:?}", builder(KEY))];
    let client = builder(KEY).build().unwrap();
    shown.push(format!("{client:?}"));
    shown.push(format!("{:?}", builder(KEY).layers().unwrap()));

    // A success after a retried 503 (the retry is traced at INFO).
    let ok = client
        .chat(&ChatRequest::new(model, vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(ok.choices.len(), 1);
    // A model that does not exist.
    let err = client
        .chat(&ChatRequest::new(
            "no/such-model",
            vec![Message::user("hi")],
        ))
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));
    // A wrong key: 401.
    let wrong = builder(WRONG_KEY).build().unwrap();
    let err = wrong
        .chat(&ChatRequest::new(model, vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(err.status().map(|s| s.as_u16()), Some(401));
    assert!(err.to_string().contains("check the API key"), "{err}");
    shown.push(format!("{err} {err:?} {wrong:?}"));
    sim.shutdown().await;

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("retrying request"),
        "the capture works: {logs}"
    );
    assert!(
        logs.contains("/v1/chat/completions"),
        "requests are traced: {logs}"
    );
    for text in shown.iter().chain([&logs]) {
        for key in [KEY, WRONG_KEY] {
            assert!(!text.contains(key), "the key leaked into: {text}");
            assert!(
                !text.contains(&key[3..]),
                "part of the key leaked into: {text}"
            );
        }
    }
}
