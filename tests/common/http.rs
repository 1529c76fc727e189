//! Helpers for driving the router in-process.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tower::ServiceExt;
use xgserve::bundle::Model;
use xgserve::http::{router, AppState, HttpConfig};
use xgserve::input::Limits;

pub const EXAMPLE: &str = include_str!("../fixtures/bento_example.json");
pub const EXAMPLE_RESPONSE: &str = include_str!("../fixtures/bento_example.response");

pub fn config() -> HttpConfig {
    HttpConfig {
        limits: Limits { max_rows: 1000 },
        max_body_bytes: 64 * 1024,
        ..HttpConfig::default()
    }
}

pub fn state_with(config: HttpConfig) -> AppState {
    state_of(&super::shipped_bundle(), config)
}

/// A server state for the bundle in `dir` (a copy to break or change, say).
pub fn state_of(dir: &std::path::Path, config: HttpConfig) -> AppState {
    AppState::new(Model::load(dir).unwrap(), config)
}

pub fn state() -> AppState {
    state_with(config())
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

pub async fn send(state: &AppState, request: Request<Body>) -> Answer {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

pub fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// A JSON POST to `path` whose body never ends: it stays in flight until dropped or timed out.
pub fn stuck(path: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::new(Endless))
        .unwrap()
}

/// A body that never ends: the request stays in flight until it is dropped.
pub struct Endless;

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }
}

/// Reads one HTTP/1.1 answer from a raw connection: its head, then as many body bytes as
/// Content-Length says; what has arrived when the peer closes or 5 s pass without a byte.
pub async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(stream, &mut buffer),
        )
        .await;
        match read {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buffer[..n]),
            _ => return text,
        }
    }
}

/// The Bento example as a raw HTTP/1.1 request, for tests that speak to a real listener.
pub fn example_request() -> String {
    format!(
        "POST /predict HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{EXAMPLE}",
        EXAMPLE.len()
    )
}

/// A server on a port-0 listener, from [`listening`].
pub struct Listening {
    pub address: std::net::SocketAddr,
    /// The server's state, to look at while it runs.
    pub state: AppState,
    /// Sending (or dropping) it starts the shutdown.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// `xgserve::http::run`'s task.
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Runs `xgserve::http::run` with `config` on a port-0 listener until `stop` is used.
pub async fn listening(config: HttpConfig) -> Listening {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = state_with(config);
    let server = tokio::spawn(xgserve::http::run(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Listening {
        address,
        state,
        stop,
        server,
    }
}

/// The `/proc/self/task/*/{file}` of each of this process's threads named as the server names its
/// workers; a thread that exits while they are read is left out.
pub fn worker_files(file: &str) -> Vec<String> {
    let mut files = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        let named = std::fs::read_to_string(path.join("comm")).is_ok_and(|name| name.starts_with("xgserve-http-"));
        if let (true, Ok(text)) = (named, std::fs::read_to_string(path.join(file))) {
            files.push(text);
        }
    }
    files
}
