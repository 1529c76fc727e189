//! The optional remote backend (`--predict-url`): rows posted as one columnar body to a `/predict`
//! endpoint, this server's or the Bento service's. Only the data's faults dead-letter rows: a
//! refusal naming a row dead-letters that row, and one naming none is narrowed down by halving the
//! batch until the refused rows stand alone. Faults that are not the data's (down, slow, overloaded,
//! 5xx, and 401, 403 or 404: a rotated token or a wrong URL) are retried with backoff for as long as
//! it takes, counted and logged, and the bridge consumes nothing meanwhile (paused, never skipped).
//! A body too large for the backend (413) is sent again in halves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::value::RawValue;
use serde_json::Value;

use super::debezium::Members;
use super::metrics::Metrics;
use super::{ColumnMap, RowError};

/// Backoff after the first failure, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long an idle connection to the backend is kept for the next batch.
const IDLE_CONNECTION: Duration = Duration::from_secs(20);

/// A `/predict` endpoint.
#[derive(Clone)]
pub struct Client {
    http: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    /// Per attempt.
    timeout: Duration,
    /// Sent as a bearer token when the server wants one.
    token: Option<String>,
    metrics: Arc<Metrics>,
}

/// Why one attempt failed.
enum Failure {
    /// The backend refused the rows; retrying will not help.
    Refused(RowError),
    /// The body is too large for the backend (413): fewer rows at a time will do.
    TooLarge(RowError),
    /// Down, slow, overloaded or misconfigured; worth another try.
    Transient(String),
}

impl Client {
    pub fn new(url: &str, timeout: Duration, token: Option<String>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let url: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("--predict-url {url:?} is not a URL: {e}"))?;
        if url.scheme_str() != Some("http") {
            anyhow::bail!("--predict-url {url} must be http:// (put TLS in a sidecar or proxy)");
        }
        // Idle connections are dropped before xgserve's 30 s header read timeout closes them, so a
        // batch is never written to a connection the server is closing (it would be retried anyway).
        let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_CONNECTION)
            .build_http();
        Ok(Self {
            http,
            url,
            timeout,
            token,
            metrics,
        })
    }

    /// Prices the rows, retrying until the backend answers. A refusal that names no row, or a 413,
    /// is met by pricing each half of the rows on its own, down to single rows; the error returned
    /// names the first refused row.
    pub async fn predict(
        &self,
        columns: &ColumnMap,
        price_field: &str,
        rows: &[&Members<'_>],
    ) -> Result<Vec<f32>, RowError> {
        match self.predict_once(columns, price_field, rows).await {
            Ok(prices) => Ok(prices),
            Err(Failure::Refused(e)) if e.row.is_some() || rows.len() == 1 => Err(RowError {
                row: e.row.or(Some(0)),
                ..e
            }),
            Err(Failure::TooLarge(e)) if rows.len() == 1 => Err(RowError { row: Some(0), ..e }),
            Err(_) => {
                let (left, right) = rows.split_at(rows.len() / 2);
                let mut prices = Box::pin(self.predict(columns, price_field, left)).await?;
                let more = Box::pin(self.predict(columns, price_field, right))
                    .await
                    .map_err(|e| RowError {
                        row: e.row.map(|r| r + left.len()),
                        ..e
                    })?;
                prices.extend(more);
                Ok(prices)
            }
        }
    }

    /// One body for all the rows, sent until it is answered with prices or refused (never
    /// `Failure::Transient`: those are retried here).
    async fn predict_once(
        &self,
        columns: &ColumnMap,
        price_field: &str,
        rows: &[&Members<'_>],
    ) -> Result<Vec<f32>, Failure> {
        let body = Bytes::from(columnar(columns, price_field, rows));
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.attempt(body.clone(), rows.len()).await {
                Ok(prices) => return Ok(prices),
                Err(refused @ (Failure::Refused(_) | Failure::TooLarge(_))) => return Err(refused),
                Err(Failure::Transient(why)) => {
                    self.metrics.backend_retries.inc();
                    tracing::warn!(url = %self.url, error = %why, retry_in_ms = backoff.as_millis() as u64,
                        "the prediction backend failed; consumption waits");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn attempt(&self, body: Bytes, rows: usize) -> Result<Vec<f32>, Failure> {
        let mut request = Request::post(self.url.clone()).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body)).expect("a valid request");
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| format!("{e}"))?;
            let status = response.status();
            let bytes = response.into_body().collect().await.map_err(|e| format!("{e}"))?;
            Ok::<_, String>((status, bytes.to_bytes()))
        };
        let (status, bytes) = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => return Err(Failure::Transient(format!("no answer in {:?}", self.timeout))),
            Ok(Err(e)) => return Err(Failure::Transient(e)),
            Ok(Ok(answer)) => answer,
        };
        let text = String::from_utf8_lossy(&bytes);
        // Not the data's fault: the backend is down or overloaded, or the bridge is misconfigured
        // (a rotated token, a wrong URL). Dead-lettering the data would not fix it.
        let transient = status.is_server_error()
            || matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::REQUEST_TIMEOUT
                    | StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::NOT_FOUND
            );
        if transient {
            return Err(Failure::Transient(format!("{status}: {text}")));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Err(Failure::TooLarge(refusal(status, &bytes)));
        }
        if !status.is_success() {
            return Err(Failure::Refused(refusal(status, &bytes)));
        }
        let prices: Vec<f64> = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Refused(RowError {
                row: None,
                kind: "backend".into(),
                message: format!("the backend's answer is not a list of numbers: {e}"),
            })
        })?;
        if prices.len() != rows {
            return Err(Failure::Refused(RowError {
                row: None,
                kind: "backend".into(),
                message: format!("{rows} rows sent but {} prices received", prices.len()),
            }));
        }
        // The answer holds float32 values as exact decimals, so this is exact.
        Ok(prices.into_iter().map(|p| p as f32).collect())
    }
}

/// A 4xx answer: this server's error body names the row; any other names none.
fn refusal(status: StatusCode, body: &[u8]) -> RowError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name));
    RowError {
        row: field("row").and_then(Value::as_u64).map(|r| r as usize),
        kind: field("error_type")
            .and_then(Value::as_str)
            .unwrap_or("backend_refused")
            .to_owned(),
        message: match field("error").and_then(Value::as_str) {
            Some(error) => format!("the backend refused ({status}): {error}"),
            None => format!("the backend refused ({status}): {}", String::from_utf8_lossy(body)),
        },
    }
}

/// The rows as a columnar body with the model's column names; the price field is left out.
fn columnar(columns: &ColumnMap, price_field: &str, rows: &[&Members<'_>]) -> Vec<u8> {
    let mut names: Vec<&str> = Vec::new();
    for row in rows {
        for name in row.names() {
            if name != price_field && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let body: BTreeMap<&str, Vec<Option<&RawValue>>> = names
        .into_iter()
        .map(|name| (columns.target(name), rows.iter().map(|r| r.get(name)).collect()))
        .collect();
    serde_json::to_vec(&body).expect("JSON text serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_become_a_columnar_body_with_model_names() {
        let a = json!({"id": 1, "fuel_type": "Diesel", "suggested_price": null}).to_string();
        let b = json!({"id": 2, "fuel_type": "Petrol", "engine_size": 1.0}).to_string();
        let (a, b): (Members, Members) = (serde_json::from_str(&a).unwrap(), serde_json::from_str(&b).unwrap());
        let rows = [&a, &b];
        let body: Value = serde_json::from_slice(&columnar(
            &ColumnMap::DEFAULT.parse().unwrap(),
            "suggested_price",
            &rows,
        ))
        .unwrap();
        assert_eq!(
            body,
            json!({"id": [1, 2], "fuelType": ["Diesel", "Petrol"], "engineSize": [null, 1.0]})
        );
    }

    #[test]
    fn refusals_keep_the_row_when_the_server_names_it() {
        let body = br#"{"error": "column \"year\", row 1: expected a number", "error_type": "type", "column": "year", "row": 1}"#;
        let e = refusal(StatusCode::BAD_REQUEST, body);
        assert_eq!((e.row, e.kind.as_str()), (Some(1), "type"));
        assert!(e.message.contains("row 1"), "{}", e.message);
        let e = refusal(StatusCode::BAD_REQUEST, b"Invalid JSON input");
        assert_eq!((e.row, e.kind.as_str()), (None, "backend_refused"));
        assert!(e.message.contains("Invalid JSON input"));
    }
}
