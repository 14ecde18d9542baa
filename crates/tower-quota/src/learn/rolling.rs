//! A sum over a sliding window, in buckets.

use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 16;

/// A sum over a sliding window, kept in `BUCKETS` buckets: [`sum`](Self::sum)
/// covers at least the whole window (it leans to counting more history),
/// [`sum_within`](Self::sum_within) at most the window (it leans to less).
#[derive(Debug, Clone)]
pub(crate) struct Rolling {
    width: Duration,
    buckets: [f64; BUCKETS],
    head: usize,
    head_start: Option<Instant>,
}

impl Rolling {
    pub(crate) fn new(window: Duration) -> Self {
        Rolling {
            width: (window / (BUCKETS as u32 - 1)).max(Duration::from_micros(1)),
            buckets: [0.0; BUCKETS],
            head: 0,
            head_start: None,
        }
    }

    fn advance(&mut self, now: Instant) {
        let Some(start) = self.head_start else {
            self.head_start = Some(now);
            return;
        };
        let steps = now.saturating_duration_since(start).as_nanos() / self.width.as_nanos();
        if steps == 0 {
            return;
        }
        if steps >= BUCKETS as u128 {
            self.buckets = [0.0; BUCKETS];
            self.head_start = Some(now);
            return;
        }
        for _ in 0..steps {
            self.head = (self.head + 1) % BUCKETS;
            self.buckets[self.head] = 0.0;
        }
        self.head_start = Some(start + self.width * steps as u32);
    }

    pub(crate) fn add(&mut self, now: Instant, amount: f64) {
        self.advance(now);
        self.buckets[self.head] += amount;
    }

    /// The sum over at least the last window.
    pub(crate) fn sum(&mut self, now: Instant) -> f64 {
        self.advance(now);
        self.buckets.iter().sum()
    }

    /// The sum over the last window, estimated: of the oldest bucket, which
    /// straddles the window's start, only the share inside the window counts.
    pub(crate) fn sum_within(&mut self, now: Instant) -> f64 {
        self.advance(now);
        let oldest = (self.head + 1) % BUCKETS;
        let into_head = match self.head_start {
            Some(start) => now.saturating_duration_since(start).as_secs_f64(),
            None => 0.0,
        };
        let inside = (1.0 - into_head / self.width.as_secs_f64()).clamp(0.0, 1.0);
        self.sum(now) - self.buckets[oldest] * (1.0 - inside)
    }
}
