//! The API key: kept as a sensitive header value, never printed.

use std::fmt;

use http::HeaderValue;

/// The environment variable the key is read from by default.
pub const API_KEY_ENV: &str = "TOGETHER_API_KEY";

/// An API key, held as the `Authorization: Bearer ...` header value marked
/// sensitive ([`HeaderValue::set_sensitive`]).
///
/// Its `Debug` prints `ApiKey(<redacted>)`; it has no `Display`, and no
/// error of this crate quotes it.
///
/// ```
/// use together_tower::ApiKey;
///
/// let key = ApiKey::new("sk-secret").unwrap();
/// assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    header: HeaderValue,
}

impl ApiKey {
    /// A key from its text (without `Bearer `).
    ///
    /// Fails when the key is empty or holds characters a header cannot
    /// carry; the error does not quote the key.
    pub fn new(key: impl AsRef<str>) -> Result<Self, InvalidApiKey> {
        let key = key.as_ref().trim();
        if key.is_empty() {
            return Err(InvalidApiKey::Empty);
        }
        let mut header =
            HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| InvalidApiKey::Chars)?;
        header.set_sensitive(true);
        Ok(ApiKey { header })
    }

    /// The key in the environment variable [`API_KEY_ENV`] (`TOGETHER_API_KEY`).
    pub fn from_env() -> Result<Self, InvalidApiKey> {
        Self::from_env_var(API_KEY_ENV)
    }

    /// The key in the environment variable `var` (e.g. `OPENAI_API_KEY`).
    pub fn from_env_var(var: &str) -> Result<Self, InvalidApiKey> {
        match std::env::var(var) {
            Ok(key) => Self::new(key),
            Err(_) => Err(InvalidApiKey::Missing(var.to_owned())),
        }
    }

    /// The `Authorization` header value (sensitive).
    pub fn header_value(&self) -> &HeaderValue {
        &self.header
    }

    /// The key's text, for code that must hand it on (a shared store
    /// hashing it into a namespace). Never log or print it.
    pub fn expose_secret(&self) -> &str {
        self.header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
    }

    /// `text` with every occurrence of the key replaced by `<redacted>`:
    /// for messages that may quote it (a server echoing the key in an
    /// error). Scrub before cutting a text short, so no part of the key
    /// survives the cut.
    ///
    /// ```
    /// use together_tower::ApiKey;
    ///
    /// let key = ApiKey::new("sk-secret").unwrap();
    /// assert_eq!(key.scrub("bad key sk-secret"), "bad key <redacted>");
    /// ```
    pub fn scrub(&self, text: &str) -> String {
        match self.expose_secret() {
            "" => text.to_owned(),
            secret => text.replace(secret, "<redacted>"),
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Why an API key was refused. Never quotes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidApiKey {
    /// The key is empty.
    Empty,
    /// The key holds characters an HTTP header cannot carry.
    Chars,
    /// The environment variable is not set.
    Missing(String),
}

impl fmt::Display for InvalidApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidApiKey::Empty => f.write_str("the API key is empty: pass your key"),
            InvalidApiKey::Chars => f.write_str(
                "the API key holds characters a header cannot carry: check it was copied whole",
            ),
            InvalidApiKey::Missing(var) => write!(
                f,
                "no API key: set {var} or pass one to the builder's api_key()"
            ),
        }
    }
}

impl std::error::Error for InvalidApiKey {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_sensitive_and_redacted() {
        let key = ApiKey::new("sk-abc").unwrap();
        assert!(key.header_value().is_sensitive());
        assert!(!format!("{key:?}").contains("sk-abc"));
        assert!(!format!("{:?}", key.header_value()).contains("sk-abc"));
        assert_eq!(ApiKey::new(" ").unwrap_err(), InvalidApiKey::Empty);
        let err = ApiKey::new("sk-\nbad").unwrap_err();
        assert!(!err.to_string().contains("sk-"));
    }
}
