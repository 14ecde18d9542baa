//! Progress: an indicatif bar on a terminal, plain periodic lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Debug)]
pub(crate) enum Progress {
    Quiet,
    Bar(ProgressBar),
    Lines {
        every: Duration,
        last: std::time::Instant,
    },
}

impl Progress {
    /// A bar on a terminal (stderr), plain lines every `every` otherwise,
    /// nothing with `quiet`.
    pub(crate) fn new(total: u64, quiet: bool, every: Duration) -> Self {
        if quiet {
            return Progress::Quiet;
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar(bar)
        } else {
            Progress::Lines {
                every,
                last: std::time::Instant::now(),
            }
        }
    }

    /// Shows `done` of the total and `msg`; plain lines only every `every`
    /// unless `force`.
    pub(crate) fn update(&mut self, done: u64, total: u64, msg: &str, force: bool) {
        if total == 0 {
            return; // nothing to send: no 0/0 line
        }
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => {
                bar.set_position(done);
                bar.set_message(msg.to_owned());
            }
            Progress::Lines { every, last } => {
                if force || last.elapsed() >= *every {
                    *last = std::time::Instant::now();
                    eprintln!("together-batch: {done}/{total} {msg}");
                }
            }
        }
    }

    /// Says something above the bar (or as a line).
    pub(crate) fn note(&self, msg: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => bar.println(format!("together-batch: {msg}")),
            Progress::Lines { .. } => eprintln!("together-batch: {msg}"),
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
