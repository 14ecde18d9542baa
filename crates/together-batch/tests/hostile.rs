//! Bounded memory and time against servers that misbehave in ways
//! together-sim cannot: a huge body, a dripping body, truncated JSON,
//! absurd wait hints on a 200, a 503 forever. A scripted server on
//! loopback plays each; every test asserts its bound.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use common::*;

/// How the scripted server answers every request.
#[derive(Clone, Copy)]
enum Script {
    /// 200 with a body of this many bytes (zeros), streamed.
    Huge(u64),
    /// 200 with headers, then one byte every `every`, forever.
    Drip(Duration),
    /// 200 with headers and a content-length, then nothing.
    Silent,
    /// 200 whose body is cut JSON (content-length matches the cut).
    Truncated,
    /// HTTP/1.0 200 without content-length, the JSON cut by closing.
    ClosedMidBody,
    /// 200 with valid JSON and absurd hints: remaining 0, reset 80,000 s,
    /// retry-after 86,000 s.
    AbsurdHints,
    /// 503 with `retry-after: 30`.
    Overloaded,
    /// 200 with valid JSON quoting the request's `Authorization` header.
    EchoKey,
}

/// A loopback server answering every request by `script`; counts the bytes
/// of body it wrote.
struct Hostile {
    base: String,
    written: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

async fn hostile(script: Script) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let (w, r) = (written.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (w, r) = (w.clone(), r.clone());
            tokio::spawn(serve(stream, script, w, r));
        }
    });
    Hostile {
        base,
        written,
        requests,
    }
}

/// Reads one request (head and content-length body): its head, or `None` at EOF.
async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            return Some(String::from_utf8_lossy(&buf[..end]).into_owned());
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

const JSON: &str = r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}"#;

async fn serve(
    mut stream: TcpStream,
    script: Script,
    written: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
) {
    while let Some(head) = read_request(&mut stream).await {
        requests.fetch_add(1, Ordering::Relaxed);
        let ok = match script {
            Script::Huge(n) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {n}\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let zeros = vec![b'0'; 64 * 1024];
                let mut left = n;
                while left > 0 {
                    let k = left.min(zeros.len() as u64) as usize;
                    if stream.write_all(&zeros[..k]).await.is_err() {
                        return;
                    }
                    written.fetch_add(k as u64, Ordering::Relaxed);
                    left -= k as u64;
                }
                true
            }
            Script::Drip(every) => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(every).await;
                    if stream.write_all(b" ").await.is_err() {
                        return;
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }
            Script::Silent => {
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Script::Truncated => {
                let body = &JSON[..40];
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(res.as_bytes()).await.is_ok()
            }
            Script::ClosedMidBody => {
                let res = format!(
                    "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{}",
                    &JSON[..40]
                );
                let _ = stream.write_all(res.as_bytes()).await;
                return;
            }
            Script::AbsurdHints => {
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-ratelimit-remaining: 0\r\n\
                     x-ratelimit-reset: 80000\r\nretry-after: 86000\r\ncontent-length: {}\r\n\r\n{JSON}",
                    JSON.len()
                );
                stream.write_all(res.as_bytes()).await.is_ok()
            }
            Script::EchoKey => {
                let auth = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("authorization: ")
                            .or(l.strip_prefix("Authorization: "))
                    })
                    .unwrap_or("")
                    .to_owned();
                let body = serde_json::json!({"id": "x", "echo": auth}).to_string();
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(res.as_bytes()).await.is_ok()
            }
            Script::Overloaded => {
                let body = r#"{"error":{"message":"overloaded","type":"server_error"}}"#;
                let res = format!(
                    "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 30\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                stream.write_all(res.as_bytes()).await.is_ok()
            }
        };
        if !ok {
            return;
        }
    }
}

fn chats(n: usize) -> String {
    (0..n)
        .map(|i| batch_line(&format!("c{i}"), "/v1/chat/completions", chat_body(i)) + "\n")
        .collect()
}

/// Runs `n` chat lines against `server` with `extra` flags: the output
/// lines, stdout, stderr, exit code and the time it took.
async fn run_against(
    test: &str,
    server: &Hostile,
    n: usize,
    extra: &[&str],
) -> (Vec<Value>, String, String, Option<i32>, Duration) {
    let dir = scratch(test);
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chats(n)).unwrap();
    let mut args = run_args(&input, &output, &server.base, "1", "0.05", extra);
    args.push("--no-state");
    let start = Instant::now();
    let out = run(Some("test-key"), &args).await;
    let took = start.elapsed();
    let (stdout, stderr) = texts(&out);
    let lines = read_output(&output);
    let _ = std::fs::remove_dir_all(&dir);
    (lines, stdout, stderr, out.status.code(), took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_an_error_read_no_further_than_the_cap() {
    let server = hostile(Script::Huge(500 << 20)).await;
    let (lines, stdout, stderr, code, _) =
        run_against("huge", &server, 2, &["--max-response-mb", "8"]).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["error"]["type"], "too_large", "{l}");
        assert!(l.get("response").is_none());
    }
    // Reading stopped at the cap: the server got to write little more than
    // 8 MiB per request (socket buffers) of its 500 MiB.
    let written = server.written.load(Ordering::Relaxed);
    assert!(written < 80 << 20, "{written} bytes written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_body_fails_at_the_attempt_deadline() {
    let server = hostile(Script::Drip(Duration::from_millis(100))).await;
    let flags = ["--timeout", "1", "--idle-timeout", "0.5"];
    let (lines, stdout, stderr, code, took) = run_against("drip", &server, 1, &flags).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(lines[0]["error"]["type"], "timeout", "{}", lines[0]);
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_body_fails_at_the_idle_timeout() {
    let server = hostile(Script::Silent).await;
    let flags = ["--timeout", "60", "--idle-timeout", "0.3"];
    let (lines, stdout, stderr, code, took) = run_against("silent", &server, 1, &flags).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(lines[0]["error"]["type"], "timeout", "{}", lines[0]);
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_json_on_a_200_is_a_failure_not_an_answer() {
    for (name, script) in [
        ("truncated", Script::Truncated),
        ("closed", Script::ClosedMidBody),
    ] {
        let server = hostile(script).await;
        let (lines, stdout, stderr, code, _) = run_against(name, &server, 2, &[]).await;
        assert_eq!(code, Some(1), "{name}: {stdout}\n{stderr}");
        for l in &lines {
            assert_eq!(l["status"], 200, "{name}: {l}");
            assert_eq!(l["error"]["type"], "decode", "{name}: {l}");
            assert!(l.get("response").is_none(), "{name}: {l}");
        }
        assert!(stdout.contains("0 ok, 2 failed"), "{name}: {stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_hints_on_a_200_hold_the_route_no_longer_than_the_cap() {
    let server = hostile(Script::AbsurdHints).await;
    let flags = ["--max-hold", "0.3", "--progress-every", "0.05"];
    let (lines, stdout, stderr, code, took) = run_against("hints", &server, 3, &flags).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(lines.len(), 3);
    // Each answer holds the route for the cap (0.3 s), not a day.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(stderr.contains(" held "), "the hold is shown: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_overloaded_forever_costs_each_line_its_deadline_at_most() {
    let server = hostile(Script::Overloaded).await;
    let flags = ["--max-hold", "0.3", "--deadline", "1"];
    let (lines, stdout, stderr, code, took) = run_against("overloaded", &server, 3, &flags).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l["status"] == 503), "{lines:?}");
    assert!(took < Duration::from_secs(12), "took {took:?}");
    let requests = server.requests.load(Ordering::Relaxed);
    assert!(requests <= 15, "{requests} requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_echoed_in_a_success_body_is_not_written() {
    let server = hostile(Script::EchoKey).await;
    let (lines, stdout, stderr, code, _) = run_against("echo", &server, 2, &[]).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for l in &lines {
        let echo = l["response"]["echo"].as_str().unwrap();
        assert_eq!(echo, "Bearer <redacted>", "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_stops_waiting_on_a_dripping_body_after_the_grace() {
    for signal in ["-INT", "-HUP"] {
        let server = hostile(Script::Drip(Duration::from_millis(100))).await;
        let dir = scratch(&format!("grace{signal}"));
        let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
        std::fs::write(&input, chats(2)).unwrap();
        let flags = ["--timeout", "600", "--grace", "0.3", "--no-state"];
        let args = run_args(&input, &output, &server.base, "1", "0.05", &flags);
        let child = start(Some("test-key"), &args);
        let pid = child.id().unwrap().to_string();
        while server.written.load(Ordering::Relaxed) < 5 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let signalled = Instant::now();
        let kill = tokio::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .await
            .unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().await.unwrap();
        let (stdout, stderr) = texts(&out);
        // One signal is enough: the body's wait ends after the 0.3 s grace.
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "{signal}: {stderr}"
        );
        assert_eq!(out.status.code(), Some(1), "{signal}: {stdout}\n{stderr}");
        assert!(stderr.contains("abandoning"), "{signal}: {stderr}");
        assert!(stdout.contains("unanswered"), "{signal}: {stdout}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
