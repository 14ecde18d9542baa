//! Fault injection: by schedule (matching requests `#from..=#to`) and by
//! probability, from one seeded `SmallRng`, so a sequential client sees the
//! same faults on every run. Rules are configured with
//! [`FaultRule`](crate::config::FaultRule).

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::config::{FaultConfig, FaultKind, FaultRule};

/// What the server does instead of (or before) answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Status(u16),
    Close,
    Cut,
}

#[derive(Debug)]
struct State {
    rng: SmallRng,
    counts: Vec<u64>,
}

#[derive(Debug)]
pub(crate) struct Faults {
    rules: Vec<FaultRule>,
    state: Mutex<State>,
}

impl Faults {
    pub(crate) fn new(config: &FaultConfig) -> Self {
        Self {
            rules: config.rules.clone(),
            state: Mutex::new(State {
                rng: SmallRng::seed_from_u64(config.seed),
                counts: vec![0; config.rules.len()],
            }),
        }
    }

    /// The fault (if any) and the simulated latency to add.
    pub(crate) fn decide(&self, route: &str, model: Option<&str>) -> (Option<Action>, Duration) {
        if self.rules.is_empty() {
            return (None, Duration::ZERO);
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let st = &mut *st;
        let mut action = None;
        let mut latency = Duration::ZERO;
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.route.as_deref().is_some_and(|r| r != route) {
                continue;
            }
            if rule.model.is_some() && rule.model.as_deref() != model {
                continue;
            }
            st.counts[i] += 1;
            let n = st.counts[i];
            if rule.from.is_some_and(|f| n < f) || rule.to.is_some_and(|t| n > t) {
                continue;
            }
            if let Some(p) = rule.probability
                && st.rng.random::<f64>() >= p
            {
                continue;
            }
            match rule.kind {
                FaultKind::Latency => {
                    latency += rule.latency;
                    if !rule.jitter.is_zero() {
                        latency += rule.jitter.mul_f64(st.rng.random::<f64>());
                    }
                }
                FaultKind::Overloaded if action.is_none() => action = Some(Action::Status(503)),
                FaultKind::ServerError if action.is_none() => action = Some(Action::Status(500)),
                FaultKind::BadGateway if action.is_none() => action = Some(Action::Status(502)),
                FaultKind::Close if action.is_none() => action = Some(Action::Close),
                FaultKind::Cut if action.is_none() => action = Some(Action::Cut),
                _ => {}
            }
        }
        (action, latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_and_scope() {
        let f = Faults::new(&FaultConfig {
            seed: 1,
            rules: vec![
                FaultRule::new(FaultKind::Overloaded)
                    .requests(2, 3)
                    .route("/a"),
            ],
        });
        let got: Vec<_> = (0..5).map(|_| f.decide("/a", None).0).collect();
        assert_eq!(
            got,
            vec![
                None,
                Some(Action::Status(503)),
                Some(Action::Status(503)),
                None,
                None
            ]
        );
        assert_eq!(f.decide("/b", None).0, None);
    }

    #[test]
    fn seeded_probability_repeats() {
        let cfg = FaultConfig {
            seed: 42,
            rules: vec![FaultRule::new(FaultKind::ServerError).probability(0.3)],
        };
        let run = || {
            let f = Faults::new(&cfg);
            (0..200)
                .map(|_| f.decide("/x", None).0.is_some())
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        let hits = a.iter().filter(|x| **x).count();
        assert!((30..90).contains(&hits), "{hits}");
    }
}
