//! Request guards: the bearer token, and load shedding with a deadline.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Longest a shed request's body is read for before the 503 goes out.
const DISCARD_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads and drops a body, up to `limit` bytes (beyond that, the connection is not worth keeping).
async fn discard(mut body: axum::body::Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut read = 0;
    while let Some(Ok(frame)) = body.frame().await {
        read += frame.data_ref().map_or(0, |data| data.len());
        if read > limit {
            return;
        }
    }
}

/// With `--api-key` set, the guarded routes need `Authorization: Bearer <key>`.
pub async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(key) = state.config.api_key.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if same_secret(token.as_bytes(), key.as_bytes()) => next.run(request).await,
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// Compares in time that does not depend on where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One permit per prediction: over the limit the request is refused at once with 503 and
/// `Retry-After` rather than queued, and a prediction past the deadline is abandoned with 503.
pub async fn shed(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        // A connection closed with unread bytes is reset, and the client could lose the 503 and the
        // connection with it: read the body away first, as far as the limits allow.
        let limit = state.config.max_body_bytes;
        let _ = tokio::time::timeout(DISCARD_TIME, discard(request.into_body(), limit)).await;
        return ApiError::Overloaded.into_response();
    };
    let deadline = state.config.request_timeout;
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(deadline.as_millis()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_by_value() {
        assert!(super::same_secret(b"s3cret", b"s3cret"));
        assert!(!super::same_secret(b"s3cret", b"s3creT"));
        assert!(!super::same_secret(b"s3cre", b"s3cret"));
    }
}

/// Request ids that are unique without a system call per request: a random prefix drawn once per
/// process, then a counter (`MakeRequestUuid` asks the OS for randomness on every request).
#[derive(Clone)]
pub struct RequestIds {
    prefix: u64,
    counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    pub fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS once; its first hash is a random number.
        let prefix = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self {
            prefix,
            counter: Default::default(),
        }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<tower_http::request_id::RequestId> {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{:016x}{n:016x}", self.prefix);
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(tower_http::request_id::RequestId::new)
    }
}
