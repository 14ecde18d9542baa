//! [`SimBuilder`]: a simulator configured in code.

use super::*;

/// Builds and spawns a simulator: start from [`Sim::builder`](crate::Sim::builder),
/// set what differs from the defaults, then
/// [`spawn`](SimBuilder::spawn).
#[derive(Debug, Clone)]
pub struct SimBuilder {
    pub(crate) config: SimConfig,
    pub(crate) addr: std::net::SocketAddr,
}

impl Default for SimBuilder {
    fn default() -> Self {
        Self {
            config: SimConfig::default(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl SimBuilder {
    /// Replaces the whole configuration (e.g. one read with [`SimConfig::load`]).
    pub fn config(mut self, config: SimConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration as built so far.
    pub fn config_ref(&self) -> &SimConfig {
        &self.config
    }

    /// Address to bind (default `127.0.0.1:0`, a free port).
    pub fn bind(mut self, addr: std::net::SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// Port to bind on the configured host (0: a free port).
    pub fn port(mut self, port: u16) -> Self {
        self.addr.set_port(port);
        self
    }

    /// Speed-up of simulated time (see [`SimConfig::time_scale`]).
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.config.time_scale = scale;
        self
    }

    /// Enforcement mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Enforce per 1-second windows (default true), or over each rate's own
    /// period.
    pub fn enforce_per_second(mut self, yes: bool) -> Self {
        self.config.enforce_per_second = yes;
        self
    }

    /// Replaces the accepted API keys.
    pub fn api_keys<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.config.api_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an accepted API key (the default list holds `test-key`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.config.api_keys.push(key.into());
        self
    }

    /// Replaces the limits of a route pattern.
    pub fn route_limits(mut self, route: impl Into<String>, limits: RouteLimits) -> Self {
        self.config.routes.insert(route.into(), limits);
        self
    }

    /// Removes every route limit (then add the ones a test needs).
    pub fn no_limits(mut self) -> Self {
        self.config.routes.clear();
        self.config.model_limits.clear();
        self
    }

    fn route_mut(&mut self, route: impl Into<String>) -> &mut RouteLimits {
        self.config.routes.entry(route.into()).or_default()
    }

    /// Sets the request rate of a route.
    pub fn requests(mut self, route: impl Into<String>, rate: Rate) -> Self {
        self.route_mut(route).requests = Some(rate);
        self
    }

    /// Sets the token rate of a route.
    pub fn tokens(mut self, route: impl Into<String>, rate: Rate) -> Self {
        self.route_mut(route).tokens = Some(rate);
        self
    }

    /// Sets the image rate of a route.
    pub fn images(mut self, route: impl Into<String>, rate: Rate) -> Self {
        self.route_mut(route).images = Some(rate);
        self
    }

    /// Sets the GCRA burst of a route's limits.
    pub fn burst(mut self, route: impl Into<String>, burst: u64) -> Self {
        self.route_mut(route).burst = Some(burst);
        self
    }

    /// Overrides limits for one model (kinds set here replace the route's).
    pub fn model_limits(mut self, model: impl Into<String>, limits: RouteLimits) -> Self {
        self.config.model_limits.insert(model.into(), limits);
        self
    }

    /// Adds (or replaces) a model of the catalog.
    pub fn model(mut self, spec: ModelSpec) -> Self {
        self.config.models.retain(|m| m.id != spec.id);
        self.config.models.push(spec);
        self
    }

    /// Serve any model name instead of answering 404.
    pub fn accept_unknown_models(mut self, yes: bool) -> Self {
        self.config.accept_unknown_models = yes;
        self
    }

    /// Largest accepted body in bytes (413 beyond).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.max_body_bytes = bytes;
        self
    }

    /// `max_tokens` assumed when a request has none.
    pub fn default_max_tokens(mut self, tokens: u64) -> Self {
        self.config.default_max_tokens = tokens;
        self
    }

    /// Length of fake embeddings.
    pub fn embedding_dims(mut self, dims: usize) -> Self {
        self.config.embedding_dims = dims;
        self
    }

    /// Which rate-limit headers are sent.
    pub fn headers(mut self, headers: HeaderConfig) -> Self {
        self.config.headers = headers;
        self
    }

    /// Fine-tune settings.
    pub fn fine_tunes(mut self, config: FineTuneConfig) -> Self {
        self.config.fine_tunes = config;
        self
    }

    /// Batch settings.
    pub fn batches(mut self, config: BatchConfig) -> Self {
        self.config.batches = config;
        self
    }

    /// Seed of the fault RNG.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.faults.seed = seed;
        self
    }

    /// How answers are made (see [`AnswerConfig`]).
    pub fn answers(mut self, answers: AnswerConfig) -> Self {
        self.config.answers = answers;
        self
    }

    /// Adds a fault rule.
    pub fn fault(mut self, rule: FaultRule) -> Self {
        self.config.faults.rules.push(rule);
        self
    }

    /// Turns on [dynamic limits](crate::dynamic) on their routes.
    pub fn dynamic(mut self, limits: DynamicLimits) -> Self {
        self.config.dynamic = Some(limits);
        self
    }

    /// Arrival log capacity.
    pub fn arrival_log_capacity(mut self, capacity: usize) -> Self {
        self.config.arrival_log_capacity = capacity;
        self
    }

    /// How long a connection may sit without a request before it is closed
    /// (default 30 s).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.config.idle_timeout = idle;
        self
    }
}
