//! The gateway surface: `POST /graphql` (the subset aoconnect and the reference CU send,
//! `cu_node::graphql`), `GET /raw/{id}` (the data of a stored module, process, message or uploaded item),
//! and the bundler's `POST /tx` and `POST /tx/{currency}` (a signed data item stored as it is, as the
//! reference CU uploads checkpoints to `UPLOADER_URL/tx/arweave`).
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;

use super::{AppState, Reply, Shared, blocking, body_bytes, json_ok};
use crate::HttpConfig;
use crate::error::HttpError;

pub(super) fn routes(config: &HttpConfig) -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/graphql",
            post(graphql).layer(DefaultBodyLimit::max(config.graphql_body_limit)),
        )
        .route("/raw/{id}", get(raw))
        .route("/tx", post(upload))
        .route("/tx/{currency}", post(upload_for))
}

async fn upload(State(state): Shared, body: Result<Bytes, BytesRejection>) -> Reply {
    let body = body_bytes(body)?;
    if body.is_empty() {
        return Err(HttpError::bad_request(
            "A valid and signed data item must be provided as the body",
        ));
    }
    let node = state.node.clone();
    let answer = blocking(move || node.upload(&body)).await?;
    Ok(json_ok(&answer))
}

async fn upload_for(
    state: Shared,
    Path(currency): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    if currency != "arweave" {
        return Err(HttpError::bad_request(format!(
            "uploads are taken for arweave only, not {currency:?}"
        )));
    }
    upload(state, body).await
}

async fn raw(State(state): Shared, Path(id): Path<String>) -> Reply {
    let node = state.node.clone();
    let (data, content_type) = blocking(move || node.raw(&id)).await?;
    // A tag value that is no valid header value (it is the uploader's text) is served as bytes.
    let content_type = header::HeaderValue::from_str(&content_type)
        .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
    Ok(([(header::CONTENT_TYPE, content_type)], data).into_response())
}

async fn graphql(State(state): Shared, body: Result<Bytes, BytesRejection>) -> Reply {
    let body = body_bytes(body)?;
    let request: Value = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("malformed JSON body: {e}")))?;
    let query = request
        .get("query")
        .and_then(Value::as_str)
        .ok_or_else(|| HttpError::bad_request("'query': a GraphQL query string is required"))?
        .to_owned();
    let variables = request.get("variables").cloned().unwrap_or(Value::Null);
    let node = state.node.clone();
    let value = blocking(move || node.graphql(&query, variables)).await?;
    Ok(json_ok(&value))
}
