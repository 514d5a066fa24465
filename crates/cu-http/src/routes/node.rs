//! The node's own routes: `GET /` (CU healthcheck and SU info in one), `GET /healthcheck`, `GET /health`,
//! `GET /metrics` and the SEV-SNP evidence route.
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use super::{AppState, Reply, Shared, json_ok, json_response};
use crate::HttpConfig;
use crate::error::HttpError;
use crate::query::{NonceParam, Query};

pub(super) fn routes(_config: &HttpConfig) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(root))
        .route("/healthcheck", get(healthcheck))
        .route("/health", get(healthcheck))
        .route("/~snp@1.0/report", get(evidence))
        .route(crate::cluster::HAND_OVER_PATH, axum::routing::post(hand_over))
}

/// `POST /~cluster@1.0/hand-over?process-id=P` (cluster mode): another node asks for a process the proxy
/// sends it requests for; `{"released": true}` when this node gave it up (checkpointed and released),
/// `false` when it does not hold it or has held it for less than twice the lease time to live.
async fn hand_over(
    State(state): Shared,
    Query(crate::query::ProcessIdParam { process_id }): Query<crate::query::ProcessIdParam>,
) -> Reply {
    let node = state.node.clone();
    if !node.clustered() {
        return Err(HttpError::request(
            StatusCode::NOT_FOUND,
            "this node is not in a cluster",
        ));
    }
    let min_tenure = node.cluster_ttl().unwrap_or_default() * 2;
    let released = super::blocking(move || node.hand_over(&process_id, min_tenure)).await?;
    Ok(json_ok(&serde_json::json!({ "released": released })))
}

pub(super) fn metrics_routes() -> Router<Arc<AppState>> {
    Router::new().route("/metrics", get(metrics))
}

async fn root(State(state): Shared) -> Response {
    let now = state.node.now();
    let mut v = serde_json::json!({
        "address": state.node.address(),
        "timestamp": now,
        "roles": state.config.roles.to_string(),
    });
    // As a gateway's `GET /` (Arweave's `/info`) does: the reference CU reads the current height here
    // for cron (`getLatestBlockWith`).
    if state.config.roles.gateway
        && let Value::Object(out) = &mut v
    {
        out.insert("height".into(), state.node.block_height_at(now).into());
    }
    if let (Some(Value::Object(id)), Value::Object(out)) = (&state.identity, &mut v) {
        out.extend(id.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    if let (Some(quic), Value::Object(out)) = (&state.config.quic, &mut v) {
        out.insert("quic".into(), quic.clone());
    }
    // A cluster node: its name in the lease table and how many processes it owns now.
    if let (Some(name), Value::Object(out)) = (state.node.cluster_node(), &mut v) {
        out.insert(
            "cluster".into(),
            serde_json::json!({ "node": name, "processes": state.node.owned_processes().len() }),
        );
    }
    json_ok(&v)
}

/// `GET /~snp@1.0/report?nonce=HEX`: SEV-SNP evidence binding the node key, its configuration and the
/// nonce. Produced on a blocking worker (a firmware call and maybe a KDS fetch), never on an evaluation
/// thread; 503 `no TEE` outside an SNP guest, 400 for a missing or malformed nonce.
async fn evidence(State(state): Shared, Query(NonceParam { nonce }): Query<NonceParam>) -> Reply {
    let Some(attestor) = state.config.attestor.clone() else {
        return Err(
            cu_attest::AttestError::NoTee("this node has no attestation key configured".into()).into(),
        );
    };
    let evidence = match tokio::task::spawn_blocking(move || attestor.evidence(&nonce)).await {
        Ok(r) => r?,
        Err(e) => {
            return Err(HttpError::request(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error: {e}"),
            ));
        }
    };
    let body = serde_json::to_string(&evidence).map_err(|e| {
        HttpError::request(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding evidence: {e}"),
        )
    })?;
    Ok(json_response(StatusCode::OK, body))
}

async fn healthcheck(State(state): Shared) -> Response {
    json_ok(&serde_json::json!({ "status": "ok", "address": state.node.address() }))
}

async fn metrics(State(state): Shared) -> Response {
    let node = state.node.clone();
    let mut text = tokio::task::spawn_blocking(move || node.metrics())
        .await
        .unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    state.metrics.render(&mut text);
    state.config.connections.render(&mut text);
    if let Some(extra) = &state.config.extra_metrics {
        (extra.0)(&mut text);
    }
    let budget = &state.config.upload_budget;
    text.push_str(&format!(
        "# HELP ao_cu_http_upload_bytes_held Request body bytes held now, against the upload budget.\n# TYPE ao_cu_http_upload_bytes_held gauge\nao_cu_http_upload_bytes_held {}\n# HELP ao_cu_http_upload_budget_bytes The upload budget.\n# TYPE ao_cu_http_upload_budget_bytes gauge\nao_cu_http_upload_budget_bytes {}\n",
        budget.used(),
        budget.limit()
    ));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}
