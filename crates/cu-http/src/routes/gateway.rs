//! The gateway surface: `POST /graphql`, the subset aoconnect sends (`cu_node::graphql`).
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use serde_json::Value;

use super::{AppState, Reply, Shared, blocking, body_bytes, json_ok};
use crate::HttpConfig;
use crate::error::HttpError;

pub(super) fn routes(config: &HttpConfig) -> Router<Arc<AppState>> {
    Router::new().route(
        "/graphql",
        post(graphql).layer(DefaultBodyLimit::max(config.graphql_body_limit)),
    )
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
