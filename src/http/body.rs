//! Reading a request: its body within the byte limit, and the request id the observe layer set.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};

use super::ApiError;

/// Reads a whole body, refusing one longer than `limit` bytes.
pub async fn read(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    // A Content-Length beyond the limit is refused before a byte of the body is waited for.
    if axum::body::HttpBody::size_hint(&body).lower() > limit as u64 {
        return Err(ApiError::BodyTooLarge(limit));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(error) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            while let Some(e) = source {
                if e.is::<http_body_util::LengthLimitError>() {
                    return Err(ApiError::BodyTooLarge(limit));
                }
                source = e.source();
            }
            Err(ApiError::BodyRead(error.to_string()))
        }
    }
}

/// The request's id as the observe layer set it, for log lines.
pub fn request_id(headers: &HeaderMap) -> &str {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-")
}

/// The body as sent before its `Content-Encoding` (gzip or deflate, as tritonclient may send it),
/// refused when it inflates beyond `limit` bytes.
pub fn inflate(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    use std::io::Read;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("(not text)").trim().to_ascii_lowercase());
    let mut reader: Box<dyn Read + '_> = match encoding.as_deref() {
        None | Some("identity") | Some("") => return Ok(body),
        Some("gzip") | Some("x-gzip") => Box::new(flate2::read::GzDecoder::new(&body[..])),
        // HTTP's "deflate" is the zlib format (RFC 9110), which is what zlib.compress writes.
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
        Some(other) => {
            return Err(ApiError::BodyRead(format!(
                "content encoding {other:?} is not supported; send gzip, deflate or none"
            )))
        }
    };
    let mut inflated = Vec::new();
    (&mut reader)
        .take(limit as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| ApiError::BodyRead(format!("the body does not inflate: {e}")))?;
    if inflated.len() > limit {
        return Err(ApiError::BodyTooLarge(limit));
    }
    Ok(inflated.into())
}
