//! The Messenger's ingress: `POST /` (a signed data item) and `POST /?process-id=&assign=` (aoconnect's
//! `assign`).
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::routing::post;

use super::{AppState, Reply, Shared, blocking, body_bytes, json_response};
use crate::error::HttpError;
use crate::query::{AssignParams, Query};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/", post(mu_ingest))
}

async fn mu_ingest(
    State(state): Shared,
    Query(assign): Query<AssignParams>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    if let AssignParams::Assign {
        process_id,
        message_id,
        exclude,
    } = assign
    {
        // The MU's assignment route (aoconnect's `assign`): no body; the reply names the assignment.
        let node = state.node.clone();
        let id = blocking(move || node.assign(&process_id, &message_id, exclude.as_deref())).await?;
        return Ok(json_response(
            StatusCode::ACCEPTED,
            serde_json::json!({ "message": "Processing Assignment", "id": id }).to_string(),
        ));
    }
    let body = body_bytes(body)?;
    if body.is_empty() {
        return Err(HttpError::bad_request(
            "A valid and signed data item must be provided as the body",
        ));
    }
    let node = state.node.clone();
    let ingested = blocking(move || node.ingest(&body)).await?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        serde_json::json!({ "message": "Processing DataItem", "id": ingested.id }).to_string(),
    ))
}
