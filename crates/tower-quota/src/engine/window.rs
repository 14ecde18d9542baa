//! The window a learned token cell keeps beside its bucket: what it
//! granted over the server's last period.
//!
//! A token bucket of one period's worth lets up to two periods' worth go
//! in any one period (a full bucket, then its refill). A server that counts
//! tokens in a sliding window of whole requests refuses the excess: two
//! chats of 1,027 tokens fit a 3,000-token second, a third 0.34 s later
//! does not. So a cell that reads the server's token counts (its limit and
//! remaining headers) also keeps its grants of the last period and admits a
//! request only when it fits among them; each count the server reports
//! (on a complete answer of a reconciled quota) corrects the log to it.

use std::collections::VecDeque;
use std::time::Duration;

/// Grants of the last period: (offset from the engine's base, units).
#[derive(Debug, Default)]
pub(crate) struct Window {
    grants: VecDeque<(Duration, f64)>,
    sum: f64,
}

impl Window {
    fn prune(&mut self, now: Duration, period: Duration) {
        while let Some(&(at, units)) = self.grants.front() {
            if at + period > now {
                break;
            }
            self.grants.pop_front();
            self.sum -= units;
        }
        if self.grants.is_empty() {
            self.sum = 0.0;
        }
    }

    /// When `cost` fits within `cap` units per `period` at `now` or later:
    /// `None` when it fits now, or when it is as large as the cap.
    pub(crate) fn refuses(
        &self,
        now: Duration,
        period: Duration,
        cap: f64,
        cost: f64,
    ) -> Option<Duration> {
        if cost >= cap {
            // A request the size of the whole window is the bucket's to
            // pace (the server may charge it less than its estimate).
            return None;
        }
        let live = || self.grants.iter().filter(|(at, _)| *at + period > now);
        let sum: f64 = live().map(|(_, units)| units).sum();
        let mut over = sum + cost - cap;
        if over <= 0.0 || sum <= 0.0 {
            return None;
        }
        let mut last = None;
        for &(at, units) in live() {
            over -= units;
            last = Some(at + period);
            if over <= 0.0 {
                return last;
            }
        }
        // Only an empty window takes it: when the last grant leaves.
        last
    }

    /// A grant of `units` at `at`, with `period` the window's length.
    pub(crate) fn granted(&mut self, at: Duration, period: Duration, units: f64) {
        self.prune(at, period);
        self.grants.push_back((at, units));
        self.sum += units;
    }

    /// Units given back (a refund): taken off the newest grants.
    pub(crate) fn refunded(&mut self, mut units: f64) {
        while units > 0.0 {
            let Some(last) = self.grants.back_mut() else {
                break;
            };
            let take = last.1.min(units);
            last.1 -= take;
            self.sum -= take;
            units -= take;
            if last.1 <= 0.0 {
                self.grants.pop_back();
            }
        }
    }

    /// The server counts `spent` units in its window now: the log follows,
    /// dropping its oldest grants (or adding what others spent).
    pub(crate) fn counted(&mut self, now: Duration, period: Duration, spent: f64) {
        self.prune(now, period);
        let mut extra = self.sum - spent.max(0.0);
        while extra > 0.0 {
            let Some(first) = self.grants.front_mut() else {
                break;
            };
            let take = first.1.min(extra);
            first.1 -= take;
            self.sum -= take;
            extra -= take;
            if first.1 <= 0.0 {
                self.grants.pop_front();
            }
        }
        if extra < -1.0 {
            self.granted(now, period, -extra);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn whole_requests_wait_for_the_oldest_to_leave() {
        let mut w = Window::default();
        assert_eq!(w.refuses(ms(0), S, 2970.0, 1027.0), None);
        w.granted(ms(0), S, 1027.0);
        assert_eq!(w.refuses(ms(100), S, 2970.0, 1027.0), None);
        w.granted(ms(100), S, 1027.0);
        // A third would make 3,081: it waits for the first to leave.
        assert_eq!(w.refuses(ms(200), S, 2970.0, 1027.0), Some(ms(1000)));
        assert_eq!(w.refuses(ms(1000), S, 2970.0, 1027.0), None);
        // As large as the cap: the bucket paces it.
        assert_eq!(w.refuses(ms(1000), S, 2970.0, 5000.0), None);
    }

    #[test]
    fn a_count_and_a_refund_correct_the_log() {
        let mut w = Window::default();
        w.granted(ms(0), S, 1000.0);
        w.granted(ms(10), S, 1000.0);
        w.refunded(900.0);
        assert!((w.sum - 1100.0).abs() < 1e-9);
        // The server counts 200 spent: the oldest go first.
        w.counted(ms(20), S, 200.0);
        assert!((w.sum - 200.0).abs() < 1e-9);
        assert_eq!(w.grants, [(ms(0), 100.0), (ms(10), 100.0)]);
        // It counts more than the log holds: others spent it, now.
        w.counted(ms(30), S, 700.0);
        assert!((w.sum - 700.0).abs() < 1e-9);
        assert_eq!(w.refuses(ms(40), S, 1000.0, 400.0), Some(ms(1000)));
    }
}
