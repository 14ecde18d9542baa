//! Route patterns: a method and a path with literal and `{param}` segments.

use std::fmt;

use http::Method;

/// A path pattern such as `/v1/fine-tunes/{id}/cancel`.
///
/// Literal segments must match exactly; a `{name}` segment matches any one
/// non-empty segment. A trailing `/` and the query string are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

impl PathPattern {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if !text.starts_with('/') {
            return Err(format!("path {text:?} must start with '/'"));
        }
        let segments = split(text)
            .map(|seg| {
                if seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2 {
                    Ok(Segment::Param)
                } else if seg.contains(['{', '}']) {
                    Err(format!(
                        "path {text:?}: segment {seg:?} mixes text and a {{param}}"
                    ))
                } else {
                    Ok(Segment::Literal(seg.to_owned()))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(PathPattern {
            text: text.to_owned(),
            segments,
        })
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        let mut parts = split(path);
        for segment in &self.segments {
            match (segment, parts.next()) {
                (Segment::Literal(lit), Some(part)) if lit == part => {}
                (Segment::Param, Some(_)) => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    path.split('/').filter(|s| !s.is_empty())
}

/// A method and a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteMatcher {
    pub(crate) method: Option<Method>,
    pub(crate) path: PathPattern,
}

impl RouteMatcher {
    pub(crate) fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && self.path.matches(path)
    }
}

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
    fn bad_patterns() {
        assert!(PathPattern::parse("v1/chat").is_err());
        assert!(PathPattern::parse("/v1/ft-{id}").is_err());
    }
}
