//! Errors of this crate.

use std::fmt;

/// A [`JobKind`](crate::JobKind) or [`JobLimitLayer`](crate::JobLimitLayer)
/// configuration that cannot work; returned by
/// [`JobLimitBuilder::build`](crate::JobLimitBuilder::build).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig {
    message: String,
}

impl InvalidConfig {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        InvalidConfig {
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid job concurrency configuration: {}", self.message)
    }
}

impl std::error::Error for InvalidConfig {}
