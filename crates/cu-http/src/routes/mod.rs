//! The routes, one module per role (see the crate docs for the table): [`node`] (the node's own: `GET /`,
//! health, metrics, evidence), [`cu`] (the Compute Unit's reads and dry-runs), [`hbu`] (HyperBEAM's
//! `POST /result/{slot}`, hbu mode only), [`mu`] (the Messenger's ingress), [`su`] (the Scheduler's read
//! API) and [`gateway`] (the GraphQL subset). This module holds the shared state, the middleware and the
//! answer helpers; query strings are read by the typed extractors of [`crate::query`].

mod cu;
mod gateway;
mod hbu;
mod mu;
mod node;
mod su;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use cu_attest::{Attestor, Position};
use cu_node::{Node, NodeError};
use serde_json::Value;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

use crate::HttpConfig;
use crate::cache::{DryRunCache, RateLimiter};
use crate::error::{HttpError, error_response};
use crate::metrics::HttpMetrics;
use crate::upload::{GuardedBody, Reservation, busy_response};

pub(crate) struct AppState {
    pub(crate) node: Node,
    pub(crate) config: HttpConfig,
    dry_run_cache: DryRunCache<DryRunAnswer>,
    limiter: Option<RateLimiter>,
    metrics: HttpMetrics,
    /// What `GET /` adds about the node key and configuration (computed once), when the node has one.
    identity: Option<Value>,
}

/// A dry-run answer as cached: the JSON body and the slot of the state it ran on (for `ao-position`).
#[derive(Clone)]
pub(crate) struct DryRunAnswer {
    body: String,
    slot: Option<u64>,
}

pub(crate) type Shared = State<Arc<AppState>>;

pub(crate) type Reply = Result<Response, HttpError>;

/// The node's HTTP API as an axum [`Router`] (serve it with `into_make_service_with_connect_info::<SocketAddr>()`
/// so the dry-run rate limit sees client addresses; without it, clients are told apart by forwarding
/// headers only).
pub fn router(node: Node, config: HttpConfig) -> Router {
    let routes = routes(&config);
    let state = Arc::new(AppState {
        dry_run_cache: DryRunCache::new(config.dry_run_cache_max_age, config.dry_run_cache_entries),
        limiter: config.dry_run_rate_limit.map(RateLimiter::new),
        metrics: HttpMetrics::default(),
        identity: config.attestor.as_deref().map(identity),
        node,
        config,
    });
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::cluster::route_to_owner,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), guard_body))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(state.config.body_limit))
        .layer(TraceLayer::new_for_http())
        .layer(CorsLayer::permissive())
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }))
        .with_state(state)
}

/// The route table: each role's routes (see the crate docs). Paths two roles share (`/`: `GET` node,
/// `POST` MU; `/result/{id}`: `GET` CU, `POST` hbu) merge their methods.
fn routes(config: &HttpConfig) -> Router<Arc<AppState>> {
    let roles = config.roles;
    let mut app = Router::new().merge(node::routes(config));
    if roles.cu {
        app = app.merge(cu::routes()).merge(hbu::routes(config));
    }
    if roles.mu {
        app = app.merge(mu::routes());
    }
    if roles.gateway {
        app = app.merge(gateway::routes(config));
    }
    if roles.su {
        app = app.merge(su::routes());
    }
    if config.metrics {
        app = app.merge(node::metrics_routes());
    }
    app
}

/// Reads every request body under the upload budget and the body deadline (`upload.rs`); a body that
/// failed either way answers 503 or 408 instead of what the handler made of its failed read.
async fn guard_body(State(state): Shared, req: Request, next: Next) -> Response {
    use axum::body::HttpBody as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if declared > state.config.body_limit as u64 {
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let Some(reservation) = Reservation::new(state.config.upload_budget.clone(), declared) else {
        return busy_response();
    };
    let (parts, body) = req.into_parts();
    let body = GuardedBody::new(body, reservation.clone(), state.config.body_timeout);
    let response = next.run(Request::from_parts(parts, Body::new(body))).await;
    reservation.failure_response().unwrap_or(response)
}

/// Records every request's duration under its matched route.
async fn observe(State(state): Shared, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    state.metrics.observe(
        method.as_str(),
        &route,
        response.status().as_u16(),
        start.elapsed(),
    );
    response
}

async fn not_found(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &format!("Route {method}:{} not found", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Method {method} not allowed on {}", uri.path()),
    )
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

pub(crate) fn json_ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

/// A 200 with JSON text already written.
pub(crate) fn json_bytes_ok(body: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// A 200 JSON result for message `position` of `process_id`, with `extra` headers; signed (RFC 9421,
/// `docs/attestation.md` §2.6) when the node has a key. Signing is one SHA-256 over the body and one
/// ed25519 signature (~25 µs for a small result), cheap enough for the async worker.
pub(crate) fn result_response(
    state: &AppState,
    body: String,
    extra: Vec<(String, String)>,
    process_id: &str,
    position: Position,
) -> Reply {
    let mut headers = vec![(
        header::CONTENT_TYPE.as_str().to_owned(),
        "application/json; charset=utf-8".to_owned(),
    )];
    headers.extend(extra);
    if let Some(attestor) = &state.config.attestor {
        let created = i64::try_from(state.node.now() / 1000).ok();
        cu_attest::sign_response(
            attestor.key(),
            StatusCode::OK.as_u16(),
            &mut headers,
            body.as_bytes(),
            process_id,
            position,
            created,
        )?;
    }
    let mut response = Response::new(Body::from(body));
    let h = response.headers_mut();
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) => {
                h.append(n, v);
            }
            _ => {
                return Err(HttpError::request(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("invalid reply header {name:?}"),
                ));
            }
        }
    }
    Ok(response)
}

/// The node key and configuration as `GET /` publishes them.
pub(crate) fn identity(attestor: &Attestor) -> Value {
    let info = attestor.node_info();
    serde_json::json!({
        "node_key": {
            "keyid": info["keyid"],
            "public_key": info["public_key"],
            "alg": "ed25519",
        },
        "config": info["config"],
        "config_digest": info["config_digest"],
        "tee": info["tee"],
    })
}

/// The body, or the extractor's problem as a JSON error (413 over the limit, 400 otherwise).
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, HttpError> {
    body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::request(status, "request body too large")
        } else {
            HttpError::request(status, r.body_text())
        }
    })
}

/// Runs a synchronous node call (store reads, signing) off the async workers.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, HttpError>
where
    F: FnOnce() -> Result<T, NodeError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(HttpError::from),
        Err(e) => Err(HttpError::request(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error: {e}"),
        )),
    }
}
