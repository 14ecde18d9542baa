//! Integration tests of `RetryPolicy` behind tower's `Retry`, under paused time.

mod body;
mod budget;
mod hints;
mod rules;
mod support;
mod timing;
