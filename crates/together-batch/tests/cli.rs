//! Bad input, resume edge cases, the key, and the `limits` and `demo`
//! commands, through the binary against an in-process together-sim.

mod common;

use std::path::Path;

use serde_json::json;
use together_sim::{Mode, Sim, SimHandle};

use common::*;

async fn sim_with_key(key: &str) -> SimHandle {
    Sim::builder()
        .time_scale(20.0)
        .mode(Mode::Sliding)
        .api_key(key)
        .spawn()
        .await
        .unwrap()
}

async fn sim() -> SimHandle {
    sim_with_key("test-key").await
}

fn run_args<'a>(input: &'a Path, output: &'a Path, base: &'a str) -> Vec<&'a str> {
    common::run_args(input, output, base, "20", "0.05", &[])
}

fn lines(items: &[String]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_line_is_recorded_with_its_line_number_and_the_rest_proceed() {
    let sim = sim().await;
    let dir = scratch("malformed");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let text = lines(&[
        batch_line("a", "/v1/chat/completions", chat_body(1)),
        "{\"custom_id\": \"b\", \"url\": \"/v1/chat/completions\", \"body\": {".to_owned(),
        String::new(),
        json!({"custom_id": "c", "url": "chat", "body": {}}).to_string(),
        json!({"model": "meta-llama/Llama-3.3-70B-Instruct-Turbo", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        batch_line("d", "/v1/embeddings", embed_body(4)),
    ]);
    std::fs::write(&input, text).unwrap();
    let base = sim.base_url();
    let mut args = run_args(&input, &output, &base);
    args.extend(["--endpoint", "/v1/chat/completions"]);
    let out = run(Some("test-key"), &args).await;
    let (stdout, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 failed (2 bad input)"), "{stdout}");
    let lines = read_output(&output);
    assert_eq!(lines.len(), 5);
    let by_id = |id: &str| lines.iter().find(|l| l["custom_id"] == id).unwrap().clone();
    // The torn JSON on line 2 has no readable custom_id, and gets none (a
    // line number could be a real custom_id): it is found by its line.
    let two = lines.iter().find(|l| l["line"] == 2).unwrap().clone();
    assert_eq!(two["custom_id"], serde_json::Value::Null);
    // Bad lines carry the same fields as the others.
    for field in [
        "custom_id",
        "line",
        "method",
        "url",
        "status",
        "attempts",
        "error",
    ] {
        assert!(two.get(field).is_some(), "{field}: {two}");
    }
    assert_eq!(two["status"], serde_json::Value::Null);
    // And they are shown on screen.
    assert!(stderr.contains("line 2: not valid JSON"), "{stderr}");
    assert!(stderr.contains("line 4: url"), "{stderr}");
    assert_eq!(two["error"]["type"], "invalid_input");
    assert!(
        two["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("line 2: not valid JSON")
    );
    let c = by_id("c");
    assert_eq!(c["line"], 4);
    assert!(c["error"]["message"].as_str().unwrap().contains("line 4"));
    // A bare body gets its line number as custom_id and --endpoint as url.
    assert_eq!(by_id("5")["url"], "/v1/chat/completions");
    for id in ["a", "5", "d"] {
        assert_eq!(by_id(id)["status"], 200, "{id}");
    }
    assert_eq!(sim.stats().total_requests, 3);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_fails_before_anything_is_sent() {
    let sim = sim().await;
    let dir = scratch("missing");
    let (input, output) = (dir.join("nope.jsonl"), dir.join("out.jsonl"));
    let base = sim.base_url();
    let out = run(Some("test-key"), &run_args(&input, &output, &base)).await;
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("cannot read the input"), "{stderr}");
    assert!(stderr.contains("nope.jsonl"), "{stderr}");
    assert!(!output.exists());
    assert_eq!(sim.stats().total_requests, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_output_fails_before_anything_is_sent() {
    let sim = sim().await;
    let dir = scratch("unwritable");
    let input = dir.join("in.jsonl");
    std::fs::write(&input, mixed_input(5)).unwrap();
    let base = sim.base_url();
    for output in [dir.join("no-such-dir").join("out.jsonl"), dir.clone()] {
        let out = run(Some("test-key"), &run_args(&input, &output, &base)).await;
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("the output"), "{stderr}");
        assert!(stderr.contains("nothing was sent"), "{stderr}");
    }
    assert_eq!(sim.stats().total_requests, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_custom_ids_fail_before_anything_is_sent() {
    let sim = sim().await;
    let dir = scratch("dups");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let text = lines(&[
        batch_line("x", "/v1/chat/completions", chat_body(1)),
        batch_line("y", "/v1/chat/completions", chat_body(2)),
        batch_line("x", "/v1/embeddings", embed_body(3)),
    ]);
    std::fs::write(&input, text).unwrap();
    let base = sim.base_url();
    let out = run(Some("test-key"), &run_args(&input, &output, &base)).await;
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("\"x\" on lines 1 and 3"), "{stderr}");
    assert!(!output.exists());
    assert_eq!(sim.stats().total_requests, 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_cut_and_its_request_sent_again() {
    let sim = sim().await;
    let dir = scratch("torn");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, mixed_input(5)).unwrap();
    // c0 and c1 were answered; the crash tore c2's line.
    let done = |id: &str| json!({"custom_id": id, "status": 200, "response": {"earlier": true}});
    std::fs::write(
        &output,
        format!(
            "{}\n{}\n{{\"custom_id\":\"e2\",\"resp",
            done("c0"),
            done("c1")
        ),
    )
    .unwrap();
    let base = sim.base_url();
    let out = run(Some("test-key"), &run_args(&input, &output, &base)).await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("torn"), "{stderr}");
    assert!(stdout.contains("2 already answered"), "{stdout}");
    let lines = read_output(&output);
    let ids = ids(&lines);
    assert_eq!(ids.len(), 5);
    assert!(ids.values().all(|n| *n == 1));
    assert_eq!(lines[0]["response"]["earlier"], true);
    let sent: Vec<_> = sim.stats().custom_ids.into_keys().collect();
    assert_eq!(sent, ["c3", "c4", "e2"]);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_skipped_on_resume_unless_retry_failed() {
    let sim = sim().await;
    let dir = scratch("retry-failed");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    let mut bad = chat_body(2);
    bad["model"] = json!("no-such/model");
    let write_input = |second: serde_json::Value| {
        std::fs::write(
            &input,
            lines(&[
                batch_line("ok", "/v1/chat/completions", chat_body(1)),
                batch_line("fix-me", "/v1/chat/completions", second),
            ]),
        )
        .unwrap()
    };
    write_input(bad);
    let base = sim.base_url();
    let args = run_args(&input, &output, &base);

    let out = run(Some("test-key"), &args).await;
    assert_eq!(out.status.code(), Some(1));
    let first = read_output(&output);
    let failed = first.iter().find(|l| l["custom_id"] == "fix-me").unwrap();
    assert_eq!(failed["error"]["status"], 404);
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such/model")
    );
    assert_eq!(failed["error"]["attempts"], 1);

    // Without --retry-failed, nothing is sent again, and the run says the
    // output still holds a failure (exit 1), not that all is well.
    let out = run(Some("test-key"), &args).await;
    let (stdout, _) = texts(&out);
    assert!(stdout.contains("2 already answered"), "{stdout}");
    assert!(
        stdout.contains("1 of them failed earlier: run with --retry-failed"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(read_output(&output), first);
    assert_eq!(sim.stats().custom_ids["fix-me"].answered, 1);

    // A line whose request changed is not skipped as answered: the run
    // refuses to start, naming it.
    write_input(chat_body(2));
    let out = run(Some("test-key"), &args).await;
    let (_, stderr) = texts(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("fix-me"), "{stderr}");
    assert!(stderr.contains("--on-change resend"), "{stderr}");
    assert_eq!(read_output(&output), first);

    // With it, the failure is sent again and its line replaced.
    let mut retry = args.clone();
    retry.push("--retry-failed");
    let out = run(Some("test-key"), &retry).await;
    assert!(out.status.success(), "{:?}", texts(&out));
    let lines = read_output(&output);
    assert_eq!(lines.len(), 2);
    let fixed = lines.iter().find(|l| l["custom_id"] == "fix-me").unwrap();
    assert_eq!(fixed["status"], 200);
    assert_eq!(sim.stats().custom_ids["ok"].answered, 1);
    assert_eq!(sim.stats().custom_ids["fix-me"].answered, 2);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_never_appears_in_output_reports_progress_or_logs() {
    const KEY: &str = "sk-test-VERY-SECRET-4242";
    const WRONG: &str = "sk-wrong-ALSO-SECRET-9999";
    let sim = sim_with_key(KEY).await;
    let dir = scratch("key");
    let (input, report, page) = (
        dir.join("in.jsonl"),
        dir.join("report.json"),
        dir.join("report.html"),
    );
    std::fs::write(&input, mixed_input(30)).unwrap();
    let base = sim.base_url();
    for (key, name, env) in [
        (KEY, "right.jsonl", "TOGETHER_API_KEY"),
        (WRONG, "wrong.jsonl", "TOGETHER_API_KEY"),
        (KEY, "other-env.jsonl", "MY_KEY"),
    ] {
        let output = dir.join(name);
        let mut args = run_args(&input, &output, &base);
        args.extend([
            "-v",
            "--progress-every",
            "0.01",
            "--report",
            report.to_str().unwrap(),
            "--report",
            page.to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
            "--api-key-env",
            env,
        ]);
        let mut cmd = command(None, &args);
        cmd.env(env, key);
        let out = cmd.output().await.unwrap();
        let (stdout, stderr) = texts(&out);
        if key == WRONG {
            // A refused key stops the run early, saying so.
            assert!(stderr.contains("the API key was refused (401"), "{stderr}");
        } else {
            assert!(
                stderr.contains("together-batch: 30/30"),
                "no progress: {stderr}"
            );
        }
        let written = std::fs::read_to_string(&output).unwrap();
        let report = std::fs::read_to_string(&report).unwrap();
        let page = std::fs::read_to_string(&page).unwrap();
        for text in [&stdout, &stderr, &written, &report, &page] {
            assert!(!text.contains(key), "the key leaked ({name}): {text}");
            assert!(!text.contains("SECRET"), "the key leaked ({name}): {text}");
        }
        if key == WRONG {
            assert_eq!(out.status.code(), Some(1));
            assert!(written.contains("invalid_api_key"), "{written}");
        } else {
            assert!(out.status.success(), "{stdout}\n{stderr}");
        }
    }
    // No key at all: a clear error naming the variable, nothing sent.
    let before = sim.stats().total_requests;
    let out = run(None, &run_args(&input, &dir.join("none.jsonl"), &base)).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(texts(&out).1.contains("set TOGETHER_API_KEY"));
    assert_eq!(sim.stats().total_requests, before);
    // And no way to pass it as an argument.
    let help = run(None, &["run", "--help"]).await;
    assert!(!texts(&help).0.contains("--api-key "));
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_are_reported_by_the_route_that_paced_them() {
    let sim = sim().await;
    let dir = scratch("matched-route");
    let (input, output, report) = (
        dir.join("in.jsonl"),
        dir.join("out.jsonl"),
        dir.join("report.json"),
    );
    // The same route with and without a query: one route, one quota, one feeder.
    let items: Vec<String> = (0..6)
        .map(|i| {
            let url = if i % 2 == 0 {
                "/v1/chat/completions?x=1"
            } else {
                "/v1/chat/completions"
            };
            batch_line(&format!("c{i}"), url, chat_body(i))
        })
        .collect();
    std::fs::write(&input, lines(&items)).unwrap();
    let base = sim.base_url();
    let mut args = run_args(&input, &output, &base);
    args.extend(["--report", report.to_str().unwrap(), "--quiet"]);
    let out = run(Some("test-key"), &args).await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let routes = report["routes"].as_array().unwrap();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert_eq!(routes[0]["route"], "POST /v1/chat/completions");
    assert_eq!(routes[0]["ok"], 6);
    assert!(routes[0]["quota_per_sec"].as_f64().is_some(), "{routes:?}");
    assert!(stdout.contains("POST /v1/chat/completions"), "{stdout}");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn limits_prints_the_effective_table() {
    let dir = scratch("limits");
    let file = dir.join("limits.toml");
    std::fs::write(
        &file,
        "base = \"tier2\"\n[batch]\nredis = \"redis://:pw@127.0.0.1:6379/\"\nprocesses = 3\n\
         [routes.embeddings]\nrequests = \"1234/min\"\n",
    )
    .unwrap();
    let out = run(None, &["limits", "--limits", file.to_str().unwrap()]).await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("preset \"tier2\""), "{stdout}");
    assert!(stdout.contains("1234/min"), "{stdout}");
    assert!(stdout.contains("1800/min"), "{stdout}");
    assert!(stdout.contains("POST /v1/embeddings"), "{stdout}");
    assert!(
        stdout.contains("by 3 process(es)") && !stdout.contains("pw@"),
        "{stdout}"
    );

    let out = run(None, &["limits", "--tier", "tier-1"]).await;
    assert!(texts(&out).0.contains("3000/min"));
    let out = run(None, &["limits", "--tier", "tier-7"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(texts(&out).1.contains("tier1 .. tier5"));
}

#[tokio::test]
async fn demo_learns_the_limits_and_answers_every_line() {
    let out = run(
        None,
        &["demo", "--embeddings", "40", "--chats", "80", "--quiet"],
    )
    .await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("120 lines: 120 ok"), "{stdout}");
    assert!(
        stdout.contains("0 accepted above the limit in force"),
        "{stdout}"
    );
    // Each model's learned pace, from the headers, in the summary.
    for model in [
        "BAAI/bge-large-en-v1.5",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.contains(model) && l.ends_with("header"))
            .unwrap_or_else(|| panic!("{model} learned from headers: {stdout}"));
        assert!(row.split_whitespace().count() >= 6, "{row}");
    }
    // A few 429s at the edge of a limit that grows with use, retried.
    let answered_429: u64 = stdout
        .split(" requests, ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        answered_429 <= 6,
        "{answered_429} 429s for 120 requests: {stdout}"
    );
}
