//! Streamed answers: server-sent events read as they come, parsed into
//! typed chunks, assembled into the answer, with the usage of the last one.
//!
//! A stream is read from the body of an answer that has already come
//! through the stack: every retry happened before its head arrived, and a
//! stream cut half-way is an error to the caller ([`ErrorKind::Interrupted`]),
//! never a silent end nor a retry. What came before the cut stays in
//! [`response`](Streamed::response).

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use http_body::Body;
use tokio::time::{Instant, Sleep};

use crate::body::{BodyError, BodyLimits};
use crate::error::{Error, ErrorKind};
use crate::sse::{DEFAULT_MAX_EVENT_BYTES, SseError, SseEvent, SseParser};
use crate::transport::HttpBody;
use crate::types::Usage;

mod chunk;

pub use chunk::{ChatChunk, ChatChunkChoice, Chunk, CompletionChunk, CompletionChunkChoice, Delta};

/// A streamed chat completion.
pub type ChatStream = Streamed<ChatChunk>;

/// Whether a response head announces server-sent events
/// (`content-type: text/event-stream`, in any case).
pub fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().as_bytes();
            v.len() >= 17 && v[..17].eq_ignore_ascii_case(b"text/event-stream")
        })
}
/// A streamed text completion.
pub type CompletionStream = Streamed<CompletionChunk>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// `[DONE]` came: the body is read to its end (what the layers below
    /// settle on), then the stream ends.
    Draining,
    Done,
    Failed,
}

/// A stream of chunks `C` read from a response body of server-sent events.
///
/// It ends after `data: [DONE]`; a body that ends before it, fails, stalls
/// for longer than the idle timeout, or sends an event over the cap or one
/// that is not a chunk yields one error and ends.
pub struct Streamed<C: Chunk> {
    body: HttpBody,
    parser: SseParser,
    ready: VecDeque<SseEvent>,
    limits: BodyLimits,
    idle: Pin<Box<Sleep>>,
    read: usize,
    whole: C::Whole,
    usage: Option<Usage>,
    chunks: usize,
    phase: Phase,
    /// A bad event, reported once the good ones before it are taken.
    broken: Option<(ErrorKind, String)>,
    scrub: Box<dyn Fn(String) -> String + Send>,
}

impl<C: Chunk> fmt::Debug for Streamed<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streamed")
            .field("chunks", &self.chunks)
            .field("bytes", &self.read)
            .field("usage", &self.usage)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl<C: Chunk> Streamed<C> {
    /// Reads `body` (a `text/event-stream` answer) within `limits`: at most
    /// `max_bytes` in all, at most `idle` between two chunks, events of at
    /// most [`DEFAULT_MAX_EVENT_BYTES`].
    pub fn new(body: HttpBody, limits: BodyLimits) -> Self {
        Streamed {
            body,
            parser: SseParser::new(DEFAULT_MAX_EVENT_BYTES.min(limits.max_bytes)),
            ready: VecDeque::new(),
            idle: Box::pin(tokio::time::sleep(limits.idle)),
            limits,
            read: 0,
            whole: C::Whole::default(),
            usage: None,
            chunks: 0,
            phase: Phase::Open,
            broken: None,
            scrub: Box::new(|text| text),
        }
    }

    /// Passes error messages through `scrub` (to remove the key should a
    /// server echo it: see [`ApiKey::scrub`](crate::ApiKey::scrub)).
    pub fn scrubbing(mut self, scrub: impl Fn(String) -> String + Send + 'static) -> Self {
        self.scrub = Box::new(scrub);
        self
    }

    /// The usage, once the chunk carrying it has come.
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    /// The answer assembled from the chunks so far (all of it after the end).
    pub fn response(&self) -> &C::Whole {
        &self.whole
    }

    /// How many chunks have come.
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// Reads the rest and returns the whole answer.
    pub async fn finish(mut self) -> Result<C::Whole, Error> {
        use futures_util::StreamExt;
        while let Some(chunk) = self.next().await {
            chunk?;
        }
        Ok(self.whole)
    }

    fn fail(&mut self, kind: ErrorKind, what: String) -> Poll<Option<Result<C, Error>>> {
        self.phase = Phase::Failed;
        let message = format!(
            "the stream was cut after {} chunks ({} bytes): {what}",
            self.chunks, self.read
        );
        Poll::Ready(Some(Err(Error::stream(kind, (self.scrub)(message)))))
    }
}

impl<C: Chunk> Streamed<C> {
    /// Reads what follows `[DONE]` to the body's end (nothing, from a
    /// well-behaved server), within the idle timeout; then the stream ends.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<C, Error>>> {
        loop {
            match Pin::new(&mut self.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let n = frame.data_ref().map_or(0, |d| d.len());
                    self.read += n;
                    if self.read > self.limits.max_bytes {
                        break;
                    }
                }
                Poll::Ready(_) => break,
                Poll::Pending => {
                    if self.idle.as_mut().poll(cx).is_ready() {
                        break;
                    }
                    return Poll::Pending;
                }
            }
        }
        self.phase = Phase::Done;
        Poll::Ready(None)
    }
}

impl<C: Chunk> Stream for Streamed<C> {
    type Item = Result<C, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.phase == Phase::Draining {
                return this.drain(cx);
            }
            if this.phase != Phase::Open {
                return Poll::Ready(None);
            }
            if let Some(event) = this.ready.pop_front() {
                if event.data == "[DONE]" {
                    this.phase = Phase::Draining;
                    this.ready.clear();
                    continue;
                }
                if event.event.as_deref() == Some("error") || event.data.starts_with("{\"error\"") {
                    let what = format!("the server sent an error: {}", event.data);
                    return this.fail(ErrorKind::Api, what);
                }
                return match serde_json::from_str::<C>(&event.data) {
                    Ok(chunk) => {
                        chunk.add_to(&mut this.whole);
                        if let Some(usage) = chunk.usage() {
                            this.usage = Some(usage);
                        }
                        this.chunks += 1;
                        Poll::Ready(Some(Ok(chunk)))
                    }
                    Err(e) => this.fail(ErrorKind::Decode, format!("an event is not a chunk: {e}")),
                };
            }
            if let Some((kind, what)) = this.broken.take() {
                return this.fail(kind, what);
            }
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Pending => {
                    if this.idle.as_mut().poll(cx).is_ready() {
                        let what = BodyError::Stalled {
                            idle: this.limits.idle,
                            read: this.read,
                        };
                        return this.fail(ErrorKind::Timeout, what.to_string());
                    }
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    return this.fail(ErrorKind::Interrupted, "it ended without [DONE]".into());
                }
                Poll::Ready(Some(Err(e))) => {
                    let kind = if e.is::<crate::AttemptTimeout>() {
                        ErrorKind::Timeout
                    } else {
                        ErrorKind::Interrupted
                    };
                    return this.fail(kind, crate::error::source_chain(&*e));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let deadline = Instant::now() + this.limits.idle;
                    this.idle.as_mut().reset(deadline);
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.read += data.len();
                    if this.read > this.limits.max_bytes {
                        let what = BodyError::TooLarge {
                            limit: this.limits.max_bytes,
                        };
                        return this.fail(ErrorKind::TooLarge, what.to_string());
                    }
                    let mut events = Vec::new();
                    let parsed = this.parser.feed(&data, &mut events);
                    this.ready.extend(events);
                    if let Err(e) = parsed {
                        // The events before the bad one still come first.
                        let kind = match e {
                            SseError::TooLarge { .. } => ErrorKind::TooLarge,
                            _ => ErrorKind::Decode,
                        };
                        this.broken = Some((kind, e.to_string()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use serde_json::Value;

    use super::*;

    /// A body sending `events` one frame each, then ending (or never, with `hang`).
    fn body(events: &[&'static str], hang: bool) -> HttpBody {
        let frames: Vec<_> = events
            .iter()
            .map(|e| Ok::<_, crate::BoxError>(Frame::data(Bytes::from_static(e.as_bytes()))))
            .collect();
        let frames = futures_util::stream::iter(frames);
        if hang {
            StreamBody::new(frames.chain(futures_util::stream::pending())).boxed_unsync()
        } else {
            StreamBody::new(frames).boxed_unsync()
        }
    }

    const A: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n";

    async fn run(
        events: &[&'static str],
        hang: bool,
        limits: BodyLimits,
    ) -> (usize, Option<Error>) {
        let mut s = Streamed::<ChatChunk>::new(body(events, hang), limits);
        let mut good = 0;
        while let Some(item) = s.next().await {
            match item {
                Ok(_) => good += 1,
                Err(e) => {
                    assert!(s.next().await.is_none(), "one error, then the end");
                    return (good, Some(e));
                }
            }
        }
        (good, None)
    }

    #[tokio::test(start_paused = true)]
    async fn a_bad_stream_ends_in_one_clear_error_after_its_good_chunks() {
        let limits = BodyLimits::default();
        let (good, e) = run(&[A, A, "data: [DONE]\n\n"], false, limits).await;
        assert_eq!((good, e.map(|e| e.kind())), (2, None));
        let (good, e) = run(&[A, A], false, limits).await;
        let e = e.unwrap();
        assert_eq!((good, e.kind()), (2, ErrorKind::Interrupted));
        assert!(e.to_string().contains("without [DONE]"), "{e}");
        let (good, e) = run(&[A, "data: {not json}\n\n", A], false, limits).await;
        assert_eq!((good, e.unwrap().kind()), (1, ErrorKind::Decode));
        let (good, e) = run(
            &[A, "data: {\"error\":{\"message\":\"overloaded\"}}\n\n"],
            false,
            limits,
        )
        .await;
        assert_eq!((good, e.unwrap().kind()), (1, ErrorKind::Api));
        // Nonsense usage: a clear error, never a wrong count.
        let (_, e) = run(
            &["data: {\"choices\":[],\"usage\":{\"total_tokens\":-3}}\n\n"],
            false,
            limits,
        )
        .await;
        assert_eq!(e.unwrap().kind(), ErrorKind::Decode);
        let small = BodyLimits {
            max_bytes: 100,
            idle: Duration::from_secs(1),
        };
        let (good, e) = run(&[A, A, A], false, small).await;
        assert_eq!((good, e.unwrap().kind()), (1, ErrorKind::TooLarge));
        let (good, e) = run(&[A], true, small).await;
        assert_eq!((good, e.unwrap().kind()), (1, ErrorKind::Timeout));
    }

    #[tokio::test]
    async fn chunks_as_json_assemble_into_the_answer_without_stream() {
        let events = [
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}],\"usage\":null}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":2,\"total_tokens\":4,\"cached_tokens\":0}}\n\n",
            "data: [DONE]\n\n",
        ];
        let s = Streamed::<Value>::new(body(&events, false), BodyLimits::default());
        let whole = s.finish().await.unwrap();
        assert_eq!(whole["object"], "chat.completion");
        assert_eq!(whole["id"], "c1");
        assert_eq!(whole["choices"][0]["message"]["content"], "Hello");
        assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
        assert_eq!(whole["choices"][0]["finish_reason"], "stop");
        assert_eq!(whole["usage"]["total_tokens"], 4);
        assert_eq!(whole["usage"]["cached_tokens"], 0);
    }
}
