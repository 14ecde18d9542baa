//! The learned pace of one cell: header following and probing.
//!
//! The rules are in the [`adaptive`](crate::adaptive) module docs; this is
//! the state machine. All of it runs under the engine's lock.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};
use tokio::time::Instant;

use crate::adaptive::{LearnParams, PaceSource};

mod rolling;

pub(crate) use rolling::Rolling;

/// Header values above this are absurd, not a limit: ignored.
const ABSURD: f64 = 1e12;
/// How long a reset may hold a cell before it is taken for garbage.
const MAX_RESET: Duration = Duration::from_secs(86_400);
/// The cell is re-paced when the pace moved this share from the applied one.
const MIN_CHANGE: f64 = 0.002;
/// Changes this large (as a share) are traced at `info`.
const NOTABLE_CHANGE: f64 = 0.1;
/// At most one `info` event per cell this often.
const LOG_EVERY: Duration = Duration::from_secs(1);
/// After a cut the pace climbs back fast (this share of the pace cut from,
/// per second) to [`RECOVER_TO`] of it, then probes on at the additive increase.
const RECOVER: f64 = 0.25;
/// Where fast recovery stops, as a share of the pace cut from: the 429
/// came when the pace had already run past the limit.
const RECOVER_TO: f64 = 0.9;
/// A cut goes no lower than this share of the rate accepted over the last
/// second, and always at least to this share of the pace cut from.
const CUT_TO_ACCEPTED: f64 = 0.9;

/// Why a pace moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// The server's headers.
    Header,
    /// A cut after a 429.
    Cut,
    /// Probing growth.
    Grow,
}

/// What a response changed in a cell.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct Learned {
    /// The pace changed: the cell must be re-paced.
    pub(crate) repace: bool,
    /// Why, when it did.
    pub(crate) moved: Option<Move>,
    /// Units someone else spent from the server's limit: charged to the cell.
    pub(crate) charge: f64,
    /// The server says the limit is spent until this long from now.
    pub(crate) hold: Option<Duration>,
    /// The remaining count the answer reported, when the cell follows
    /// the headers: the server's count, this request in it.
    pub(crate) remaining: Option<f64>,
}

/// The request an answer is read against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered {
    /// Its cost on the cell.
    pub(crate) cost: f64,
    /// The cell's learning epoch at its grant.
    pub(crate) epoch: u32,
    /// The cell follows the server's remaining count itself (a reconciled
    /// quota, on an answer that is complete): no charge from the view.
    pub(crate) follows: bool,
}

/// One cell's learned pace.
#[derive(Debug, Clone)]
pub(crate) struct Learner {
    params: Arc<LearnParams>,
    /// Units per second, before the safety margin.
    pub(crate) pace: f64,
    /// The pace the cell's limiter runs at (re-paced after larger moves).
    applied: f64,
    pub(crate) source: PaceSource,
    pub(crate) changed_at: Option<Instant>,
    /// Bumped by every cut: a 429 to a request granted before the last cut
    /// belongs to the same episode and does not cut again. Compared for
    /// equality only, so it wraps.
    pub(crate) epoch: u32,
    /// The pace the last cut started from (`None` before the first cut: slow start).
    cut_from: Option<f64>,
    /// Seconds of growth since the fast recovery after the last cut: the
    /// longer no 429 comes, the faster the pace probes on.
    above_for: f64,
    /// Successes over the last second of the server's clock: what a cut
    /// need not go below.
    lately: Rolling,
    grown_at: Option<Instant>,
    header_at: Option<Instant>,
    successes: Rolling,
    spent: Option<Rolling>,
    logged: Option<(Instant, f64)>,
    /// How many processes share this cell through a store (1 alone): each
    /// sees 1/peers of the successes and grows the shared pace 1/peers as fast.
    peers: f64,
    moved: Option<Move>,
}

/// What a group of headers says.
enum Reading {
    Absent,
    Value(f64),
    Garbage(HeaderName),
}

/// The lowest readable value of `names`; unreadable ones (and, with
/// `positive`, zeros) are passed over, so one bad header does not hide a
/// good one.
fn read_lowest(headers: &HeaderMap, names: &[HeaderName], positive: bool) -> Reading {
    let mut lowest: Option<f64> = None;
    let mut garbage = None;
    for name in names {
        let Some(value) = headers.get(name) else {
            continue;
        };
        let number = value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0 && *v < ABSURD)
            .filter(|v| !positive || *v > 0.0);
        match number {
            Some(v) => lowest = Some(lowest.map_or(v, |l| l.min(v))),
            None => garbage = Some(name.clone()),
        }
    }
    match (lowest, garbage) {
        (Some(v), _) => Reading::Value(v),
        (None, Some(name)) => Reading::Garbage(name),
        (None, None) => Reading::Absent,
    }
}

/// A reset: seconds (`0.075`, `2`) or a Go-style duration (`6m0s`, `1.5s`, `20ms`).
pub(crate) fn parse_reset(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let secs = if let Ok(v) = text.parse::<f64>() {
        v
    } else {
        let mut total = 0.0;
        let mut rest = text;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .filter(|&i| i > 0)?;
            let (number, tail) = rest.split_at(end);
            let number: f64 = number.parse().ok()?;
            let unit_end = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_end);
            total += number
                * match unit {
                    "h" => 3600.0,
                    "m" => 60.0,
                    "s" => 1.0,
                    "ms" => 0.001,
                    "us" | "µs" => 0.000_001,
                    "ns" => 0.000_000_001,
                    _ => return None,
                };
            rest = tail;
        }
        total
    };
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= MAX_RESET)
}

impl Learner {
    pub(crate) fn new(params: Arc<LearnParams>, peers: f64) -> Self {
        let spent = params.headers.as_ref().map(|h| Rolling::new(h.period));
        Learner {
            pace: params.start,
            applied: params.start,
            source: PaceSource::Start,
            changed_at: None,
            epoch: 0,
            cut_from: None,
            above_for: 0.0,
            lately: Rolling::new(Duration::from_secs(1).div_f64(params.tempo)),
            grown_at: None,
            header_at: None,
            successes: Rolling::new(params.ramp_window),
            spent,
            logged: None,
            peers: peers.max(1.0),
            moved: None,
            params,
        }
    }

    pub(crate) fn weighted(&self) -> bool {
        self.params.weighted
    }

    /// For a token cell reading the server's headers: the period they
    /// count in (a time-scaled preset's is already scaled).
    pub(crate) fn window_period(&self) -> Option<Duration> {
        let h = self.params.headers.as_ref()?;
        self.params.weighted.then_some(h.period)
    }

    /// For a token cell paced by the server's headers: the server's period
    /// and the units it allows in one (what the engine's window checks).
    pub(crate) fn window_limit(&self) -> Option<(Duration, f64)> {
        let period = self.window_period()?;
        (self.source == PaceSource::Header).then_some((period, self.pace * period.as_secs_f64()))
    }

    /// Follows the pace every process shares (`per_second`), keeping the source.
    pub(crate) fn adopt(&mut self, per_second: f64) -> bool {
        if !(per_second.is_finite() && per_second > 0.0) {
            return false;
        }
        self.pace = per_second.clamp(self.params.floor, self.params.ceiling);
        self.needs_repace()
    }

    /// The pace to run the cell's limiter at; noted as applied.
    pub(crate) fn apply(&mut self) -> f64 {
        self.applied = self.pace;
        self.pace
    }

    fn needs_repace(&self) -> bool {
        (self.pace - self.applied).abs() >= MIN_CHANGE * self.applied
    }

    /// Sets the pace from outside (a saved state), within bounds. Returns
    /// whether it changed.
    pub(crate) fn seed(&mut self, now: Instant, per_second: f64, cell: &CellName<'_>) -> bool {
        if !(per_second.is_finite() && per_second > 0.0) {
            return false;
        }
        // A remembered pace is known to have worked: probe on from it.
        self.cut_from = Some(per_second);
        self.set(now, per_second, PaceSource::Saved, cell);
        self.needs_repace()
    }

    /// A grant of `cost` units was made.
    pub(crate) fn granted(&mut self, now: Instant, cost: f64) {
        if let Some(spent) = &mut self.spent {
            spent.add(now, cost);
        }
    }

    /// `units` (negative for a refund) settled after the grant: this
    /// cell's view of what it spent follows.
    pub(crate) fn settled(&mut self, now: Instant, units: f64) {
        if let Some(spent) = &mut self.spent {
            spent.add(now, units);
        }
    }

    /// Reads one answer to `request`.
    pub(crate) fn answered(
        &mut self,
        now: Instant,
        status: StatusCode,
        headers: &HeaderMap,
        request: Answered,
        cell: &CellName<'_>,
    ) -> Learned {
        let Answered {
            cost,
            epoch,
            follows,
        } = request;
        let mut out = Learned::default();
        self.moved = None;
        if status.is_success() {
            self.successes.add(now, cost);
            self.lately.add(now, cost);
        }
        if let Some(h) = self.params.headers.clone() {
            let period = h.period.as_secs_f64();
            match read_lowest(headers, &h.limit, true) {
                Reading::Value(limit) => {
                    self.header_at = Some(now);
                    self.set(now, limit / period, PaceSource::Header, cell);
                    self.moved = Some(Move::Header);
                }
                Reading::Garbage(name) => {
                    tracing::debug!(%cell, header = %name, "rate limit: ignoring an unreadable limit header");
                }
                Reading::Absent => {}
            }
            match read_lowest(headers, &h.remaining, false) {
                Reading::Value(remaining) if self.source == PaceSource::Header => {
                    out.remaining = Some(remaining);
                    let spent = self.spent.as_mut().expect("headers keep a spent window");
                    let own_view = self.pace * period - spent.sum(now);
                    // Remaining counts are whole units: a one-unit gap is rounding.
                    if follows {
                        // The cell takes the count as it is; its view follows.
                        spent.add(now, own_view - remaining);
                    } else if remaining + 1.0 < own_view {
                        out.charge = own_view - remaining;
                        spent.add(now, out.charge);
                    }
                    if remaining < 1.0 {
                        out.hold = h
                            .reset
                            .as_ref()
                            .and_then(|name| headers.get(name))
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_reset)
                            .filter(|d| !d.is_zero());
                    }
                }
                Reading::Garbage(name) => {
                    tracing::debug!(%cell, header = %name, "rate limit: ignoring an unreadable remaining header");
                }
                _ => {}
            }
        }
        let headers_fresh = self
            .header_at
            .is_some_and(|t| now.saturating_duration_since(t) < self.params.ramp_window);
        if !headers_fresh {
            if status == StatusCode::TOO_MANY_REQUESTS {
                if epoch == self.epoch {
                    self.cut(now, cell);
                }
            } else if status.is_success() {
                self.grow(now, cell);
            }
        }
        out.repace = self.needs_repace();
        out.moved = self.moved.filter(|_| out.repace);
        out
    }

    fn cut(&mut self, now: Instant, cell: &CellName<'_>) {
        let from = self.pace;
        self.cut_from = Some(from);
        self.above_for = 0.0;
        self.epoch = self.epoch.wrapping_add(1);
        self.grown_at = None;
        // Never below what the server has just been accepting (less a
        // little): a 429 at the edge of a limit that grows with use (the
        // ramp rule) is no reason to fall far under it.
        let window = Duration::from_secs(1).div_f64(self.params.tempo);
        let accepted = self.lately.sum_within(now) / window.as_secs_f64();
        let to = (from * self.params.decrease)
            .max(accepted * CUT_TO_ACCEPTED)
            .min(from * CUT_TO_ACCEPTED);
        self.set(now, to, PaceSource::Probe, cell);
        self.moved = Some(Move::Cut);
    }

    fn grow(&mut self, now: Instant, cell: &CellName<'_>) {
        let p = &self.params;
        // Seconds of the server's clock since the last growth, at most one.
        let dt = self.grown_at.map_or(0.0, |t| {
            (now.saturating_duration_since(t).as_secs_f64() * p.tempo).min(1.0)
        }) / self.peers;
        self.grown_at = Some(now);
        if dt == 0.0 {
            return;
        }
        let recent = self.peers * self.successes.sum_within(now) / p.ramp_window.as_secs_f64();
        // A window of one (server) second holds whole requests: at small
        // rates 2.9/s lets 2 through, not 2.9. Round the bound down to them.
        let ramp = (p.ramp * recent / p.tempo).floor() * p.tempo;
        let bound = ramp.max(p.start).max(self.pace);
        let next = match self.cut_from {
            None => self.pace * 2f64.powf(dt),
            Some(from) => {
                let target = RECOVER_TO * from;
                if self.pace < target {
                    (self.pace + RECOVER * from * dt).min(target)
                } else {
                    // Additive from there, the step doubling each second
                    // without a 429 (the limit may have grown since the cut:
                    // Together raises it with steady use), the ramp bound
                    // still on top.
                    self.above_for += dt;
                    let step = p.increase * from * 2f64.powf(self.above_for.min(30.0));
                    self.pace + step * dt
                }
            }
        };
        self.set(now, next.min(bound), PaceSource::Probe, cell);
        self.moved = Some(Move::Grow);
    }

    /// Moves the pace to `to` (clamped to the bounds), noting where it came from.
    fn set(&mut self, now: Instant, to: f64, source: PaceSource, cell: &CellName<'_>) {
        let p = &self.params;
        let to = to.clamp(p.floor, p.ceiling);
        if to == self.pace && source == self.source {
            return;
        }
        let from = self.pace;
        let source_changed = source != self.source;
        self.pace = to;
        self.source = source;
        self.changed_at = Some(now);
        let notable = match self.logged {
            None => true,
            Some((at, logged)) => {
                now.saturating_duration_since(at) >= LOG_EVERY
                    && (source_changed || (to - logged).abs() / logged >= NOTABLE_CHANGE)
            }
        };
        if notable {
            self.logged = Some((now, to));
            tracing::info!(%cell, from, to, %source, "rate limit: pace changed");
        } else {
            tracing::trace!(%cell, from, to, %source, "rate limit: pace changed");
        }
    }
}

/// A cell's name in traces: `quota` or `quota[key]`.
pub(crate) struct CellName<'a> {
    pub(crate) quota: &'a str,
    pub(crate) key: Option<&'a str>,
}

impl std::fmt::Display for CellName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key {
            Some(key) => write!(f, "{}[{key}]", self.quota),
            None => f.write_str(self.quota),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_in_both_forms() {
        assert_eq!(parse_reset("0.075"), Some(Duration::from_millis(75)));
        assert_eq!(parse_reset("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(parse_reset("1h2m3s"), Some(Duration::from_secs(3723)));
        for bad in ["", "-1", "soon", "1x", "s", "NaN", "inf", "1e30", "90000"] {
            assert_eq!(parse_reset(bad), None, "{bad:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rolling_forgets_what_left_the_window() {
        let mut r = Rolling::new(Duration::from_secs(1));
        let t0 = Instant::now();
        r.add(t0, 3.0);
        r.add(t0 + Duration::from_millis(500), 2.0);
        assert_eq!(r.sum(t0 + Duration::from_millis(900)), 5.0);
        assert_eq!(r.sum_within(t0 + Duration::from_millis(900)), 5.0);
        // At 1 s the first bucket is the oldest: `sum` keeps it whole,
        // `sum_within` by the share of it still inside the window, which
        // falls to nothing as the window moves past it.
        assert_eq!(r.sum(t0 + Duration::from_millis(1_000)), 5.0);
        let half = r.sum_within(t0 + Duration::from_millis(1_033));
        assert!((3.4..=3.6).contains(&half), "{half}");
        assert_eq!(r.sum_within(t0 + Duration::from_millis(1_067)), 2.0);
        assert_eq!(r.sum(t0 + Duration::from_millis(1_300)), 2.0);
        assert_eq!(r.sum(t0 + Duration::from_secs(5)), 0.0);
    }
}
