//! Reading a response body within bounds: a size cap, so a huge answer is
//! an error for its request rather than memory growth, and an idle timeout
//! between chunks, so a server that drips a body cannot hold a request
//! forever. The default client also bounds each attempt as a whole (head
//! and body: [`default_http_client`](crate::default_http_client)).

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;

use crate::BoxError;

/// The default cap on a response body: 256 MiB, above the largest real
/// answers (2,048 embeddings of 3,072 floats are about 125 MB of JSON;
/// four 1024x1024 images in base64, about 8 MB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 << 20;

/// The default longest wait between two chunks of a body: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How much of a body to read, and how long to wait for each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The most bytes read; a longer body is [`BodyError::TooLarge`].
    pub max_bytes: usize,
    /// The longest wait for the next chunk; a longer one is
    /// [`BodyError::Stalled`].
    pub idle: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            max_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            idle: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
#[non_exhaustive]
pub enum BodyError {
    /// Longer than [`BodyLimits::max_bytes`]; reading stopped there.
    TooLarge {
        /// The cap.
        limit: usize,
    },
    /// No chunk came for [`BodyLimits::idle`].
    Stalled {
        /// The wait given.
        idle: Duration,
        /// Bytes read before it stalled.
        read: usize,
    },
    /// The connection failed (or the attempt's deadline passed) mid-body.
    Transport(BoxError),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(
                f,
                "the response body is over {limit} bytes (the cap on a response): not read further"
            ),
            BodyError::Stalled { idle, read } => write!(
                f,
                "the response body stalled: nothing for {idle:?} after {read} bytes"
            ),
            BodyError::Transport(e) => write!(f, "the response body was cut: {e}"),
        }
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BodyError::Transport(e) => Some(&**e),
            _ => None,
        }
    }
}

/// Reads `body` whole within `limits`.
///
/// ```
/// use std::time::Duration;
/// use http_body_util::Full;
/// use together_tower::body::{BodyError, BodyLimits, read_body};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limits = BodyLimits { max_bytes: 4, idle: Duration::from_secs(1) };
/// let body = Full::new(bytes::Bytes::from_static(b"0123456789"));
/// assert!(matches!(read_body(body, limits).await, Err(BodyError::TooLarge { limit: 4 })));
/// # }
/// ```
pub async fn read_body<B>(body: B, limits: BodyLimits) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut out = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(limits.idle, body.frame()).await {
            Err(_) => {
                return Err(BodyError::Stalled {
                    idle: limits.idle,
                    read: out.len(),
                });
            }
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => return Err(BodyError::Transport(e.into())),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limits.max_bytes {
                return Err(BodyError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
            out.extend_from_slice(&data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    #[tokio::test(start_paused = true)]
    async fn a_dripping_body_stalls_and_a_whole_one_is_read() {
        let limits = BodyLimits {
            max_bytes: 100,
            idle: Duration::from_secs(5),
        };
        let chunks = futures_util::stream::unfold(0u32, |n| async move {
            if n == 2 {
                tokio::time::sleep(Duration::from_secs(6)).await;
            }
            (n < 4).then(|| {
                let frame = http_body::Frame::data(Bytes::from_static(b"ab"));
                (Ok::<_, std::io::Error>(frame), n + 1)
            })
        });
        let err = read_body(StreamBody::new(chunks), limits)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::Stalled { read: 4, .. }), "{err}");
        let whole = http_body_util::Full::new(Bytes::from_static(b"hello"));
        assert_eq!(read_body(whole, limits).await.unwrap(), "hello");
    }
}
