//! Path patterns: literal and `{param}` segments, with the `{id}` captured.

use std::fmt;

/// A path pattern such as `/v1/fine-tunes/{id}/cancel`.
///
/// Literal segments must match exactly; a `{name}` segment matches any one
/// non-empty segment. A trailing `/` and the query string are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    text: String,
    segments: Vec<Segment>,
    /// Index of the segment holding the job id: `{id}`, else the first param.
    id_at: Option<usize>,
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
        let mut id_at = None;
        let mut first_param = None;
        let segments = split(text)
            .enumerate()
            .map(|(i, seg)| {
                if seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2 {
                    first_param.get_or_insert(i);
                    if seg == "{id}" {
                        id_at = Some(i);
                    }
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
            id_at: id_at.or(first_param),
        })
    }

    pub(crate) fn has_param(&self) -> bool {
        self.id_at.is_some()
    }

    /// `None` when the path does not match; `Some(id)` (the `{id}` segment,
    /// if the pattern has one) when it does.
    pub(crate) fn capture<'a>(&self, path: &'a str) -> Option<Option<&'a str>> {
        let mut parts = split(path);
        let mut id = None;
        for (i, segment) in self.segments.iter().enumerate() {
            match (segment, parts.next()) {
                (Segment::Literal(lit), Some(part)) if lit == part => {}
                (Segment::Param, Some(part)) => {
                    if self.id_at == Some(i) {
                        id = Some(part);
                    }
                }
                _ => return None,
            }
        }
        parts.next().is_none().then_some(id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_the_id() {
        let p = PathPattern::parse("/v1/fine-tunes/{id}/cancel").unwrap();
        assert_eq!(p.capture("/v1/fine-tunes/ft-1/cancel"), Some(Some("ft-1")));
        assert_eq!(
            p.capture("/v1/fine-tunes/ft-1/cancel/?x=1"),
            Some(Some("ft-1"))
        );
        assert_eq!(p.capture("/v1/fine-tunes/ft-1"), None);
        assert_eq!(p.capture("/v1/fine-tunes//cancel"), None);
        let q = PathPattern::parse("/v1/{org}/jobs/{id}").unwrap();
        assert_eq!(q.capture("/v1/acme/jobs/7"), Some(Some("7")));
        let l = PathPattern::parse("/v1/fine-tunes").unwrap();
        assert!(!l.has_param());
        assert_eq!(l.capture("/v1/fine-tunes"), Some(None));
    }

    #[test]
    fn bad_patterns() {
        assert!(PathPattern::parse("v1/jobs").is_err());
        assert!(PathPattern::parse("/v1/ft-{id}").is_err());
    }
}
