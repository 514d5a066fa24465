//! Cluster mode: a request for a process another node owns is forwarded to that node (its advertised URL),
//! so a client or a proxy may send any request to any node.
//!
//! The process a request is for comes from its route: `process-id` in the query (`/result/{id}`,
//! `/dry-run`, the MU's `assign`), the id in the path (`/results/{pid}`, `/cron/{pid}`, `/state/{pid}`,
//! the SU's `/{pid}`, `/processes/{pid}`, `/{pid}/latest`), or for `POST /` the data item itself (the
//! spawned process, or the message's target). Requests that name no process (modules, GraphQL, health)
//! are served where they land.
//!
//! A forwarded request carries [`FORWARDED`]; a node never forwards such a request again (it answers 503
//! with [`MOVED`] if it does not own the process either), so a request crosses at most one hop. When the
//! owner cannot be reached (it died and its lease has not expired yet) the request is retried until the
//! lease's time to live has passed twice, then it is taken over here; after that, a 503. A 503 with
//! [`MOVED`] (the process moved away while the request was served here or at the owner; nothing was
//! written) makes the node the request first reached route it again, within the same deadline.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cu_node::Route;

use crate::error::{HttpError, error_response};
use crate::query::QueryParams;
use crate::routes::Shared;

/// The header a forwarded request carries (its value: the forwarding node's name).
pub const FORWARDED: &str = "ao-cu-forwarded-by";
/// The header naming the node that served a forwarded answer.
pub const SERVED_BY: &str = "ao-cu-served-by";

/// The header on a 503 saying that the process moved to another node while the request was served
/// (nothing was written): the first node the request reached routes it again.
pub const MOVED: &str = "ao-cu-moved";

/// The route of hand-over requests between nodes.
pub const HAND_OVER_PATH: &str = "/~cluster@1.0/hand-over";

/// Request headers passed on to the owner.
const PASSED: [header::HeaderName; 3] = [header::CONTENT_TYPE, header::ACCEPT, header::ACCEPT_ENCODING];

/// The middleware (see the module documentation).
pub(crate) async fn route_to_owner(State(state): Shared, req: Request, next: Next) -> Response {
    let node = state.node.clone();
    if !node.clustered() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, state.config.body_limit).await {
        Ok(b) => b,
        Err(_) => return error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
    };
    let Some((pid, creates)) = process_of(&parts, &body) else {
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    };
    let forwarded = parts.headers.contains_key(FORWARDED);
    let ttl = node.cluster_ttl().unwrap_or(Duration::from_secs(10));
    let deadline = Instant::now() + ttl * 2;
    loop {
        let (n, p) = (node.clone(), pid.clone());
        let routed = tokio::task::spawn_blocking(move || {
            if creates {
                n.route(&p)
            } else {
                n.route_existing(&p)
            }
        });
        let route = match routed.await {
            Ok(Ok(route)) => route,
            Ok(Err(e)) => return HttpError::from(e).into_response(),
            Err(e) => {
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("routing the request failed: {e}"),
                );
            }
        };
        let (owner, url) = match route {
            Route::Local => {
                let request = Request::from_parts(parts.clone(), Body::from(body.clone()));
                let response = next.clone().run(request).await;
                // The process moved away mid-request (nothing written): route it again.
                if !forwarded && moved(&response) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                return response;
            }
            Route::Remote { node, url } => (node, url),
        };
        if forwarded {
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("process {pid} is owned by node {owner}, not by this one; retry"),
            );
            response
                .headers_mut()
                .insert(MOVED, HeaderValue::from_static("1"));
            return response;
        }
        // The proxy sent this request here: ask the owner to hand the process over (at most once per
        // time to live per process); if it does, route again (and take it).
        if asked_recently(&pid, ttl).is_none() && ask_hand_over(&url, &pid).await {
            continue;
        }
        let this = node.cluster_node().unwrap_or_default();
        match forward(&url, &parts, body.clone(), this).await {
            // The owner gave the process up meanwhile: route again.
            Ok(response) if moved(&response) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(response) => return response,
            Err(e) if Instant::now() < deadline => {
                tracing::info!(process = %pid, owner = %owner, error = %e, "the owner does not answer; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("process {pid} is owned by node {owner} at {url}, which does not answer: {e}"),
                );
            }
        }
    }
}

/// Whether `response` says the process moved (see [`MOVED`]).
fn moved(response: &Response) -> bool {
    response.status() == StatusCode::SERVICE_UNAVAILABLE && response.headers().contains_key(MOVED)
}

/// When this node last asked an owner for `pid`, if within `ttl`; records now otherwise.
fn asked_recently(pid: &str, ttl: Duration) -> Option<Instant> {
    static ASKED: std::sync::Mutex<Option<std::collections::HashMap<String, Instant>>> =
        std::sync::Mutex::new(None);
    let mut guard = ASKED.lock().unwrap_or_else(|p| p.into_inner());
    let asked = guard.get_or_insert_with(std::collections::HashMap::new);
    let now = Instant::now();
    if asked.len() > 100_000 {
        asked.retain(|_, at| now.duration_since(*at) < ttl);
    }
    match asked.get(pid) {
        Some(at) if now.duration_since(*at) < ttl => Some(*at),
        _ => {
            asked.insert(pid.to_owned(), now);
            None
        }
    }
}

/// Asks the owner at `url` to hand `pid` over; whether it did.
async fn ask_hand_over(url: &str, pid: &str) -> bool {
    let target = format!("{}{HAND_OVER_PATH}?process-id={pid}", url.trim_end_matches('/'));
    let asked = tokio::task::spawn_blocking(move || {
        let mut response = peers().post(&target).send_empty().ok()?;
        let body = response.body_mut().read_to_vec().ok()?;
        let body: serde_json::Value = serde_json::from_slice(&body).ok()?;
        body.get("released").and_then(serde_json::Value::as_bool)
    })
    .await;
    matches!(asked, Ok(Some(true)))
}

/// The process `parts` (and for `POST /`, `body`) is for, and whether the request creates it (a spawn).
fn process_of(parts: &Parts, body: &Bytes) -> Option<(String, bool)> {
    let query = QueryParams::parse(parts.uri.query()).ok()?;
    let from_query = || query.non_empty("process-id").map(|p| (p.to_owned(), false));
    let segments: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    match (&parts.method, segments.as_slice()) {
        (&Method::POST, [""]) => from_query().or_else(|| cu_node::item_process(body)),
        (&Method::GET, ["result", _]) | (&Method::POST, ["dry-run"]) => from_query(),
        (&Method::GET, ["results" | "cron" | "state" | "processes", pid])
        | (&Method::GET, [pid, "latest"]) => Some(((*pid).to_owned(), false)),
        // The SU's read of a process's schedule, or of one message of it (`?process-id=`); a
        // 43-character id (`/timestamp`, `/metrics` and the like are the node's own).
        (&Method::GET, [pid]) if pid.len() == 43 => from_query().or(Some(((*pid).to_owned(), false))),
        _ => None,
    }
}

/// The client of forwarded requests (one, so its connections to the other nodes are kept).
fn peers() -> &'static ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into()
    })
}

/// Sends the request to the owner at `url` and returns its answer as it is.
async fn forward(url: &str, parts: &Parts, body: Bytes, this: String) -> Result<Response, String> {
    let target = format!(
        "{}{}",
        url.trim_end_matches('/'),
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut request = axum::http::Request::builder()
        .method(parts.method.clone())
        .uri(&target)
        .header(FORWARDED, this);
    for name in PASSED {
        if let Some(v) = parts.headers.get(&name) {
            request = request.header(name, v);
        }
    }
    let request = request.body(body.to_vec()).map_err(|e| e.to_string())?;
    let answer = tokio::task::spawn_blocking(move || {
        let mut response = peers().run(request).map_err(|e| e.to_string())?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((status, headers, body))
    })
    .await
    .map_err(|e| e.to_string())??;
    let (status, headers, body) = answer;
    let mut response = (
        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        body,
    )
        .into_response();
    for (name, value) in &headers {
        // Hop-by-hop and length headers are this connection's own.
        if matches!(
            name.as_str(),
            "connection" | "transfer-encoding" | "content-length" | "keep-alive"
        ) {
            continue;
        }
        response.headers_mut().append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(url) {
        response.headers_mut().insert(SERVED_BY, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const P: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn of(method: Method, uri: &str, body: &[u8]) -> Option<(String, bool)> {
        let (parts, ()) = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(())
            .unwrap()
            .into_parts();
        process_of(&parts, &Bytes::copy_from_slice(body))
    }

    #[test]
    fn the_process_comes_from_the_query_the_path_or_the_item() {
        let named = Some((P.to_owned(), false));
        assert_eq!(of(Method::GET, &format!("/result/m?process-id={P}"), b""), named);
        assert_eq!(
            of(Method::POST, &format!("/dry-run?process-id={P}"), b"{}"),
            named
        );
        for route in ["results", "cron", "state", "processes"] {
            assert_eq!(
                of(Method::GET, &format!("/{route}/{P}?limit=3"), b""),
                named,
                "{route}"
            );
        }
        assert_eq!(of(Method::GET, &format!("/{P}"), b""), named);
        assert_eq!(of(Method::GET, &format!("/{P}/latest"), b""), named);
        // One message of a process, by the SU: the query names the process.
        let m = "QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
        assert_eq!(of(Method::GET, &format!("/{m}?process-id={P}"), b""), named);
        assert_eq!(
            of(Method::POST, &format!("/?process-id={P}&assign={m}"), b""),
            named
        );
        // Requests that name no process are served where they land.
        for uri in [
            "/",
            "/healthcheck",
            "/metrics",
            "/timestamp",
            "/graphql",
            "/result/m",
        ] {
            assert_eq!(of(Method::GET, uri, b""), None, "{uri}");
        }
        assert_eq!(of(Method::POST, "/", b"not an item"), None);
        assert_eq!(of(Method::POST, "/graphql", b"{}"), None);
    }

    #[test]
    fn a_posted_item_names_its_target_or_the_process_it_spawns() {
        let wallet = cu_ans104::Wallet::generate().unwrap();
        let message = wallet
            .sign_data_item(b"", &[("Type", "Message")], Some(P), None)
            .unwrap();
        assert_eq!(of(Method::POST, "/", &message), Some((P.to_owned(), false)));
        let spawn = wallet
            .sign_data_item(b"", &[("Type", "Process")], None, None)
            .unwrap();
        let id = cu_ans104::DataItem::parse(&spawn).unwrap().id();
        assert_eq!(of(Method::POST, "/", &spawn), Some((id, true)));
        let module = wallet
            .sign_data_item(b"", &[("Type", "Module")], None, None)
            .unwrap();
        assert_eq!(of(Method::POST, "/", &module), None);
    }
}
