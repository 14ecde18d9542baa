//! A run killed (SIGKILL) or interrupted (Ctrl-C) partway and resumed: every
//! custom_id exactly once in the output, and nothing answered twice by the
//! server beyond the requests in flight at the kill.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use together_sim::config::{FaultKind, FaultRule};
use together_sim::{Mode, Sim, SimHandle};

use common::*;

const SCALE: f64 = 10.0;

async fn sim() -> SimHandle {
    Sim::builder()
        .time_scale(SCALE)
        .mode(Mode::Sliding)
        .spawn()
        .await
        .unwrap()
}

fn args<'a>(input: &'a Path, output: &'a Path, base: &'a str) -> Vec<&'a str> {
    common::run_args(
        input,
        output,
        base,
        "10",
        "0.03",
        &["--progress-every", "0.2"],
    )
}

/// Waits until the output holds at least `n` lines.
async fn wait_for_lines(path: &Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches('\n').count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no progress in the output");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The custom_ids the server answered at least `min` times.
fn answered(sim: &SimHandle, min: u64) -> BTreeSet<String> {
    sim.stats()
        .custom_ids
        .into_iter()
        .filter(|(_, s)| s.answered >= min)
        .map(|(id, _)| id)
        .collect()
}

/// The custom_ids of the complete lines of `path` (a torn last line ignored).
fn complete_ids(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["custom_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_resumes_with_every_custom_id_once() {
    let sim = sim().await;
    let dir = scratch("kill");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, mixed_input(600)).unwrap();
    let base = sim.base_url();
    let key = sim.api_keys()[0].clone();

    let mut child = start(Some(&key), &args(&input, &output, &base));
    wait_for_lines(&output, 150).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let answered_at_kill = answered(&sim, 1);
    let written_at_kill = complete_ids(&output);
    let in_flight: BTreeSet<_> = answered_at_kill
        .difference(&written_at_kill)
        .cloned()
        .collect();
    assert!(written_at_kill.is_subset(&answered_at_kill));

    let out = run(Some(&key), &args(&input, &output, &base)).await;
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("already answered"), "{stderr}");
    let lines = read_output(&output);
    let ids = ids(&lines);
    assert_eq!(ids.len(), 600);
    assert!(ids.values().all(|n| *n == 1), "a custom_id twice");
    let twice = answered(&sim, 2);
    println!(
        "killed after {} lines written, {} answered by the server ({} in flight at the kill); \
         answered twice after resuming: {}",
        written_at_kill.len(),
        answered_at_kill.len(),
        in_flight.len(),
        twice.len()
    );
    assert!(
        twice.is_subset(&in_flight),
        "answered twice but not in flight at the kill: {:?}",
        twice.difference(&in_flight).collect::<Vec<_>>()
    );
    assert_eq!(answered(&sim, 1).len(), 600);
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_what_was_sent_and_resume_sends_the_rest() {
    let sim = sim().await;
    let dir = scratch("ctrlc");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, mixed_input(600)).unwrap();
    let base = sim.base_url();
    let key = sim.api_keys()[0].clone();

    let child = start(Some(&key), &args(&input, &output, &base));
    let pid = child.id().unwrap().to_string();
    wait_for_lines(&output, 100).await;
    let kill = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let stopped = Instant::now();
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = texts(&out);
    // Queued requests are dropped, sent ones finish: the stop is quick.
    assert!(stopped.elapsed() < Duration::from_secs(3));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(stderr.contains("Ctrl-C"), "{stderr}");
    // Every request the server answered is in the output: nothing in flight was lost.
    let written = complete_ids(&output);
    assert_eq!(written, answered(&sim, 1));
    assert!(written.len() < 600, "the run was not interrupted");

    let out = run(Some(&key), &args(&input, &output, &base)).await;
    assert!(out.status.success(), "{:?}", texts(&out));
    let lines = read_output(&output);
    let ids = ids(&lines);
    assert_eq!(ids.len(), 600);
    assert!(ids.values().all(|n| *n == 1));
    assert!(answered(&sim, 2).is_empty(), "a request was sent twice");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_abandons_the_requests_in_flight() {
    // Every answer takes 20 s simulated (2 s real): requests stay in flight.
    let slow = Sim::builder()
        .time_scale(SCALE)
        .mode(Mode::Sliding)
        .fault(FaultRule::new(FaultKind::Latency).latency(Duration::from_secs(20), Duration::ZERO))
        .spawn()
        .await
        .unwrap();
    let dir = scratch("abandon");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, mixed_input(60)).unwrap();
    let key = slow.api_keys()[0].clone();
    let base = slow.base_url();

    let child = start(Some(&key), &args(&input, &output, &base));
    let pid = child.id().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let interrupted = Instant::now();
    for _ in 0..2 {
        let kill = tokio::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .await
            .unwrap();
        assert!(kill.success());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = texts(&out);
    // Gone well before the 2 s answers came.
    assert!(interrupted.elapsed() < Duration::from_millis(1500));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("abandoning"), "{stderr}");
    assert!(stdout.contains("60 unanswered"), "{stdout}");
    assert!(read_output(&output).is_empty());
    slow.shutdown().await;

    // On resume they are all sent.
    let sim = sim().await;
    let base = sim.base_url();
    let out = run(Some(&key), &args(&input, &output, &base)).await;
    assert!(out.status.success(), "{:?}", texts(&out));
    let ids = ids(&read_output(&output));
    assert_eq!(ids.len(), 60);
    assert!(ids.values().all(|n| *n == 1));
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_like_ctrl_c_and_resume_repeats_only_what_was_in_flight() {
    let sim = sim().await;
    let dir = scratch("sigterm");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, mixed_input(600)).unwrap();
    let base = sim.base_url();
    let key = sim.api_keys()[0].clone();

    let child = start(Some(&key), &args(&input, &output, &base));
    let pid = child.id().unwrap().to_string();
    wait_for_lines(&output, 100).await;
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(term.success());
    let out = child.wait_with_output().await.unwrap();
    let (stdout, stderr) = texts(&out);
    // Like Ctrl-C: a summary, the output flushed, exit 1 (unanswered lines).
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("SIGTERM: taking no new lines"), "{stderr}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    let written = complete_ids(&output);
    let answered_at_stop = answered(&sim, 1);
    // Requests the server answered but the output lacks were in flight.
    let in_flight: BTreeSet<_> = answered_at_stop.difference(&written).cloned().collect();
    assert!(written.len() < 600, "the run was not interrupted");

    let out = run(Some(&key), &args(&input, &output, &base)).await;
    assert!(out.status.success(), "{:?}", texts(&out));
    let ids = ids(&read_output(&output));
    assert_eq!(ids.len(), 600);
    assert!(ids.values().all(|n| *n == 1));
    let twice = answered(&sim, 2);
    println!(
        "SIGTERM after {} lines written; in flight {}; answered twice after resuming: {}",
        written.len(),
        in_flight.len(),
        twice.len()
    );
    assert!(
        twice.is_subset(&in_flight),
        "answered twice but not in flight at the signal: {:?}",
        twice.difference(&in_flight).collect::<Vec<_>>()
    );
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_run_on_the_same_output_fails_at_once() {
    let sim = sim().await;
    let dir = scratch("two-runs");
    let (input, output) = (dir.join("in.jsonl"), dir.join("out.jsonl"));
    std::fs::write(&input, mixed_input(300)).unwrap();
    let base = sim.base_url();
    let key = sim.api_keys()[0].clone();

    let first = start(Some(&key), &args(&input, &output, &base));
    let pid = first.id().unwrap();
    wait_for_lines(&output, 10).await;
    let started = Instant::now();
    let second = run(Some(&key), &args(&input, &output, &base)).await;
    let (_, stderr) = texts(&second);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(stderr.contains(&format!("pid {pid}")), "{stderr}");
    let out = first.wait_with_output().await.unwrap();
    assert!(out.status.success(), "{:?}", texts(&out));
    assert_eq!(read_output(&output).len(), 300);
    assert!(answered(&sim, 2).is_empty(), "a request was sent twice");
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
