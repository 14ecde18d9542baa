//! Reading a buffered request body without consuming it.

use bytes::Bytes;

/// A request body whose bytes can be read without consuming it.
///
/// Keys taken from the JSON body (`model`) and token costs are computed from
/// these bytes. A body that returns `None` (a stream) is charged as if the
/// body were empty and falls back to the quota's default key.
pub trait PeekBody {
    /// The whole body, if it is in memory.
    fn peek_bytes(&self) -> Option<&[u8]>;
}

impl PeekBody for String {
    fn peek_bytes(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl PeekBody for Vec<u8> {
    fn peek_bytes(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl PeekBody for Bytes {
    fn peek_bytes(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl PeekBody for &'static str {
    fn peek_bytes(&self) -> Option<&[u8]> {
        Some(self.as_bytes())
    }
}

impl PeekBody for &'static [u8] {
    fn peek_bytes(&self) -> Option<&[u8]> {
        Some(self)
    }
}

impl PeekBody for () {
    fn peek_bytes(&self) -> Option<&[u8]> {
        Some(&[])
    }
}
