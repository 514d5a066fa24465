//! The gateway surface: `POST /graphql` (the subset aoconnect and the reference CU send,
//! `cu_node::graphql`), `GET /raw/{id}` (the data of a stored module, process, message or uploaded item;
//! a `Range: bytes=a-b` is honoured as WeaveDrive sends it: `cu_node::drive::served`),
//! the Arweave API's `GET /tx/{id}` and `GET /block/height/{h}` (`cu_node::arweave`), and the bundler's
//! `POST /tx` and `POST /tx/{currency}` (a signed data item stored as it is, as the reference CU uploads
//! checkpoints to `UPLOADER_URL/tx/arweave`).
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
    let routes = Router::new()
        .route(
            "/graphql",
            post(graphql).layer(DefaultBodyLimit::max(config.graphql_body_limit)),
        )
        .route("/raw/{id}", get(raw))
        .route("/tx", post(upload))
        // `GET /tx/{id}`: a transaction header; `POST /tx/{currency}`: an upload (Irys/Turbo style).
        .route("/tx/{id}", get(tx_header).post(upload_for))
        .route("/block/height/{height}", get(block_header));
    // `GET /{id}` serves data as a gateway's root does (WeaveDrive 0.0.18 reads `/{id}`); with the SU
    // role on, the SU's `GET /{id}` falls back to this for ids that are not processes.
    if config.roles.su {
        routes
    } else {
        routes.route("/{id}", get(raw))
    }
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

async fn tx_header(State(state): Shared, Path(id): Path<String>) -> Reply {
    let node = state.node.clone();
    Ok(json_ok(&blocking(move || node.tx_header(&id)).await?))
}

async fn block_header(State(state): Shared, Path(height): Path<String>) -> Reply {
    let node = state.node.clone();
    Ok(json_ok(&blocking(move || node.block_header(&height)).await?))
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

async fn raw(State(state): Shared, Path(id): Path<String>, headers: header::HeaderMap) -> Reply {
    data(&state, id, &headers).await
}

/// The data of `id` (`GET /raw/{id}`, `GET /{id}`), honouring one `Range`.
pub(super) async fn data(state: &AppState, id: String, headers: &header::HeaderMap) -> Reply {
    let node = state.node.clone();
    let (data, content_type) = blocking(move || node.raw(&id)).await?;
    // A tag value that is no valid header value (it is the uploader's text) is served as bytes.
    let content_type = header::HeaderValue::from_str(&content_type)
        .unwrap_or(header::HeaderValue::from_static("application/octet-stream"));
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    Ok(match range.and_then(byte_range) {
        None => ([(header::CONTENT_TYPE, content_type)], data).into_response(),
        Some((start, end)) => {
            let total = data.len() as u64;
            match cu_node::drive::served(&start, end, total) {
                cu_node::drive::Served::Whole => {
                    ([(header::CONTENT_TYPE, content_type)], data).into_response()
                }
                cu_node::drive::Served::Part(a, b) => (
                    axum::http::StatusCode::PARTIAL_CONTENT,
                    [
                        (header::CONTENT_TYPE, content_type),
                        (
                            header::CONTENT_RANGE,
                            header::HeaderValue::from_str(&format!("bytes {a}-{b}/{total}"))
                                .unwrap_or(header::HeaderValue::from_static("bytes */0")),
                        ),
                    ],
                    data[a as usize..=b as usize].to_vec(),
                )
                    .into_response(),
                cu_node::drive::Served::Nothing => (
                    axum::http::StatusCode::RANGE_NOT_SATISFIABLE,
                    [(
                        header::CONTENT_RANGE,
                        header::HeaderValue::from_str(&format!("bytes */{total}"))
                            .unwrap_or(header::HeaderValue::from_static("bytes */0")),
                    )],
                )
                    .into_response(),
            }
        }
    })
}

/// One `bytes=<start>-<end>` range (the form WeaveDrive sends: both ends given, decimal); anything
/// else (suffix ranges, several ranges, other units) is ignored and the whole data served, as RFC 9110
/// allows. The start stays text: WeaveDrive may send more digits than fit an integer.
fn byte_range(value: &str) -> Option<(String, f64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(start) || !digits(end) {
        return None;
    }
    Some((start.to_owned(), end.parse().ok()?))
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
