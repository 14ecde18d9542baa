//! `together-batch run`, as a pipeline: [`plan`] (read the input,
//! skip what the output answers, group by route), [`client`] (together-tower's
//! stack), [`feed`] (one feeder per route), [`collect`] (write
//! each result as it arrives, progress, Ctrl-C), [`report`] (sum up).

use std::collections::HashMap;

use together_tower::body::BodyLimits;

use crate::config;
use crate::output::{Output, ResumeOptions};
use crate::progress::Progress;

mod client;
mod collect;
mod feed;
mod html;
mod options;
mod plan;
mod render;
mod report;
mod send;
mod source;
mod stop;
mod timeline;

pub(crate) use options::RunOptions;
pub(crate) use report::Report;

/// Runs the batch; `Err` only for what fails before anything is sent (or
/// an output that stops taking writes).
pub(crate) async fn run(opts: RunOptions) -> Result<Report, String> {
    // Everything that can fail does, before a request goes out.
    let input = plan::read_input(&opts)?;
    plan::check_report_paths(&opts)?;
    let key = client::read_key(&opts)?;
    let _metrics = serve_metrics(&opts).await?;
    let timeline = timeline::Timeline::new();
    let client = client::build(&opts, &key, &timeline)?;
    // Only an output with lines is judged against the input's requests.
    let resuming = std::fs::metadata(&opts.output).is_ok_and(|m| m.len() > 0);
    let fingerprints: HashMap<u64, u64> = if resuming {
        input.jobs.iter().map(|j| (j.id, j.fingerprint)).collect()
    } else {
        HashMap::new()
    };
    let resume = ResumeOptions {
        retry_failed: opts.retry_failed,
        force: opts.force,
        resend_changed: opts.resend_changed,
    };
    if let (Ok(input), Ok(output)) = (
        std::fs::canonicalize(&opts.input),
        std::fs::canonicalize(&opts.output),
    ) && input == output
    {
        return Err(format!(
            "the output {} is the input: choose another -o (nothing was sent)",
            opts.output.display()
        ));
    }
    let (mut out, prev) = Output::open(&opts.output, resume, &fingerprints)?;
    drop(fingerprints);
    if !prev.changed.is_empty() {
        return Err(plan::changed_message(&prev.changed, &opts));
    }
    let rates = config::route_rates(&client.limits);
    let learned = config::learned_request_quotas(&client.limits);
    let mut notes: Vec<String> = plan::restore_paces(&opts, &client.quota)
        .into_iter()
        .collect();
    notes.extend(plan::resume_notes(&prev, &opts));
    let mut plan = plan::partition(input, &prev, &client.limits);
    if let Some(warning) = plan::unpaced(&plan) {
        if opts.strict {
            return Err(format!("--strict: {warning} (nothing was sent)"));
        }
        notes.push(warning);
    }

    let total = plan.total;
    let mut progress = Progress::new(total, opts.quiet, opts.progress_every);
    notes.extend(plan::bad_line_notes(&plan));
    for note in &notes {
        progress.note(note);
    }
    if total == 0 {
        progress.note("nothing to send: every line is already answered");
    }
    if plan.skipped > 0 {
        progress.note(&format!(
            "{} line(s) already answered in {}: skipped",
            plan.skipped,
            opts.output.display()
        ));
    }
    let mut tally = collect::Tally::default();
    for line in &plan.bad {
        out.write(line)?;
        tally.failed += 1;
        tally.done += 1;
    }
    for r in &plan.routes {
        tally.routes.entry(r.route.clone()).or_default().total = r.jobs.len() as u64;
    }

    let routes = std::mem::take(&mut plan.routes);
    let bounds = feed::Bounds {
        body: BodyLimits {
            max_bytes: opts.bounds.max_response_bytes,
            idle: opts.bounds.idle,
        },
        deadline: opts.bounds.deadline,
    };
    let source = source::Source::open(&opts.input, opts.endpoint.as_deref()).map_err(|e| {
        format!(
            "cannot read the input {}: {e} (nothing was sent)",
            opts.input.display()
        )
    })?;
    timeline.start_now();
    let feeders = feed::start(
        source,
        routes,
        &timeline,
        &client.service,
        &key,
        opts.max_in_flight,
        bounds,
    );
    let route_quotas = client.limits.routes().into_iter().collect();
    let cx = collect::Context {
        opts: &opts,
        client: &client,
        rates: &rates,
        learned: &learned,
        route_quotas: &route_quotas,
        timeline: &timeline,
    };
    let tally = collect::collect(&cx, feeders, &mut out, &mut progress, tally, total).await?;

    let failed_earlier = prev.failed_earlier as u64;
    let mut report = Report::new(
        &opts,
        failed_earlier,
        &plan,
        &tally,
        &client,
        &rates,
        &learned,
    );
    report.report_error = report.write(&opts, &timeline.series()).err();
    Ok(report)
}

/// Serves the metrics when `--metrics` asks, before the stack is built
/// (its layers register their metrics then).
#[cfg(feature = "metrics")]
async fn serve_metrics(opts: &RunOptions) -> Result<Option<crate::metrics::Serving>, String> {
    let Some(addr) = opts.metrics else {
        return Ok(None);
    };
    let serving = crate::metrics::serve(addr).await?;
    eprintln!("together-batch: metrics at http://{}/metrics", serving.addr);
    Ok(Some(serving))
}

#[cfg(not(feature = "metrics"))]
async fn serve_metrics(opts: &RunOptions) -> Result<Option<()>, String> {
    match opts.metrics {
        Some(_) => {
            Err("--metrics: this build has no metrics feature (nothing was sent)".to_owned())
        }
        None => Ok(None),
    }
}
