//! Capped exponential backoff with jitter.

use std::time::Duration;

/// Backoff for retry number `n` (1 for the first retry):
///
/// ```text
/// delay(n) = min(base * 2^(n-1), cap) * (1 - jitter * r),   r uniform in [0, 1)
/// ```
///
/// With the defaults (base 0.5 s, cap 8 s, jitter 0.25, as the reference
/// SDKs do) the nominal delays are 0.5, 1, 2, 4, 8, 8... seconds, each
/// shortened by up to a quarter at random so callers that failed together
/// do not come back together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Backoff {
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) jitter: f64,
}

impl Backoff {
    pub(crate) const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(8),
        jitter: 0.25,
    };

    /// The nominal (jitter-free) delay before retry `n`.
    pub(crate) fn nominal(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay before retry `n`, `r` drawn uniformly from `[0, 1)`.
    pub(crate) fn delay(&self, n: u32, r: f64) -> Duration {
        self.nominal(n)
            .mul_f64((1.0 - self.jitter * r.clamp(0.0, 1.0)).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let b = Backoff::DEFAULT;
        let secs: Vec<f64> = (1..=7).map(|n| b.nominal(n).as_secs_f64()).collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(8));
        assert_eq!(b.nominal(0), Duration::from_millis(500));
    }

    #[test]
    fn jitter_shortens_by_at_most_the_fraction() {
        let b = Backoff::DEFAULT;
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(1750));
        assert!(b.delay(3, 0.999_999) > Duration::from_millis(1500));
        let none = Backoff { jitter: 0.0, ..b };
        assert_eq!(none.delay(2, 0.9), Duration::from_secs(1));
    }
}
