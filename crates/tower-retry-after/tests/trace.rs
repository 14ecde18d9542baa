//! The trace event of each retry. In its own test binary: tracing caches
//! callsite interest process-wide, so a scoped subscriber races with tests
//! running on other threads without one.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};
use tower_retry_after::{RetryLayer, RetryPolicy};

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn each_retry_emits_an_event_with_its_delay_and_source() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // 429 with a hint, then a transport error, then 200.
    let calls = Arc::new(AtomicUsize::new(0));
    let server = service_fn(move |_: Request<String>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match n {
                0 => Ok(Response::builder()
                    .status(429)
                    .header("retry-after-ms", "1500")
                    .body(String::new())
                    .unwrap()),
                1 => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
                _ => Ok(Response::new(String::new())),
            }
        }
    });
    let policy = RetryPolicy::builder().jitter(0.0).build().unwrap();
    let client = RetryLayer::new(policy).layer(server);
    let get = Request::get("/v1/models").body(String::new()).unwrap();
    let res = client.oneshot(get).await.unwrap();
    assert_eq!(res.status(), 200);

    let out = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let events: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("retrying request"))
        .collect();
    assert_eq!(events.len(), 2, "{out}");
    for needle in [
        "INFO",
        "attempt=2",
        "reason=status 429",
        "delay_ms=1500",
        "source=\"retry-after-ms\"",
    ] {
        assert!(
            events[0].contains(needle),
            "{needle} missing in {}",
            events[0]
        );
    }
    for needle in [
        "attempt=3",
        "reason=transport error",
        "delay_ms=1000",
        "source=\"backoff\"",
    ] {
        assert!(
            events[1].contains(needle),
            "{needle} missing in {}",
            events[1]
        );
    }
}
