//! What a run did over time, per route, for the HTML report's charts:
//! attempts sent, retries and 429s as the innermost service sees them (so
//! retries are counted when they go out, not when their line is answered),
//! and, sampled while the run goes, the pace in force and whether the
//! route is held.
//!
//! Memory is bounded whatever the run's length: at most [`MAX_BINS`] bins
//! per route; when time runs past them, the bins double in width (pairs
//! merge).

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use together_tower::service::Attempts;
use tower::Service;

/// The bins kept per route, at most.
pub(crate) const MAX_BINS: usize = 1024;
/// The first bins' width (doubled as the run grows).
const FIRST_BIN: Duration = Duration::from_millis(50);

/// Which route of the run a request belongs to: its index in
/// the timeline (the order [`Timeline::lane`] met them), carried in the
/// request's extensions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lane(pub(crate) usize);

/// One bin of one route.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Bin {
    /// Attempts that went out, retries included.
    pub(crate) sent: u32,
    /// Of them, retries.
    pub(crate) retries: u32,
    /// 429 answers.
    pub(crate) throttled: u32,
    /// Sampled while the route was held by a server's wait hint.
    pub(crate) held: bool,
    /// The pace in force when last sampled, requests per second (summed
    /// over the models of a learned quota); NaN when none was known.
    pub(crate) pace: f64,
}

impl Bin {
    /// A bin with nothing in it and no pace known.
    pub(crate) fn empty() -> Self {
        Bin {
            pace: f64::NAN,
            ..Bin::default()
        }
    }

    /// This bin and the `later` one as one: counts added, held if either
    /// was, the later pace when it is known.
    pub(crate) fn merge(self, later: Bin) -> Bin {
        Bin {
            sent: self.sent + later.sent,
            retries: self.retries + later.retries,
            throttled: self.throttled + later.throttled,
            held: self.held || later.held,
            pace: if later.pace.is_nan() {
                self.pace
            } else {
                later.pace
            },
        }
    }
}

/// Every route's bins, shared by the stack (which counts attempts) and the
/// collector (which samples paces and holds).
#[derive(Clone)]
pub(crate) struct Timeline(Arc<Mutex<Inner>>);

struct Inner {
    start: Instant,
    width: Duration,
    routes: Vec<String>,
    bins: Vec<Vec<Bin>>,
}

/// A copy of the timeline, for drawing.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Each bin's width.
    pub(crate) width: Duration,
    /// Per route (in lane order), its bins from the start.
    pub(crate) routes: Vec<(String, Vec<Bin>)>,
}

impl Timeline {
    /// A timeline of no routes yet, starting now.
    pub(crate) fn new() -> Self {
        Timeline(Arc::new(Mutex::new(Inner {
            start: Instant::now(),
            width: FIRST_BIN,
            routes: Vec::new(),
            bins: Vec::new(),
        })))
    }

    /// The lane of `route`, added if it is new.
    pub(crate) fn lane(&self, route: &str) -> Lane {
        let mut inner = self.lock();
        if let Some(i) = inner.routes.iter().position(|r| r == route) {
            return Lane(i);
        }
        inner.routes.push(route.to_owned());
        inner.bins.push(Vec::new());
        Lane(inner.routes.len() - 1)
    }

    /// Starts the clock again, with empty bins: when sending starts.
    pub(crate) fn start_now(&self) {
        let mut inner = self.lock();
        inner.start = Instant::now();
        inner.width = FIRST_BIN;
        inner.bins.iter_mut().for_each(Vec::clear);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the bin of `lane` at `now`.
    fn at(&self, lane: Lane, now: Instant, change: impl FnOnce(&mut Bin)) {
        let mut inner = self.lock();
        let index = inner.index(now);
        if let Some(bins) = inner.bins.get_mut(lane.0) {
            if bins.len() <= index {
                bins.resize(index + 1, Bin::empty());
            }
            change(&mut bins[index]);
        }
    }

    /// An attempt went out (a retry when `retry`).
    pub(crate) fn sent(&self, lane: Lane, retry: bool) {
        self.at(lane, Instant::now(), |b| {
            b.sent += 1;
            b.retries += u32::from(retry);
        });
    }

    /// A 429 came back.
    pub(crate) fn throttled(&self, lane: Lane) {
        self.at(lane, Instant::now(), |b| b.throttled += 1);
    }

    /// The pace in force now, and until when the route is held if it is:
    /// the bins from now to then are marked (a hold is known when it
    /// starts, so one is missed only if it starts and ends between
    /// samples); the caller bounds `held_until` to its next sample, so a
    /// hold that outlasts the run does not stretch the chart.
    pub(crate) fn sample(&self, lane: Lane, pace: Option<f64>, held_until: Option<Instant>) {
        self.sample_at(lane, Instant::now(), pace, held_until);
    }

    fn sample_at(&self, lane: Lane, now: Instant, pace: Option<f64>, held_until: Option<Instant>) {
        self.at(lane, now, |b| {
            if let Some(p) = pace.filter(|p| p.is_finite()) {
                b.pace = p;
            }
        });
        let Some(until) = held_until.filter(|u| *u > now) else {
            return;
        };
        let mut inner = self.lock();
        // The end first: the bins may widen to reach it.
        let last = inner.index(until);
        let first = inner.index(now);
        if let Some(bins) = inner.bins.get_mut(lane.0) {
            if bins.len() <= last {
                bins.resize(last + 1, Bin::empty());
            }
            bins[first..=last].iter_mut().for_each(|b| b.held = true);
        }
    }

    /// A copy of every route's bins.
    pub(crate) fn series(&self) -> Series {
        let inner = self.lock();
        Series {
            width: inner.width,
            routes: inner
                .routes
                .iter()
                .cloned()
                .zip(inner.bins.iter().cloned())
                .collect(),
        }
    }

    /// Counts the attempts of `inner` in this timeline.
    pub(crate) fn observe<S>(&self, inner: S) -> Observed<S> {
        Observed {
            inner,
            timeline: self.clone(),
        }
    }
}

impl Inner {
    /// The bin `now` falls in, widening the bins until it fits.
    fn index(&mut self, now: Instant) -> usize {
        let since = now.saturating_duration_since(self.start);
        loop {
            let index = (since.as_nanos() / self.width.as_nanos().max(1)) as usize;
            if index < MAX_BINS {
                return index;
            }
            self.width *= 2;
            for bins in &mut self.bins {
                let merged = bins
                    .chunks(2)
                    .map(|pair| match pair {
                        [a, b] => a.merge(*b),
                        [a] => *a,
                        _ => unreachable!("chunks of two"),
                    })
                    .collect();
                *bins = merged;
            }
        }
    }
}

/// The innermost service of the run's stack: every attempt, and every
/// 429, counted in the timeline on the lane its request carries.
#[derive(Clone)]
pub(crate) struct Observed<S> {
    inner: S,
    timeline: Timeline,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<Request<B>> for Observed<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let lane = req.extensions().get::<Lane>().copied();
        if let Some(lane) = lane {
            let retry = req
                .extensions()
                .get::<Attempts>()
                .is_some_and(|a| a.get() > 1);
            self.timeline.sent(lane, retry);
        }
        let timeline = self.timeline.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            if let Some(lane) = lane
                && res.status() == StatusCode::TOO_MANY_REQUESTS
            {
                timeline.throttled(lane);
            }
            Ok(res)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_keeps_its_bins_bounded_and_its_counts() {
        let timeline = Timeline::new();
        let lane = timeline.lane("a");
        assert_eq!(timeline.lane("b").0, 1);
        assert_eq!(timeline.lane("a").0, 0);
        let start = timeline.lock().start;
        // One attempt every 10 ms for an hour: 360,000 attempts.
        for i in 0..360_000u64 {
            let now = start + Duration::from_millis(10 * i);
            timeline.at(lane, now, |b| b.sent += 1);
        }
        timeline.at(Lane(1), start + Duration::from_secs(1800), |b| {
            b.throttled += 1;
            b.held = true;
            b.pace = 7.0;
        });
        timeline.sample(Lane(1), Some(f64::NAN), None);
        let series = timeline.series();
        let (name, a) = &series.routes[0];
        assert_eq!(name, "a");
        assert!(a.len() <= MAX_BINS, "{}", a.len());
        assert_eq!(a.iter().map(|b| u64::from(b.sent)).sum::<u64>(), 360_000);
        // 3,600 s in at most 1,024 bins of 50 ms doubled: 6.5536 s wide
        // (3.2768 s would need 1,099).
        assert_eq!(series.width, FIRST_BIN * 128);
        let b = &series.routes[1].1;
        assert_eq!(b.iter().map(|b| b.throttled).sum::<u32>(), 1);
        let marked: Vec<&Bin> = b.iter().filter(|b| b.held).collect();
        assert_eq!(marked.len(), 1);
        assert_eq!(marked[0].pace, 7.0);
        assert!(b[0].pace.is_nan());
    }

    #[test]
    fn a_hold_marks_the_bins_until_it_ends() {
        let timeline = Timeline::new();
        let lane = timeline.lane("a");
        let start = timeline.lock().start;
        let now = start + Duration::from_millis(120);
        timeline.sample_at(lane, now, Some(4.0), Some(now + Duration::from_millis(420)));
        let bins = &timeline.series().routes[0].1;
        let held = bins.iter().filter(|b| b.held).count();
        // From the bin of 120 ms (the third) to the bin of 540 ms (the eleventh).
        assert_eq!(held, 9, "{bins:?}");
        assert_eq!(bins.len(), 11);
        assert!(!bins[1].held && bins[2].held && bins[10].held);
        assert_eq!(bins[2].pace, 4.0);
        // A hold already over marks nothing.
        timeline.sample_at(lane, now + Duration::from_secs(1), None, Some(now));
        assert_eq!(
            timeline.series().routes[0]
                .1
                .iter()
                .filter(|b| b.held)
                .count(),
            held
        );
    }

    #[test]
    fn merging_keeps_the_later_pace_known() {
        let known = Bin {
            pace: 3.0,
            ..Bin::empty()
        };
        assert_eq!(known.merge(Bin::empty()).pace, 3.0);
        let later = Bin {
            pace: 5.0,
            sent: 2,
            ..Bin::empty()
        };
        let m = known.merge(later);
        assert_eq!((m.pace, m.sent), (5.0, 2));
    }
}
