//! The routes (see the crate docs for the table).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use cu_attest::{Attestor, Position};
use cu_node::{Node, NodeError, ResultsParams};
use serde_json::Value;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;

use crate::HttpConfig;
use crate::cache::{DryRunCache, DryRunKey, RateLimiter};
use crate::client::{client_ip, constant_time_eq, is_loopback};
use crate::error::{HttpError, error_response};
use crate::metrics::HttpMetrics;
use crate::upload::{GuardedBody, Reservation, busy_response};

struct AppState {
    node: Node,
    config: HttpConfig,
    dry_run_cache: DryRunCache<DryRunAnswer>,
    limiter: Option<RateLimiter>,
    metrics: HttpMetrics,
    /// What `GET /` adds about the node key and configuration (computed once), when the node has one.
    identity: Option<Value>,
}

/// A dry-run answer as cached: the JSON body and the slot of the state it ran on (for `ao-position`).
#[derive(Clone)]
struct DryRunAnswer {
    body: String,
    slot: Option<u64>,
}

type Shared = State<Arc<AppState>>;
type Reply = Result<Response, HttpError>;

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

/// The route table (see the crate docs).
fn routes(config: &HttpConfig) -> Router<Arc<AppState>> {
    let mut app = Router::new()
        .route("/", get(root).post(mu_ingest))
        .route("/healthcheck", get(healthcheck))
        .route("/health", get(healthcheck))
        .route(
            "/result/{id}",
            if config.hbu.is_some() {
                get(result).post(hbu_result)
            } else {
                get(result).post(hbu_off)
            },
        )
        .route("/results/{pid}", get(results))
        .route("/cron/{pid}", get(cron))
        .route("/dry-run", post(dry_run))
        .route("/state/{pid}", get(state_route))
        .route(
            "/graphql",
            post(graphql).layer(DefaultBodyLimit::max(config.graphql_body_limit)),
        )
        .route("/~snp@1.0/report", get(evidence))
        .route("/timestamp", get(su_timestamp))
        .route("/processes/{pid}", get(su_process))
        .route("/{pid}/latest", get(su_latest))
        .route("/{id}", get(su_read));
    if config.metrics {
        app = app.route("/metrics", get(metrics));
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

// ---------------------------------------------------------------------------------------------------------
// Query parsing: by hand, so every problem is a 400 that names the parameter.

/// Decoded `application/x-www-form-urlencoded` query pairs.
struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    fn parse(raw: Option<&str>) -> Result<Self, HttpError> {
        let raw = raw.unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(raw)?;
        Ok(QueryParams(pairs))
    }

    /// The last value of `name` (as `URLSearchParams.get` gives the first; duplicates are rare and a
    /// client sending two means the last).
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty value of `name`, if given.
    fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn process_id(&self) -> Result<&str, HttpError> {
        self.non_empty("process-id")
            .ok_or_else(|| HttpError::bad_request("'process-id': a process-id query parameter is required"))
    }

    fn number(&self, name: &str) -> Result<Option<u64>, HttpError> {
        match self.non_empty(name) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                HttpError::bad_request(format!("'{name}': must be a non-negative integer, got {v:?}"))
            }),
        }
    }

    fn results_params(&self) -> Result<ResultsParams, HttpError> {
        let sort = match self.non_empty("sort") {
            None => None,
            Some(s) if s.eq_ignore_ascii_case("asc") => Some("ASC".to_owned()),
            Some(s) if s.eq_ignore_ascii_case("desc") => Some("DESC".to_owned()),
            Some(s) => {
                return Err(HttpError::bad_request(format!(
                    "'sort': must be ASC or DESC, got {s:?}"
                )));
            }
        };
        let limit = self
            .number("limit")?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
        Ok(ResultsParams {
            from: self.non_empty("from").map(str::to_owned),
            to: self.non_empty("to").map(str::to_owned),
            sort,
            limit,
        })
    }
}

/// The query parser every route uses ([`QueryParams`]), as its decoded pairs: the entry point of the
/// `http_query` fuzz target (`fuzz/`). Not an API; re-exported hidden from the crate root.
#[doc(hidden)]
pub fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>, HttpError> {
    QueryParams::parse(raw).map(|q| q.0)
}

/// Splits and percent-decodes a query string (`+` is a space).
fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, HttpError> {
    let mut out = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, HttpError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits, nothing else: `from_str_radix` alone also takes a sign (`%+f`).
                let hex = bytes
                    .get(i + 1..i + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| HttpError::bad_request("malformed percent-encoding in the query"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| HttpError::bad_request("the query is not UTF-8"))
}

// ---------------------------------------------------------------------------------------------------------
// Helpers.

fn json_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

fn json_ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value.to_string())
}

/// A 200 JSON result for message `position` of `process_id`, with `extra` headers; signed (RFC 9421,
/// `docs/attestation.md` §2.6) when the node has a key. Signing is one SHA-256 over the body and one
/// ed25519 signature (~25 µs for a small result), cheap enough for the async worker.
fn result_response(
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
fn identity(attestor: &Attestor) -> Value {
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
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, HttpError> {
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
async fn blocking<T, F>(f: F) -> Result<T, HttpError>
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

/// Where a process's schedule ends: `<nonce>:<timestamp>:<assignment id>` of its latest scheduled message
/// (from the SU's `/latest` record), the state a dry-run evaluates on.
fn schedule_position(node: &Node, pid: &str) -> Result<String, NodeError> {
    let latest = node.su_latest(pid)?;
    let assignment = latest.get("assignment").unwrap_or(&Value::Null);
    let tag = |name: &str| {
        assignment
            .get("tags")
            .and_then(Value::as_array)
            .and_then(|tags| {
                tags.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
            })
            .and_then(|t| t.get("value"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let id = assignment.get("id").and_then(Value::as_str).unwrap_or("");
    Ok(format!("{}:{}:{id}", tag("Nonce"), tag("Timestamp")))
}

// ---------------------------------------------------------------------------------------------------------
// CU routes.

async fn root(State(state): Shared) -> Response {
    let mut v = serde_json::json!({
        "address": state.node.address(),
        "timestamp": state.node.now(),
    });
    if let (Some(Value::Object(id)), Value::Object(out)) = (&state.identity, &mut v) {
        out.extend(id.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    json_ok(&v)
}

/// `GET /~snp@1.0/report?nonce=HEX`: SEV-SNP evidence binding the node key, its configuration and the
/// nonce. Produced on a blocking worker (a firmware call and maybe a KDS fetch), never on an evaluation
/// thread; 503 `no TEE` outside an SNP guest, 400 for a missing or malformed nonce.
async fn evidence(State(state): Shared, RawQuery(q): RawQuery) -> Reply {
    let q = QueryParams::parse(q.as_deref())?;
    let nonce = q
        .non_empty("nonce")
        .ok_or_else(|| HttpError::bad_request("'nonce': a hex nonce of 1 to 64 bytes is required"))?;
    let nonce = cu_attest::binding::parse_nonce_hex(nonce)?;
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

async fn result(State(state): Shared, Path(id): Path<String>, RawQuery(q): RawQuery) -> Reply {
    let q = QueryParams::parse(q.as_deref())?;
    let pid = q.process_id()?;
    let (value, slot) = state.node.result_with_slot(pid, &id).await?;
    let slot = slot.ok_or_else(|| {
        HttpError::request(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("message {id} has no slot to sign its result with"),
        )
    })?;
    result_response(&state, value.to_string(), Vec::new(), pid, Position::Slot(slot))
}

async fn results(State(state): Shared, Path(pid): Path<String>, RawQuery(q): RawQuery) -> Reply {
    let params = QueryParams::parse(q.as_deref())?.results_params()?;
    let node = state.node.clone();
    let value = blocking(move || node.results(&pid, params)).await?;
    Ok(json_ok(&value))
}

async fn cron(State(state): Shared, Path(pid): Path<String>, RawQuery(q): RawQuery) -> Reply {
    let params = QueryParams::parse(q.as_deref())?.results_params()?;
    let value = state.node.cron(&pid, params).await?;
    Ok(json_ok(&value))
}

async fn dry_run(
    State(state): Shared,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let q = QueryParams::parse(q.as_deref())?;
    let pid = q.process_id()?.to_owned();
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
        let node = state.node.clone();
        let p = pid.clone();
        let position = blocking(move || schedule_position(&node, &p)).await?;
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

async fn state_route(State(state): Shared, Path(pid): Path<String>) -> Reply {
    let reply = state.node.state(&pid).await?;
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
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    hbu_trusted(&state, &headers, connect.map(|Extension(ConnectInfo(a))| a))?;
    let q = QueryParams::parse(q.as_deref())?;
    let pid = q.process_id()?.to_owned();
    let slot: u64 = slot
        .parse()
        .map_err(|_| HttpError::bad_request(format!("slot must be a non-negative integer, got {slot:?}")))?;
    let body = body_bytes(body)?;
    let page: Value = serde_json::from_slice(&body)
        .map_err(|e| HttpError::bad_request(format!("malformed JSON body: {e}")))?;
    let (value, headers) = state.node.hbu_result(&pid, slot, page).await?;
    result_response(&state, value.to_string(), headers, &pid, Position::Slot(slot))
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

// ---------------------------------------------------------------------------------------------------------
// MU ingress and gateway.

async fn mu_ingest(
    State(state): Shared,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let q = QueryParams::parse(q.as_deref())?;
    match (q.non_empty("process-id"), q.non_empty("assign")) {
        (None, None) => {}
        (Some(process_id), Some(message_id)) => {
            // The MU's assignment route (aoconnect's `assign`): no body; the reply names the assignment.
            if q.get("base-layer").is_some() {
                return Err(HttpError::bad_request(
                    "base-layer assignments (Arweave L1 transactions) are not supported by this node: it assigns only messages it stores",
                ));
            }
            let (process_id, message_id) = (process_id.to_owned(), message_id.to_owned());
            let exclude = q.get("exclude").map(str::to_owned);
            let node = state.node.clone();
            let id = blocking(move || node.assign(&process_id, &message_id, exclude.as_deref())).await?;
            return Ok(json_response(
                StatusCode::ACCEPTED,
                serde_json::json!({ "message": "Processing Assignment", "id": id }).to_string(),
            ));
        }
        _ => {
            return Err(HttpError::bad_request(
                "You must set both process-id and assign to send an assignment, not just one",
            ));
        }
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

// ---------------------------------------------------------------------------------------------------------
// SU read routes.

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

/// `GET /{id}`: as the SU, a message of `process-id` when that names another id, else a schedule page.
async fn su_read(State(state): Shared, Path(id): Path<String>, RawQuery(q): RawQuery) -> Reply {
    let q = QueryParams::parse(q.as_deref())?;
    let pid = q.non_empty("process-id").map(str::to_owned);
    let from = q.non_empty("from").map(str::to_owned);
    let to = q.non_empty("to").map(str::to_owned);
    let limit = q
        .number("limit")?
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let node = state.node.clone();
    let value = blocking(move || {
        if let Some(pid) = pid.as_deref().filter(|p| *p != id) {
            match node.su_message(&id, pid) {
                Err(NodeError::NotFound(_)) => {}
                other => return other,
            }
        }
        node.su_messages(&id, from.as_deref(), to.as_deref(), limit)
    })
    .await?;
    Ok(json_ok(&value))
}
