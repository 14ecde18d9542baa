//! The state file: the paces learned per model, saved while a run goes and
//! at its end, so that a resumed or next run starts where the last one
//! ended instead of probing up from Together's base again.
//!
//! ```json
//! {"version": 1, "saved_at_ms": 1764380000000, "base_url": "https://api.together.xyz",
//!  "time_scale": 1.0,
//!  "paces": [{"quota": "embeddings", "key": "BAAI/bge-large-en-v1.5",
//!             "per_second": 38.2, "source": "header"}]}
//! ```
//!
//! A state saved for another base URL or time scale, or older than
//! `--state-max-age`, is ignored (and said so). It holds no secret: keys
//! are model names (a header key would be a hash).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tower_quota::{PaceSource, RateLimitLayer};

const VERSION: u32 = 1;

/// Learned paces at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedState {
    version: u32,
    saved_at_ms: u64,
    base_url: String,
    time_scale: f64,
    paces: Vec<SavedPace>,
}

/// One cell's learned pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SavedPace {
    quota: String,
    key: Option<String>,
    per_second: f64,
    source: String,
}

/// The default state file: beside the output, `OUTPUT.state.json`.
pub(crate) fn default_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".state.json");
    output.with_file_name(name)
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl SavedState {
    /// The learned (not static, not start) paces of `layer` now.
    pub(crate) fn capture(layer: &RateLimitLayer, base_url: &str, time_scale: f64) -> Self {
        let paces = layer
            .snapshot()
            .cells
            .into_iter()
            .filter(|c| {
                matches!(
                    c.source,
                    PaceSource::Header | PaceSource::Probe | PaceSource::Saved
                )
            })
            .map(|c| SavedPace {
                quota: c.quota,
                key: c.key,
                per_second: c.pace,
                source: c.source.to_string(),
            })
            .collect();
        SavedState {
            version: VERSION,
            saved_at_ms: unix_ms(SystemTime::now()),
            base_url: base_url.to_owned(),
            time_scale,
            paces,
        }
    }

    /// Whether there is anything to save.
    pub(crate) fn is_empty(&self) -> bool {
        self.paces.is_empty()
    }

    /// Reads `path`. `Ok(None)` when there is no file; `Err` says why a file
    /// is not used (unreadable, another server, too old): a note, never fatal.
    pub(crate) fn load(
        path: &Path,
        base_url: &str,
        time_scale: f64,
        max_age: Duration,
    ) -> Result<Option<Self>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read the state {}: {e}", path.display())),
        };
        let state: SavedState = serde_json::from_str(&text).map_err(|e| {
            format!(
                "the state {} is not readable ({e}): ignored",
                path.display()
            )
        })?;
        if state.version != VERSION {
            return Err(format!(
                "the state {} has version {}: ignored",
                path.display(),
                state.version
            ));
        }
        if state.base_url != base_url || state.time_scale != time_scale {
            return Err(format!(
                "the state {} was learned from {} (x{}): ignored",
                path.display(),
                state.base_url,
                state.time_scale
            ));
        }
        let age =
            Duration::from_millis(unix_ms(SystemTime::now()).saturating_sub(state.saved_at_ms));
        if age > max_age {
            return Err(format!(
                "the state {} is {:.0} s old (more than --state-max-age {:.0} s): ignored",
                path.display(),
                age.as_secs_f64(),
                max_age.as_secs_f64()
            ));
        }
        Ok(Some(state))
    }

    /// Starts `layer`'s cells at the saved paces; how many it took.
    pub(crate) fn apply(&self, layer: &RateLimitLayer) -> usize {
        self.paces
            .iter()
            .filter(|p| layer.seed_pace(&p.quota, p.key.as_deref(), p.per_second))
            .count()
    }

    /// Writes the state to `path` whole (a temporary file renamed over it).
    pub(crate) fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("cannot write the state {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(base_url: &str, saved_at_ms: u64) -> SavedState {
        SavedState {
            version: VERSION,
            saved_at_ms,
            base_url: base_url.to_owned(),
            time_scale: 1.0,
            paces: vec![SavedPace {
                quota: "embeddings".into(),
                key: Some("m".into()),
                per_second: 12.5,
                source: "header".into(),
            }],
        }
    }

    #[test]
    fn a_state_round_trips_and_is_refused_when_stale_or_foreign() {
        let dir = std::env::temp_dir().join(format!("tb-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl.state.json");
        assert_eq!(default_path(&dir.join("out.jsonl")), path);
        let day = Duration::from_secs(86_400);
        assert_eq!(SavedState::load(&path, "http://a", 1.0, day), Ok(None));

        let fresh = state("http://a", unix_ms(SystemTime::now()));
        fresh.save(&path).unwrap();
        assert_eq!(
            SavedState::load(&path, "http://a", 1.0, day),
            Ok(Some(fresh))
        );
        let err = SavedState::load(&path, "http://b", 1.0, day).unwrap_err();
        assert!(err.contains("learned from http://a"), "{err}");
        assert!(SavedState::load(&path, "http://a", 10.0, day).is_err());

        state("http://a", unix_ms(SystemTime::now()) - 7_200_000)
            .save(&path)
            .unwrap();
        let err = SavedState::load(&path, "http://a", 1.0, Duration::from_secs(3600)).unwrap_err();
        assert!(err.contains("old"), "{err}");

        std::fs::write(&path, "{not json").unwrap();
        assert!(SavedState::load(&path, "http://a", 1.0, day).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
