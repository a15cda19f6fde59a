//! Liveness, readiness and the API description.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use serde_json::{json, Value};

use crate::error::{ApiError, Code, Json};
use crate::state::AppState;

/// `GET /healthz`: 200 while the process runs.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the database answers within two seconds, else 503.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({ "status": "ready" }))),
        outcome => {
            tracing::warn!(timed_out = outcome.is_err(), "database not ready");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::NotReady,
                "The database is not answering.",
            ))
        }
    }
}

/// `GET /openapi.yaml`: the API description.
pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], include_str!("../../openapi.yaml"))
}

/// `GET /metrics`: Prometheus text. Bind it privately: it names routes and counts, never ids.
/// A scrape reads only memory; the connection gauges are counted in the background.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
}
