//! Limits compiled for the engine: quotas with their cell parameters, routes with their matchers.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use crate::adaptive::LearnParams;
use crate::cost::{Cost, KeyBy};
use crate::rate::Rate;
use crate::route::RouteMatcher;

#[derive(Debug, Clone)]
pub(crate) struct CompiledQuota {
    pub(crate) name: String,
    pub(crate) default: CellParams,
    pub(crate) overrides: HashMap<String, CellParams>,
    pub(crate) cost: Cost,
    pub(crate) key: Option<KeyBy>,
    /// How the default cells learn their pace; `None` for a static quota.
    pub(crate) learn: Option<Arc<LearnParams>>,
    /// Whether answers settle the estimate ([`Charging::Reconciled`](super::Charging)).
    pub(crate) reconciles: bool,
}

impl CompiledQuota {
    /// The parameters of the cell for `key`, and how it learns (an override is static).
    pub(crate) fn params_for(&self, key: Option<&str>) -> (&CellParams, Option<&Arc<LearnParams>>) {
        match key.and_then(|k| self.overrides.get(k)) {
            Some(params) => (params, None),
            None => (&self.default, self.learn.as_ref()),
        }
    }
}

/// The effective parameters of one limiter cell.
#[derive(Debug, Clone)]
pub(crate) struct CellParams {
    pub(crate) rate: Rate,
    pub(crate) burst: NonZeroU32,
    /// The interval between units after the safety margin.
    pub(crate) interval: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledRoute {
    pub(crate) name: String,
    pub(crate) matcher: Option<RouteMatcher>,
    pub(crate) quotas: Vec<usize>,
    pub(crate) max_wait: Option<Duration>,
    pub(crate) needs_body: bool,
    /// Whether a quota reads the request (a key, a cost other than one).
    pub(crate) needs_parts: bool,
    /// The top-level body fields its keyed quotas read.
    pub(crate) body_fields: Vec<String>,
}

pub(super) fn cell_params(
    rate: &Rate,
    burst: Option<NonZeroU32>,
    weighted: bool,
    margin: f64,
) -> CellParams {
    let burst = burst.unwrap_or_else(|| {
        if weighted {
            // One second's worth, so a request of up to that many units fits.
            let per_sec = rate.per_second_f64().ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
            NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN)
        } else {
            NonZeroU32::MIN
        }
    });
    let interval = rate.interval().div_f64(1.0 - margin);
    CellParams {
        rate: rate.clone(),
        burst,
        interval: interval.max(Duration::from_nanos(1)),
    }
}
