//! How a learning preset learns.

use std::time::Duration;

use tower_quota::{Rate, RateHeaders};

use super::route::nz;

/// How a learning preset's quotas learn (see [`Preset::together`](crate::Preset::together) and
/// [`tower_quota::adaptive`]): the headers to read, the bounds, the ramp.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnPreset {
    pub(super) request_headers: RateHeaders,
    pub(super) token_headers: RateHeaders,
    pub(super) request_floor: Rate,
    pub(super) request_ceiling: Rate,
    pub(super) token_floor: Rate,
    pub(super) token_ceiling: Rate,
    pub(super) ramp: f64,
    pub(super) ramp_window: Duration,
    /// How many times faster than the wall clock the server's clock runs.
    pub(super) tempo: f64,
}

impl LearnPreset {
    /// Together's headers (per second), bounds 6/min to 1,000/s requests and
    /// 6,000 tokens/min to 1,000,000 tokens/s, ramp 2x the last 10 s.
    pub fn together() -> Self {
        LearnPreset {
            request_headers: RateHeaders::together_requests(),
            token_headers: RateHeaders::together_tokens(),
            request_floor: Rate::per_minute(nz(6)),
            request_ceiling: Rate::per_second(nz(1000)),
            token_floor: Rate::per_minute(nz(6000)).with_unit("tokens"),
            token_ceiling: Rate::per_second(nz(1_000_000)).with_unit("tokens"),
            ramp: 2.0,
            ramp_window: Duration::from_secs(10),
            tempo: 1.0,
        }
    }

    /// OpenAI's headers (per minute), otherwise as [`together`](Self::together).
    pub fn openai() -> Self {
        LearnPreset {
            request_headers: RateHeaders::openai_requests(),
            token_headers: RateHeaders::openai_tokens(),
            ..Self::together()
        }
    }

    /// The bounds of learned request rates.
    pub fn request_bounds(mut self, floor: Rate, ceiling: Rate) -> Self {
        self.request_floor = floor;
        self.request_ceiling = ceiling;
        self
    }

    /// The bounds of learned token rates.
    pub fn token_bounds(mut self, floor: Rate, ceiling: Rate) -> Self {
        self.token_floor = floor.with_unit("tokens");
        self.token_ceiling = ceiling.with_unit("tokens");
        self
    }

    /// Never probe faster than `multiple` × the successful rate of the last `window`.
    pub fn ramp(mut self, multiple: f64, window: Duration) -> Self {
        self.ramp = multiple;
        self.ramp_window = window;
        self
    }
}
