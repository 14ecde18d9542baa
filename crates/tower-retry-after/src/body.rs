//! Request bodies that can be sent more than once.

use bytes::Bytes;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{Empty, Full};

/// A request body that can be copied so the request can be sent again.
///
/// [`RetryPolicy`](crate::RetryPolicy) retries a request only when its body
/// can be replayed: buffered bodies (`String`, `Vec<u8>`, [`Bytes`],
/// [`Full<Bytes>`], [`Empty`], `()`) return a copy, and every retry sends
/// the same bytes. A streaming body cannot be rewound: its `try_clone`
/// returns `None`, and a request carrying it is sent once and never retried
/// (whatever the response), which is why [`BoxBody`] and [`UnsyncBoxBody`]
/// return `None` here.
///
/// Implement it for your own body type: return `Some` only when the copy
/// yields exactly the bytes the original would.
///
/// ```
/// use tower_retry_after::ReplayBody;
///
/// struct Upload(std::sync::Arc<[u8]>);
///
/// impl ReplayBody for Upload {
///     fn try_clone(&self) -> Option<Self> {
///         Some(Upload(self.0.clone()))
///     }
/// }
/// ```
pub trait ReplayBody: Sized {
    /// A copy of the body that yields the same bytes, or `None` when the
    /// body cannot be replayed.
    fn try_clone(&self) -> Option<Self>;
}

macro_rules! replay_by_clone {
    ($($ty:ty),* $(,)?) => {
        $(
            impl ReplayBody for $ty {
                fn try_clone(&self) -> Option<Self> {
                    Some(self.clone())
                }
            }
        )*
    };
}

replay_by_clone!(
    String,
    Vec<u8>,
    Bytes,
    Full<Bytes>,
    Empty<Bytes>,
    (),
    &'static str,
    &'static [u8],
);

impl<E> ReplayBody for BoxBody<Bytes, E> {
    /// Always `None`: a boxed body may be a stream.
    fn try_clone(&self) -> Option<Self> {
        None
    }
}

impl<E> ReplayBody for UnsyncBoxBody<Bytes, E> {
    /// Always `None`: a boxed body may be a stream.
    fn try_clone(&self) -> Option<Self> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn buffered_bodies_replay() {
        assert_eq!("abc".to_string().try_clone().as_deref(), Some("abc"));
        assert_eq!(vec![1u8, 2].try_clone(), Some(vec![1, 2]));
        assert_eq!(
            Bytes::from_static(b"xy").try_clone(),
            Some(Bytes::from_static(b"xy"))
        );
        assert!(().try_clone().is_some());
        assert!(Empty::<Bytes>::new().try_clone().is_some());
        assert!(Full::new(Bytes::from_static(b"z")).try_clone().is_some());
    }

    #[test]
    fn boxed_bodies_do_not_replay() {
        let body: BoxBody<Bytes, std::convert::Infallible> =
            Full::new(Bytes::from_static(b"z")).boxed();
        assert!(body.try_clone().is_none());
        let body: UnsyncBoxBody<Bytes, std::convert::Infallible> =
            Full::new(Bytes::from_static(b"z")).boxed_unsync();
        assert!(body.try_clone().is_none());
    }
}
