//! The chunks of a streamed answer, and how they add up to the answer.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::{
    ChatChoice, ChatResponse, CompletionChoice, CompletionResponse, Extra, Usage, null_as_default,
};

/// One chunk of a stream, and the whole answer the chunks add up to.
pub trait Chunk: DeserializeOwned + Send + Unpin + 'static {
    /// The answer, assembled.
    type Whole: Default + Send + Unpin + 'static;

    /// The usage this chunk carries, if any (the last one does, when asked).
    fn usage(&self) -> Option<Usage>;

    /// Adds this chunk to the answer so far.
    fn add_to(&self, whole: &mut Self::Whole);
}

/// What changed in one choice of a chat stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Delta {
    /// The role, on the first chunk.
    #[serde(default)]
    pub role: Option<String>,
    /// More text.
    #[serde(default)]
    pub content: Option<String>,
    /// Other fields (`tool_calls`...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// One choice of a chat chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatChunkChoice {
    /// Which choice.
    #[serde(default)]
    pub index: u32,
    /// What it adds.
    #[serde(default)]
    pub delta: Delta,
    /// Set on the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One chunk of a streamed chat completion (`chat.completion.chunk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatChunk {
    /// The completion id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// The model.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// The choices it adds to (empty on OpenAI's usage chunk).
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<ChatChunkChoice>,
    /// Token counts: `null` but on the last chunk, when asked.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One choice of a text completion chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CompletionChunkChoice {
    /// Which choice.
    #[serde(default)]
    pub index: u32,
    /// More text.
    #[serde(default, deserialize_with = "null_as_default")]
    pub text: String,
    /// Set on the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One chunk of a streamed text completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CompletionChunk {
    /// The completion id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// The model.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// The choices it adds to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<CompletionChunkChoice>,
    /// Token counts: on the last chunk, when asked.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The entry for choice `index`, made when it first appears.
fn choice<T: Default>(choices: &mut Vec<T>, index: u32, of: impl Fn(&T) -> u32) -> &mut T {
    let at = match choices.iter().position(|c| of(c) == index) {
        Some(at) => at,
        None => {
            choices.push(T::default());
            choices.len() - 1
        }
    };
    &mut choices[at]
}

impl Chunk for ChatChunk {
    type Whole = ChatResponse;

    fn usage(&self) -> Option<Usage> {
        self.usage.clone()
    }

    fn add_to(&self, whole: &mut ChatResponse) {
        if whole.id.is_empty() {
            whole.id.clone_from(&self.id);
        }
        if whole.model.is_empty() {
            whole.model.clone_from(&self.model);
        }
        for c in &self.choices {
            let entry: &mut ChatChoice = choice(&mut whole.choices, c.index, |x| x.index);
            entry.index = c.index;
            if let Some(role) = &c.delta.role {
                entry.message.role.clone_from(role);
            }
            if let Some(text) = &c.delta.content {
                entry.message.content.push_str(text);
            }
            if c.finish_reason.is_some() {
                entry.finish_reason.clone_from(&c.finish_reason);
            }
        }
        if self.usage.is_some() {
            whole.usage.clone_from(&self.usage);
        }
    }
}

impl Chunk for CompletionChunk {
    type Whole = CompletionResponse;

    fn usage(&self) -> Option<Usage> {
        self.usage.clone()
    }

    fn add_to(&self, whole: &mut CompletionResponse) {
        if whole.id.is_empty() {
            whole.id.clone_from(&self.id);
        }
        if whole.model.is_empty() {
            whole.model.clone_from(&self.model);
        }
        for c in &self.choices {
            let entry: &mut CompletionChoice = choice(&mut whole.choices, c.index, |x| x.index);
            entry.index = c.index;
            entry.text.push_str(&c.text);
            if c.finish_reason.is_some() {
                entry.finish_reason.clone_from(&c.finish_reason);
            }
        }
        if self.usage.is_some() {
            whole.usage.clone_from(&self.usage);
        }
    }
}

/// Any chunk as JSON, assembled into the answer a request without
/// `stream` would have had: chat chunks into `chat.completion` (each
/// choice's `message`), text chunks into `text_completion`; the usage (and
/// Together's top-level `cached_tokens` with it) kept.
impl Chunk for Value {
    type Whole = Value;

    fn usage(&self) -> Option<Usage> {
        self.get("usage")
            .filter(|u| !u.is_null())
            .and_then(|u| serde_json::from_value(u.clone()).ok())
    }

    fn add_to(&self, whole: &mut Value) {
        if !whole.is_object() {
            *whole = serde_json::json!({"choices": []});
        }
        for field in ["id", "created", "model", "system_fingerprint"] {
            if whole.get(field).is_none()
                && let Some(v) = self.get(field)
            {
                whole[field] = v.clone();
            }
        }
        let chat = self.get("object").and_then(Value::as_str) == Some("chat.completion.chunk");
        if whole.get("object").is_none() {
            let object = if chat {
                "chat.completion"
            } else {
                "text_completion"
            };
            whole["object"] = object.into();
        }
        let choices = self
            .get("choices")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for c in choices {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let list = whole["choices"]
                .as_array_mut()
                .expect("made an array above");
            let at = match list.iter().position(|x| x["index"].as_u64() == Some(index)) {
                Some(at) => at,
                None => {
                    list.push(if chat || c.get("delta").is_some() {
                        serde_json::json!({"index": index, "message": {"role": "assistant", "content": ""}, "finish_reason": null})
                    } else {
                        serde_json::json!({"index": index, "text": "", "finish_reason": null})
                    });
                    list.len() - 1
                }
            };
            let entry = &mut list[at];
            if let Some(delta) = c.get("delta") {
                if let Some(role) = delta.get("role").and_then(Value::as_str) {
                    entry["message"]["role"] = role.into();
                }
                if let Some(text) = delta.get("content").and_then(Value::as_str) {
                    append(&mut entry["message"]["content"], text);
                }
            } else if let Some(text) = c.get("text").and_then(Value::as_str) {
                append(&mut entry["text"], text);
            }
            if let Some(reason) = c.get("finish_reason").filter(|r| !r.is_null()) {
                entry["finish_reason"] = reason.clone();
            }
        }
        if let Some(usage) = self.get("usage").filter(|u| !u.is_null()) {
            whole["usage"] = usage.clone();
        }
    }
}

/// Appends `text` to a string value in place (a non-string becomes one).
fn append(to: &mut Value, text: &str) {
    match to {
        Value::String(s) => s.push_str(text),
        other => *other = Value::String(text.to_owned()),
    }
}
