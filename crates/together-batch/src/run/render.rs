//! The summary as people read it.

use super::report::Report;

impl Report {
    /// The human summary.
    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "together-batch: {} lines: {} ok, {} failed ({} bad input), {} already answered{}, {} unanswered{}",
            self.lines,
            self.ok,
            self.failed,
            self.bad_input,
            self.skipped,
            if self.failed_earlier > 0 {
                format!(
                    " ({} of them failed earlier: run with --retry-failed to send them again)",
                    self.failed_earlier
                )
            } else {
                String::new()
            },
            self.unanswered,
            if self.interrupted {
                " (interrupted: run again to send them)"
            } else if !self.stopped_early.is_empty() {
                " (stopped early: fix the cause below and run again to send them)"
            } else {
                ""
            }
        );
        if let Some(e) = &self.output_error {
            let _ = writeln!(
                s,
                "the output stopped taking writes: {e}; answers after that are not recorded \
                 and their lines are sent again on resume"
            );
        }
        for why in &self.stopped_early {
            let _ = writeln!(s, "stopped: {why}");
        }
        if !self.failure_reasons.is_empty() {
            let _ = writeln!(s, "failures:");
            for r in &self.failure_reasons {
                let status = r.status.map_or("no answer".to_owned(), |s| s.to_string());
                let _ = writeln!(
                    s,
                    "  {:>6} x {} {}: {} (e.g. custom_id {:?}); {}",
                    r.count, status, r.kind, r.message, r.example_custom_id, r.advice
                );
            }
        }
        let ideal = match (self.ideal_secs, self.ideal_pct) {
            (Some(i), Some(p)) => format!(" (ideal {i:.2} s: {p:.1}% of the ideal rate)"),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "wall time {:.2} s{ideal}; 429s {}; retries {}; limits: {} ({}){}{}",
            self.wall_secs,
            self.responses_429,
            self.retries,
            self.preset,
            self.limits_from,
            if self.time_scale == 1.0 {
                String::new()
            } else {
                format!(" x{}", self.time_scale)
            },
            match (self.shared_through_redis, self.decided_locally) {
                (true, Some(0) | None) => ", shared through Redis".to_owned(),
                (true, Some(local)) => format!(
                    ", shared through Redis ({local} of {} decisions made locally while it \
                     did not answer)",
                    local + self.shared_decisions.unwrap_or(0)
                ),
                (false, _) => String::new(),
            }
        );
        if !self.routes.is_empty() {
            let _ = writeln!(
                s,
                "{:<28} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9}",
                "route",
                "ok",
                "failed",
                "sent",
                "rate/s",
                "quota/s",
                "of quota",
                "ideal s",
                "of ideal"
            );
            for r in &self.routes {
                let opt = |v: Option<f64>, unit: &str| match v {
                    Some(v) => format!("{v:.1}{unit}"),
                    None => "-".to_owned(),
                };
                let _ = writeln!(
                    s,
                    "{:<28} {:>8} {:>8} {:>8} {:>10.2} {:>10} {:>9} {:>9} {:>9}",
                    r.route,
                    r.ok,
                    r.failed,
                    r.attempts,
                    r.achieved_per_sec,
                    opt(r.quota_per_sec, ""),
                    opt(r.quota_pct, "%"),
                    r.ideal_secs.map_or("-".to_owned(), |v| format!("{v:.2}")),
                    opt(r.ideal_pct, "%"),
                );
            }
            for r in &self.routes {
                if let (Some(estimated), Some(used)) = (r.tokens_estimated, r.tokens_used) {
                    let pct = if estimated > 0 {
                        format!(
                            " ({:.1}% of the estimate)",
                            100.0 * used as f64 / estimated as f64
                        )
                    } else {
                        String::new()
                    };
                    let _ = writeln!(
                        s,
                        "{:<28} tokens estimated {estimated}, used {used}{pct}",
                        r.route
                    );
                }
            }
        }
        if !self.models.is_empty() {
            let _ = writeln!(
                s,
                "{:<28} {:<44} {:>8} {:>8} {:>10} {:>10}  source",
                "route", "model", "ok", "sent", "rate/s", "learned/s"
            );
            for m in &self.models {
                let _ = writeln!(
                    s,
                    "{:<28} {:<44} {:>8} {:>8} {:>10.2} {:>10}  {}",
                    m.route,
                    m.model,
                    m.ok,
                    m.attempts,
                    m.achieved_per_sec,
                    m.learned_per_sec
                        .map_or("-".to_owned(), |v| format!("{v:.2}")),
                    m.source.as_deref().unwrap_or("-"),
                );
            }
        }
        s
    }
}
