//! Dynamic limits: Together's 2026 rule, where each (API key, model) gets a
//! rate that follows its recent successful usage, between a base and a cap.
//!
//! Turned on by [`SimConfig::dynamic`](crate::SimConfig::dynamic) (TOML
//! table `[dynamic]`, [`SimBuilder::dynamic`](crate::SimBuilder::dynamic),
//! or `together-sim --dynamic`). The routes in [`DynamicLimits::routes`]
//! are then governed by this rule *instead of* their static
//! [`RouteLimits`](crate::config::RouteLimits); other routes keep theirs.
//! `mode` and `enforce_per_second` do not apply to it: it is always a
//! strict 1-second sliding window.
//!
//! # The rule
//!
//! Rates are per simulated second and times are simulated (see
//! [`time_scale`](crate::SimConfig::time_scale)); `t` is the simulated
//! time since the server started. Each (key, model) keeps a log of its 2xx
//! answers (time, estimated tokens) over the last `window`, and a log of
//! its accepted requests over the last second, `(t - 1 s, t]`. Both logs
//! hold only entries inside their windows.
//!
//! - `cap(t)`: the last [`cap_schedule`](DynamicLimits::cap_schedule)
//!   entry with `at <= t`, else `cap`.
//! - Request rate: `r(t) = min(max(multiple * successes_in_window /
//!   window_secs, base), cap(t))` (the cap wins over the base).
//! - Token rate (when `token_base` and `token_cap` are set):
//!   `min(max(multiple * success_tokens_in_window / window_secs,
//!   token_base), token_cap)`. A request's token cost is the estimate the
//!   static token limit uses (input characters / 4 + `max_tokens` x `n`).
//! - A request is accepted iff `accepted_in_last_1s + 1 <= r(t)` and, with
//!   tokens on, `tokens_in_last_1s + cost <= token_rate` or no request was
//!   accepted in the last second (so one request costing more than the
//!   rate is not refused for ever).
//! - Otherwise 429, `{"error": {"message", "type", "param": null, "code":
//!   null}}` with type `dynamic_request_limited`, or
//!   `dynamic_token_limited` when only the token limit refused or its wait
//!   is the longer. A 429 charges nothing and is not a success.
//! - An accepted request is answered 503 (type `server_error`) with
//!   probability [`capacity_503`](DynamicLimits::capacity_503), drawn from
//!   a `SmallRng` seeded with `faults.seed` (its own stream: fault rules do
//!   not shift it). Such a 503 is neither accepted nor a success.
//! - Otherwise the request is charged (accepted log) and goes on to the
//!   fault rules and its answer. When the answer is 2xx it joins the
//!   success log at that moment, raising the rate.
//!
//! # Headers
//!
//! Rates and counts are per simulated second, as Together reports them
//! per second: under a time scale the simulator is Together with its
//! clock sped up, so a client paces with a period `time_scale` times
//! shorter (together-tower's `Preset::time_scaled` does). Durations
//! (`x-ratelimit-reset`, the 429's wait) are real seconds, rounded up to
//! the millisecond, without trailing zeros (`0.075`), so a client can
//! sleep on them as they are. Other numbers are written to the thousandth
//! without trailing zeros (`40`, `12.5`).
//!
//! When [`headers`](DynamicLimits::headers) is true (the default), every
//! answer of a dynamic route from the limit check on (2xx, 429, capacity
//! and fault 503s) carries:
//!
//! | header | value |
//! | --- | --- |
//! | `x-ratelimit-limit` | `cap(t)` |
//! | `x-ratelimit-limit-dynamic` | `r(t)`, the binding limit |
//! | `x-ratelimit-remaining`, `x-ratelimit-remaining-dynamic` | `max(0, floor(r(t) - accepted_in_last_1s))`, a count |
//! | `x-ratelimit-reset` | time until one more request could be accepted: 0 while remaining > 0; on a 429 the wait of the refusing limit |
//! | `x-tokenlimit-limit` | `token_cap` (tokens on) |
//! | `x-tokenlimit-limit-dynamic` | the token rate |
//! | `x-tokenlimit-remaining`, `x-tokenlimit-remaining-dynamic` | `max(0, floor(token_rate - tokens_in_last_1s))` |
//!
//! On a 2xx they describe the state after its success was counted. When
//! `headers` is false, answers carry no `x-ratelimit-*` or
//! `x-tokenlimit-*` header, except a 429's `x-ratelimit-reset`. A 429's
//! wait is the time until enough accepted entries leave the 1-second
//! window for the request to pass at the current rates. `retry-after` and
//! `retry-after-ms` on a 429 follow [`HeaderConfig`](crate::config::HeaderConfig)
//! as for static limits; its `reset_on_429` and `success_headers` do not
//! apply here (`headers` above decides). The 429's message states the rate
//! and wait in simulated units, like the static limits' messages.
//!
//! # Stats
//!
//! [`Stats::dynamic`](crate::Stats::dynamic) (`"dynamic"` in
//! `GET /sim/stats`) holds one [`DynamicStats`](crate::stats::DynamicStats)
//! per key label (`key-1`, never the key) and model, with the rates now, the
//! counters, and a series of at most 4,096 samples, at most one per 250 ms
//! of simulated time. `max_accepted_in_1s_over_limit` counts acceptances
//! that left more than `r(t)` accepted in the last second: always 0.
//!
//! # Example
//!
//! ```
//! use together_sim::SimConfig;
//!
//! let config = SimConfig::from_toml_str(r#"
//!     time_scale = 10.0
//!     [dynamic]
//!     multiple = 2.0
//!     window = "10s"
//!     base = 1.0          # 60 RPM
//!     cap = 40.0
//!     token_base = 500.0
//!     token_cap = 3000.0
//!     capacity_503 = 0.05
//!     headers = true
//!     routes = ["/v1/chat/completions"]
//!     [[dynamic.cap_schedule]]
//!     at = "60s"
//!     cap = 10.0
//! "#).unwrap();
//! let dynamic = config.dynamic.unwrap();
//! assert_eq!(dynamic.cap_at(std::time::Duration::from_secs(61)), 10.0);
//! ```

mod config;
mod engine;

pub use self::config::{CapChange, DynamicLimits};
pub(crate) use self::engine::{Admission, Dynamic, Exceeded, View, fmt_num};
