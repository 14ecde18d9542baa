//! The HTML report (`--report FILE.html`) and the metrics served during a
//! run (`--metrics ADDR`), through the binary against an in-process
//! together-sim.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use together_sim::config::{CHAT, EMBEDDINGS, HeaderConfig, RouteLimits};
use together_sim::{Mode, Rate, Sim};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use common::*;

/// A run's files in a scratch directory: an input of `lines` mixed lines,
/// the output, a JSON report and a page (in `page_dir` under it, made).
struct Files {
    input: PathBuf,
    output: PathBuf,
    json: PathBuf,
    page: PathBuf,
}

impl Files {
    fn new(test: &str, lines: usize, page_dir: &str) -> Files {
        let dir = scratch(test);
        std::fs::create_dir_all(dir.join(page_dir)).unwrap();
        let files = Files {
            input: dir.join("in.jsonl"),
            output: dir.join("out.jsonl"),
            json: dir.join("r.json"),
            page: dir.join(page_dir).join("r.html"),
        };
        std::fs::write(&files.input, mixed_input(lines)).unwrap();
        files
    }

    /// `--quiet` and both reports.
    fn report_args(&self) -> [&str; 5] {
        [
            "--quiet",
            "--report",
            self.page.to_str().unwrap(),
            "--report",
            self.json.to_str().unwrap(),
        ]
    }
}

/// The cells of one table row: each `data-field`, with its `data-value`
/// for a number or its text otherwise.
fn row_cells(row: &str) -> Vec<(String, String)> {
    row.split("<td ")
        .skip(1)
        .filter_map(|cell| {
            let field = cell.split("data-field=\"").nth(1)?.split('"').next()?;
            let value = match cell.split("data-value=\"").nth(1) {
                Some(v) => v.split('"').next()?.to_owned(),
                None => cell.split('>').nth(1)?.split('<').next()?.to_owned(),
            };
            Some((field.to_owned(), value))
        })
        .collect()
}

/// The rows of the table `data-list="NAME"`.
fn list_rows(html: &str, name: &str) -> Vec<Vec<(String, String)>> {
    let Some(table) = html.split(&format!("data-list=\"{name}\"")).nth(1) else {
        return Vec::new();
    };
    let table = table.split("</table>").next().unwrap();
    table.split("<tr>").skip(2).map(row_cells).collect()
}

/// What the page shows for a JSON value.
fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => s
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;"),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Whether the page's `text` shows the JSON `value`: numbers to the last
/// bit but one (serde_json's float parsing may round the JSON text's last
/// digit the other way), anything else as text.
fn same(text: &str, value: &Value) -> bool {
    match (value.as_f64(), text.parse::<f64>()) {
        (Some(want), Ok(got)) if value.is_number() => {
            (want - got).abs() <= want.abs() * 4.0 * f64::EPSILON
        }
        _ => text == shown(value),
    }
}

/// Checks the page against the JSON report: one chart per route, and every
/// scalar of the summary and every cell of the routes' and models' tables
/// the same.
fn assert_page_matches(html: &str, json: &Value) {
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    assert!(!html.contains("<script"), "the page needs no script");
    let routes = json["routes"].as_array().unwrap();
    assert!(!routes.is_empty());
    assert_eq!(
        html.matches("<section class=\"route\"").count(),
        routes.len(),
        "one chart per route"
    );
    for r in routes {
        let name = r["route"].as_str().unwrap();
        let section = html
            .split(&format!("<section class=\"route\" data-route=\"{name}\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("no chart for {name}"));
        let section = section.split("</section>").next().unwrap();
        assert_eq!(section.matches("<svg").count(), 1, "{name}");
        assert!(section.contains("sent (attempts per second)"), "{name}");
    }
    let summary = html.split("class=\"summary\"").nth(1).unwrap();
    let summary = summary.split("</table>").next().unwrap();
    let scalars: Vec<(String, String)> = summary.split("<tr>").flat_map(row_cells).collect();
    let mut compared = 0;
    for (key, value) in json.as_object().unwrap() {
        if value.is_array() || value.is_object() {
            continue;
        }
        let cell = scalars.iter().find(|(f, _)| f == key);
        assert!(
            cell.is_some_and(|(_, text)| same(text, value)),
            "summary field {key}: {cell:?} against {value}"
        );
        compared += 1;
    }
    assert!(compared >= 20, "{compared} fields compared");
    for list in ["routes", "models"] {
        let rows = list_rows(html, list);
        let want = json[list].as_array().unwrap();
        assert_eq!(rows.len(), want.len(), "{list}");
        for (row, want) in rows.iter().zip(want) {
            let want = want.as_object().unwrap();
            assert_eq!(row.len(), want.len(), "{list}: {row:?}");
            for (field, text) in row {
                assert!(
                    same(text, &want[field]),
                    "{list}.{field}: {text} against {}",
                    want[field]
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_report_page_has_a_chart_per_route_and_the_json_numbers() {
    let dir = scratch("page-demo");
    let (json, html) = (dir.join("report.json"), dir.join("report.html"));
    let out = run(
        None,
        &[
            "demo",
            "--embeddings",
            "40",
            "--chats",
            "80",
            "--quiet",
            "--report",
            json.to_str().unwrap(),
            "--report",
            html.to_str().unwrap(),
        ],
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let html = std::fs::read_to_string(&html).unwrap();
    assert_eq!(json["routes"].as_array().unwrap().len(), 2);
    assert_eq!(json["models"].as_array().unwrap().len(), 3);
    assert_page_matches(&html, &json);
    // The learned paces are drawn against what was sent.
    assert!(html.contains("pace in force"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_marks_429s_retries_and_holds_on_their_route() {
    // The server allows a fifth of the rate the client was told on chat
    // (2/s against 10/s) and says nothing of its limits on successes: 429s,
    // each with a wait hint that holds the route, and retries.
    let sim = Sim::builder()
        .time_scale(10.0)
        .mode(Mode::Sliding)
        .route_limits(
            CHAT,
            RouteLimits {
                requests: Some(Rate::per_minute(120)),
                ..RouteLimits::default()
            },
        )
        // Twice the client's pace on embeddings: no 429 there.
        .route_limits(
            EMBEDDINGS,
            RouteLimits {
                requests: Some(Rate::per_minute(600)),
                ..RouteLimits::default()
            },
        )
        .headers(HeaderConfig {
            success_headers: false,
            ..HeaderConfig::default()
        })
        .api_key("test-key")
        .spawn()
        .await
        .unwrap();
    let files = Files::new("page-marks", 90, ".");
    let base = sim.base_url();
    let extra = files.report_args();
    let out = run(
        Some("test-key"),
        &run_args(&files.input, &files.output, &base, "10", "0.05", &extra),
    )
    .await;
    let (stdout, stderr) = texts(&out);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    let html = std::fs::read_to_string(&files.page).unwrap();
    assert!(
        json["responses_429"].as_u64().unwrap() > 0,
        "{stdout}\n{stderr}"
    );
    assert_page_matches(&html, &json);
    let section = |route: &str| {
        let s = html
            .split(&format!("data-route=\"{route}\">"))
            .nth(1)
            .unwrap();
        s.split("</section>").next().unwrap().to_owned()
    };
    let chat = section("POST /v1/chat/completions");
    for mark in [
        "429 answers",
        "retries sent",
        "held by the server",
        "pace in force",
    ] {
        assert!(chat.contains(mark), "chat: no {mark:?}");
    }
    // Embeddings went at half the server's limit: nothing to mark there.
    let embeddings = section("POST /v1/embeddings");
    assert!(
        !embeddings.contains("429 answers"),
        "{}",
        sim.stats().total_429
    );
    assert!(embeddings.contains("pace in force"));
    sim.shutdown().await;
}

/// `GET /metrics` from `addr`, the body; `None` when the connection fails
/// (the run ended, and its server with it, during the scrape).
async fn scrape(addr: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    Some(body.to_owned())
}

/// The sum of a counter's samples over its labels.
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_during_a_run_and_the_grants_rise() {
    let sim = seed_sim(5.0).await;
    let dir = scratch("metrics-scrape");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    // 80 chats at 50/s and 40 embeddings at 25/s (the seed's, x5): 1.6 s.
    std::fs::write(&input, mixed_input(120)).unwrap();
    let base = sim.base_url();
    let extra = ["--quiet", "--metrics", "127.0.0.1:0"];
    let mut child = start(
        Some("test-key"),
        &run_args(&input, &output, &base, "5", "0.05", &extra),
    );
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), stderr.next_line())
            .await
            .expect("the metrics address is printed")
            .unwrap()
            .expect("the metrics address is printed before stderr ends");
        if let Some(rest) = line.strip_prefix("together-batch: metrics at http://") {
            break rest.trim_end_matches("/metrics").to_owned();
        }
    };
    let mut grants = Vec::new();
    let mut last = String::new();
    while child.try_wait().unwrap().is_none() {
        if let Ok(Some(text)) = tokio::time::timeout(Duration::from_secs(2), scrape(&addr)).await {
            grants.push(total(&text, "tower_quota_grants_total"));
            last = text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(read_output(&output).len(), 120);
    // Rising while the run went: seen at least three different counts, in order.
    let mut seen: Vec<f64> = grants.clone();
    seen.dedup();
    assert!(seen.len() >= 3, "grants scraped: {grants:?}");
    assert!(grants.windows(2).all(|w| w[0] <= w[1]), "{grants:?}");
    assert!(*seen.last().unwrap() <= 120.0, "{grants:?}");
    assert!(*seen.last().unwrap() >= 60.0, "{grants:?}");
    // Labelled by route, in Prometheus's conventions; the key nowhere.
    assert!(
        last.contains("tower_quota_grants_total{route=\"POST /v1/chat/completions\"")
            || last.contains("route=\"POST /v1/chat/completions\""),
        "{last}"
    );
    assert!(last.contains("tower_quota_wait_seconds"), "{last}");
    assert!(!last.contains("test-key"));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_metrics_address_or_report_fails_before_anything_is_sent() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("metrics-refused");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, mixed_input(6)).unwrap();
    let base = sim.base_url();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = listener.local_addr().unwrap().to_string();
    let page = dir.join("no-such-dir").join("r.html");
    let before = std::fs::read_to_string(&input).unwrap();
    let cases: [(Vec<&str>, &str); 7] = [
        (vec!["--metrics", "0.0.0.0:9464"], "--metrics-public"),
        (vec!["--metrics", "9464"], "is not an address"),
        (
            vec!["--metrics", "metrics.example.com:9464"],
            "is not an address",
        ),
        (vec!["--metrics", &taken], "cannot listen there"),
        (
            vec!["--report", page.to_str().unwrap()],
            "cannot write the report",
        ),
        // A report over the results or the requests would lose them.
        (vec!["--report", output.to_str().unwrap()], "is the output"),
        (vec!["--report", input.to_str().unwrap()], "is the input"),
    ];
    for (extra, needle) in cases {
        let out = run(
            Some("test-key"),
            &run_args(&input, &output, &base, "20", "0.05", &extra),
        )
        .await;
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(stderr.contains("nothing was sent"), "{extra:?}: {stderr}");
        assert!(!output.exists(), "{extra:?}");
    }
    assert_eq!(sim.stats().total_requests, 0);
    assert_eq!(std::fs::read_to_string(&input).unwrap(), before);
    drop(listener);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_cannot_be_written_at_the_end_keeps_the_summary_and_the_others() {
    let sim = seed_sim(5.0).await;
    let files = Files::new("report-late-failure", 60, "gone");
    let gone = files.page.parent().unwrap().to_owned();
    let base = sim.base_url();
    let extra = files.report_args();
    let child = start(
        Some("test-key"),
        &run_args(&files.input, &files.output, &base, "5", "0.05", &extra),
    );
    // The page's directory goes once sending has started (the checks
    // before it passed).
    let began = std::time::Instant::now();
    while sim.stats().total_requests == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "nothing was sent"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::remove_dir_all(&gone).unwrap();
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("60 lines: 60 ok"), "{stdout}");
    assert!(stderr.contains("cannot write the report"), "{stderr}");
    assert!(stderr.contains("r.html"), "{stderr}");
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
    assert_eq!(json["ok"], 60);
    sim.shutdown().await;
}
