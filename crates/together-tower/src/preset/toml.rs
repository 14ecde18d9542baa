//! Presets written in TOML.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use http::{Method, StatusCode};
use serde::Deserialize;
use tower_quota::Rate;

use super::{InvalidPreset, JobPreset, LearnPreset, Preset, RouteLimit};

impl Preset {
    /// Reads a preset from TOML; see the [module docs](crate::preset) for the format.
    pub fn from_toml(text: &str) -> Result<Self, InvalidPreset> {
        let file: PresetFile =
            ::toml::from_str(text).map_err(|e| InvalidPreset::new("toml", e.to_string()))?;
        let base = Preset::named(file.base.as_deref().unwrap_or("seed"))
            .map_err(|e| InvalidPreset::new("base", e.to_string()))?;
        base.apply(file)
    }

    /// Reads a preset from a TOML file (see [`from_toml`](Self::from_toml)).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Self, InvalidPreset> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| InvalidPreset::new(path.display().to_string(), e.to_string()))?;
        Self::from_toml(&text)
    }

    /// Applies TOML overrides to this preset (same format as
    /// [`from_toml`](Self::from_toml); `base` is not allowed here).
    pub fn merge_toml(self, text: &str) -> Result<Self, InvalidPreset> {
        let file: PresetFile =
            ::toml::from_str(text).map_err(|e| InvalidPreset::new("toml", e.to_string()))?;
        if file.base.is_some() {
            return Err(InvalidPreset::new(
                "base",
                "base only makes sense in Preset::from_toml",
            ));
        }
        self.apply(file)
    }

    fn apply(mut self, file: PresetFile) -> Result<Self, InvalidPreset> {
        if let Some(name) = file.name {
            self.name = name;
        }
        if let Some(text) = &file.max_hold {
            let max = tower_quota::parse_duration(text)
                .map_err(|e| InvalidPreset::new("max_hold", e.to_string()))?;
            self.max_hold = Some(max);
        }
        if let Some(m) = file.safety_margin {
            self.safety_margin = Some(m);
        }
        match file.charge.as_deref() {
            None => {}
            Some("estimate") => self.charging = tower_quota::Charging::Estimate,
            Some("reconciled") => self.charging = tower_quota::Charging::Reconciled,
            Some(other) => {
                return Err(InvalidPreset::new(
                    "charge",
                    format!("{other:?}: use \"estimate\" or \"reconciled\""),
                ));
            }
        }
        match file.learn {
            Some(false) => self.learn = None,
            Some(true) if self.learn.is_none() => self.learn = Some(LearnPreset::together()),
            _ => {}
        }
        if let Some(n) = file.embed_chunk_size {
            if n == 0 {
                return Err(InvalidPreset::new("embed_chunk_size", "must be above zero"));
            }
            self.embed_chunk_size = n;
        }
        for (kind, r) in file.routes {
            let entry = format!("routes.{kind}");
            let method = match &r.method {
                Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                    InvalidPreset::new(format!("{entry}.method"), format!("{m:?} is not a method"))
                })?,
                None => Method::POST,
            };
            let mut route = match (self.routes.remove(&kind), r.path) {
                (Some(mut old), path) => {
                    if let Some(p) = path {
                        old.path = p;
                    }
                    if r.method.is_some() {
                        old.method = method;
                    }
                    old
                }
                (None, Some(path)) => RouteLimit::new(method, path),
                (None, None) => {
                    return Err(InvalidPreset::new(
                        entry,
                        format!(
                            "a new route kind needs a path (e.g. path = \"/v1/rerank\"); \
                             the kinds this preset knows: {}",
                            self.routes.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            };
            let parse = |field: &str, text: &str| -> Result<Option<Rate>, InvalidPreset> {
                if text == "none" {
                    return Ok(None);
                }
                text.parse::<Rate>()
                    .map(Some)
                    .map_err(|e| InvalidPreset::new(format!("{entry}.{field}"), e.to_string()))
            };
            if let Some(t) = &r.requests {
                route.requests = parse("requests", t)?;
            }
            if let Some(t) = &r.tokens {
                route.tokens = parse("tokens", t)?.map(|r| r.with_unit("tokens"));
            }
            if let Some(t) = &r.images {
                route.images = parse("images", t)?.map(|r| r.with_unit("images"));
            }
            if let Some(t) = &r.max_wait {
                route.max_wait =
                    Some(tower_quota::parse_duration(t).map_err(|e| {
                        InvalidPreset::new(format!("{entry}.max_wait"), e.to_string())
                    })?);
            }
            self.routes.insert(kind, route);
        }
        for (model, kinds) in file.models {
            for (kind, text) in kinds {
                let r = text.parse::<Rate>().map_err(|e| {
                    InvalidPreset::new(format!("models.{model}.{kind}"), e.to_string())
                })?;
                self.models
                    .entry(model.clone())
                    .or_default()
                    .insert(kind, r);
            }
        }
        if let Some(j) = file.fine_tunes {
            self.fine_tunes = j.apply(self.fine_tunes, "fine_tunes")?;
        }
        if let Some(j) = file.batches {
            if let Some(n) = j.max_requests {
                if n == 0 {
                    return Err(InvalidPreset::new(
                        "batches.max_requests",
                        "must be above zero",
                    ));
                }
                self.batch_max_requests = n;
            }
            self.batches = j.apply(self.batches, "batches")?;
        }
        Ok(self)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresetFile {
    base: Option<String>,
    name: Option<String>,
    learn: Option<bool>,
    safety_margin: Option<f64>,
    max_hold: Option<String>,
    charge: Option<String>,
    embed_chunk_size: Option<usize>,
    #[serde(default)]
    routes: BTreeMap<String, RouteFile>,
    #[serde(default)]
    models: BTreeMap<String, BTreeMap<String, String>>,
    fine_tunes: Option<JobFile>,
    batches: Option<JobFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    method: Option<String>,
    path: Option<String>,
    requests: Option<String>,
    tokens: Option<String>,
    images: Option<String>,
    max_wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    cap: Option<u32>,
    path: Option<String>,
    list_array: Option<String>,
    create_job_pointer: Option<String>,
    terminal: Option<Vec<String>>,
    conflict_status: Option<u16>,
    max_requests: Option<usize>,
}

impl JobFile {
    fn apply(self, mut job: JobPreset, entry: &str) -> Result<JobPreset, InvalidPreset> {
        if let Some(path) = &self.path {
            let fresh = JobPreset::new(job.cap, path, &job.list_array, job.terminal.clone());
            job = JobPreset {
                create_job_pointer: job.create_job_pointer,
                conflict_status: job.conflict_status,
                ..fresh
            };
        }
        if let Some(cap) = self.cap {
            job.cap = NonZeroU32::new(cap)
                .ok_or_else(|| InvalidPreset::new(format!("{entry}.cap"), "must be above zero"))?;
        }
        if let Some(a) = self.list_array {
            job.list_array = a;
        }
        if let Some(p) = self.create_job_pointer {
            job.create_job_pointer = p;
        }
        if let Some(t) = self.terminal {
            if t.is_empty() {
                return Err(InvalidPreset::new(
                    format!("{entry}.terminal"),
                    "at least one terminal status is needed",
                ));
            }
            job.terminal = t;
        }
        if let Some(s) = self.conflict_status {
            job.conflict_status = StatusCode::from_u16(s).map_err(|_| {
                InvalidPreset::new(
                    format!("{entry}.conflict_status"),
                    format!("{s} is not a status"),
                )
            })?;
        }
        Ok(job)
    }
}
