//! Early stops: an answer that shows an error every line it touches will
//! meet (a refused key, a base URL that does not answer, a path the API
//! does not have, a model it does not list) blocks what it affects.

use std::collections::HashSet;

use std::time::Duration;

use together_tower::TogetherClient;

use super::options::RunOptions;
use super::send::Done;

/// What must not be sent any more (an early stop): everything, some
/// routes, some models.
#[derive(Debug, Clone, Default)]
pub(crate) struct Blocked {
    pub(crate) all: bool,
    pub(crate) routes: HashSet<String>,
    pub(crate) models: HashSet<String>,
}

impl Blocked {
    pub(super) fn blocks(&self, route: &str, model: Option<&str>) -> bool {
        self.all || self.routes.contains(route) || model.is_some_and(|m| self.models.contains(m))
    }
}

/// An error that will hit more than its own line, and what to stop.
pub(super) struct Stop {
    scope: Scope,
    pub(super) why: String,
    /// The model to name the closest listed ones for, once it is blocked.
    pub(super) suggest: Option<String>,
}

enum Scope {
    All,
    Route(String),
    Model(String),
}

impl Stop {
    /// Blocks the scope; whether it was not blocked already.
    pub(super) fn apply(&self, b: &mut Blocked) -> bool {
        match &self.scope {
            Scope::All => !std::mem::replace(&mut b.all, true),
            Scope::Route(r) => b.routes.insert(r.clone()),
            Scope::Model(m) => b.models.insert(m.clone()),
        }
    }
}

/// Whether `d` failed in a way every line of its scope will: a refused key,
/// a base URL that does not answer, a path the API does not have, a model
/// it does not list.
pub(super) fn early_stop(opts: &RunOptions, d: &Done) -> Option<Stop> {
    let e = d.error.as_ref()?;
    let then = "stopped sending; the rest is left unanswered and sent on the next run \
                (--keep-going sends everything regardless)";
    let key_words = ["key", "auth", "permission", "forbidden", "credential"];
    let about_key = |e: &together_tower::Error| {
        [e.api_type(), e.code()]
            .into_iter()
            .flatten()
            .chain([e.message()])
            .any(|t| key_words.iter().any(|w| t.to_ascii_lowercase().contains(w)))
    };
    let stop = |scope, what: String| {
        Some(Stop {
            scope,
            why: format!("{what}: {then}"),
            suggest: None,
        })
    };
    match d.status {
        0 if e.never_sent() && e.kind() == together_tower::ErrorKind::Transport => stop(
            Scope::All,
            format!(
                "{} does not answer ({}); check --base-url",
                opts.base_url,
                e.message()
            ),
        ),
        401 => stop(
            Scope::All,
            format!(
                "the API key was refused (401: {}); {}{}",
                e.message(),
                e.advice(),
                sim_hint(opts)
            ),
        ),
        403 if about_key(e) => stop(
            Scope::All,
            format!(
                "the API key may not do this (403: {}); {}",
                e.message(),
                e.advice()
            ),
        ),
        404 if e.is_unknown_model() => {
            let model = d.model.clone()?;
            let mut found = stop(
                Scope::Model(model.clone()),
                format!("model {model:?} is not found (404)"),
            )?;
            found.suggest = Some(model);
            Some(found)
        }
        404 => stop(
            Scope::Route(d.route.clone()),
            format!(
                "{} is not a route of {} (404: {}); check the line's url (or --endpoint) and \
                 --base-url",
                d.route,
                opts.base_url,
                e.message()
            ),
        ),
        _ => None,
    }
}

/// What to do about an unknown model, naming the closest listed ones (the
/// library's advice); asked with a short timeout, so a slow model list
/// cannot stall the run.
pub(super) async fn suggest(
    together: &TogetherClient,
    error: together_tower::Error,
    model: &str,
) -> String {
    let closest = tokio::time::timeout(Duration::from_secs(5), together.closest_model_ids(model));
    let suggestions = closest.await.unwrap_or_default();
    error.into_model_not_found(model, suggestions).advice()
}

/// For a refused key on a local server: together-sim takes only its own keys.
fn sim_hint(opts: &RunOptions) -> &'static str {
    let local = ["://127.0.0.1", "://localhost", "://[::1]"];
    if local.iter().any(|l| opts.base_url.contains(l)) {
        " (a local together-sim accepts only its own test keys, printed when it starts)"
    } else {
        ""
    }
}
