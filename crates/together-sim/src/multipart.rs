//! `multipart/form-data` uploads to `/v1/files`, as the Together and OpenAI
//! SDKs send them: a `file` part (the JSONL) and a `purpose` field. Read
//! into the same JSON shape the JSON upload uses.

use serde_json::{Value, json};

use crate::fake::ApiError;

/// The boundary of a `multipart/form-data` content type, if it is one.
pub(crate) fn boundary(content_type: &str) -> Option<&str> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (name, value) = p.trim().split_once('=')?;
        name.eq_ignore_ascii_case("boundary")
            .then(|| value.trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

/// `{"purpose", "filename", "content"}` from a multipart body.
pub(crate) fn to_upload(body: &[u8], boundary: &str) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::invalid("The multipart upload is not UTF-8 text.").code("invalid_file")
    })?;
    let delimiter = format!("--{boundary}");
    let mut purpose = None;
    let mut filename = None;
    let mut content = None;
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break; // the closing delimiter
        }
        let part = part.strip_prefix("\r\n").unwrap_or(part);
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            return Err(malformed("a part has no blank line after its headers"));
        };
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or_else(|| malformed("a part has no Content-Disposition"))?;
        match param(disposition, "name") {
            Some("purpose") => purpose = Some(value.to_owned()),
            Some("file_name") => filename = filename.or(Some(value.to_owned())),
            Some("file") => {
                if let Some(f) = param(disposition, "filename") {
                    filename = Some(f.to_owned());
                }
                content = Some(value.to_owned());
            }
            _ => {}
        }
    }
    let content = content.ok_or_else(|| {
        ApiError::invalid("The multipart upload has no `file` part.").param("file")
    })?;
    Ok(json!({
        "purpose": purpose.unwrap_or_else(|| "batch-api".into()),
        "filename": filename.unwrap_or_else(|| "upload.jsonl".into()),
        "content": content,
    }))
}

fn param<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

fn malformed(why: &str) -> ApiError {
    ApiError::invalid(format!("Malformed multipart upload: {why}.")).code("invalid_file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_file_and_purpose_parts() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n\
                    Content-Type: application/jsonl\r\n\r\n{\"a\":1}\n{\"a\":2}\n\r\n--XyZ--\r\n";
        let b = boundary("multipart/form-data; boundary=XyZ").unwrap();
        let v = to_upload(body.as_bytes(), b).unwrap();
        assert_eq!(v["purpose"], "batch-api");
        assert_eq!(v["filename"], "in.jsonl");
        assert_eq!(v["content"], "{\"a\":1}\n{\"a\":2}\n");
    }

    #[test]
    fn boundaries_and_bad_bodies() {
        assert_eq!(boundary("multipart/form-data; boundary=\"q\""), Some("q"));
        assert_eq!(boundary("application/json"), None);
        assert!(to_upload(b"--q\r\nno headers\r\n--q--", "q").is_err());
        let no_file =
            "--q\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch-api\r\n--q--\r\n";
        assert!(to_upload(no_file.as_bytes(), "q").is_err());
    }
}
