//! What a run is asked to do.

use std::path::PathBuf;
use std::time::Duration;

use together_tower::ApiKey;

use crate::config::{Bounds, LimitsSource};

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub(crate) struct RunOptions {
    pub(crate) input: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) base_url: String,
    pub(crate) limits: LimitsSource,
    pub(crate) endpoint: Option<String>,
    pub(crate) max_in_flight: usize,
    pub(crate) api_key_env: String,
    /// Only for in-process runs (demo, bench); the CLI reads the environment.
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) retry_failed: bool,
    /// Writes into an output that is not a results file (its other lines go).
    pub(crate) force: bool,
    /// Refuses to start when some lines match no quota.
    pub(crate) strict: bool,
    /// Sends again the lines whose request changed since they were answered
    /// (else the run refuses to start).
    pub(crate) resend_changed: bool,
    /// Sends every line even after an error that will hit them all (a
    /// refused key, an unreachable base URL, an unknown route or model).
    pub(crate) keep_going: bool,
    /// How long and how much one request may take.
    pub(crate) bounds: Bounds,
    /// After a first Ctrl-C or SIGTERM, how long the requests in flight
    /// have to finish before they are abandoned.
    pub(crate) grace: Duration,
    pub(crate) quiet: bool,
    /// Where to write the report: as a page for a path ending `.html` or
    /// `.htm`, as JSON for any other.
    pub(crate) reports: Vec<PathBuf>,
    /// Serves the layers' metrics in Prometheus's text format on this
    /// address while the run goes (checked: loopback unless asked).
    pub(crate) metrics: Option<std::net::SocketAddr>,
    pub(crate) redis: Option<String>,
    pub(crate) processes: u32,
    pub(crate) time_scale: f64,
    pub(crate) safety_margin: Option<f64>,
    pub(crate) progress_every: Duration,
    /// Where learned paces are kept between runs (`None`: not kept).
    pub(crate) state: Option<PathBuf>,
    /// A saved state older than this is ignored.
    pub(crate) state_max_age: Duration,
}

/// Whether a report path asks for the page (`.html`, `.htm`).
pub(crate) fn is_page(path: &std::path::Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"))
}
