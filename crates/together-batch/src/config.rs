//! Where the limits come from (a preset, a tier, a TOML file), the
//! `[batch]` section of that file, and the table `together-batch limits` prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use together_tower::Preset;
use tower_quota::{LimitRow, Limits};

/// The `[batch]` table of a limits file: this CLI's own settings, cut out
/// before the rest is read as a together-tower preset.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchSection {
    /// `redis = "redis://127.0.0.1:6379/"`: share the quotas through Redis.
    pub(crate) redis: Option<String>,
    /// `processes = 4`: how many processes share the key.
    pub(crate) processes: Option<u32>,
}

/// The limits in force: the preset and the file's `[batch]` section.
#[derive(Debug, Clone)]
pub(crate) struct LimitsSource {
    pub(crate) preset: Preset,
    pub(crate) batch: BatchSection,
    /// Where the preset came from, for the summary.
    pub(crate) origin: String,
}

/// Splits a limits file into its `[batch]` table and the preset text.
///
/// The preset reader refuses unknown tables, so the `[batch]` table (from its
/// header to the next table header) is cut out of the text first.
pub(crate) fn split_batch_section(text: &str) -> Result<(BatchSection, String), String> {
    let mut preset = String::new();
    let mut batch = String::new();
    let mut in_batch = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            let header = t
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            in_batch = header == "batch";
            if in_batch {
                preset.push('\n');
                batch.push('\n');
                continue;
            }
        }
        // Each part keeps every line, blank where it is the other's, so
        // errors name the line of the file.
        let (target, other) = if in_batch {
            (&mut batch, &mut preset)
        } else {
            (&mut preset, &mut batch)
        };
        target.push_str(line);
        target.push('\n');
        other.push('\n');
    }
    let section: BatchSection =
        toml::from_str(&batch).map_err(|e| format!("[batch] table: {e}"))?;
    Ok((section, preset))
}

/// Loads `--limits FILE` or `--tier NAME` (default: the seed preset).
pub(crate) fn load(limits: Option<&Path>, tier: Option<&str>) -> Result<LimitsSource, String> {
    match (limits, tier) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the limits file {}: {e}", path.display()))?;
            let (batch, preset_text) = split_batch_section(&text)
                .map_err(|e| format!("limits file {}: {e}", path.display()))?;
            let preset = Preset::from_toml(&preset_text)
                .map_err(|e| format!("limits file {}: {e}", path.display()))?;
            Ok(LimitsSource {
                preset,
                batch,
                origin: format!("file {}", path.display()),
            })
        }
        (None, Some(name)) => Ok(LimitsSource {
            preset: Preset::named(name).map_err(|e| e.to_string())?,
            batch: BatchSection::default(),
            origin: format!("tier {name}"),
        }),
        (None, None) => Ok(LimitsSource {
            preset: Preset::together(),
            batch: BatchSection::default(),
            origin: "the default: learned per model from the server".to_owned(),
        }),
    }
}

/// The request quota of each route, by route name (`POST /v1/embeddings`),
/// in requests per second: the
/// slowest static one (a learned quota has no fixed rate).
pub(crate) fn route_rates(limits: &Limits) -> BTreeMap<String, f64> {
    request_quotas(limits)
        .into_iter()
        .filter_map(|(path, quotas)| {
            let rate = quotas
                .iter()
                .filter(|row| row.learned.is_none())
                .map(|row| row.rate.per_second_f64())
                .reduce(f64::min)?;
            Some((path, rate))
        })
        .collect()
}

/// The learned request quota of each route, by route name: its name.
pub(crate) fn learned_request_quotas(limits: &Limits) -> BTreeMap<String, String> {
    request_quotas(limits)
        .into_iter()
        .filter_map(|(path, quotas)| {
            let row = quotas.into_iter().find(|row| row.learned.is_some())?;
            Some((path, row.quota))
        })
        .collect()
}

/// The quotas counting requests (no unit) of each route, by route name.
fn request_quotas(limits: &Limits) -> BTreeMap<String, Vec<LimitRow>> {
    let table = limits.table();
    let mut out = BTreeMap::new();
    for (route, quotas) in limits.routes() {
        let rows = quotas
            .iter()
            .filter_map(|q| table.iter().find(|row| &row.quota == q))
            .filter(|row| row.rate.unit().is_none())
            .cloned()
            .collect();
        out.insert(route, rows);
    }
    out
}

/// The table `together-batch limits` prints.
pub(crate) fn render_table(source: &LimitsSource, limits: &Limits, time_scale: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "limits: preset {:?} from {}{}",
        source.preset.name(),
        source.origin,
        if time_scale == 1.0 {
            String::new()
        } else {
            format!(", time-scaled x{time_scale}")
        }
    );
    let _ = writeln!(
        out,
        "safety margin: {:.1}% under each rate",
        limits.safety_margin() * 100.0
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<28} {:<24} {:>6} {:>14}  keyed",
        "quota", "rate", "burst", "paced every"
    );
    for row in limits.table() {
        let rate = match row.learned {
            Some((floor, ceiling)) => format!(
                "learned from {} ({}..{}/s)",
                row.rate,
                short_number(floor),
                short_number(ceiling)
            ),
            None => row.rate.to_string(),
        };
        let _ = writeln!(
            out,
            "{:<28} {:<24} {:>6} {:>14}  {}",
            row.quota,
            rate,
            row.burst,
            format!("{:.3?}", row.interval),
            if row.keyed { "yes" } else { "no" }
        );
    }
    if limits.table().iter().any(|r| r.learned.is_some()) {
        let _ = writeln!(
            out,
            "\nlearned quotas start at the rate shown and follow the server's rate headers \
             (or probe when there are none), per model; --tier or --limits pin static rates"
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<40} quotas", "route");
    for (route, quotas) in limits.routes() {
        let _ = writeln!(out, "{:<40} {}", route, quotas.join(", "));
    }
    if let Some(url) = &source.batch.redis {
        let _ = writeln!(
            out,
            "\nshared through Redis at {} by {} process(es)",
            redact_url(url),
            source.batch.processes.unwrap_or(1)
        );
    }
    out
}

/// How long a request may take from its first attempt, by default.
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(1800);

/// How long and how much one request may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    /// One attempt, head and body.
    pub(crate) attempt: Duration,
    /// Between two chunks of a body.
    pub(crate) idle: Duration,
    /// From the first attempt to the answer, retries and holds included.
    pub(crate) deadline: Duration,
    /// The longest a server's hint holds a route (and a retry waits).
    pub(crate) max_hold: Duration,
    /// The largest response read.
    pub(crate) max_response_bytes: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            attempt: together_tower::DEFAULT_TIMEOUT,
            idle: together_tower::body::DEFAULT_IDLE_TIMEOUT,
            deadline: DEFAULT_DEADLINE,
            max_hold: tower_quota::DEFAULT_MAX_HOLD,
            max_response_bytes: together_tower::body::DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// The bounds `together-batch limits` prints under the table.
pub(crate) fn render_bounds(bounds: &Bounds, limits: &Limits) -> String {
    format!(
        "\nper request: {:?} per attempt (head and body), {:?} between body chunks, \
         {:?} in all from the first attempt (retries included), {} MiB per answer; \
         a server's hint holds a route {:?} at most\n",
        bounds.attempt,
        bounds.idle,
        bounds.deadline,
        bounds.max_response_bytes >> 20,
        limits.max_hold()
    )
}

/// `12`, `0.1`, `1000000`: a number without needless decimals.
pub(crate) fn short_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_owned()
    }
}

/// A URL with any password replaced, for printing.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://<redacted>@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_parse_in_every_spelling() {
        let tier = |name: &str| load(None, Some(name)).map(|s| s.preset.name().to_owned());
        assert_eq!(tier("tier-1").unwrap(), "tier1");
        assert_eq!(tier("Tier2").unwrap(), "tier2");
        assert_eq!(tier("free").unwrap(), "free");
        assert_eq!(tier("seed").unwrap(), "seed");
        assert!(tier("tier-9").unwrap_err().contains("tier5"));
    }

    #[test]
    fn the_batch_table_is_cut_out_of_the_preset() {
        let text = "base = \"seed\"\n[batch]\nredis = \"redis://h:1/\"\nprocesses = 4\n\
                    [routes.chat]\nrequests = \"60/s\"\n";
        let (batch, preset) = split_batch_section(text).unwrap();
        assert_eq!(batch.redis.as_deref(), Some("redis://h:1/"));
        assert_eq!(batch.processes, Some(4));
        let preset = Preset::from_toml(&preset).unwrap();
        assert_eq!(
            preset
                .route_limit("chat")
                .unwrap()
                .request_rate()
                .unwrap()
                .per_second_f64(),
            60.0
        );
        let err = split_batch_section("base = \"seed\"\n\n[batch]\nredis = 1\n").unwrap_err();
        assert!(err.contains("line 4"), "the file's line: {err}");
    }

    #[test]
    fn route_rates_are_the_request_quotas() {
        let rates = route_rates(&Preset::seed().limits().unwrap());
        assert_eq!(rates["POST /v1/chat/completions"], 10.0);
        assert_eq!(rates["POST /v1/embeddings"], 5.0);
    }

    #[test]
    fn learned_routes_have_no_fixed_rate() {
        let limits = Preset::together().limits().unwrap();
        assert!(route_rates(&limits).is_empty());
        let learned = learned_request_quotas(&limits);
        assert_eq!(learned["POST /v1/embeddings"], "embeddings");
        assert_eq!(learned["POST /v1/chat/completions"], "chat");
        let source = load(None, None).unwrap();
        assert_eq!(source.preset.name(), "together");
        let table = render_table(&source, &limits, 1.0);
        assert!(
            table.contains("learned from 60/min (0.1..1000/s)"),
            "{table}"
        );
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("redis://:pw@127.0.0.1:6379/"),
            "redis://<redacted>@127.0.0.1:6379/"
        );
        assert_eq!(redact_url("redis://h/"), "redis://h/");
    }
}
