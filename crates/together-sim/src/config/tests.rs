use std::time::Duration;

use super::*;

#[test]
fn debug_never_shows_api_keys() {
    let config = SimConfig {
        api_keys: vec!["sk-very-secret".into()],
        ..SimConfig::default()
    };
    let text = format!("{config:?}");
    assert!(!text.contains("sk-very-secret"), "{text}");
    assert!(text.contains("[1 redacted]"), "{text}");
}

#[test]
fn parses_rates() {
    let r: Rate = "600/min".parse().unwrap();
    assert_eq!(r.window(true), (Duration::from_secs(1), 10));
    assert_eq!(r.window(false), (Duration::from_secs(60), 600));
    let r: Rate = "180000 tokens/min".parse().unwrap();
    assert_eq!(r.window(true), (Duration::from_secs(1), 3000));
    let r: Rate = "10/s".parse().unwrap();
    assert_eq!(r.window(true), (Duration::from_secs(1), 10));
    let r: Rate = "100/10s".parse().unwrap();
    assert_eq!(r.per(), Duration::from_secs(10));
    let r: Rate = "9/min".parse().unwrap();
    assert_eq!(r.window(true), (Duration::from_nanos(6_666_666_666), 1));
    let r: Rate = "90/min".parse().unwrap();
    assert_eq!(r.window(true), (Duration::from_nanos(1_333_333_333), 2));
    let r: Rate = "60/h".parse().unwrap();
    assert_eq!(r.window(true), (Duration::from_secs(60), 1));
    assert!("abc".parse::<Rate>().is_err());
    assert!("0/min".parse::<Rate>().is_err());
    assert!("5/fortnight".parse::<Rate>().is_err());
}

#[test]
fn parses_durations() {
    assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("2min").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("x").is_err());
}

#[test]
fn empty_toml_is_default() {
    assert_eq!(SimConfig::from_toml_str("").unwrap(), SimConfig::default());
    assert!(SimConfig::from_toml_str("time_scale = 0.0").is_err());
    assert!(SimConfig::from_toml_str("nonsense = 1").is_err());
}

#[test]
fn full_toml() {
    let c = SimConfig::from_toml_str(
        r#"
        mode = "gcra"
        [headers]
        retry_after = "http-date"
        [fine_tunes]
        max_concurrent = 2
        running = "300ms"
        [[faults.rules]]
        kind = "503"
        from = 5
        to = 8
        route = "/v1/chat/completions"
        [[faults.rules]]
        kind = "latency"
        latency = "10ms"
        jitter = "5ms"
        probability = 0.5
        "#,
    )
    .unwrap();
    assert_eq!(c.mode, Mode::Gcra);
    assert_eq!(c.headers.retry_after, RetryAfter::HttpDate);
    assert_eq!(c.fine_tunes.running, Duration::from_millis(300));
    assert_eq!(c.faults.rules[0].kind, FaultKind::Overloaded);
    assert_eq!(c.faults.rules[1].jitter, Duration::from_millis(5));
}
