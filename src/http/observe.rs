//! One layer around every route: the request id, the log span, the HTTP metrics, and
//! `Connection: close` while draining.
//!
//! Written by hand rather than stacked from tower-http's request-id, trace and set-header layers and a
//! `from_fn` metrics middleware: that stack cost more CPU per request than a 2-row prediction (it cut
//! the server's `GET /livez` ceiling by about a third in `benches/load.sh`); here a request costs one
//! boxed future, one id written without formatting machinery, and no allocated label strings.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::Response;
use tower::{Layer, Service};
use tracing::Instrument;

use super::{Answer, AppState};
use crate::core::metrics::InFlight;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps each route (and the fallback) in [`Observe`].
#[derive(Clone)]
pub struct ObserveLayer {
    state: AppState,
    ids: Arc<RequestIds>,
}

impl ObserveLayer {
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            ids: Arc::new(RequestIds::new()),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
            ids: self.ids.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
    /// Shared by every route, so ids are unique across the server.
    ids: Arc<RequestIds>,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Answer {
        let id = match request.headers().get(REQUEST_ID) {
            Some(id) => id.clone(),
            None => {
                let id = self.ids.next();
                request.headers_mut().insert(REQUEST_ID, id.clone());
                id
            }
        };
        // The template (`/v2/models/{name}/infer`), not the raw path: one series per route.
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        // At DEBUG: an enabled span has its fields formatted by the log layer on every request, which
        // at the default level (INFO) cost about a tenth of the 2-row throughput.
        let span = tracing::debug_span!(
            "request",
            method = %method,
            uri = %request.uri(),
            request_id = id.to_str().unwrap_or("(not text)"),
        );
        let future = self.inner.call(request);
        let state = self.state.clone();
        Box::pin(async move {
            let in_flight = InFlight::enter(&state.metrics);
            let started = Instant::now();
            let Ok(mut response) = future.instrument(span.clone()).await;
            let elapsed = started.elapsed();
            drop(in_flight);
            let status = response.status();
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            state
                .metrics
                .record_request(route, method.as_str(), status.as_str(), elapsed);
            // At DEBUG even for a 503: under overload, one line per shed request would flood the log;
            // the metrics count every status.
            span.in_scope(|| {
                tracing::debug!(
                    status = status.as_u16(),
                    latency_us = elapsed.as_micros() as u64,
                    "answered"
                )
            });
            let headers = response.headers_mut();
            headers.insert(REQUEST_ID, id);
            // While draining, no connection is left idle (where a request sent at the moment of
            // closing would be lost) when the server stops.
            if !state.is_ready() {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(response)
        })
    }
}

/// Request ids that are unique without a system call per request: a random prefix drawn once per
/// process, then a counter, as 32 hex digits.
struct RequestIds {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS once; its first hash is a random number.
        let prefix = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Self {
            prefix,
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut id = [0u8; 32];
        hex(self.prefix, &mut id[..16]);
        hex(n, &mut id[16..]);
        HeaderValue::from_bytes(&id).expect("hex digits are a valid header value")
    }
}

/// Writes `value` as 16 lowercase hex digits.
fn hex(value: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[(value >> (60 - 4 * i) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_a_prefix_then_a_counter_in_hex() {
        let ids = super::RequestIds::new();
        let first = ids.next();
        let second = ids.next();
        let (first, second) = (first.to_str().unwrap(), second.to_str().unwrap());
        assert_eq!(first.len(), 32);
        assert_eq!(first[..16], second[..16]);
        assert_eq!(first[..16], format!("{:016x}", ids.prefix));
        assert_eq!(&first[16..], "0000000000000000");
        assert_eq!(&second[16..], "0000000000000001");
        let mut out = [0u8; 16];
        super::hex(0x0123_4567_89ab_cdef, &mut out);
        assert_eq!(&out, b"0123456789abcdef");
    }
}
