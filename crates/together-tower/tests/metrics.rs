//! The layers' metrics through the whole stack against together-sim: a
//! hold, a retry, a fast failure and a job 409, read back from a recorder
//! that keeps names, labels and values (run with `--features metrics`; CI does).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use together_sim::Sim;
use together_sim::config::{CHAT, FineTuneConfig, HeaderConfig};
use together_tower::types::{ChatRequest, FineTuneRequest, Message};
use together_tower::{ErrorKind, Preset, TogetherClient};

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// Keeps counters and histograms by `name{label=value,...}` (labels sorted).
#[derive(Default)]
struct Keep {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Keep {
    fn counter(&self, name: &str) -> u64 {
        let all = self.counters.lock().unwrap();
        all.get(name).map_or_else(
            || panic!("no {name} in {:?}", all.keys()),
            |c| c.load(Ordering::Relaxed),
        )
    }

    /// Samples of every histogram whose name starts with `prefix`.
    fn samples(&self, prefix: &str) -> Vec<f64> {
        let all = self.histograms.lock().unwrap();
        all.iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .flat_map(|(_, s)| s.0.lock().unwrap().clone())
            .collect()
    }
}

impl Recorder for Keep {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut all = self.counters.lock().unwrap();
        Counter::from_arc(all.entry(render(key)).or_default().clone())
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut all = self.histograms.lock().unwrap();
        Histogram::from_arc(all.entry(render(key)).or_default().clone())
    }
}

const CHAT_MODEL: &str = "meta-llama/Llama-3.3-70B-Instruct-Turbo";
const ROUTE: &str = "route=POST /v1/chat/completions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_run_through_the_stack_is_counted() {
    let keep: &'static Keep = Box::leak(Box::default());
    metrics::set_global_recorder(keep).expect("the only recorder of this test binary");
    // One chat a (simulated) second, 10x faster: a 429 holds for up to
    // 100 ms real. One fine-tune at a time, done in 70 ms real.
    let sim = Sim::builder()
        .time_scale(10.0)
        .no_limits()
        .requests(CHAT, "1/s".parse().unwrap())
        .headers(HeaderConfig {
            success_headers: false,
            ..HeaderConfig::default()
        })
        .fine_tunes(FineTuneConfig {
            max_concurrent: 1,
            pending: Duration::from_millis(100),
            queued: Duration::from_millis(100),
            running: Duration::from_millis(500),
        })
        .spawn()
        .await
        .unwrap();
    // The client believes in 100 chats a second and waits at most 20 ms.
    let preset = Preset::from_toml(
        r#"
        base = "seed"
        [routes.chat]
        requests = "6000/min"
        tokens = "none"
        max_wait = "20ms"
        "#,
    )
    .unwrap();
    let jobs = preset
        .job_limit()
        .poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let client = TogetherClient::builder()
        .api_key(&sim.api_keys()[0])
        .base_url(sim.base_url())
        .preset(preset)
        .job_limit(jobs)
        .poll_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let chat = || ChatRequest::new(CHAT_MODEL, vec![Message::user("hi")]).max_tokens(4);
    client.chat(&chat()).await.unwrap();
    // The second meets a 429: the route is held, and it is retried.
    let second = {
        let client = client.clone();
        tokio::spawn(async move { client.chat(&chat()).await })
    };
    // Once the simulator has answered it 429 (the route is held for up to
    // 100 ms), a third cannot start within its 20 ms: it fails fast.
    while sim.stats().total_429 == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let third = client.chat(&chat()).await.unwrap_err();
    assert_eq!(third.kind(), ErrorKind::RateLimit, "{third}");
    second.await.unwrap().unwrap();
    // Two fine-tunes against a server cap of one: the second's 409 is
    // absorbed until the first completes.
    let tune = || FineTuneRequest::new(CHAT_MODEL, "file-train");
    let first = client.create_fine_tune(&tune()).await.unwrap();
    let next = client.create_fine_tune(&tune()).await.unwrap();
    assert_ne!(first.id, next.id);

    assert!(keep.counter(&format!("tower_quota_grants_total{{{ROUTE}}}")) >= 3);
    assert!(
        keep.counter(&format!(
            "tower_quota_refused_total{{reason=max_wait,{ROUTE}}}"
        )) >= 1
    );
    assert!(keep.counter("tower_retry_retries_total{reason=429}") >= 1);
    let holds = keep.samples("tower_quota_hold_seconds{");
    assert!(
        !holds.is_empty() && holds.iter().all(|&h| h > 0.0),
        "{holds:?}"
    );
    let waits = keep.samples(&format!("tower_quota_wait_seconds{{{ROUTE}}}"));
    assert!(waits.iter().any(|&w| w > 0.0), "{waits:?}");
    let absorbed: u64 = keep
        .counters
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.starts_with("tower_jobs_conflicts_absorbed_total{"))
        .map(|(_, c)| c.load(Ordering::Relaxed))
        .sum();
    assert!(absorbed >= 1, "{:?}", keep.counters.lock().unwrap().keys());
    // Never the key, in any name or label.
    let key = &sim.api_keys()[0];
    assert!(
        keep.counters
            .lock()
            .unwrap()
            .keys()
            .all(|k| !k.contains(key.as_str()))
    );
}
