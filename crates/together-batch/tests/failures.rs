//! When things go wrong: honest re-runs, reasons on screen, early stops on
//! errors that would hit every line, the /v1 base URL, input order, Ctrl-C's
//! count and -v's noise, through the binary against together-sim.

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use together_sim::Sim;
use together_sim::config::{FaultKind, FaultRule};

use common::*;

fn chat_lines(n: usize, model: &str) -> String {
    (0..n)
        .map(|i| {
            let mut body = chat_body(i);
            body["model"] = json!(model);
            batch_line(&format!("c{i:03}"), "/v1/chat/completions", body) + "\n"
        })
        .collect()
}

const MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_stops_the_run_within_the_first_answers() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("stop-key");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chat_lines(60, MODEL)).unwrap();
    let base = sim.base_url();
    let args = run_args(
        &input,
        &output,
        &base,
        "20",
        "0.05",
        &["--max-in-flight", "4"],
    );
    let out = run(Some("sk-wrong"), &args).await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("the API key was refused (401"), "{stderr}");
    assert!(
        stderr.contains("together-sim accepts only its own test keys"),
        "{stderr}"
    );
    assert!(
        stdout.contains("stopped: the API key was refused"),
        "{stdout}"
    );
    // The summary names the reason, its count and an example.
    assert!(stdout.contains("failures:"), "{stdout}");
    assert!(stdout.contains("1 x 401 invalid_request_error"), "{stdout}");
    let sent = sim.stats().total_requests;
    assert!(sent <= 8, "{sent} requests sent after the first 401");
    let answered = read_output(&output).len() as u64;
    assert!(
        stdout.contains(&format!("{} unanswered", 60 - answered)),
        "{stdout}"
    );
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_stops_that_model_only_and_names_the_closest() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("stop-model");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let mut text = chat_lines(30, "meta-llama/Llama-3.3-70B-Instruct");
    for i in 0..10 {
        text += &(batch_line(&format!("e{i}"), "/v1/embeddings", embed_body(i)) + "\n");
    }
    std::fs::write(&input, text).unwrap();
    let base = sim.base_url();
    let args = run_args(
        &input,
        &output,
        &base,
        "20",
        "0.05",
        &["--max-in-flight", "2"],
    );
    let out = run(Some("test-key"), &args).await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("closest: meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        "{stderr}"
    );
    let lines = read_output(&output);
    let embedded = lines
        .iter()
        .filter(|l| l["custom_id"].as_str().unwrap().starts_with('e'))
        .filter(|l| l["status"] == 200)
        .count();
    assert_eq!(embedded, 10, "the other route's lines all went");
    let chats = lines.len() - embedded;
    assert!(chats <= 4, "{chats} chat lines sent after the model's 404");
    // The summary's reason names the closest models too.
    assert!(
        stdout.contains("closest: meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        "{stdout}"
    );
    // The record carries the library's advice.
    let failed = lines.iter().find(|l| l["status"] == 404).unwrap();
    assert!(failed["error"]["advice"].as_str().is_some(), "{failed}");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_base_url_stops_and_the_re_run_sends_every_line() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("stop-url");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chat_lines(20, MODEL)).unwrap();
    let wrong = format!("http://127.0.0.1:{}", closed_port());
    let args = run_args(
        &input,
        &output,
        &wrong,
        "20",
        "0.05",
        &["--max-in-flight", "2"],
    );
    let out = run(Some("test-key"), &args).await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("does not answer"), "{stderr}");
    assert!(stderr.contains("check --base-url"), "{stderr}");
    let first = read_output(&output);
    assert!(
        first.len() <= 4,
        "{} lines tried after the first refusal",
        first.len()
    );
    assert!(first.iter().all(|l| l["reached_server"] == false));

    // The trap: the re-run must not call these lines answered.
    let base = sim.base_url();
    let args = run_args(&input, &output, &base, "20", "0.05", &[]);
    let out = run(Some("test-key"), &args).await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("failed without reaching a server"),
        "{stderr}"
    );
    let lines = read_output(&output);
    assert_eq!(lines.len(), 20);
    assert!(lines.iter().all(|l| l["status"] == 200));
    assert_eq!(sim.stats().custom_ids.len(), 20);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_bodies_without_an_endpoint_are_sent_once_it_is_given() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("rerun-endpoint");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let text: String = (0..3)
        .map(|i| {
            let mut body = chat_body(i);
            body["model"] = json!(MODEL);
            body.to_string() + "\n"
        })
        .collect();
    std::fs::write(&input, text).unwrap();
    let base = sim.base_url();
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "20", "0.05", &[]),
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stderr.contains("needs --endpoint"), "{stderr}");
    let extra = ["--endpoint", "/v1/chat/completions"];
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "20", "0.05", &extra),
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("3 ok"), "{stdout}");
    let lines = read_output(&output);
    assert_eq!(
        lines.len(),
        3,
        "the bad-input records are replaced: {lines:?}"
    );
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_ending_in_v1_works() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("v1");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chat_lines(3, MODEL)).unwrap();
    let base = format!("{}/v1", sim.base_url());
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "20", "0.05", &[]),
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(read_output(&output).iter().all(|l| l["status"] == 200));
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_sends_its_lines_in_input_order() {
    // 20/s: lines 50 ms apart, so the arrival order is the sending order.
    let sim = seed_sim(2.0).await;
    let dir = scratch("order");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chat_lines(40, MODEL)).unwrap();
    let base = sim.base_url();
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "2", "0.05", &[]),
    )
    .await;
    assert!(out.status.success(), "{:?}", texts(&out));
    let mut arrivals = sim.stats().arrivals;
    arrivals.sort_by(|a, b| a.t.total_cmp(&b.t));
    let order: Vec<String> = arrivals.into_iter().filter_map(|a| a.custom_id).collect();
    let expected: Vec<String> = (0..40).map(|i| format!("c{i:03}")).collect();
    assert_eq!(order, expected);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_counts_the_requests_really_in_flight() {
    // Each answer takes 1 s; chat goes at 10/s: about 10 requests are out
    // at any time while dozens more wait for the quota. Ten times faster.
    let sim = Sim::builder()
        .time_scale(10.0)
        .api_key("test-key")
        .fault(FaultRule::new(FaultKind::Latency).latency(Duration::from_secs(1), Duration::ZERO))
        .spawn()
        .await
        .unwrap();
    let dir = scratch("ctrlc-count");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chat_lines(200, MODEL)).unwrap();
    let base = sim.base_url();
    let args = run_args(
        &input,
        &output,
        &base,
        "10",
        "0.05",
        &["--max-in-flight", "60"],
    );
    let child = start(Some("test-key"), &args);
    let pid = child.id().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let kill = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let said: u64 = stderr
        .split(" for the ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count: {stderr}"));
    assert!((1..=13).contains(&said), "said {said} in flight: {stderr}");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_shows_the_stack_without_hyper_chatter() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("verbose");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, mixed_input(25)).unwrap();
    let base = sim.base_url();
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "20", "0.05", &["-v"]),
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let noisy: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("hyper") || l.contains("tower_http"))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    // Pacing at the limit is not an incident.
    assert!(!stderr.contains("holding"), "{stderr}");
    // -vv shows everything.
    let output2 = dir.join("out2.jsonl");
    let out = run(
        Some("test-key"),
        &run_args(&input, &output2, &base, "20", "0.05", &["-vv"]),
    )
    .await;
    assert!(texts(&out).1.contains("hyper"), "-vv shows hyper's events");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_to_date_re_run_and_a_single_request_read_right() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("small-items");
    let (input, output, report) = (
        dir.join("in.jsonl"),
        dir.join("out.jsonl"),
        dir.join("report.json"),
    );
    std::fs::write(&input, chat_lines(1, MODEL)).unwrap();
    let base = sim.base_url();
    let extra = ["--report", report.to_str().unwrap()];
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "20", "0.05", &extra),
    )
    .await;
    let (stdout, _) = texts(&out);
    assert!(out.status.success(), "{stdout}");
    // One request has no ideal rate to compare with.
    assert!(!stdout.contains("of the ideal rate"), "{stdout}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["ideal_pct"], Value::Null);
    assert!(
        r["limits_from"].as_str().unwrap().contains("tier seed"),
        "{r}"
    );
    // Nothing left to send: no 0/0 progress line.
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "20", "0.05", &[]),
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(!stderr.contains("0/0"), "{stderr}");
    assert!(stderr.contains("nothing to send"), "{stderr}");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_checks_fail_before_anything_is_sent() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("startup");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chat_lines(3, MODEL)).unwrap();
    let base = sim.base_url();
    let refused = |out: &std::process::Output, needle: &str| {
        let (_, stderr) = texts(out);
        assert_eq!(out.status.code(), Some(2), "{needle}: {stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
        assert!(stderr.contains("nothing was sent"), "{needle}: {stderr}");
    };
    // A report that cannot be written is found before sending, not after.
    let report = dir.join("no-such-dir").join("report.json");
    let extra = ["--report", report.to_str().unwrap()];
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "20", "0.05", &extra),
    )
    .await;
    refused(&out, "cannot write the report");
    // A base URL that is not http(s).
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, "ftp://127.0.0.1/", "20", "0.05", &[]),
    )
    .await;
    refused(&out, "http(s)://");
    // The input given as the output is refused, and left as it was.
    let before = std::fs::read_to_string(&input).unwrap();
    let out = run(
        Some("test-key"),
        &run_args(&input, &input, &base, "20", "0.05", &[]),
    )
    .await;
    refused(&out, "is the input");
    assert_eq!(std::fs::read_to_string(&input).unwrap(), before);
    // An output that is not a results file is left alone unless --force.
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "my notes\n").unwrap();
    let out = run(
        Some("test-key"),
        &run_args(&input, &notes, &base, "20", "0.05", &[]),
    )
    .await;
    refused(&out, "not a results file");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes\n");
    let out = run(
        Some("test-key"),
        &run_args(&input, &notes, &base, "20", "0.05", &["--force"]),
    )
    .await;
    assert!(out.status.success(), "{:?}", texts(&out));
    assert_eq!(read_output(&notes).len(), 3);
    // A path no quota paces: a warning, or a refusal with --strict.
    let odd = dir.join("odd.jsonl");
    std::fs::write(
        &odd,
        batch_line("u1", "/v1/unknown", json!({"model": MODEL})) + "\n",
    )
    .unwrap();
    let out = run(
        Some("test-key"),
        &run_args(&odd, &output, &base, "20", "0.05", &["--strict"]),
    )
    .await;
    refused(&out, "no quota paces POST /v1/unknown");
    let out = run(
        Some("test-key"),
        &run_args(&odd, &output, &base, "20", "0.05", &[]),
    )
    .await;
    assert!(
        texts(&out).1.contains("no quota paces POST /v1/unknown"),
        "{:?}",
        texts(&out)
    );
    assert_eq!(
        sim.stats().custom_ids.get("u1").map(|s| s.answered),
        Some(1)
    );
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_said_and_counted() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("redis-down");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chat_lines(10, MODEL)).unwrap();
    let base = sim.base_url();
    let redis = format!("redis://127.0.0.1:{}/", closed_port());
    let extra = [
        "--redis",
        redis.as_str(),
        "--processes",
        "2",
        "--progress-every",
        "0.1",
    ];
    let out = run(
        Some("test-key"),
        &run_args(&input, &output, &base, "20", "0.05", &extra),
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("the shared store (Redis) does not answer"),
        "{stderr}"
    );
    assert!(stdout.contains("decisions made locally"), "{stdout}");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_mid_run_still_prints_the_summary() {
    let sim = seed_sim(20.0).await;
    let dir = scratch("full-disk");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, chat_lines(200, MODEL)).unwrap();
    let base = sim.base_url();
    let args = run_args(&input, &output, &base, "20", "0.05", &["--no-state"]);
    // The file size limit plays a full disk: writes past 16 KiB fail (the
    // signal that would kill the process is ignored, so write() says EFBIG).
    let quoted: Vec<String> = std::iter::once(BIN.to_owned())
        .chain(args.iter().map(|a| a.to_string()))
        .map(|a| format!("'{a}'"))
        .collect();
    let script = format!("trap '' XFSZ; ulimit -f 16; exec {}", quoted.join(" "));
    let out = tokio::process::Command::new("sh")
        .args(["-c", &script])
        .env("TOGETHER_API_KEY", "test-key")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("together-batch: 200 lines"),
        "the summary: {stdout}"
    );
    assert!(
        stdout.contains("the output stopped taking writes"),
        "{stdout}"
    );
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(
        written.len() <= 16 * 1024 && !written.is_empty(),
        "{}",
        written.len()
    );
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
