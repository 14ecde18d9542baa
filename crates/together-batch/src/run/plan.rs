//! Planning a run before anything is sent: read the input, skip what the
//! output already answers, group the rest by the route that paces it, and
//! say what was found (a torn line, removed failures, a saved pace).

use std::collections::HashMap;

use serde_json::{Value, json};
use tower_quota::{Limits, RateLimitLayer};

use super::options::RunOptions;
use super::source::{Indexed, JobRef};
use crate::input::{Entry, id_hash};
use crate::output::Previous;
use crate::state::SavedState;

/// The jobs of one route, in input order.
pub(crate) struct RouteJobs {
    /// The route that paces them (`POST /v1/embeddings`), or `METHOD path`
    /// when no route does.
    pub(crate) route: String,
    /// Whether a route of the limits paces them.
    pub(crate) paced: bool,
    pub(crate) jobs: Vec<JobRef>,
}

/// What a run will do.
pub(crate) struct Plan {
    /// Non-blank input lines.
    pub(crate) lines: u64,
    /// Lines the output already answers.
    pub(crate) skipped: u64,
    /// The output lines of malformed input lines.
    pub(crate) bad: Vec<Value>,
    /// The jobs to send, by route, routes in order of first appearance
    /// (taken by the feeders).
    pub(crate) routes: Vec<RouteJobs>,
    /// Requests to send plus bad lines to record.
    pub(crate) total: u64,
}

/// Reads the input once and indexes it; fails before anything is sent.
pub(crate) fn read_input(opts: &RunOptions) -> Result<Indexed, String> {
    let cannot = |e: std::io::Error| {
        format!(
            "cannot read the input {}: {e} (nothing was sent)",
            opts.input.display()
        )
    };
    super::source::index(&opts.input, opts.endpoint.as_deref()).map_err(cannot)?
}

/// The route a request is paced by, as the report names it, and whether one is.
pub(crate) fn route_of(limits: &Limits, method: &http::Method, path: &str) -> (String, bool) {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    match limits.route_name(method, path) {
        Some(name) => (name.to_owned(), true),
        None => (format!("{method} {path}"), false),
    }
}

/// The routes no quota paces, to warn about (or refuse with `--strict`).
pub(crate) fn unpaced(plan: &Plan) -> Option<String> {
    let names: Vec<String> = plan
        .routes
        .iter()
        .filter(|r| !r.paced)
        .map(|r| format!("{} ({} line(s))", r.route, r.jobs.len()))
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "no quota paces {}: those lines go out as fast as --max-in-flight allows \
             (check their url; --strict refuses to start instead)",
            names.join(", ")
        )
    })
}

/// Fails now if a report cannot be written later, or would be written
/// over the input, the output or the state file.
pub(crate) fn check_report_paths(opts: &RunOptions) -> Result<(), String> {
    for path in &opts.reports {
        let taken = [
            ("the input", Some(&opts.input)),
            ("the output", Some(&opts.output)),
            ("the state file", opts.state.as_ref()),
        ];
        for (what, other) in taken {
            if other.is_some_and(|other| same_file(path, other)) {
                return Err(format!(
                    "--report {} is {what}: choose another name (nothing was sent)",
                    path.display()
                ));
            }
        }
        check_writable(path)?;
    }
    Ok(())
}

/// Whether two paths name the same file, whether or not it exists yet
/// (its directory resolved, links followed).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    let resolve = |p: &std::path::Path| {
        std::fs::canonicalize(p).ok().or_else(|| {
            let parent = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            Some(std::fs::canonicalize(parent).ok()?.join(p.file_name()?))
        })
    };
    match (resolve(a), resolve(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn check_writable(path: &std::path::Path) -> Result<(), String> {
    let existed = path.exists();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| {
            format!(
                "cannot write the report {}: {e} (nothing was sent)",
                path.display()
            )
        })?;
    if !existed {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// Skips what `prev` answers and groups the rest by route.
pub(crate) fn partition(input: Indexed, prev: &Previous, limits: &Limits) -> Plan {
    let answered = |id: &str| prev.answered.contains_key(&id_hash(id));
    let mut skipped = 0;
    let mut bad = Vec::new();
    for entry in input.bad {
        if entry.custom_id().is_some_and(answered) {
            skipped += 1;
            continue;
        }
        if let Entry::Bad {
            custom_id,
            line,
            method,
            url,
            message,
        } = entry
        {
            bad.push(json!({
                "custom_id": custom_id,
                "line": line,
                "method": method,
                "url": url,
                "status": null,
                "attempts": 0,
                "started_at_ms": null,
                "elapsed_ms": null,
                "reached_server": false,
                "error": {"status": null, "type": "invalid_input", "message": message},
            }));
        }
    }
    // Each target's route, routes in order of first appearance.
    let mut routes: Vec<RouteJobs> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let of_target: Vec<usize> = input
        .targets
        .iter()
        .map(|(method, path)| {
            let (route, paced) = route_of(limits, method, path);
            *index.entry(route.clone()).or_insert_with(|| {
                routes.push(RouteJobs {
                    route,
                    paced,
                    jobs: Vec::new(),
                });
                routes.len() - 1
            })
        })
        .collect();
    for job in input.jobs {
        if prev.answered.contains_key(&job.id) {
            skipped += 1;
            continue;
        }
        routes[of_target[job.target as usize]].jobs.push(job);
    }
    routes.retain(|r| !r.jobs.is_empty());
    let total = routes.iter().map(|r| r.jobs.len() as u64).sum::<u64>() + bad.len() as u64;
    Plan {
        lines: input.lines,
        skipped,
        bad,
        routes,
        total,
    }
}

/// The bad input lines to show on screen: the first few, then a count.
pub(crate) fn bad_line_notes(plan: &Plan) -> Vec<String> {
    const SHOWN: usize = 5;
    let message = |v: &Value| v["error"]["message"].as_str().unwrap_or("").to_owned();
    let mut notes: Vec<String> = plan.bad.iter().take(SHOWN).map(message).collect();
    if plan.bad.len() > SHOWN {
        notes.push(format!(
            "... and {} more bad input line(s) (each recorded in the output)",
            plan.bad.len() - SHOWN
        ));
    }
    notes
}

/// Why a resumed run refuses to start: the input's requests changed for
/// custom_ids the output already answers.
pub(crate) fn changed_message(changed: &[String], opts: &RunOptions) -> String {
    let shown: Vec<&str> = changed.iter().take(5).map(String::as_str).collect();
    format!(
        "{} custom_id(s) of {} have another request in the input than the one answered in {} \
         ({}{}): bare bodies take their line number as custom_id, so an inserted line shifts \
         them; give each line a custom_id, or pass --on-change resend to send the changed ones \
         again (nothing was sent)",
        changed.len(),
        opts.input.display(),
        opts.output.display(),
        shown.join(", "),
        if changed.len() > shown.len() {
            ", ..."
        } else {
            ""
        }
    )
}

/// What resuming found in the output, to say before sending.
pub(crate) fn resume_notes(prev: &Previous, opts: &RunOptions) -> Vec<String> {
    let output = opts.output.display();
    let mut notes = Vec::new();
    if prev.unsent > 0 {
        notes.push(format!(
            "{} line(s) of {output} failed without reaching a server (refused connection, \
             bad configuration): sending them again",
            prev.unsent
        ));
    }
    if prev.failed_earlier > 0 {
        notes.push(format!(
            "{} line(s) failed earlier: run with --retry-failed to send them again",
            prev.failed_earlier
        ));
    }
    if prev.torn_bytes > 0 {
        notes.push(format!(
            "cut a torn last line ({} bytes) from {output}: its request will be sent again",
            prev.torn_bytes
        ));
    }
    if prev.dropped_failures > 0 {
        notes.push(format!(
            "--retry-failed: {} failed line(s) removed from the output, sending them again",
            prev.dropped_failures
        ));
    }
    if prev.unreadable > 0 {
        notes.push(format!(
            "{} line(s) of {output} are not results and were removed",
            prev.unreadable
        ));
    }
    notes
}

/// Starts the learned paces where the last run left them, if a state file
/// says so; what happened, to say before sending.
pub(crate) fn restore_paces(opts: &RunOptions, quota: &RateLimitLayer) -> Option<String> {
    let path = opts.state.as_ref()?;
    match SavedState::load(path, &opts.base_url, opts.time_scale, opts.state_max_age) {
        Ok(Some(saved)) => {
            let n = saved.apply(quota);
            (n > 0).then(|| {
                format!(
                    "starting {n} learned pace(s) where the last run left them ({})",
                    path.display()
                )
            })
        }
        Ok(None) => None,
        Err(note) => Some(note),
    }
}

/// Saves the learned paces to the state file, if there is one and anything
/// was learned; a failure to save, to say.
pub(crate) fn save_paces(opts: &RunOptions, quota: &RateLimitLayer) -> Option<String> {
    let path = opts.state.as_ref()?;
    let state = SavedState::capture(quota, &opts.base_url, opts.time_scale);
    if state.is_empty() {
        return None;
    }
    state.save(path).err()
}

#[cfg(test)]
mod tests {
    use super::same_file;

    #[test]
    fn the_same_file_is_found_by_any_path_existing_or_not() {
        let dir = std::env::temp_dir().join(format!("tb-same-file-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let out = dir.join("out.jsonl");
        // Not there yet: the directory decides.
        assert!(same_file(
            &out,
            &dir.join("sub").join("..").join("out.jsonl")
        ));
        assert!(!same_file(&out, &dir.join("report.json")));
        std::fs::write(&out, "").unwrap();
        assert!(same_file(&out, &dir.join(".").join("out.jsonl")));
        assert!(!same_file(&out, &dir.join("sub").join("out.jsonl")));
        // A directory that does not exist names no file.
        let nowhere = dir.join("missing").join("out.jsonl");
        assert!(!same_file(&nowhere, &out));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
