//! HyperBEAM's `POST /result/{slot}?process-id=` (hbu mode only; see `cu_node::hbu` for what is checked).
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use cu_attest::Position;
use serde_json::Value;

use super::{AppState, Reply, Shared, body_bytes, result_response};
use crate::HttpConfig;
use crate::client::{constant_time_eq, is_loopback};
use crate::error::{HttpError, error_response};
use crate::query::{ProcessIdParam, Query};

pub(super) fn routes(config: &HttpConfig) -> Router<Arc<AppState>> {
    Router::new().route(
        "/result/{id}",
        if config.hbu.is_some() {
            post(hbu_result)
        } else {
            post(hbu_off)
        },
    )
}

/// `POST /result/{slot}` outside hbu mode: the route does not exist.
async fn hbu_off(uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &format!(
            "Route POST:{} not found: HyperBEAM's hbu route exists only in hbu mode (UNIT_MODE=hbu)",
            uri.path()
        ),
    )
}

/// Whether the caller may use the hbu route ([`crate::HbuAccess`]): with a token, it must present it;
/// without one, it must be on this host.
fn hbu_trusted(state: &AppState, headers: &HeaderMap, peer: Option<SocketAddr>) -> Result<(), HttpError> {
    let Some(access) = &state.config.hbu else {
        return Err(HttpError::request(StatusCode::NOT_FOUND, "hbu mode is off"));
    };
    let trusted = match &access.token {
        Some(token) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.trim().as_bytes(), token.as_bytes())),
        None => is_loopback(peer),
    };
    if trusted {
        Ok(())
    } else {
        Err(HttpError::request(
            StatusCode::FORBIDDEN,
            if access.token.is_some() {
                "the hbu route needs this node's hbu token (Authorization: Bearer)"
            } else {
                "the hbu route answers only callers on this host"
            },
        ))
    }
}

/// hbu mode: `POST /result/{slot}?process-id=` with one SU page as the body, from a trusted caller.
async fn hbu_result(
    State(state): Shared,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Path(slot): Path<String>,
    query: Result<Query<ProcessIdParam>, HttpError>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    hbu_trusted(&state, &headers, connect.map(|Extension(ConnectInfo(a))| a))?;
    // Trust first: an untrusted caller learns nothing from how its request is malformed.
    let Query(ProcessIdParam { process_id: pid }) = query?;
    let slot: u64 = slot
        .parse()
        .map_err(|_| HttpError::bad_request(format!("slot must be a non-negative integer, got {slot:?}")))?;
    let body = body_bytes(body)?;
    let page: Value = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("malformed JSON body: {e}")))?;
    let (value, headers) = state.node.hbu_result(&pid, slot, page).await?;
    result_response(&state, value.to_string(), headers, &pid, Position::Slot(slot))
}
