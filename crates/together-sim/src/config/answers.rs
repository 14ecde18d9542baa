//! How answers are made: how long completions are, how streams are sent,
//! and what the token limit charges.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rate::duration_str;

/// What a token limit charges a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenCharge {
    /// The estimate (input + `max_tokens` × `n`), at admission: the default.
    #[default]
    Estimate,
    /// The answer's real usage (input + generated), when the answer is
    /// complete (a stream at its end). Admission only needs the input to
    /// fit; the usage is charged even past the limit, which then refuses
    /// until it has drained. (Static limits only: the [dynamic
    /// rule](crate::dynamic) charges the estimate.)
    Usage,
}

/// Where a stream's usage goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageStyle {
    /// Together's: `"usage": null` on every chunk but the one with the
    /// `finish_reason`, which carries it with a top-level `cached_tokens`.
    #[default]
    Together,
    /// OpenAI's: a separate last chunk with empty `choices` and the usage.
    Openai,
}

/// A completion length in tokens, drawn uniformly from `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRange {
    /// The shortest.
    pub min: u64,
    /// The longest.
    pub max: u64,
}

/// How answers are made (TOML table `[answers]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnswerConfig {
    /// The completion's length in tokens before `max_tokens` cuts it:
    /// absent, a short reply that echoes the input; `{ min = 40, max = 80 }`
    /// drawn uniformly (`min = max` for a fixed length). At most 1,048,576
    /// tokens (4 MiB of text) per choice. A stream is made whole before
    /// its first chunk goes: keep `n` x length modest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<TokenRange>,
    /// What token limits charge (default `"estimate"`).
    pub token_charge: TokenCharge,
    /// Simulated time between a stream's chunks (default 0).
    #[serde(with = "duration_str")]
    pub chunk_interval: Duration,
    /// Tokens of content per stream chunk (default 4).
    pub chunk_tokens: u64,
    /// Where a stream's usage goes (default `"together"`).
    pub usage_style: UsageStyle,
    /// Send a stream's usage even without `stream_options.include_usage`
    /// (default false, as OpenAI does).
    pub usage_unasked: bool,
    /// Seed of the completion-length draws.
    pub seed: u64,
}

impl Default for AnswerConfig {
    fn default() -> Self {
        AnswerConfig {
            completion_tokens: None,
            token_charge: TokenCharge::Estimate,
            chunk_interval: Duration::ZERO,
            chunk_tokens: 4,
            usage_style: UsageStyle::Together,
            usage_unasked: false,
            seed: 0,
        }
    }
}
