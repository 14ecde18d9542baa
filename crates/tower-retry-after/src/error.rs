//! Errors building a [`RetryPolicy`](crate::RetryPolicy).

use std::fmt;

/// A [`Builder`](crate::Builder) setting that cannot work, reported by
/// [`Builder::build`](crate::Builder::build) before any request is sent.
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
        write!(f, "invalid retry policy: {}", self.message)
    }
}

impl std::error::Error for InvalidConfig {}
