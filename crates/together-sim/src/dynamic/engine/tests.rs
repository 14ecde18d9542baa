//! Unit tests of the dynamic rule, on a hand-driven clock.

use super::*;
use crate::dynamic::CapChange;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn admit(d: &Dynamic, model: &str, tokens: u64, t: Duration) -> Admission {
    d.admit("key-1", model, tokens, || t)
}

fn stats(d: &Dynamic, t: Duration) -> DynamicStats {
    d.snapshot(t).remove(0)
}

#[test]
fn base_then_refusal_until_the_oldest_leaves() {
    let d = Dynamic::new(
        DynamicLimits {
            base: 3.0,
            ..DynamicLimits::default()
        },
        1,
    );
    for i in 0..3 {
        assert!(matches!(
            admit(&d, "m", 1, ms(100 + i)),
            Admission::Accepted(_)
        ));
    }
    let Admission::Limited(Exceeded::Requests, view) = admit(&d, "m", 1, ms(300)) else {
        panic!("not limited");
    };
    assert_eq!(view.reset(), ms(800));
    assert_eq!(view.remaining, 0);
    // (t - 1 s, t] is half-open: the first leaves at exactly 1.1 s.
    assert!(matches!(
        admit(&d, "m", 1, ms(1099)),
        Admission::Limited(..)
    ));
    assert!(matches!(
        admit(&d, "m", 1, ms(1100)),
        Admission::Accepted(_)
    ));
    let s = stats(&d, ms(1100));
    assert_eq!((s.accepted, s.rejected, s.successes), (4, 2, 0));
    assert_eq!(s.max_accepted_in_1s_over_limit, 0);
}

#[test]
fn successes_raise_the_rate_up_to_the_cap() {
    let d = Dynamic::new(
        DynamicLimits {
            multiple: 2.0,
            window: Duration::from_secs(2),
            base: 1.0,
            cap: 5.0,
            ..DynamicLimits::default()
        },
        1,
    );
    let mut rates = Vec::new();
    for i in 0..20 {
        let t = ms(300 * i);
        if let Admission::Accepted(ticket) = admit(&d, "m", 1, t) {
            rates.push(ticket.succeed(&d, || t).rate);
        }
    }
    assert_eq!(rates[0], 1.0);
    assert!(rates.iter().all(|r| *r <= 5.0), "{rates:?}");
    assert_eq!(*rates.last().unwrap(), 5.0, "{rates:?}");
    // 2 x (successes in the last 2 s) / 2 s, read back from the stats.
    let s = stats(&d, ms(5700));
    assert_eq!(s.rate, 5.0);
    assert_eq!(stats(&d, ms(100_000)).rate, 1.0);
}

#[test]
fn capacity_503s_are_neither_accepted_nor_successes() {
    let d = Dynamic::new(
        DynamicLimits {
            base: 100.0,
            cap: 100.0,
            capacity_503: 1.0,
            ..DynamicLimits::default()
        },
        1,
    );
    let Admission::Capacity(view) = admit(&d, "m", 1, ms(1)) else {
        panic!("not a 503");
    };
    assert_eq!(view.remaining, 100);
    let s = stats(&d, ms(2));
    assert_eq!(
        (s.accepted, s.capacity_503, s.accepted_in_last_1s),
        (0, 1, 0)
    );
}

#[test]
fn tokens_refuse_but_one_large_request_passes_an_empty_window() {
    let d = Dynamic::new(
        DynamicLimits {
            base: 100.0,
            cap: 100.0,
            token_base: Some(20.0),
            token_cap: Some(50.0),
            ..DynamicLimits::default()
        },
        1,
    );
    assert!(matches!(admit(&d, "m", 15, ms(0)), Admission::Accepted(_)));
    let Admission::Limited(Exceeded::Tokens, view) = admit(&d, "m", 15, ms(200)) else {
        panic!("not token limited");
    };
    assert_eq!(view.reset(), ms(800));
    assert_eq!(view.tokens, Some((50.0, 20.0, 5)));
    assert!(matches!(
        admit(&d, "m", 500, ms(1000)),
        Admission::Accepted(_)
    ));
    let Admission::Limited(Exceeded::Tokens, view) = admit(&d, "m", 500, ms(1500)) else {
        panic!("not token limited");
    };
    assert_eq!(view.reset(), ms(500));
    assert_eq!(stats(&d, ms(1500)).rejected_tokens, 2);
}

#[test]
fn a_cap_drop_wins_over_the_base_and_waits_for_enough_to_leave() {
    let d = Dynamic::new(
        DynamicLimits {
            base: 4.0,
            cap: 4.0,
            cap_schedule: vec![CapChange {
                at: ms(500),
                cap: 2.0,
            }],
            ..DynamicLimits::default()
        },
        1,
    );
    for i in 0..4 {
        assert!(matches!(
            admit(&d, "m", 1, ms(i * 100)),
            Admission::Accepted(_)
        ));
    }
    // 4 in the window, 1 allowed before one more: 3 must leave, the
    // third at 1.2 s.
    let Admission::Limited(_, view) = admit(&d, "m", 1, ms(600)) else {
        panic!("not limited");
    };
    assert_eq!((view.cap, view.rate, view.reset()), (2.0, 2.0, ms(600)));
    assert!(matches!(
        admit(&d, "m", 1, ms(1200)),
        Admission::Accepted(_)
    ));
    assert!(matches!(
        admit(&d, "m", 1, ms(1250)),
        Admission::Limited(..)
    ));
}

#[test]
fn models_are_isolated_and_the_series_is_bounded() {
    let d = Dynamic::new(DynamicLimits::default(), 1);
    assert!(matches!(admit(&d, "a", 1, ms(0)), Admission::Accepted(_)));
    assert!(matches!(admit(&d, "a", 1, ms(1)), Admission::Limited(..)));
    assert!(matches!(admit(&d, "b", 1, ms(2)), Admission::Accepted(_)));
    for i in 0..(MAX_SAMPLES as u64 + 10) {
        admit(&d, "c", 1, SAMPLE_EVERY * (i as u32 + 1));
    }
    let s = d.snapshot(Duration::from_secs(10_000));
    assert_eq!(s.len(), 3);
    assert_eq!(s[2].series.len(), MAX_SAMPLES);
    assert_eq!(s[2].series_dropped, 10);
}

#[test]
fn numbers_are_compact() {
    assert_eq!(fmt_num(40.0), "40");
    assert_eq!(fmt_num(12.5), "12.5");
    assert_eq!(fmt_num(2.0 / 3.0), "0.667");
    assert_eq!(fmt_num(0.0), "0");
}
