//! What [`TogetherClient::embed_all`](crate::TogetherClient::embed_all) hands back.

use std::fmt;
use std::ops::Range;

use crate::error::Error;

/// What [`TogetherClient::embed_all`](crate::TogetherClient::embed_all) returns: the embeddings in input
/// order (`None` where a chunk failed) and the failed chunks.
#[derive(Debug)]
pub struct EmbedAll {
    /// One entry per input, in input order.
    pub embeddings: Vec<Option<Vec<f32>>>,
    /// The chunks that failed, with the range of inputs each covered.
    pub failures: Vec<ChunkFailure>,
}

impl EmbedAll {
    /// Whether every input got its embedding.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// Every embedding, or the first failed chunk.
    pub fn complete(mut self) -> Result<Vec<Vec<f32>>, Box<ChunkFailure>> {
        if !self.failures.is_empty() {
            return Err(Box::new(self.failures.swap_remove(0)));
        }
        Ok(self
            .embeddings
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }
}

/// A chunk of [`TogetherClient::embed_all`](crate::TogetherClient::embed_all) that failed.
#[derive(Debug)]
pub struct ChunkFailure {
    /// The inputs it covered.
    pub range: Range<usize>,
    /// Why.
    pub error: Error,
}

impl fmt::Display for ChunkFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "inputs {}..{}: {}",
            self.range.start, self.range.end, self.error
        )
    }
}

impl std::error::Error for ChunkFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
