//! Request and response bodies of the OpenAI-compatible API.
//!
//! Every type keeps the fields it does not know in `extra` (a
//! `#[serde(flatten)]` map), so new API fields neither break parsing nor
//! get lost when a value is sent back.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Fields a type does not name, kept as they came.
pub type Extra = Map<String, Value>;

pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub role: String,
    /// The text (empty when the server sent `null`, e.g. with tool calls).
    #[serde(default, deserialize_with = "null_as_default")]
    pub content: String,
    /// Other fields (`tool_calls`, `name`...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message {
            role: role.into(),
            content: content.into(),
            extra: Extra::new(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatRequest {
    /// The model id.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// The most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Other fields (`top_p`, `stop`, `tools`, `response_format`...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ChatRequest {
    /// A request for `model` with `messages`.
    pub fn new(model: impl Into<String>, messages: Vec<Message>) -> Self {
        ChatRequest {
            model: model.into(),
            messages,
            ..ChatRequest::default()
        }
    }

    /// Sets `max_tokens`.
    pub fn max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
}

/// Token counts of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Usage {
    /// Input tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub prompt_tokens: u64,
    /// Output tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub completion_tokens: u64,
    /// Both.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_tokens: u64,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// One choice of a chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatChoice {
    /// Its index.
    #[serde(default)]
    pub index: u32,
    /// The generated message.
    #[serde(default)]
    pub message: Message,
    /// `stop`, `length`, `tool_calls`...
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The answer to a [`ChatRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ChatResponse {
    /// The completion id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// The model that answered, as the server names it.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// The choices.
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CompletionRequest {
    /// The model id.
    pub model: String,
    /// The prompt.
    pub prompt: String,
    /// The most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl CompletionRequest {
    /// A request for `model` continuing `prompt`.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        CompletionRequest {
            model: model.into(),
            prompt: prompt.into(),
            ..CompletionRequest::default()
        }
    }
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CompletionChoice {
    /// Its index.
    #[serde(default)]
    pub index: u32,
    /// The generated text.
    #[serde(default, deserialize_with = "null_as_default")]
    pub text: String,
    /// Why generation stopped.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The answer to a [`CompletionRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CompletionResponse {
    /// The completion id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub id: String,
    /// The model that answered.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// The choices.
    #[serde(default, deserialize_with = "null_as_default")]
    pub choices: Vec<CompletionChoice>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EmbeddingRequest {
    /// The model id.
    pub model: String,
    /// The texts.
    pub input: Vec<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl EmbeddingRequest {
    /// A request embedding `input` with `model`.
    pub fn new<I, S>(model: impl Into<String>, input: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EmbeddingRequest {
            model: model.into(),
            input: input.into_iter().map(Into::into).collect(),
            extra: Extra::new(),
        }
    }
}

/// One embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Embedding {
    /// The index of its input.
    #[serde(default)]
    pub index: usize,
    /// The vector.
    #[serde(default, deserialize_with = "null_as_default")]
    pub embedding: Vec<f32>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The answer to an [`EmbeddingRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EmbeddingResponse {
    /// The model that answered.
    #[serde(default, deserialize_with = "null_as_default")]
    pub model: String,
    /// The embeddings (sort by `index`; [`embed_all`](crate::TogetherClient::embed_all) does).
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: Vec<Embedding>,
    /// Token counts.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// `POST /v1/images/generations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImageRequest {
    /// The model id.
    pub model: String,
    /// What to draw.
    pub prompt: String,
    /// How many images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Other fields (`width`, `height`, `steps`, `response_format`...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl ImageRequest {
    /// A request drawing `prompt` with `model`.
    pub fn new(model: impl Into<String>, prompt: impl Into<String>) -> Self {
        ImageRequest {
            model: model.into(),
            prompt: prompt.into(),
            ..ImageRequest::default()
        }
    }
}

/// One generated image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Image {
    /// Where to fetch it.
    #[serde(default)]
    pub url: Option<String>,
    /// Or the image itself, base64.
    #[serde(default)]
    pub b64_json: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The answer to an [`ImageRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ImageResponse {
    /// The images.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: Vec<Image>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A model of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Model {
    /// The id to put in requests.
    pub id: String,
    /// `chat`, `language`, `code`, `image`, `embedding`, `rerank`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The name to show.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The context length in tokens.
    #[serde(default)]
    pub context_length: Option<u64>,
    /// Other fields (`organization`, `pricing`...).
    #[serde(flatten)]
    pub extra: Extra,
}

/// `GET /v1/models`: Together's bare array or OpenAI's `{"object":"list","data":[...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum ModelList {
    Bare(Vec<Model>),
    Wrapped { data: Vec<Model> },
}

impl ModelList {
    pub(crate) fn into_vec(self) -> Vec<Model> {
        match self {
            ModelList::Bare(v) | ModelList::Wrapped { data: v } => v,
        }
    }
}

/// `POST /v1/fine-tunes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FineTuneRequest {
    /// The base model.
    pub model: String,
    /// The training file id.
    pub training_file: String,
    /// A suffix for the output model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// Other fields (`n_epochs`, `learning_rate`, `lora`...).
    #[serde(flatten)]
    pub extra: Extra,
}

impl FineTuneRequest {
    /// Fine-tune `model` on the uploaded `training_file`.
    pub fn new(model: impl Into<String>, training_file: impl Into<String>) -> Self {
        FineTuneRequest {
            model: model.into(),
            training_file: training_file.into(),
            ..FineTuneRequest::default()
        }
    }
}

/// A fine-tuning job. `status` is one of
/// [`FINE_TUNE_STATUSES`](crate::preset::FINE_TUNE_STATUSES) on Together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FineTune {
    /// The job id.
    pub id: String,
    /// Its status.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// The base model.
    #[serde(default)]
    pub model: Option<String>,
    /// The fine-tuned model's name.
    #[serde(default)]
    pub output_name: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// An uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FileObject {
    /// The file id.
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub filename: Option<String>,
    /// `batch-api`, `fine-tune`...
    #[serde(default)]
    pub purpose: Option<String>,
    /// Its size.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A batch job. `status` is one of
/// [`BATCH_STATUSES`](crate::preset::BATCH_STATUSES) on Together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Batch {
    /// The batch id.
    pub id: String,
    /// Its status.
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// The input file.
    #[serde(default)]
    pub input_file_id: Option<String>,
    /// The output file, once done (`None` while empty).
    #[serde(default)]
    pub output_file_id: Option<String>,
    /// Other fields.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Batch {
    /// The output file id, if the batch has one.
    pub fn output_file(&self) -> Option<&str> {
        self.output_file_id.as_deref().filter(|s| !s.is_empty())
    }
}

/// One request of a batch: a line `{"custom_id": ..., "body": {...}}` of the input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchRequest {
    /// The caller's id for this request, unique in the batch.
    pub custom_id: String,
    /// The request body (for the batch's endpoint).
    pub body: Value,
}

impl BatchRequest {
    /// A request with `custom_id` and `body`.
    pub fn new(custom_id: impl Into<String>, body: Value) -> Self {
        BatchRequest {
            custom_id: custom_id.into(),
            body,
        }
    }
}

/// One result of a batch, from its output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    /// The request's `custom_id`.
    pub custom_id: String,
    /// The status the request got.
    pub status_code: u16,
    /// The response body (or error body).
    pub body: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_kept() {
        let r: ChatResponse = serde_json::from_str(
            r#"{"id":"c1","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[]},"finish_reason":"stop","logprobs":null}],"new_field":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(r.extra["new_field"]["a"], 1);
        assert_eq!(r.choices[0].message.content, "");
        assert!(r.choices[0].message.extra.contains_key("tool_calls"));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["new_field"]["a"], 1);
    }

    #[test]
    fn models_in_both_shapes() {
        let bare: ModelList = serde_json::from_str(r#"[{"id":"a","type":"chat"}]"#).unwrap();
        let wrapped: ModelList =
            serde_json::from_str(r#"{"object":"list","data":[{"id":"a","object":"model"}]}"#)
                .unwrap();
        assert_eq!(bare.into_vec()[0].kind.as_deref(), Some("chat"));
        assert_eq!(wrapped.into_vec()[0].id, "a");
    }
}
