//! Streamed answers: the whole answer cut into server-sent events (a role
//! chunk, content deltas, the finish, the usage when asked, `[DONE]`),
//! sent one by one with the configured time between them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::config::{AnswerConfig, UsageStyle};
use crate::limits::TokenDebt;
use crate::wire::{SimBody, StreamCut};

use super::state::ServerState;

/// Whether a request body asks for a stream, and for its usage.
pub(super) fn asked(body: &Value, answers: &AnswerConfig) -> Option<bool> {
    if body.get("stream") != Some(&Value::Bool(true)) {
        return None;
    }
    let include = body
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Some(include || answers.usage_unasked)
}

/// `text` cut into pieces of `tokens` tokens (4 characters a token).
fn pieces(text: &str, tokens: u64) -> Vec<String> {
    let size = usize::try_from(tokens.saturating_mul(4)).unwrap_or(usize::MAX);
    let chars: Vec<char> = text.chars().collect();
    chars
        .chunks(size.max(1))
        .map(|c| c.iter().collect())
        .collect()
}

/// The events of `answer` (a chat or text completion, as the server would
/// answer it whole), each one `data: ...` line and a blank line.
pub(super) fn events(answer: &Value, include_usage: bool, answers: &AnswerConfig) -> Vec<Bytes> {
    let chat = answer["object"] == "chat.completion";
    let object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let head = |choices: Value, usage: Value| {
        let mut v = json!({
            "id": answer["id"],
            "object": object,
            "created": answer["created"],
            "model": answer["model"],
            "choices": choices,
        });
        if answers.usage_style == UsageStyle::Together || !usage.is_null() {
            v["usage"] = usage;
        }
        v
    };
    let mut out = Vec::new();
    let choices = answer["choices"].as_array().cloned().unwrap_or_default();
    for (i, choice) in choices.iter().enumerate() {
        let index = choice["index"].clone();
        if chat {
            let delta = json!({"role": "assistant", "content": ""});
            out.push(head(
                json!([{"index": index, "delta": delta, "finish_reason": null}]),
                Value::Null,
            ));
        }
        let text = if chat {
            choice["message"]["content"].as_str().unwrap_or_default()
        } else {
            choice["text"].as_str().unwrap_or_default()
        };
        for piece in pieces(text, answers.chunk_tokens) {
            let c = if chat {
                json!({"index": index, "delta": {"content": piece}, "finish_reason": null})
            } else {
                json!({"index": index, "text": piece, "finish_reason": null})
            };
            out.push(head(json!([c]), Value::Null));
        }
        let last = i + 1 == choices.len();
        let finish = if chat {
            json!({"index": index, "delta": {}, "finish_reason": choice["finish_reason"]})
        } else {
            json!({"index": index, "text": "", "finish_reason": choice["finish_reason"]})
        };
        let usage = match answers.usage_style {
            UsageStyle::Together if last && include_usage => {
                let mut u = answer["usage"].clone();
                u["cached_tokens"] = json!(0);
                u
            }
            _ => Value::Null,
        };
        out.push(head(json!([finish]), usage));
    }
    if include_usage && answers.usage_style == UsageStyle::Openai {
        out.push(head(json!([]), answer["usage"].clone()));
    }
    let mut events: Vec<Bytes> = out
        .into_iter()
        .map(|v| Bytes::from(format!("data: {v}\n\n")))
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
}

/// Sends `events` as a body, `interval` (simulated) apart; with `cut`,
/// aborts after half of them. The tokens `used` are charged to `debt`
/// when the stream is over (sent whole or cut: the work was done).
pub(super) fn send(
    st: &Arc<ServerState>,
    events: Vec<Bytes>,
    cut: bool,
    debt: Option<(TokenDebt, u64)>,
) -> SimBody {
    let (tx, rx) = mpsc::channel(4);
    let interval: Duration = st.clock.to_real(st.config.answers.chunk_interval);
    let st = st.clone();
    tokio::spawn(async move {
        let stop = if cut { events.len() / 2 } else { events.len() };
        for (i, event) in events.into_iter().enumerate() {
            if i == stop {
                // What was sent goes out first (the body is idle, so the
                // server flushes it): then the connection breaks.
                tokio::time::sleep(Duration::from_millis(10)).await;
                let _ = tx.send(Err(StreamCut)).await;
                break;
            }
            if i > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            if tx.send(Ok(event)).await.is_err() {
                break;
            }
        }
        if let Some((debt, used)) = debt {
            debt.charge(st.clock.now(), used);
        }
    });
    SimBody::Stream(rx)
}
