//! HTTP route path patterns such as `/v1/fine-tunes/{id}/cancel`, shared by
//! the rate-limit, retry and job layers so that a route means the same thing
//! in each.
//!
//! Literal segments match exactly; a `{name}` (or `*`) segment matches any
//! one non-empty segment. Empty segments (a trailing or doubled `/`) and the
//! query string are ignored.
//!
//! # Example
//!
//! ```
//! use path_pattern::PathPattern;
//!
//! let cancel = PathPattern::parse("/v1/fine-tunes/{id}/cancel").unwrap();
//! assert!(cancel.matches("/v1/fine-tunes/ft-1/cancel"));
//! assert_eq!(cancel.capture("/v1/fine-tunes/ft-1/cancel"), Some(Some("ft-1")));
//!
//! let jobs = PathPattern::parse("/v1/fine-tunes").unwrap();
//! assert!(!jobs.matches("/v1/fine-tunes/ft-1"));
//! assert!(jobs.matches_prefix("/v1/fine-tunes/ft-1/cancel"));
//! assert!(!jobs.matches_prefix("/v1/fine-tunes-extra"));
//!
//! assert!(PathPattern::parse("v1/no-slash").is_err());
//! ```
#![forbid(unsafe_code)]

use std::fmt;

/// A parsed path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
    /// The segment captured by [`capture`](Self::capture): `{id}`, else the first parameter.
    id_at: Option<usize>,
    /// For a pattern of literal segments only, the one path written
    /// canonically (`/a/b`) it matches: most requests are matched by one
    /// comparison instead of a walk over the segments.
    literal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

impl PathPattern {
    /// Parses a pattern; the error says which segment is wrong and why.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if !text.starts_with('/') {
            return Err(PatternError(format!("path {text:?} must start with '/'")));
        }
        let mut id_at = None;
        let mut first_param = None;
        let segments = split(text)
            .enumerate()
            .map(|(i, seg)| {
                if seg == "*" || (seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2) {
                    first_param.get_or_insert(i);
                    if seg == "{id}" {
                        id_at = Some(i);
                    }
                    Ok(Segment::Param)
                } else if seg.contains(['{', '}']) {
                    Err(PatternError(format!(
                        "path {text:?}: segment {seg:?} mixes text and a {{param}}"
                    )))
                } else {
                    Ok(Segment::Literal(seg.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        let literal = first_param.is_none().then(|| {
            let mut canonical = String::new();
            for segment in split(text) {
                canonical.push('/');
                canonical.push_str(segment);
            }
            if canonical.is_empty() {
                canonical.push('/');
            }
            canonical
        });
        Ok(PathPattern {
            text: text.to_owned(),
            segments,
            id_at: id_at.or(first_param),
            literal,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has a parameter segment.
    pub fn has_param(&self) -> bool {
        self.id_at.is_some()
    }

    /// Whether `path` matches the whole pattern.
    pub fn matches(&self, path: &str) -> bool {
        self.capture(path).is_some()
    }

    /// Whether `path` starts with the pattern, by whole segments
    /// (`/v1/files` matches `/v1/files/f-1/content`, not `/v1/filesystem`).
    pub fn matches_prefix(&self, path: &str) -> bool {
        let mut parts = split(path);
        self.segments
            .iter()
            .all(|segment| matches_segment(segment, parts.next()))
    }

    /// `None` when `path` does not match the whole pattern; otherwise
    /// `Some` of the `{id}` segment (or the first parameter), if the pattern has one.
    pub fn capture<'a>(&self, path: &'a str) -> Option<Option<&'a str>> {
        if let Some(literal) = &self.literal {
            // The common case first: the path as written, with no query.
            if path == literal {
                return Some(None);
            }
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            if path == literal {
                return Some(None);
            }
            // A path written canonically decides by that comparison alone.
            if is_canonical(path) {
                return None;
            }
        }
        self.walk(path)
    }

    /// [`capture`](Self::capture) by walking the segments.
    fn walk<'a>(&self, path: &'a str) -> Option<Option<&'a str>> {
        let mut parts = split(path);
        let mut id = None;
        for (i, segment) in self.segments.iter().enumerate() {
            let part = parts.next();
            if !matches_segment(segment, part) {
                return None;
            }
            if self.id_at == Some(i) {
                id = part;
            }
        }
        parts.next().is_none().then_some(id)
    }
}

fn matches_segment(segment: &Segment, part: Option<&str>) -> bool {
    match (segment, part) {
        (Segment::Literal(lit), Some(part)) => lit == part,
        (Segment::Param, Some(_)) => true,
        (_, None) => false,
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Whether a path (without its query) has one `/` before each segment and
/// none after the last: `split` and joining would give it back as it is.
fn is_canonical(path: &str) -> bool {
    path.starts_with('/') && (path == "/" || !path.ends_with('/')) && !path.contains("//")
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    path.split('/').filter(|s| !s.is_empty())
}

/// A pattern that cannot be valid; the message names it and says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError(String);

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PatternError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_and_param_segments() {
        let p = PathPattern::parse("/v1/fine-tunes/{id}/cancel").unwrap();
        assert!(p.matches("/v1/fine-tunes/ft-123/cancel"));
        assert!(p.matches("/v1/fine-tunes/ft-123/cancel/"));
        assert!(p.matches("/v1/fine-tunes/ft-123/cancel?x=1"));
        assert!(!p.matches("/v1/fine-tunes/ft-123"));
        assert!(!p.matches("/v1/fine-tunes//cancel"));
        assert!(!p.matches("/v1/fine-tunes/ft-123/cancel/more"));
        let q = PathPattern::parse("/v1/chat/completions").unwrap();
        assert!(q.matches("/v1/chat/completions"));
        assert!(!q.matches("/v1/chat"));
    }

    #[test]
    fn captures_the_id() {
        let p = PathPattern::parse("/v1/fine-tunes/{id}/cancel").unwrap();
        assert_eq!(p.capture("/v1/fine-tunes/ft-1/cancel"), Some(Some("ft-1")));
        assert_eq!(
            p.capture("/v1/fine-tunes/ft-1/cancel/?x=1"),
            Some(Some("ft-1"))
        );
        assert_eq!(p.capture("/v1/fine-tunes/ft-1"), None);
        let q = PathPattern::parse("/v1/{org}/jobs/{id}").unwrap();
        assert_eq!(q.capture("/v1/acme/jobs/7"), Some(Some("7")));
        let l = PathPattern::parse("/v1/fine-tunes").unwrap();
        assert!(!l.has_param());
        assert_eq!(l.capture("/v1/fine-tunes"), Some(None));
    }

    #[test]
    fn a_literal_pattern_decides_by_one_comparison_as_the_walk_would() {
        let patterns = ["/v1/chat/completions", "/v1/files", "/", "/v1//models/"];
        let paths = [
            "/v1/chat/completions",
            "/v1/chat/completions/",
            "//v1/chat//completions",
            "/v1/chat/completions?x=1",
            "/v1/chat/completions/?x=1",
            "v1/chat/completions",
            "/v1/chat",
            "/v1/chat/completionsX",
            "/v1/files",
            "/v1/files/f-1",
            "/v1/models",
            "/v1/models/",
            "/",
            "",
            "//",
            "?q",
            "/?q",
        ];
        for pattern in patterns {
            let p = PathPattern::parse(pattern).unwrap();
            assert!(p.literal.is_some(), "{pattern}");
            for path in paths {
                assert_eq!(p.capture(path), p.walk(path), "{pattern} against {path:?}");
            }
        }
        // Every path of up to 7 characters of `/ a b ?`, against short patterns.
        let alphabet = ['/', 'a', 'b', '?'];
        let mut all = vec![String::new()];
        for _ in 0..7 {
            let longer: Vec<String> = all
                .iter()
                .filter(|s| s.len() == all.last().map_or(0, String::len))
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(longer);
        }
        assert!(all.len() > 20_000);
        for pattern in ["/a", "/a/b", "/", "/b/a/", "/aa"] {
            let p = PathPattern::parse(pattern).unwrap();
            for path in &all {
                assert_eq!(p.capture(path), p.walk(path), "{pattern} against {path:?}");
            }
        }
        let p = PathPattern::parse("/v1/chat/completions").unwrap();
        assert_eq!(p.capture("/v1/chat/completions"), Some(None));
        assert_eq!(p.capture("//v1/chat//completions/"), Some(None));
        assert_eq!(p.capture("/v1/chat/completion"), None);
        assert!(PathPattern::parse("/v1/{id}").unwrap().literal.is_none());
    }

    #[test]
    fn prefixes_match_by_whole_segments() {
        let p = PathPattern::parse("/v1/files").unwrap();
        assert!(p.matches_prefix("/v1/files"));
        assert!(p.matches_prefix("/v1/files/f-1/content"));
        assert!(!p.matches_prefix("/v1/filesystem"));
        assert!(!p.matches_prefix("/v1"));
        let star = PathPattern::parse("/v1/batches/*/cancel").unwrap();
        assert!(star.matches_prefix("/v1/batches/b-1/cancel"));
        assert!(!star.matches_prefix("/v1/batches/b-1"));
    }

    #[test]
    fn bad_patterns() {
        assert!(PathPattern::parse("v1/chat").is_err());
        let err = PathPattern::parse("/v1/ft-{id}").unwrap_err();
        assert!(err.to_string().contains("mixes text"), "{err}");
    }
}
