//! Fine-tunes, files and batches.

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use serde_json::{Value, json};
use together_sim::config::{BatchConfig, FineTuneConfig};
use together_sim::{Sim, SimHandle};

/// pending 300 ms, queued 300 ms, running 1 s (simulated) at scale 5:
/// 60 ms, 60 ms and 200 ms real.
async fn ft_sim() -> SimHandle {
    Sim::builder()
        .time_scale(5.0)
        .fine_tunes(FineTuneConfig {
            max_concurrent: 3,
            pending: Duration::from_millis(300),
            queued: Duration::from_millis(300),
            running: Duration::from_millis(1000),
        })
        .spawn()
        .await
        .unwrap()
}

fn ft_body() -> Value {
    json!({"model": CHAT_MODEL, "training_file": "file-abc"})
}

async fn wait_status(c: &mut Client, path: &str, want: &str) -> Value {
    for _ in 0..400 {
        let v = c.get(path).await.json();
        if v["status"] == want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{path} never reached {want}");
}

#[tokio::test]
async fn fine_tune_moves_through_statuses() {
    let sim = ft_sim().await;
    let mut c = Client::new(sim.addr(), "test-key");
    let a = c.post("/v1/fine-tunes", &ft_body()).await;
    assert_eq!(a.status, 200);
    let job = a.json();
    assert_eq!(job["status"], "pending");
    let path = format!("/v1/fine-tunes/{}", job["id"].as_str().unwrap());
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..400 {
        let s = c.get(&path).await.json()["status"]
            .as_str()
            .unwrap()
            .to_string();
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(seen, ["pending", "queued", "running", "completed"]);
    let list = c.get("/v1/fine-tunes").await.json();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn fourth_fine_tune_is_409_until_one_completes() {
    let sim = ft_sim().await;
    let mut c = Client::new(sim.addr(), "test-key");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let a = c.post("/v1/fine-tunes", &ft_body()).await;
        assert_eq!(a.status, 200);
        ids.push(a.json()["id"].as_str().unwrap().to_string());
    }
    let a = c.post("/v1/fine-tunes", &ft_body()).await;
    assert_eq!(a.status, 409);
    assert_eq!(a.error_type(), "conflict");
    wait_status(&mut c, &format!("/v1/fine-tunes/{}", ids[0]), "completed").await;
    let a = c.post("/v1/fine-tunes", &ft_body()).await;
    assert_eq!(a.status, 200);
    let stats = sim.stats();
    assert_eq!(stats.fine_tunes.max_running, 3);
    assert_eq!(stats.fine_tunes.max_active, 3);
    assert_eq!(stats.fine_tunes.created, 4);
    assert!(
        stats
            .fine_tunes
            .running_timeline
            .iter()
            .any(|&(_, n)| n == 3)
    );
}

#[tokio::test]
async fn cancel_frees_a_slot() {
    let sim = ft_sim().await;
    let mut c = Client::new(sim.addr(), "test-key");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            c.post("/v1/fine-tunes", &ft_body()).await.json()["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(c.post("/v1/fine-tunes", &ft_body()).await.status, 409);
    let a = c
        .post(&format!("/v1/fine-tunes/{}/cancel", ids[1]), &json!({}))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["status"], "cancelled");
    assert_eq!(c.post("/v1/fine-tunes", &ft_body()).await.status, 200);
    // A terminal job cannot be cancelled again; unknown ids are 404.
    let a = c
        .post(&format!("/v1/fine-tunes/{}/cancel", ids[1]), &json!({}))
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(c.get("/v1/fine-tunes/ft-nope").await.status, 404);
}

fn jsonl(lines: usize) -> String {
    (0..lines)
        .map(|i| {
            json!({"custom_id": format!("req-{i}"), "body": {
                "model": CHAT_MODEL,
                "messages": [{"role": "user", "content": format!("question {i}")}],
                "max_tokens": 20,
            }})
            .to_string()
                + "\n"
        })
        .collect()
}

async fn upload(c: &mut Client, lines: usize) -> String {
    let a = c
        .post(
            "/v1/files",
            &json!({"purpose": "batch-api", "filename": "in.jsonl", "content": jsonl(lines)}),
        )
        .await;
    assert_eq!(a.status, 200);
    let f = a.json();
    assert_eq!(f["LineCount"], lines);
    f["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn multipart_upload_as_the_sdks_send_it() {
    let sim = batch_sim(10).spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let body = format!(
        "--b0undary\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n\
         --b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"mine.jsonl\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n{}\r\n--b0undary--\r\n",
        jsonl(2)
    );
    let a = c
        .send(
            Method::POST,
            "/v1/files",
            &[("content-type", "multipart/form-data; boundary=b0undary")],
            body.into(),
        )
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let f = a.json();
    assert_eq!(f["LineCount"], 2);
    assert_eq!(f["filename"], "mine.jsonl");
    let id = f["id"].as_str().unwrap();
    assert_eq!(
        c.get(&format!("/v1/files/{id}/content")).await.body,
        jsonl(2)
    );

    let torn = "--b0undary\r\nno headers here\r\n--b0undary--\r\n";
    let a = c
        .send(
            Method::POST,
            "/v1/files",
            &[("content-type", "multipart/form-data; boundary=b0undary")],
            torn.into(),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.error_type(), "invalid_request_error");
}

fn batch_sim(in_flight: usize) -> together_sim::SimBuilder {
    Sim::builder().time_scale(10.0).batches(BatchConfig {
        max_requests_per_batch: 100,
        max_in_flight: in_flight,
        validating: Duration::from_millis(100),
        in_progress: Duration::from_millis(300),
    })
}

#[tokio::test]
async fn batch_runs_and_produces_output() {
    let sim = batch_sim(10).spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let file = upload(&mut c, 3).await;
    assert_eq!(
        c.get(&format!("/v1/files/{file}/content")).await.body,
        jsonl(3)
    );
    let a = c
        .post(
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(a.status, 200);
    let job = a.json()["job"].clone();
    assert_eq!(job["status"], "VALIDATING");
    let path = format!("/v1/batches/{}", job["id"].as_str().unwrap());
    wait_status(&mut c, &path, "IN_PROGRESS").await;
    let done = wait_status(&mut c, &path, "COMPLETED").await;
    let out = done["output_file_id"].as_str().unwrap();
    let content = c.get(&format!("/v1/files/{out}/content")).await;
    let lines: Vec<Value> = String::from_utf8(content.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["custom_id"], format!("req-{i}"));
        assert_eq!(l["response"]["status_code"], 200);
        assert_eq!(l["response"]["body"]["object"], "chat.completion");
    }
    let list = c.get("/v1/batches").await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn batch_caps() {
    let sim = batch_sim(2).spawn().await.unwrap();
    let mut c = Client::new(sim.addr(), "test-key");
    let big = upload(&mut c, 101).await;
    let a = c.post("/v1/batches", &json!({"input_file_id": big})).await;
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("100")
    );
    let ok = upload(&mut c, 100).await;
    for _ in 0..2 {
        assert_eq!(
            c.post("/v1/batches", &json!({"input_file_id": ok}))
                .await
                .status,
            200
        );
    }
    let a = c.post("/v1/batches", &json!({"input_file_id": ok})).await;
    assert_eq!(a.status, 429);
    a.error_type();
    // Cancelling one frees a slot.
    let id = c.get("/v1/batches").await.json()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a = c
        .post(&format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(a.json()["status"], "CANCELLED");
    assert_eq!(
        c.post("/v1/batches", &json!({"input_file_id": ok}))
            .await
            .status,
        200
    );
    assert_eq!(
        c.post("/v1/batches", &json!({"input_file_id": "file-nope"}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn jobs_are_per_key() {
    let sim = Sim::builder().api_key("other").spawn().await.unwrap();
    let mut a = Client::new(sim.addr(), "test-key");
    let mut b = Client::new(sim.addr(), "other");
    let id2 = a.post("/v1/fine-tunes", &ft_body()).await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(b.get(&format!("/v1/fine-tunes/{id2}")).await.status, 404);
    assert_eq!(a.get(&format!("/v1/fine-tunes/{id2}")).await.status, 200);
    assert_eq!(b.get("/v1/fine-tunes").await.json()["data"], json!([]));
}
