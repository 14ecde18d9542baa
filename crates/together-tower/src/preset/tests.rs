use std::num::NonZeroU32;
use std::time::Duration;

use tower_quota::RateHeaders;

use super::*;

fn rate(text: &str) -> Rate {
    text.parse().unwrap()
}

#[test]
fn together_learns_per_model_on_every_inference_route() {
    let limits = Preset::together().limits().unwrap();
    let routes = limits.routes();
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/images/generations",
        "/v1/rerank",
    ] {
        let (_, quotas) = routes
            .iter()
            .find(|(name, _)| name == &format!("POST {path}"))
            .unwrap_or_else(|| panic!("{path} has a route"));
        assert!(!quotas.is_empty());
    }
    for row in limits.table() {
        assert!(row.keyed, "{} is keyed by model", row.quota);
        let (floor, ceiling) = row.learned.expect("learned");
        if row.quota.ends_with(".tokens") {
            assert_eq!((floor, ceiling), (100.0, 1_000_000.0), "{}", row.quota);
            assert_eq!(row.rate.per_second_f64(), 1000.0);
        } else {
            assert_eq!((floor, ceiling), (0.1, 1000.0), "{}", row.quota);
            assert_eq!(row.rate.per_second_f64(), 1.0);
        }
    }
    // A pinned model is static; the tiers stay static; base "together" in TOML.
    let pinned = Preset::together().model_limit("m", "chat", rate("9/min"));
    let table = pinned.limits().unwrap().table();
    let pin = table.iter().find(|r| r.quota == "chat[m]").unwrap();
    assert_eq!(pin.learned, None);
    assert!(
        Preset::tier(Tier::Tier1)
            .limits()
            .unwrap()
            .table()
            .iter()
            .all(|r| r.learned.is_none())
    );
    let from_toml = Preset::from_toml("base = \"together\"").unwrap();
    assert_eq!(from_toml.learning(), Some(&LearnPreset::together()));
    let pinned = Preset::from_toml("base = \"openai\"\nlearn = false").unwrap();
    assert_eq!(pinned.learning(), None);
    let learned_tier = Preset::from_toml("base = \"tier1\"\nlearn = true").unwrap();
    assert_eq!(learned_tier.learning(), Some(&LearnPreset::together()));
    // Time-scaled: the bounds scale, the ramp window shrinks.
    let fast = Preset::together().time_scaled(10.0).limits().unwrap();
    let chat = fast
        .table()
        .into_iter()
        .find(|r| r.quota == "chat")
        .unwrap();
    assert_eq!(chat.learned, Some((1.0, 10_000.0)));
    assert_eq!(chat.rate.per_second_f64(), 10.0);
    let learn = Preset::together()
        .time_scaled(10.0)
        .learning()
        .cloned()
        .unwrap();
    assert_eq!(learn.request_headers.per(), Duration::from_millis(100));
    assert_eq!(learn.ramp_window, Duration::from_secs(1));
}

#[test]
fn openai_learns_from_openai_headers() {
    let learn = Preset::openai().learning().cloned().unwrap();
    assert_eq!(learn.request_headers, RateHeaders::openai_requests());
    assert_eq!(learn.token_headers, RateHeaders::openai_tokens());
    assert!(
        Preset::openai()
            .with_learning(None)
            .limits()
            .unwrap()
            .table()
            .iter()
            .all(|r| r.learned.is_none())
    );
}

#[test]
fn seed_table() {
    let p = Preset::seed();
    let rows = p.limits().unwrap().table();
    let find = |q: &str| rows.iter().find(|r| r.quota == q).unwrap().rate.to_string();
    assert_eq!(find("chat"), "600/min");
    assert_eq!(find("chat.tokens"), "180000 tokens/min");
    assert_eq!(find("embeddings"), "300/min");
    assert_eq!(find("images.images"), "60 images/min");
    assert_eq!(p.fine_tunes().cap().get(), 3);
    assert_eq!(p.batches().cap().get(), 10);
    assert_eq!(p.batch_max_requests(), 100);
    assert_eq!(p.embed_inputs_per_request(), 20);
    // Paced per second: one request every 100 ms (plus the 1% margin), burst 1.
    let chat = rows.iter().find(|r| r.quota == "chat").unwrap();
    assert_eq!(chat.burst.get(), 1);
    assert!(chat.interval > Duration::from_millis(100));
    assert!(chat.interval < Duration::from_millis(102));
}

#[test]
fn tiers() {
    let t1 = Preset::tier(Tier::Tier1);
    assert_eq!(
        t1.route_limit("chat")
            .unwrap()
            .token_rate()
            .unwrap()
            .to_string(),
        "180000 tokens/min"
    );
    let t5 = Preset::tier(Tier::Tier5);
    assert_eq!(
        t5.route_limit("embeddings")
            .unwrap()
            .request_rate()
            .unwrap()
            .to_string(),
        "10000/min"
    );
    assert_eq!(
        t5.route_limit("images")
            .unwrap()
            .image_rate()
            .unwrap()
            .to_string(),
        "50 images/min"
    );
    let free = Preset::tier(Tier::Free);
    assert_eq!(
        free.route_limit("chat")
            .unwrap()
            .request_rate()
            .unwrap()
            .to_string(),
        "60/min"
    );
    assert_eq!(free.name(), "free");
}

#[test]
fn model_overrides_make_a_keyed_quota() {
    let p = Preset::seed().model_limit("black-forest-labs/FLUX.1-schnell", "images", rate("9/min"));
    let limits = p.limits().unwrap();
    let rows = limits.table();
    assert!(
        rows.iter().any(
            |r| r.quota == "images.model[black-forest-labs/FLUX.1-schnell]"
                && r.rate.to_string() == "9/min"
        ),
        "{rows:?}"
    );
    let routes = limits.routes();
    let images = routes
        .iter()
        .find(|(n, _)| n == "POST /v1/images/generations")
        .unwrap();
    assert_eq!(images.1, ["images.images", "images.model"]);
}

#[test]
fn toml_overrides_and_errors() {
    let p = Preset::seed()
        .merge_toml("[routes.chat]\nrequests = \"60/min\"\ntokens = \"none\"\n[fine_tunes]\ncap = 1\nterminal = [\"done\"]")
        .unwrap();
    assert_eq!(
        p.route_limit("chat")
            .unwrap()
            .request_rate()
            .unwrap()
            .to_string(),
        "60/min"
    );
    assert!(p.route_limit("chat").unwrap().token_rate().is_none());
    assert_eq!(p.fine_tunes().cap().get(), 1);
    assert!(p.fine_tunes().is_terminal("done"));
    for (bad, entry) in [
        ("[routes.chat]\nrequests = \"lots\"", "routes.chat.requests"),
        ("[routes.new]\nrequests = \"1/s\"", "routes.new"),
        ("base = \"tier9\"", "base"),
        ("[fine_tunes]\ncap = 0", "fine_tunes.cap"),
        ("typo = 1", "toml"),
    ] {
        let err = Preset::from_toml(bad).unwrap_err();
        assert_eq!(err.entry(), entry, "{bad}: {err}");
    }
}

#[test]
fn time_scaling_keeps_units() {
    let p = Preset::seed().time_scaled(10.0);
    let chat = p.route_limit("chat").unwrap();
    assert_eq!(chat.request_rate().unwrap().to_string(), "6000/min");
    assert_eq!(chat.token_rate().unwrap().to_string(), "1800000 tokens/min");
    assert!(p.limits().is_ok());
}

#[test]
fn openai_preset_builds() {
    let p = Preset::openai();
    assert!(p.fine_tunes().is_terminal("succeeded"));
    assert_eq!(p.fine_tunes().path(), "/v1/fine_tuning/jobs");
    p.limits().unwrap();
    p.job_limit().build().unwrap();
    Preset::seed().job_limit().build().unwrap();
}

#[test]
fn retry_classes_come_from_the_preset() {
    use tower_retry_after::RequestClass::{CreatesResource, Idempotent};
    let class = |p: &Preset, path: &str| {
        p.retry_classes()
            .into_iter()
            .find(|(_, pattern, _)| pattern == path)
            .map(|(_, _, class)| class)
    };
    let together = Preset::together();
    assert_eq!(class(&together, "/v1/chat/completions"), Some(Idempotent));
    assert_eq!(class(&together, "/v1/rerank"), Some(Idempotent));
    assert_eq!(class(&together, "/v1/fine-tunes"), Some(CreatesResource));
    assert_eq!(class(&together, "/v1/batches"), Some(CreatesResource));
    // A route the preset adds is inference; a job path it moves is creating.
    let custom = Preset::empty("x")
        .route(
            "classify",
            RouteLimit::new(Method::POST, "/v2/classify").requests(rate("10/s")),
        )
        .with_fine_tunes(JobPreset::new(
            NonZeroU32::MIN,
            "/v2/tunes",
            "/data",
            FINE_TUNE_TERMINAL,
        ));
    assert_eq!(class(&custom, "/v2/classify"), Some(Idempotent));
    assert_eq!(class(&custom, "/v2/tunes"), Some(CreatesResource));
    assert!(custom.retry_policy().build().is_ok());
}

#[test]
fn tiers_read_the_same_everywhere() {
    for text in ["tier-1", "tier1", "Tier 1", "1"] {
        assert_eq!(Preset::named(text).unwrap().name(), "tier1", "{text}");
        let toml = format!("base = {text:?}");
        assert_eq!(Preset::from_toml(&toml).unwrap().name(), "tier1", "{text}");
    }
    assert_eq!("free".parse::<Tier>().unwrap(), Tier::Free);
    let err = Preset::from_toml("base = \"tier-9\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("tier1 .. tier5"), "{err}");
}

#[test]
fn a_misspelled_route_kind_lists_the_known_ones() {
    let err = Preset::from_toml("base = \"seed\"\n[routes.chats]\nrequests = \"1/s\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs a path"), "{err}");
    assert!(err.contains("chat, completions, embeddings"), "{err}");
}
