//! The guard in front of predictions and admin routes: the bearer token, then (for predictions) load
//! shedding with a deadline.
//!
//! A hand-written tower layer, not two `from_fn` middlewares: those box a future and clone the route's
//! service on every request, a cost the 2-row `/predict` (a few microseconds of work) felt.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::{Answer, ApiError, AppState};

/// Longest a shed request's body is read for before the 503 goes out.
const DISCARD_TIME: Duration = Duration::from_secs(1);

/// Guards routes: with `--api-key` set they need `Authorization: Bearer <key>`; with `shed`, each
/// request also takes one of `--max-concurrency` permits or is refused at once with 503 and
/// `Retry-After` (rather than queued), and is abandoned with 503 past `--request-timeout-ms`.
#[derive(Clone)]
pub struct GuardLayer {
    state: AppState,
    shed: bool,
}

impl GuardLayer {
    /// Token, permit and deadline: the prediction routes.
    pub fn predictions(state: AppState) -> Self {
        Self { state, shed: true }
    }

    /// Token only: the admin routes.
    pub fn admin(state: AppState) -> Self {
        Self { state, shed: false }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

impl<S> Service<Request> for Guard<S>
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
        let state = &self.layer.state;
        let token = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if let Err(refused) = state.authorize(token) {
            return answer(refused);
        }
        if !self.layer.shed {
            let future = self.inner.call(request);
            return Box::pin(future);
        }
        let Ok(admission) = state.admit() else {
            // A connection closed with unread bytes is reset, and the client could lose the 503 and
            // the connection with it: read the body away first, as far as the limits allow.
            let limit = state.config.max_body_bytes;
            return Box::pin(async move {
                let _ = tokio::time::timeout(DISCARD_TIME, discard(request.into_body(), limit)).await;
                Ok(ApiError::Overloaded.into_response())
            });
        };
        request.extensions_mut().insert(admission.clone());
        let deadline = state.config.request_timeout;
        let future = self.inner.call(request);
        Box::pin(async move {
            let answer = match tokio::time::timeout(deadline, future).await {
                Ok(Ok(response)) => response,
                Err(_) => ApiError::Timeout(deadline.as_millis()).into_response(),
            };
            drop(admission);
            Ok(answer)
        })
    }
}

fn answer(error: ApiError) -> Answer {
    Box::pin(std::future::ready(Ok(error.into_response())))
}

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
