//! Compiling a preset into tower-quota's limits.

use tower_quota::{
    Adaptive, Cost, KeyBy, Limits, LimitsBuilder, Quota, Rate, Route, TokenEstimate,
};

use super::{InvalidPreset, LearnPreset, Preset, RouteLimit};

impl Preset {
    /// Compiles the rate limits for tower-quota's [`RateLimitLayer`](tower_quota::RateLimitLayer).
    ///
    /// Each route kind `k` gets quota `k` (requests), `k.tokens` and
    /// `k.images` as configured, and `k.model` (keyed by the body's
    /// `model`) when some model has its own rate on it.
    pub fn limits(&self) -> Result<Limits, InvalidPreset> {
        let mut b = Limits::builder();
        if let Some(m) = self.safety_margin {
            b = b.safety_margin(m);
        }
        if let Some(max) = self.max_hold {
            b = b.max_hold(max);
        }
        for (kind, r) in &self.routes {
            if let Some(learn) = &self.learn {
                b = self.learned_route(b, learn, kind, r);
                continue;
            }
            let mut route = Route::new(r.method.clone(), r.path.clone());
            if let Some(rate) = &r.requests {
                b = b.quota(kind.clone(), Quota::new(rate.clone()));
                route = route.quota(kind.clone());
            }
            if let Some(rate) = &r.tokens {
                let name = format!("{kind}.tokens");
                b = b.quota(
                    name.clone(),
                    Quota::new(rate.clone())
                        .cost(Cost::Tokens(TokenEstimate::default()))
                        .charge(self.charging),
                );
                route = route.quota(name);
            }
            if let Some(rate) = &r.images {
                let name = format!("{kind}.images");
                b = b.quota(
                    name.clone(),
                    Quota::new(rate.clone()).cost(image_cost(rate)),
                );
                route = route.quota(name);
            }
            let overrides: Vec<_> = self
                .models
                .iter()
                .filter_map(|(m, kinds)| kinds.get(kind).map(|rate| (m, rate)))
                .collect();
            if let Some(default) = r.images.as_ref().or(r.requests.as_ref())
                && !overrides.is_empty()
            {
                let name = format!("{kind}.model");
                let mut q = Quota::new(default.clone()).keyed_by(KeyBy::model());
                if r.images.is_some() {
                    q = q.cost(image_cost(default));
                }
                for (model, rate) in overrides {
                    q = q.with_override(model.clone(), rate.clone());
                }
                b = b.quota(name.clone(), q);
                route = route.quota(name);
            }
            if let Some(w) = r.max_wait {
                route = route.max_wait(w);
            }
            b = b.route(route);
        }
        b.build()
            .map_err(|e| InvalidPreset::new(e.entry().to_owned(), e.to_string()))
    }

    /// Adds the route of `kind` with quotas that learn per model: `kind`
    /// (requests, or images per request on an images route) and
    /// `kind.tokens`; a model's own rate pins that model.
    fn learned_route(
        &self,
        mut b: LimitsBuilder,
        learn: &LearnPreset,
        kind: &str,
        r: &RouteLimit,
    ) -> LimitsBuilder {
        let mut route = Route::new(r.method.clone(), r.path.clone());
        let pins: Vec<_> = self
            .models
            .iter()
            .filter_map(|(m, kinds)| kinds.get(kind).map(|rate| (m, rate)))
            .collect();
        let quota = |start: &Rate, tokens: bool| {
            let (floor, ceiling, headers) = if tokens {
                (
                    &learn.token_floor,
                    &learn.token_ceiling,
                    &learn.token_headers,
                )
            } else {
                (
                    &learn.request_floor,
                    &learn.request_ceiling,
                    &learn.request_headers,
                )
            };
            let start = if start.per_second_f64() > ceiling.per_second_f64() {
                ceiling
            } else if start.per_second_f64() < floor.per_second_f64() {
                floor
            } else {
                start
            };
            let a = Adaptive::new(start.clone())
                .floor(floor.clone())
                .ceiling(ceiling.clone())
                .headers(headers.clone())
                .ramp(learn.ramp, learn.ramp_window)
                .tempo(learn.tempo);
            Quota::adaptive(a).keyed_by(KeyBy::model())
        };
        if let Some(start) = r.requests.as_ref().or(r.images.as_ref()) {
            let mut q = quota(&requests(start), false);
            for (model, rate) in &pins {
                q = q.with_override((*model).clone(), requests(rate));
            }
            b = b.quota(kind.to_owned(), q);
            route = route.quota(kind.to_owned());
        }
        if let Some(start) = &r.tokens {
            let name = format!("{kind}.tokens");
            b = b.quota(
                name.clone(),
                quota(start, true)
                    .cost(Cost::Tokens(TokenEstimate::default()))
                    .charge(self.charging),
            );
            route = route.quota(name);
        }
        if let Some(w) = r.max_wait {
            route = route.max_wait(w);
        }
        b.route(route)
    }
}

/// The same amount and period, counting requests.
fn requests(rate: &Rate) -> Rate {
    Rate::new(rate.amount(), rate.period()).expect("the period is unchanged")
}

/// Charges a request its `n` (default 1), capped at one second's worth of
/// the rate so a large `n` waits instead of failing (the server charges a
/// cost above its window as the whole window).
fn image_cost(rate: &Rate) -> Cost {
    let cap = rate.per_second_f64().ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
    Cost::from_fields(move |_, fields| {
        let n = fields
            .and_then(|f| f.n())
            .unwrap_or(1)
            .clamp(1, u64::from(cap));
        n as u32
    })
}
