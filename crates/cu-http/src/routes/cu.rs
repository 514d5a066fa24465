//! The Compute Unit's routes: `GET /result/{id}`, `GET /results/{pid}`, `GET /cron/{pid}`,
//! `POST /dry-run` and `GET /state/{pid}`.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use cu_attest::Position;
use cu_node::ResultsParams;
use serde_json::Value;

use super::{AppState, DryRunAnswer, Reply, Shared, blocking, body_bytes, json_ok, result_response};
use crate::cache::DryRunKey;
use crate::client::client_ip;
use crate::error::HttpError;
use crate::query::{ProcessIdParam, Query, StateParams};

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/result/{id}", get(result))
        .route("/results/{pid}", get(results))
        .route("/cron/{pid}", get(cron))
        .route("/dry-run", post(dry_run))
        .route("/state/{pid}", get(state_route))
}

async fn result(
    State(state): Shared,
    Path(id): Path<String>,
    Query(ProcessIdParam { process_id }): Query<ProcessIdParam>,
) -> Reply {
    let pid = process_id.as_str();
    let (value, slot) = state.node.result_with_slot(pid, &id).await?;
    let slot = slot.ok_or_else(|| {
        HttpError::request(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("message {id} has no slot to sign its result with"),
        )
    })?;
    result_response(&state, value.to_string(), Vec::new(), pid, Position::Slot(slot))
}

async fn results(
    State(state): Shared,
    Path(pid): Path<String>,
    Query(params): Query<ResultsParams>,
) -> Reply {
    let node = state.node.clone();
    let value = blocking(move || node.results(&pid, params)).await?;
    Ok(json_ok(&value))
}

async fn cron(State(state): Shared, Path(pid): Path<String>, Query(params): Query<ResultsParams>) -> Reply {
    let value = state.node.cron(&pid, params).await?;
    Ok(json_ok(&value))
}

async fn dry_run(
    State(state): Shared,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    Query(ProcessIdParam { process_id: pid }): Query<ProcessIdParam>,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let body = body_bytes(body)?;
    let msg: Value = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("malformed JSON body: {e}")))?;
    if !msg.is_object() {
        return Err(HttpError::bad_request("the dry-run body must be a JSON object"));
    }
    let now = Instant::now();
    // The schedule position: the dry-run evaluates on the state after the latest scheduled message, so
    // (process, latest nonce, body) identifies the answer. Unknown process: the node's 404.
    let key = if state.config.dry_run_cache_max_age.is_zero() {
        None
    } else {
        let position = state.node.schedule_position(&pid).await?;
        Some(DryRunKey {
            process: pid.clone(),
            position,
            body: msg.to_string(),
        })
    };
    if let Some(key) = &key
        && let Some(hit) = state.dry_run_cache.get(key, now)
    {
        let position = Position::DryRun { after: hit.slot };
        return result_response(&state, hit.body, Vec::new(), &pid, position);
    }
    if let Some(limiter) = &state.limiter {
        let peer = connect.map(|Extension(ConnectInfo(a))| a);
        let ip = client_ip(&headers, peer, &state.config.trusted_proxies);
        if !limiter.check(&ip, now) {
            return Err(HttpError::request(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit exceeded",
            ));
        }
    }
    let (value, slot) = state.node.dry_run_with_slot(&pid, msg).await?;
    let answer = DryRunAnswer {
        body: value.to_string(),
        slot,
    };
    if let Some(key) = key {
        state.dry_run_cache.insert(key, answer.clone(), now);
    }
    let position = Position::DryRun { after: answer.slot };
    result_response(&state, answer.body, Vec::new(), &pid, position)
}

async fn state_route(
    State(state): Shared,
    Path(pid): Path<String>,
    Query(StateParams { to }): Query<StateParams>,
) -> Reply {
    let reply = state.node.state_at(&pid, to).await?;
    let mut response = Response::new(Body::from(reply.memory));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (name, value) in [
        ("last-timestamp", reply.timestamp.to_string()),
        ("last-ordinate", reply.ordinate.to_string()),
        ("last-block-height", reply.block_height.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    Ok(response)
}
