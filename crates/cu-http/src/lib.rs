//! `cu-http`: the HTTP face of an ao-cu node ([`cu_node::Node`]): the reference Compute Unit API, the
//! Messenger's ingress, the Scheduler's read routes and the GraphQL subset `@permaweb/aoconnect` asks a
//! gateway for, all on one port.
//!
//! [`router`] builds an axum [`Router`]; `ao-cu serve` serves it. Every route answers JSON (except
//! `/state`, raw memory, and `/metrics`, Prometheus text); every error is `{"error": "<message>"}` with the
//! status of [`cu_node::NodeError::status`].
//!
//! # Routes
//! | method, path | unit | answer |
//! |---|---|---|
//! | `GET /` | CU + SU | `{"address", "timestamp"}`: the CU healthcheck and the SU's `GET /` have the same two fields, so one answer serves both; with an attestor also `node_key` (`keyid`, `public_key` hex, `alg`), `config`, `config_digest` and `tee`; with QUIC on, `quic` (`port`, `keyid`, `alpn`: `docs/quic.md`) |
//! | `GET /~snp@1.0/report?nonce=HEX` | node | SEV-SNP evidence binding the node key, configuration and nonce (`docs/attestation.md` §2.5), made on a blocking worker; 503 `{"error": "no TEE: ..."}` outside an SNP guest (or without an attestor), 400 for a missing or malformed nonce |
//! | `GET /healthcheck`, `GET /health` | node | `{"status": "ok", "address"}` (ours; the SU's `/health` is an empty 200) |
//! | `GET /result/{id}?process-id=` | CU | the result of message `id` (evaluates up to it); signed, `ao-position` = its slot |
//! | `GET /results/{pid}?from&to&sort&limit` | CU | `{pageInfo, edges}` of computed results |
//! | `GET /cron/{pid}?from&to&limit` | CU | evaluates to now, then cron results |
//! | `POST /dry-run?process-id=[&to=]` | CU | a result, never persisted; rate limit and result cache below; signed, `ao-position` = `dry-run@<slot>` of the state it ran on (`dry-run` when that is not one slot) |
//! | `GET /state/{pid}` | CU | raw linear memory, `Last-Timestamp`, `Last-Ordinate`, `Last-Block-Height` headers |
//! | `POST /result/{slot}?process-id=` | CU (hbu) | only in hbu mode ([`HttpConfig::hbu`]; 404 otherwise) and only for a trusted caller ([`HbuAccess`]; 403 otherwise): HyperBEAM's `genesis-wasm` call: body = one SU page; reply headers `slot`, `timestamp`, `block-height`, `ao-types`; signed, `ao-position` = `slot`; a process this node schedules itself is refused (403) |
//! | `GET /metrics` | node | Prometheus text (on by default; [`HttpConfig::metrics`]) |
//! | `POST /` | MU | body = a signed ANS-104 data item; 202 `{"message": "Processing DataItem", "id"}` |
//! | `POST /?process-id=&assign=` | MU | aoconnect's `assign`: assigns message `assign` (stored on this node) to process `process-id`, no body; 202 `{"message": "Processing Assignment", "id": <assignment id>}`; 404 for an unknown process or message, 400 when only one of the two is given, the message is already on that process, or `exclude` / `base-layer` is given (not supported: the scheduler signs no `Exclude` tags and there is no Arweave gateway) |
//! | `POST /graphql` | gateway | `{query, variables}` → `{"data": ...}` (the subset aoconnect and the reference CU send) |
//! | `GET /raw/{id}` | gateway | the data of a stored module, process or message, with its `Content-Type` |
//! | `GET /timestamp` | SU | `{timestamp, block_height}` |
//! | `GET /processes/{pid}` | SU | the process record |
//! | `GET /{pid}/latest` | SU | the latest scheduled message |
//! | `GET /{id}?process-id=&from&to&limit` | SU | as the SU: when `process-id` names another id, the message `id` of that process; otherwise (or when no such message exists) the page of process `id`'s schedule |
//!
//! Static paths (`/metrics`, `/timestamp`, `/graphql`, `/raw/…`, `/healthcheck`, `/health`) win over the SU's
//! `/{id}`: an id is 43 base64url characters and never equals one of them. `/~snp@1.0/report` is a static
//! two-segment path, so neither `/{id}` nor `/{pid}/latest` takes it.
//!
//! # Signed results
//! With [`HttpConfig::attestor`] set (as `ao-cu serve` does), every single-result answer (`GET /result/{id}`,
//! `POST /dry-run`, cached dry-run answers included, and `POST /result/{slot}`) carries `content-digest`,
//! `ao-process-id`, `ao-position`, `signature-input` and `signature`: an RFC 9421 ed25519 signature by the
//! node key ([`cu_attest::sign_response`], `docs/attestation.md` §2.6; ~25 µs, done inline).
//! `GET /results/{pid}` and `GET /cron/{pid}` pages are **not** signed: a page is many results and has no
//! single position; a client that needs proof fetches `GET /result/{id}` for the messages it cares about.
//! Errors and `GET /state/{pid}` (raw memory) are not signed either.
//!
//! # Deliberate differences from the reference
//! - A missing or malformed query parameter (`process-id`, `limit`, `sort`) is a **400** with a message
//!   naming it; the Node CU answers 500 for its zod validation errors.
//! - Malformed JSON is a 400; a body over [`HttpConfig::body_limit`] is a 413; an unknown process a 404
//!   (the SU answers 400 for everything).
//! - The dry-run rate limit (per client IP; a fixed window of [`RateLimit::window`] allowing
//!   [`RateLimit::max_requests`]) is **off** by default; the reference allows 6 per minute. The reference
//!   believes the first `X-Forwarded-For` hop from anyone; this node believes forwarding headers only from
//!   [`HttpConfig::trusted_proxies`] (see `client.rs`), so a client cannot pick its own address.
//! - Malformed dry-run bodies (no `Owner`, `Tags` not a list of `{name, value}` strings) are a 400; the
//!   reference answers 500 for them.
//!
//! # Bounded resources
//! [`serve`] caps connections overall and per peer and closes connections that do not send a request head
//! in time; request bodies are read under [`HttpConfig::body_timeout`] and the node-wide
//! [`HttpConfig::upload_budget`]; GraphQL queries are bounded in size and depth (`cu_node::graphql`).
//! - The dry-run result cache is keyed by (process, position of the process's schedule, body), not by
//!   body alone (a reference bug: two processes answered each other's dry-runs).
//! - No busy (202) replies: requests wait for their evaluation.

mod cache;
mod client;
pub mod cluster;
mod error;
mod metrics;
mod query;
mod roles;
mod routes;
pub mod server;
mod upload;

use std::sync::Arc;
use std::time::Duration;

pub use client::TrustedProxies;
pub use cu_attest::Attestor;
pub use error::HttpError;
#[doc(hidden)]
pub use query::parse_query;
pub use roles::Roles;
pub use routes::router;
pub use server::{ConnectionStats, ServerLimits, serve};
pub use upload::UploadBudget;

/// The HTTP layer's settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body accepted (bytes); larger is a 413. Module uploads (`POST /` with a Type=Module
    /// item whose data is the wasm) must fit.
    pub body_limit: usize,
    /// Serve `GET /metrics`.
    pub metrics: bool,
    /// Dry-run rate limit per client IP; `None` = unlimited.
    pub dry_run_rate_limit: Option<RateLimit>,
    /// Dry-run result cache: how long an answer is reused (zero = no cache).
    pub dry_run_cache_max_age: Duration,
    /// Dry-run result cache: most answers kept.
    pub dry_run_cache_entries: usize,
    /// The node's attestation identity (ed25519 key and configuration). With one, every result is signed
    /// (RFC 9421), `GET /` publishes the key and `GET /~snp@1.0/report` produces evidence inside an SNP
    /// guest; without one (the default), results are unsigned and the evidence route answers 503.
    pub attestor: Option<Arc<Attestor>>,
    /// hbu mode (HyperBEAM delegates evaluation to this node): `POST /result/{slot}` exists only with this
    /// set, and answers only the callers it trusts. `None` (the default): the route answers 404.
    pub hbu: Option<HbuAccess>,
    /// Proxies whose `X-Forwarded-For`/`X-Real-IP` are believed (the dry-run rate limit's client address);
    /// from any other peer the socket address is the client.
    pub trusted_proxies: TrustedProxies,
    /// Request bodies held at once, over all requests; a body that does not fit is a 503 with
    /// `Retry-After` (see `upload.rs`).
    pub upload_budget: Arc<UploadBudget>,
    /// A request body must arrive whole within this time of the request head (408 otherwise).
    pub body_timeout: Duration,
    /// Largest `POST /graphql` body (queries are small; [`cu_node::graphql::MAX_QUERY_BYTES`] of text).
    pub graphql_body_limit: usize,
    /// Counters of the listener ([`serve`]), rendered on `GET /metrics`.
    pub connections: Arc<ConnectionStats>,
    /// The unit roles whose routes are served (all by default; a network CU serves `cu`).
    pub roles: Roles,
    /// What `GET /` advertises of the node's QUIC endpoint (`quic: {port, keyid, alpn}`); `None`: no
    /// QUIC.
    pub quic: Option<serde_json::Value>,
    /// More counters for `GET /metrics` (the QUIC endpoint's).
    pub extra_metrics: Option<ExtraMetrics>,
}

/// A renderer of more Prometheus text for `GET /metrics`.
#[derive(Clone)]
pub struct ExtraMetrics(pub Arc<dyn Fn(&mut String) + Send + Sync>);

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExtraMetrics")
    }
}

/// Who may call the hbu route. HyperBEAM runs beside the node and calls it on `localhost`, so by default
/// only loopback peers may; with a token, only callers presenting `Authorization: Bearer <token>` may
/// (from anywhere: for a node behind a proxy on the same host, where every peer is loopback).
#[derive(Debug, Clone, Default)]
pub struct HbuAccess {
    /// The shared secret; `None`: loopback peers only.
    pub token: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_limit: 64 << 20,
            metrics: true,
            dry_run_rate_limit: None,
            dry_run_cache_max_age: Duration::from_millis(60_000),
            dry_run_cache_entries: 10_000,
            attestor: None,
            hbu: None,
            trusted_proxies: TrustedProxies::none(),
            upload_budget: Arc::new(UploadBudget::new(512 << 20)),
            body_timeout: Duration::from_secs(60),
            graphql_body_limit: 1 << 20,
            connections: Arc::new(ConnectionStats::default()),
            roles: Roles::ALL,
            quic: None,
            extra_metrics: None,
        }
    }
}

/// A fixed-window request limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Window length.
    pub window: Duration,
    /// Requests allowed per window and client.
    pub max_requests: u32,
}

impl Default for RateLimit {
    /// The reference CU's defaults: 6 requests per 60 s.
    fn default() -> Self {
        RateLimit {
            window: Duration::from_millis(60_000),
            max_requests: 6,
        }
    }
}
