//! The uncontended cases of `benches/quota.rs` as a plain program, for two
//! measures that hold still on a noisy machine:
//!
//! - `uncontended CASE N` runs CASE N times and nothing else: run it under
//!   `valgrind --tool=cachegrind` for N and 2N and the difference over N is
//!   the instructions per request (deterministic).
//! - `uncontended time` times every case in batches of 10,000 calls,
//!   alternating the cases, 200 batches each, and prints the fastest batch's
//!   time per call: interference from other tenants only ever adds time, so
//!   the fastest batch is the closest reading of the code's own cost.
//!
//! Cases: `bare`, `one` (one quota), `keyed` (per-model + tokens, small
//! body), `bare1k`, `keyed1k` (the 1 KB chat body), `tower`
//! (`tower::limit::RateLimit`), `governor` (governor's `check` alone),
//! `parse1k` (`BodyFields::parse` of the 1 KB body alone).
//!
//! ```text
//! cargo build --release -p tower-quota --example uncontended
//! target/release/examples/uncontended time
//! ```
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use tower_quota::{BodyFields, RateLimit};

#[path = "../benches/support/mod.rs"]
mod support;
use support::{CHAT, Noop, chat, long_chat, one_quota, per_model_and_tokens, ready_and_call};

const CASES: [&str; 8] = [
    "bare", "one", "keyed", "bare1k", "keyed1k", "tower", "governor", "parse1k",
];

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().expect("a case, or `time`");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let mut cases = Cases::new();
    if case == "time" {
        return time(&mut cases);
    }
    let n: usize = args.next().expect("a count").parse().expect("a count");
    cases.run(&case, n);
}

/// The fastest of 200 batches of 10,000 calls of each case, alternating cases.
fn time(cases: &mut Cases) {
    const BATCH: usize = 10_000;
    let mut best = [f64::INFINITY; CASES.len()];
    for _ in 0..200 {
        for (i, case) in CASES.iter().enumerate() {
            let start = Instant::now();
            cases.run(case, BATCH);
            let per_call = start.elapsed().as_secs_f64() * 1e9 / BATCH as f64;
            best[i] = best[i].min(per_call);
        }
    }
    for (case, ns) in CASES.iter().zip(best) {
        println!("{case:>9} {ns:7.1} ns");
    }
    println!("one - bare {:7.1} ns", best[1] - best[0]);
    println!("keyed1k - bare1k {:7.1} ns", best[4] - best[3]);
}

/// The services and bodies of every case, made once.
struct Cases {
    long: String,
    bare: Noop,
    one: RateLimit<Noop>,
    keyed: RateLimit<Noop>,
    tower: tower::limit::RateLimit<Noop>,
    governor: governor::DefaultDirectRateLimiter,
}

impl Cases {
    fn new() -> Self {
        let rate = tower::limit::rate::Rate::new(u64::MAX / 2, Duration::from_secs(1));
        let billion = NonZeroU32::new(1_000_000_000).unwrap();
        Cases {
            long: long_chat(),
            bare: Noop,
            one: RateLimit::new(Noop, one_quota()),
            keyed: RateLimit::new(Noop, per_model_and_tokens()),
            tower: tower::limit::RateLimit::new(Noop, rate),
            governor: governor::RateLimiter::direct(governor::Quota::per_second(billion)),
        }
    }

    /// `n` calls of `case`.
    fn run(&mut self, case: &str, n: usize) {
        let long = self.long.as_str();
        match case {
            "bare" => repeat(n, || ready_and_call(&mut self.bare, chat(""))),
            "one" => repeat(n, || ready_and_call(&mut self.one, chat(""))),
            "keyed" => repeat(n, || ready_and_call(&mut self.keyed, chat(CHAT))),
            "bare1k" => repeat(n, || ready_and_call(&mut self.bare, chat(long))),
            "keyed1k" => repeat(n, || ready_and_call(&mut self.keyed, chat(long))),
            "tower" => repeat(n, || ready_and_call(&mut self.tower, chat(""))),
            "governor" => repeat(n, || self.governor.check().is_ok()),
            "parse1k" => repeat(n, || {
                BodyFields::parse(black_box(long.as_bytes()), &["model"])
            }),
            other => panic!("unknown case {other:?}: {CASES:?} or `time`"),
        }
    }
}

/// Calls `f` `n` times, keeping what it returns from being optimized away.
fn repeat<T>(n: usize, mut f: impl FnMut() -> T) {
    for _ in 0..n {
        black_box(f());
    }
}
