//! Request validation, token estimates and deterministic fake answers of the
//! inference endpoints (shared by the server and the batch runner).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::config::{CHAT, COMPLETIONS, EMBEDDINGS, IMAGES, ModelSpec, SimConfig, TokenRange};
use crate::reply::{chars_to_tokens, reply};

/// An error answer in Together's shape.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) kind: &'static str,
    pub(crate) param: Option<&'static str>,
    pub(crate) code: Option<&'static str>,
}

impl ApiError {
    pub(crate) fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", message)
    }

    pub(crate) fn param(mut self, p: &'static str) -> Self {
        self.param = Some(p);
        self
    }

    pub(crate) fn code(mut self, c: &'static str) -> Self {
        self.code = Some(c);
        self
    }

    pub(crate) fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// A validated inference request.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) model: String,
    pub(crate) input_tokens: u64,
    pub(crate) max_tokens: u64,
    pub(crate) n: u64,
}

impl Prepared {
    /// Estimated token cost: input + max_tokens x n.
    pub(crate) fn tokens(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.max_tokens.saturating_mul(self.n))
    }
}

/// The model catalog and answer settings.
#[derive(Debug)]
pub(crate) struct Catalog {
    pub(crate) models: Vec<ModelSpec>,
    index: HashMap<String, usize>,
    accept_unknown: bool,
    default_max_tokens: u64,
    dims: usize,
    ids: AtomicU64,
    /// Drawn completion lengths ([`AnswerConfig::completion_tokens`](crate::config::AnswerConfig)).
    lengths: Option<(TokenRange, Mutex<SmallRng>)>,
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let mut out = String::new();
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push_str(t);
                } else if let Some(t) = p.as_str() {
                    out.push_str(t);
                }
            }
            Some(out)
        }
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Inputs of an embeddings request: strings, or token arrays (kept as text
/// of their numbers).
fn embedding_inputs(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => {
            Some(vec![v.to_string()])
        }
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Some(s.clone()),
                Value::Array(_) => Some(i.to_string()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

impl Catalog {
    pub(crate) fn new(config: &SimConfig) -> Self {
        let models = config.models.clone();
        let index = models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i))
            .collect();
        Self {
            models,
            index,
            accept_unknown: config.accept_unknown_models,
            default_max_tokens: config.default_max_tokens,
            dims: config.embedding_dims.max(1),
            ids: AtomicU64::new(1),
            lengths: config.answers.completion_tokens.map(|r| {
                let rng = SmallRng::seed_from_u64(config.answers.seed);
                (r, Mutex::new(rng))
            }),
        }
    }

    /// A completion's length in tokens, when configured.
    fn draw_length(&self) -> Option<u64> {
        let (range, rng) = self.lengths.as_ref()?;
        let mut rng = rng.lock().unwrap_or_else(|e| e.into_inner());
        Some(rng.random_range(range.min..=range.max))
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn model(&self, id: &str) -> Result<Option<&ModelSpec>, ApiError> {
        match self.index.get(id) {
            Some(&i) => Ok(Some(&self.models[i])),
            None if self.accept_unknown => Ok(None),
            None => Err(ApiError::new(
                404,
                "invalid_request_error",
                format!(
                    "Unable to access model {id}. Please visit https://api.together.ai/models to view the list of supported models."
                ),
            )
            .param("model")
            .code("model_not_available")),
        }
    }

    /// Validates an inference request body and estimates its cost.
    pub(crate) fn prepare(&self, route: &str, body: &Value) -> Result<Prepared, ApiError> {
        if !body.is_object() {
            return Err(ApiError::invalid("The request body must be a JSON object."));
        }
        let model = match body.get("model") {
            Some(Value::String(m)) => m.clone(),
            Some(_) => return Err(ApiError::invalid("`model` must be a string.").param("model")),
            None => {
                return Err(ApiError::invalid("Missing required field `model`.").param("model"));
            }
        };
        let n = match body.get("n") {
            None | Some(Value::Null) => 1,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=128).contains(&n) => n,
                _ => {
                    return Err(
                        ApiError::invalid("`n` must be an integer from 1 to 128.").param("n")
                    );
                }
            },
        };
        let max_tokens = match body
            .get("max_tokens")
            .or_else(|| body.get("max_completion_tokens"))
        {
            None | Some(Value::Null) => self.default_max_tokens,
            Some(v) => v.as_u64().ok_or_else(|| {
                ApiError::invalid("`max_tokens` must be a non-negative integer.")
                    .param("max_tokens")
            })?,
        };
        let (input_tokens, max_tokens) = match route {
            CHAT => {
                let Some(msgs) = body.get("messages").and_then(Value::as_array) else {
                    return Err(
                        ApiError::invalid("Missing required field `messages` (an array).")
                            .param("messages"),
                    );
                };
                if msgs.is_empty() {
                    return Err(
                        ApiError::invalid("`messages` must not be empty.").param("messages")
                    );
                }
                let mut chars = 0;
                for m in msgs {
                    let content = m.get("content").unwrap_or(&Value::Null);
                    let Some(t) = text_of(content) else {
                        return Err(ApiError::invalid(
                            "Message `content` must be a string or an array of parts.",
                        )
                        .param("messages"));
                    };
                    chars += t.len();
                }
                (chars_to_tokens(chars), max_tokens)
            }
            COMPLETIONS => {
                let Some(t) = body
                    .get("prompt")
                    .filter(|p| !p.is_null())
                    .and_then(text_of)
                else {
                    return Err(
                        ApiError::invalid("Missing required field `prompt`.").param("prompt")
                    );
                };
                (chars_to_tokens(t.len()), max_tokens)
            }
            EMBEDDINGS => {
                let Some(inputs) = body.get("input").and_then(embedding_inputs) else {
                    return Err(ApiError::invalid(
                        "Missing or invalid field `input` (a string or an array of strings).",
                    )
                    .param("input"));
                };
                let chars: usize = inputs.iter().map(String::len).sum();
                (chars_to_tokens(chars), 0)
            }
            IMAGES => {
                if !body.get("prompt").is_some_and(Value::is_string) {
                    return Err(
                        ApiError::invalid("Missing required field `prompt`.").param("prompt")
                    );
                }
                (0, 0)
            }
            _ => (0, 0),
        };
        let spec = self.model(&model)?;
        if let Some(spec) = spec
            && spec.context_length > 0
            && route != IMAGES
            && input_tokens.saturating_add(max_tokens) > spec.context_length
        {
            return Err(ApiError::new(
                403,
                "invalid_request_error",
                format!(
                    "Input validation error: `inputs` tokens + `max_new_tokens` must be <= {}. Given: {} `inputs` tokens and {} `max_new_tokens`",
                    spec.context_length, input_tokens, max_tokens
                ),
            )
            .param("max_tokens"));
        }
        Ok(Prepared {
            model,
            input_tokens,
            max_tokens,
            n,
        })
    }

    /// The deterministic answer of a validated request.
    pub(crate) fn answer(&self, route: &str, p: &Prepared, body: &Value) -> Value {
        let created = unix_now();
        let id = self.next_id();
        match route {
            CHAT => {
                let last = body["messages"]
                    .as_array()
                    .and_then(|m| m.last())
                    .and_then(|m| m.get("content"))
                    .and_then(text_of)
                    .unwrap_or_default();
                let (content, used, finish) =
                    reply(&p.model, &last, p.max_tokens, self.draw_length());
                let choices: Vec<Value> = (0..p.n)
                    .map(|i| {
                        json!({
                            "index": i,
                            "message": {"role": "assistant", "content": content, "tool_calls": []},
                            "finish_reason": finish,
                            "logprobs": null,
                            "seed": id,
                        })
                    })
                    .collect();
                json!({
                    "id": format!("chatcmpl-sim-{id:010}"),
                    "object": "chat.completion",
                    "created": created,
                    "model": p.model,
                    "prompt": [],
                    "choices": choices,
                    "usage": usage(p.input_tokens, used * p.n),
                })
            }
            COMPLETIONS => {
                let prompt = body.get("prompt").and_then(text_of).unwrap_or_default();
                let (text, used, finish) =
                    reply(&p.model, &prompt, p.max_tokens, self.draw_length());
                let choices: Vec<Value> = (0..p.n)
                    .map(|i| json!({"index": i, "text": text, "finish_reason": finish, "logprobs": null}))
                    .collect();
                json!({
                    "id": format!("cmpl-sim-{id:010}"),
                    "object": "text_completion",
                    "created": created,
                    "model": p.model,
                    "choices": choices,
                    "usage": usage(p.input_tokens, used * p.n),
                })
            }
            EMBEDDINGS => {
                let inputs = body
                    .get("input")
                    .and_then(embedding_inputs)
                    .unwrap_or_default();
                let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
                let data: Vec<Value> = inputs
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let e = embedding(t, self.dims);
                        let embedding = if base64 {
                            let mut bytes = Vec::with_capacity(e.len() * 4);
                            for f in &e {
                                bytes.extend_from_slice(&f.to_le_bytes());
                            }
                            Value::String(base64_encode(&bytes))
                        } else {
                            json!(e)
                        };
                        json!({"object": "embedding", "embedding": embedding, "index": i})
                    })
                    .collect();
                json!({
                    "object": "list",
                    "data": data,
                    "model": p.model,
                    "usage": {"prompt_tokens": p.input_tokens, "total_tokens": p.input_tokens},
                })
            }
            IMAGES => {
                let b64 = body.get("response_format").and_then(Value::as_str) == Some("b64_json");
                let data: Vec<Value> = (0..p.n)
                    .map(|i| {
                        if b64 {
                            json!({"index": i, "b64_json": base64_encode(format!("sim-image-{id}-{i}").as_bytes()), "type": "b64_json"})
                        } else {
                            json!({"index": i, "url": format!("https://sim.invalid/images/{id}-{i}.png"), "type": "url"})
                        }
                    })
                    .collect();
                json!({"id": format!("img-sim-{id:010}"), "model": p.model, "object": "list", "data": data})
            }
            _ => json!({}),
        }
    }

    /// `GET /v1/models`: a bare array, as Together answers.
    pub(crate) fn list(&self) -> Value {
        let models: Vec<Value> = self
            .models
            .iter()
            .map(|m| {
                let org = m.id.split('/').next().unwrap_or("sim");
                json!({
                    "id": m.id,
                    "object": "model",
                    "created": 1_700_000_000u64,
                    "type": m.kind,
                    "display_name": m.id.rsplit('/').next().unwrap_or(&m.id),
                    "organization": org,
                    "context_length": m.context_length,
                    "pricing": {"input": 0.0, "output": 0.0, "base": 0.0, "finetune": 0.0, "hourly": 0.0},
                })
            })
            .collect();
        Value::Array(models)
    }
}

fn usage(prompt: u64, completion: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// A unit-length vector, stable for the same text.
pub(crate) fn embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let mut rng = SmallRng::seed_from_u64(h);
    let mut v: Vec<f32> = (0..dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    for x in &mut v {
        *x /= norm;
    }
    v
}

/// Standard base64 with padding.
pub(crate) fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `2026-01-02T03:04:05Z` of a unix time.
pub(crate) fn iso8601(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut s = String::with_capacity(20);
    let _ = write!(
        s,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn embeddings_are_stable_unit_vectors() {
        let a = embedding("hello", 16);
        assert_eq!(a, embedding("hello", 16));
        assert_ne!(a, embedding("hellp", 16));
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }
}
