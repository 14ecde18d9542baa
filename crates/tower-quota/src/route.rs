//! Routes: a method and a path pattern (`path_pattern::PathPattern`).

use http::Method;
use path_pattern::PathPattern;

/// A method (or any method) and a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteMatcher {
    pub(crate) method: Option<Method>,
    pub(crate) path: PathPattern,
}

impl RouteMatcher {
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && self.path.matches(path)
    }
}
