//! The Scheduler's read API: `GET /timestamp`, `GET /processes/{pid}`, `GET /{pid}/latest` and
//! `GET /{id}` (a message, or a page of a schedule).
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use cu_node::NodeError;

use super::{AppState, Reply, Shared, blocking, json_bytes_ok, json_ok};
use crate::query::{Query, SuPageParams};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/timestamp", get(su_timestamp))
        .route("/processes/{pid}", get(su_process))
        .route("/{pid}/latest", get(su_latest))
        .route("/{id}", get(su_read))
}

async fn su_timestamp(State(state): Shared) -> Response {
    json_ok(&state.node.su_timestamp())
}

async fn su_process(State(state): Shared, Path(pid): Path<String>) -> Reply {
    let node = state.node.clone();
    Ok(json_ok(&blocking(move || node.su_process(&pid)).await?))
}

async fn su_latest(State(state): Shared, Path(pid): Path<String>) -> Reply {
    let node = state.node.clone();
    Ok(json_ok(&blocking(move || node.su_latest(&pid)).await?))
}

/// `GET /{id}`: as the SU, a message of `process-id` when that names another id, else a schedule page;
/// for an id that is neither, with the gateway role on, its data (as a gateway's `GET /{id}`).
async fn su_read(
    State(state): Shared,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    Query(SuPageParams {
        process_id: pid,
        from,
        to,
        limit,
    }): Query<SuPageParams>,
) -> Reply {
    let node = state.node.clone();
    let asked = id.clone();
    let text = blocking(move || {
        if let Some(pid) = pid.as_deref().filter(|p| *p != id) {
            match node.su_message(&id, pid) {
                Err(NodeError::NotFound(_)) => {}
                other => return other.map(|v| v.to_string().into_bytes()),
            }
        }
        node.su_messages_text(&id, from.as_deref(), to.as_deref(), limit)
    })
    .await;
    match text {
        Ok(text) => Ok(json_bytes_ok(text)),
        Err(e) if e.status() == axum::http::StatusCode::NOT_FOUND && state.config.roles.gateway => {
            super::gateway::data(&state, asked, &headers).await
        }
        Err(e) => Err(e),
    }
}
