//! Every route of `cu-http` through `tower::ServiceExt::oneshot` on a real node (temporary data directory,
//! the Lua test process from `tests/modules/build/lua-process.wasm`): reply shapes and every error status.
//!
//! Without the Lua module the tests print SKIPPED, or fail when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use cu_ans104::Wallet;
use cu_http::{HttpConfig, RateLimit};
use cu_node::{Node, NodeConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lua_wasm() -> Option<Vec<u8>> {
    let path = repo().join("tests/modules/build/lua-process.wasm");
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
            if ci {
                panic!(
                    "required under CI: {} ({e}); run tests/modules/build.sh",
                    path.display()
                );
            }
            println!("SKIPPED: {} missing (run tests/modules/build.sh)", path.display());
            None
        }
    }
}

/// One wallet for the node and one for the client, generated once per test binary (RSA-4096 keygen is slow).
fn wallets() -> &'static (Wallet, Wallet) {
    static W: OnceLock<(Wallet, Wallet)> = OnceLock::new();
    W.get_or_init(|| (Wallet::generate().unwrap(), Wallet::generate().unwrap()))
}

struct Fixture {
    _dir: tempfile::TempDir,
    node: Node,
    app: Router,
    user: Wallet,
    module: String,
    /// The signed module item (an Arweave signature is randomised: another node registers these bytes).
    module_item: Vec<u8>,
    pid: String,
    /// Declared last, dropped last: holds the node's last clone and drops it off the async runtime (the
    /// engine's shutdown blocks, which tokio forbids on its worker threads).
    _last: LastClone,
}

struct LastClone(Option<Node>);

impl Drop for LastClone {
    fn drop(&mut self) {
        if let Some(node) = self.0.take() {
            let _ = std::thread::spawn(move || node.shutdown()).join();
        }
    }
}

const TAGS_MODULE: [(&str, &str); 8] = [
    ("Data-Protocol", "ao"),
    ("Variant", "ao.TN.1"),
    ("Type", "Module"),
    ("Module-Format", "wasm32-unknown-emscripten2"),
    ("Input-Encoding", "JSON-1"),
    ("Output-Encoding", "JSON-1"),
    ("Memory-Limit", "1-gb"),
    ("Compute-Limit", "9000000000000"),
];

impl Fixture {
    /// A node with the Lua module registered and one process spawned, served with `config`.
    async fn new(config: HttpConfig) -> Option<Fixture> {
        Fixture::build(config, false, true).await
    }

    /// A node with the Lua module registered; `verify_hbu` makes it verify hbu assignment signatures,
    /// `spawn` spawns one process on its own scheduler.
    async fn build(config: HttpConfig, verify_hbu: bool, spawn: bool) -> Option<Fixture> {
        let wasm = lua_wasm()?;
        let dir = tempfile::tempdir().unwrap();
        let (node_wallet, user) = wallets().clone();
        let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
        let node_config = NodeConfig {
            data_dir: dir.path().to_path_buf(),
            wallet: node_wallet,
            engine: cu_engine::EngineConfig {
                workers: 1,
                pin_cores: false,
                dry_run_workers: 1,
                ..cu_engine::EngineConfig::default()
            },
            store: cu_store::StoreOptions::default(),
            aot_cache: Some(repo().join("target/aot-cache-cu-http-tests")),
            max_item_bytes: 64 << 20,
            cron: true,
            clock: Arc::new(move || clock.fetch_add(1_000, Ordering::SeqCst)),
            public_url: "http://localhost:6363".into(),
            hbu_verify_signatures: verify_hbu,
            upload_quota: None,
            network: None,
            checkpoint_uploads: None,
            scheduler_role: true,
            model_budget: cu_node::DEFAULT_MODEL_BUDGET,
        };
        let node = tokio::task::spawn_blocking(move || Node::open(node_config))
            .await
            .unwrap()
            .unwrap();
        let app = cu_http::router(node.clone(), config);
        let node_clone = node.clone();
        let mut f = Fixture {
            _dir: dir,
            node,
            app,
            user,
            module: String::new(),
            module_item: Vec::new(),
            pid: String::new(),
            _last: LastClone(Some(node_clone)),
        };
        let module_item = f.user.sign_data_item(&wasm, &TAGS_MODULE, None, None).unwrap();
        f.module = f.ingest_ok(module_item.clone()).await;
        f.module_item = module_item;
        if spawn {
            f.pid = f.spawn("first").await;
        }
        Some(f)
    }

    async fn spawn(&self, name: &str) -> String {
        let item = self
            .user
            .sign_data_item(
                name.as_bytes(),
                &[
                    ("Data-Protocol", "ao"),
                    ("Variant", "ao.TN.1"),
                    ("Type", "Process"),
                    ("Module", self.module.as_str()),
                    ("Scheduler", self.node.address().as_str()),
                    ("Name", name),
                ],
                None,
                Some(format!("{name:0>32}").as_bytes()),
            )
            .unwrap();
        self.ingest_ok(item).await
    }

    /// A signed Type=Message item to `pid` with `Action` = action.
    fn message_item(&self, pid: &str, action: &str, data: &str) -> Vec<u8> {
        self.user
            .sign_data_item(
                data.as_bytes(),
                &[
                    ("Data-Protocol", "ao"),
                    ("Variant", "ao.TN.1"),
                    ("Type", "Message"),
                    ("Action", action),
                ],
                Some(pid),
                None,
            )
            .unwrap()
    }

    async fn message(&self, pid: &str, action: &str, data: &str) -> String {
        self.ingest_ok(self.message_item(pid, action, data)).await
    }

    async fn ingest_ok(&self, item: Vec<u8>) -> String {
        let (status, _, body) = self.send(Method::POST, "/", Body::from(item), &[]).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "POST /: {}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["message"], "Processing DataItem");
        v["id"].as_str().unwrap().to_owned()
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        self.send_from(None, method, uri, body, headers).await
    }

    /// [`send`](Self::send) from the peer `peer` (as the listener reports it in `ConnectInfo`).
    async fn send_from(
        &self,
        peer: Option<&str>,
        method: Method,
        uri: &str,
        body: Body,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(peer) = peer {
            let addr: std::net::SocketAddr = peer.parse().unwrap();
            req = req.extension(axum::extract::ConnectInfo(addr));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = self.app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value) {
        let (status, headers, body) = self.send(Method::GET, uri, Body::empty(), &[]).await;
        let ct = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            ct.as_deref().unwrap_or("").starts_with("application/json"),
            "{uri}: content-type {ct:?}"
        );
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn post_json(&self, uri: &str, body: &str, headers: &[(&str, &str)]) -> (StatusCode, Value) {
        self.post_json_from(None, uri, body, headers).await
    }

    async fn post_json_from(
        &self,
        peer: Option<&str>,
        uri: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        let (status, _, body) = self
            .send_from(peer, Method::POST, uri, Body::from(body.to_owned()), &h)
            .await;
        (
            status,
            serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{uri}: not JSON: {body:?}")),
        )
    }
}

/// `{"error": "..."}` with a non-empty message containing `needle`.
fn assert_error(v: &Value, needle: &str) {
    let msg = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {v}"));
    assert!(!msg.is_empty());
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "error {msg:?} lacks {needle:?}"
    );
}

fn output_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.contains_key("data") => match &o["data"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

const UNKNOWN: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_health_and_unknown_routes() {
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let (status, v) = f.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["address"], f.node.address());
    assert!(v["timestamp"].is_u64());
    let (status, v) = f.get("/healthcheck").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    let (status, v) = f.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["address"], f.node.address());

    let (status, _, body) = f.send(Method::POST, "/no/such/route", Body::empty(), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error(&serde_json::from_slice(&body).unwrap(), "not found");
    let (status, _, body) = f.send(Method::DELETE, "/dry-run", Body::empty(), &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error(&serde_json::from_slice(&body).unwrap(), "not allowed");

    // CORS as the reference (permissive).
    let (status, headers, _) = f
        .send(
            Method::OPTIONS,
            "/dry-run?process-id=x",
            Body::empty(),
            &[
                ("origin", "http://example.com"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert!(status.is_success(), "preflight: {status}");
    assert_eq!(headers.get("access-control-allow-origin").unwrap(), "*");
    let (_, headers, _) = f
        .send(
            Method::GET,
            "/",
            Body::empty(),
            &[("origin", "http://example.com")],
        )
        .await;
    assert_eq!(headers.get("access-control-allow-origin").unwrap(), "*");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_shape_and_errors() {
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let id = f.message(&f.pid, "Echo", "hello").await;
    let (status, v) = f.get(&format!("/result/{id}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(output_text(&v["Output"]), "hello");
    for key in ["Messages", "Spawns", "Assignments"] {
        assert_eq!(v[key], json!([]), "{key} in {v}");
    }
    assert!(v["GasUsed"].is_number(), "{v}");
    assert!(v.get("Error").is_none(), "{v}");

    // The outbox of Send is in Messages.
    let item = f
        .user
        .sign_data_item(
            b"payload",
            &[("Type", "Message"), ("Action", "Send"), ("Recipient", UNKNOWN)],
            Some(&f.pid),
            None,
        )
        .unwrap();
    let send = f.ingest_ok(item).await;
    let (status, v) = f.get(&format!("/result/{send}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["Messages"][0]["Target"], UNKNOWN);
    assert_eq!(v["Messages"][0]["Data"], "payload");

    // An error result.
    let err = f.message(&f.pid, "Error", "").await;
    let (status, v) = f.get(&format!("/result/{err}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["Error"].as_str().unwrap_or("").contains("boom"), "{v}");

    let (status, v) = f.get(&format!("/result/{id}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "process-id");
    let (status, v) = f.get(&format!("/result/{id}?process-id=")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "process-id");
    let (status, v) = f.get(&format!("/result/{id}?process-id={UNKNOWN}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].is_string());
    let (status, v) = f.get(&format!("/result/{UNKNOWN}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].is_string());
    let (status, v) = f.get(&format!("/result/{id}?process-id=%zz")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "percent");
    let (status, v) = f.get(&format!("/result/{id}?process-id=%+f{}", f.pid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "percent");
}

/// Regression (found by the http_query fuzz target): `%` must be followed by two hex digits; a sign was
/// taken as part of the number, so `%+f` decoded to U+000F instead of being refused.
#[test]
fn a_percent_escape_is_exactly_two_hex_digits() {
    for q in ["a=%+f", "a=%-1", "a=%+", "%+0=1", "a=% f", "a=%f", "a=%"] {
        let err = cu_http::parse_query(Some(q)).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{q}");
    }
    let pairs = cu_http::parse_query(Some("a=%2B%2f+%E2%9C%93&b")).unwrap();
    assert_eq!(
        pairs,
        [
            ("a".to_string(), "+/ ✓".to_string()),
            ("b".to_string(), String::new())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_paging_cursors_and_errors() {
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let mut last = String::new();
    for _ in 0..5 {
        last = f.message(&f.pid, "Count", "").await;
    }
    let (status, _) = f.get(&format!("/result/{last}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::OK);

    // ASC pages of 2 over everything: the spawn message, then Count 1..5.
    let mut outputs = Vec::new();
    let mut from: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut uri = format!("/results/{}?limit=2&sort=ASC", f.pid);
        if let Some(c) = &from {
            uri.push_str(&format!("&from={c}"));
        }
        let (status, v) = f.get(&uri).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let edges = v["edges"].as_array().unwrap();
        assert!(edges.len() <= 2);
        for e in edges {
            assert!(e["cursor"].is_string());
            let node = &e["node"];
            for key in ["Messages", "Spawns", "Assignments", "Output"] {
                assert!(node.get(key).is_some(), "{key} in {node}");
            }
            outputs.push(output_text(&node["Output"]));
        }
        pages += 1;
        if !v["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        from = Some(edges.last().unwrap()["cursor"].as_str().unwrap().to_owned());
        assert!(pages < 10);
    }
    assert_eq!(outputs.len(), 6, "{outputs:?}");
    assert_eq!(&outputs[1..], ["1", "2", "3", "4", "5"]);
    assert_eq!(pages, 3);

    let (status, v) = f.get(&format!("/results/{}?sort=DESC&limit=1", f.pid)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(output_text(&v["edges"][0]["node"]["Output"]), "5");
    assert_eq!(v["pageInfo"]["hasNextPage"], true);
    let (status, v) = f.get(&format!("/results/{}", f.pid)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["edges"].as_array().unwrap().len(), 6, "default limit 25");

    let (status, v) = f.get(&format!("/results/{}?sort=sideways", f.pid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "sort");
    let (status, v) = f.get(&format!("/results/{}?limit=-3", f.pid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "limit");
    let (status, v) = f.get(&format!("/results/{}?from=!!not-a-cursor!!", f.pid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"].is_string());
    let (status, v) = f.get(&format!("/results/{UNKNOWN}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].is_string());

    // Cron: the same connection shape; this process has no cron.
    let (status, v) = f.get(&format!("/cron/{}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["edges"], json!([]));
    assert_eq!(v["pageInfo"]["hasNextPage"], false);
    let (status, v) = f.get(&format!("/cron/{UNKNOWN}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_shape_cache_and_errors() {
    let config = HttpConfig {
        body_limit: 1 << 20,
        ..HttpConfig::default()
    };
    let Some(f) = Fixture::new(config).await else {
        return;
    };
    let uri = format!("/dry-run?process-id={}", f.pid);
    let count =
        json!({"Owner": f.user.address(), "Tags": [{"name": "Action", "value": "Count"}]}).to_string();
    let (status, v) = f.post_json(&uri, &count, &[]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(output_text(&v["Output"]), "1");
    for key in ["Messages", "Spawns", "Assignments"] {
        assert!(v[key].is_array(), "{key} in {v}");
    }
    // Cached: same process, same schedule position, same body.
    let (_, again) = f.post_json(&uri, &count, &[]).await;
    assert_eq!(again, v);
    // A new message moves the position: the cached answer is not reused.
    let id = f.message(&f.pid, "Count", "").await;
    f.get(&format!("/result/{id}?process-id={}", f.pid)).await;
    let (status, v) = f.post_json(&uri, &count, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        output_text(&v["Output"]),
        "2",
        "dry-run after one Count sees the new state: {v}"
    );
    // Another process, same body: its own answer (the reference's cache would return the first one's).
    let other = f.spawn("other").await;
    let info = json!({"Owner": "someone", "Tags": [{"name": "Action", "value": "Info"}]}).to_string();
    let (_, a) = f.post_json(&uri, &info, &[]).await;
    let (_, b) = f
        .post_json(&format!("/dry-run?process-id={other}"), &info, &[])
        .await;
    assert_eq!(a["Output"]["id"], f.pid.as_str(), "{a}");
    assert_eq!(b["Output"]["id"], other.as_str(), "{b}");
    assert_eq!(a["Output"]["readonly"], true);

    let (status, v) = f.post_json("/dry-run", &count, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "process-id");
    let (status, v) = f.post_json(&uri, "{\"Tags\": [", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "json");
    let (status, v) = f.post_json(&uri, "[1, 2]", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "object");
    // Malformed messages are the client's fault: 400 naming the field (the reference answers 500).
    for (bad, field) in [
        (json!({}), "Owner"),
        (json!({"Owner": ""}), "Owner"),
        (json!({"Owner": 7}), "Owner"),
        (json!({"Owner": "o", "Tags": "Action"}), "Tags"),
        (json!({"Owner": "o", "Tags": [{"name": "Action"}]}), "Tags[0]"),
        (
            json!({"Owner": "o", "Tags": [{"name": "A", "value": "b"}, {"name": 1, "value": "c"}]}),
            "Tags[1]",
        ),
    ] {
        let (status, v) = f.post_json(&uri, &bad.to_string(), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_error(&v, field);
    }
    let (status, v) = f
        .post_json(&format!("/dry-run?process-id={UNKNOWN}"), &count, &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let big = format!("{{\"Data\": \"{}\"}}", "x".repeat(2 << 20));
    let (status, v) = f.post_json(&uri, &big, &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&v, "too large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_rate_limit_per_client() {
    let config = HttpConfig {
        dry_run_rate_limit: Some(RateLimit {
            window: Duration::from_secs(600),
            max_requests: 2,
        }),
        trusted_proxies: "10.9.9.9".parse().unwrap(),
        ..HttpConfig::default()
    };
    let Some(f) = Fixture::new(config).await else {
        return;
    };
    let uri = format!("/dry-run?process-id={}", f.pid);
    let body = |n: u32| {
        json!({"Owner": "o", "Data": n.to_string(), "Tags": [{"name": "Action", "value": "Echo"}]})
            .to_string()
    };
    // Forwarding headers count only from a trusted proxy (`10.9.9.9` here): from anyone else the socket
    // address is the client, so rotating X-Forwarded-For does not escape the limit.
    let a = [("x-forwarded-for", "10.0.0.1")];
    let direct = Some("203.0.113.7:5000");
    assert_eq!(
        f.post_json_from(direct, &uri, &body(1), &a).await.0,
        StatusCode::OK
    );
    let b = [("x-forwarded-for", "10.0.0.2")];
    assert_eq!(
        f.post_json_from(direct, &uri, &body(2), &b).await.0,
        StatusCode::OK
    );
    // A cache hit does not count.
    assert_eq!(
        f.post_json_from(direct, &uri, &body(2), &a).await.0,
        StatusCode::OK
    );
    let c = [("x-forwarded-for", "10.0.0.3"), ("x-real-ip", "10.0.0.4")];
    let (status, v) = f.post_json_from(direct, &uri, &body(3), &c).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(v, json!({"error": "Rate limit exceeded"}));
    // Behind the trusted proxy, clients are told apart by the hop the proxy appended, then X-Real-IP.
    let proxy = Some("10.9.9.9:443");
    let spoofed = [("x-forwarded-for", "203.0.113.7, 198.51.100.1")];
    assert_eq!(
        f.post_json_from(proxy, &uri, &body(3), &spoofed).await.0,
        StatusCode::OK
    );
    assert_eq!(
        f.post_json_from(proxy, &uri, &body(4), &spoofed).await.0,
        StatusCode::OK
    );
    let (status, _) = f.post_json_from(proxy, &uri, &body(5), &spoofed).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "198.51.100.1 had its two");
    let real = [("x-real-ip", "198.51.100.2")];
    assert_eq!(
        f.post_json_from(proxy, &uri, &body(5), &real).await.0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_metrics_and_metrics_off() {
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let id = f.message(&f.pid, "Count", "").await;
    f.get(&format!("/result/{id}?process-id={}", f.pid)).await;
    let (status, headers, body) = f
        .send(Method::GET, &format!("/state/{}", f.pid), Body::empty(), &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get("content-type").unwrap(), "application/octet-stream");
    assert!(
        !body.is_empty() && body.len() % 65536 == 0,
        "memory pages: {}",
        body.len()
    );
    let ts: u64 = headers
        .get("last-timestamp")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ts >= 1_700_000_000_000);
    assert_eq!(headers.get("last-ordinate").unwrap(), "1");
    assert!(headers.get("last-block-height").is_some());
    let (status, v) = f.get(&format!("/state/{UNKNOWN}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    // `to` at or after the newest message is that state; before it, a clear 422 (never a newer state
    // passed off as the older one); not a number, a 400.
    let (status, _, same) = f
        .send(
            Method::GET,
            &format!("/state/{}?to={ts}", f.pid),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(same == body, "to = the last timestamp is the same state");
    let (status, v) = f.get(&format!("/state/{}?to={}", f.pid, ts - 1)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_error(&v, "newest state");
    let (status, v) = f.get(&format!("/state/{}?to=yesterday", f.pid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "to");

    let (status, headers, body) = f.send(Method::GET, "/metrics", Body::empty(), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        text.contains(
            "ao_cu_http_request_duration_seconds_count{method=\"GET\",route=\"/state/{pid}\",status=\"200\""
        ),
        "{text}"
    );
    // Every metric the Grafana dashboard in deploy/ plots is one the node exports.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/ao-cu.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut used = 0;
    for target in dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
    {
        let expr = target["expr"].as_str().unwrap();
        for name in expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("ao_cu_"))
        {
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| exported.contains(b)))
                .unwrap_or(name);
            assert!(
                exported.contains(base),
                "the dashboard plots {name}, which /metrics does not export"
            );
            used += 1;
        }
    }
    assert!(used >= 20, "the dashboard plots {used} metrics");

    let off = Fixture::new(HttpConfig {
        metrics: false,
        ..HttpConfig::default()
    })
    .await
    .unwrap();
    let (status, _) = off.get("/metrics").await;
    // With metrics off `/metrics` is not routed: the SU's `/{id}` answers it as an unknown process.
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mu_ingress_rejects_bad_items() {
    let config = HttpConfig {
        body_limit: 1 << 20,
        ..HttpConfig::default()
    };
    let Some(f) = Fixture::new(config).await else {
        return;
    };
    let post = |body: Vec<u8>| f.send(Method::POST, "/", Body::from(body), &[]);
    let (status, _, body) = post(Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&serde_json::from_slice(&body).unwrap(), "data item");
    let (status, _, body) = post(b"not a data item".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(serde_json::from_slice::<Value>(&body).unwrap()["error"].is_string());
    let mut tampered = f.message_item(&f.pid, "Count", "abc");
    let n = tampered.len();
    tampered[n - 1] ^= 1;
    let (status, _, _) = post(tampered).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Nothing was scheduled: the next message is nonce 1.
    let id = f.message(&f.pid, "Count", "").await;
    let (_, v) = f.get(&format!("/{id}?process-id={}", f.pid)).await;
    let nonce = v["assignment"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Nonce")
        .unwrap();
    assert_eq!(nonce["value"], "1", "{v}");
    // A message to an unknown process.
    let (status, _, _) = post(f.message_item(UNKNOWN, "Count", "")).await;
    assert!(
        status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
        "{status}"
    );
    // Too large.
    let (status, _, body) = post(vec![0u8; 2 << 20]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&serde_json::from_slice(&body).unwrap(), "too large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mu_assignment_route() {
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let other = f.spawn("assignee").await;
    let echo = f.message(&f.pid, "Echo", "assigned over HTTP").await;
    let fr = &f;
    let assign = |query: String| async move {
        let (status, _, body) = fr
            .send(Method::POST, &format!("/?{query}"), Body::empty(), &[])
            .await;
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    };
    let schedule_len = |pid: String| async move {
        let (status, v) = fr.get(&format!("/{pid}?process-id={pid}")).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v["edges"].as_array().unwrap().len()
    };
    // Errors as the MU answers them; nothing is scheduled.
    let (status, v) = assign(format!("process-id={other}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "both process-id and assign");
    let (status, v) = assign(format!("assign={echo}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "both process-id and assign");
    let (status, v) = assign(format!("process-id={UNKNOWN}&assign={echo}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    let (status, v) = assign(format!("process-id={other}&assign={UNKNOWN}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_error(&v, UNKNOWN);
    let (status, v) = assign(format!("process-id={}&assign={echo}", f.pid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "already scheduled");
    let (status, v) = assign(format!("process-id={other}&assign={echo}&exclude=Data,Tags")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "exclude");
    let (status, v) = assign(format!("process-id={other}&assign={echo}&base-layer")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "base-layer");
    assert_eq!(schedule_len(other.clone()).await, 1);
    // The assignment: 202 with the assignment's id, as aoconnect's `assign` reads it.
    let (status, v) = assign(format!("process-id={other}&assign={echo}")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["message"], "Processing Assignment");
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 43);
    assert_eq!(schedule_len(other.clone()).await, 2);
    let (status, node) = f.get(&format!("/{echo}?process-id={other}")).await;
    assert_eq!(status, StatusCode::OK, "{node}");
    assert!(node["message"].is_null(), "{node}");
    assert_eq!(node["assignment"]["id"], id.as_str());
    assert_eq!(assignment_tag(&node, "Message"), echo);
    let (status, v) = f.get(&format!("/result/{echo}?process-id={other}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["Output"], "assigned over HTTP", "{v}");
    // A second time is refused.
    let (status, v) = assign(format!("process-id={other}&assign={echo}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(schedule_len(other).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_and_su_routes() {
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    // The query aoconnect's spawn sends for the module.
    let query = "query GetTransactions ($transactionIds: [ID!]!) { transactions(ids: $transactionIds) { edges { node { owner { address } tags { name value } block { id height timestamp } } } } }";
    let body = json!({"query": query, "variables": {"transactionIds": [f.module]}}).to_string();
    let (status, v) = f.post_json("/graphql", &body, &[]).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let node = &v["data"]["transactions"]["edges"][0]["node"];
    assert_eq!(node["owner"]["address"], f.user.address());
    assert!(
        node["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "Module-Format"),
        "{v}"
    );
    let (status, v) = f.post_json("/graphql", "{", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "json");
    let (status, v) = f.post_json("/graphql", "{\"variables\": {}}", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "query");

    let (status, v) = f.get("/timestamp").await;
    assert_eq!(status, StatusCode::OK);
    // Both strings, as the SU sends them: ms, and the height padded to 12 digits.
    let ts = v["timestamp"].as_str().expect("timestamp is a string");
    assert!(ts.parse::<u64>().is_ok(), "{v}");
    let height = v["block_height"].as_str().expect("block_height is a string");
    assert!(height.len() == 12 && height.parse::<u64>().is_ok(), "{v}");

    let (status, v) = f.get(&format!("/processes/{}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.to_string().contains(&f.pid), "{v}");
    let (status, _) = f.get(&format!("/processes/{UNKNOWN}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let id = f.message(&f.pid, "Echo", "su").await;
    let (status, v) = f.get(&format!("/{}/latest", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["message"]["id"], id.as_str(), "{v}");
    let (status, _) = f.get(&format!("/{UNKNOWN}/latest")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A page of the schedule, as the reference CU reads it.
    let (status, v) = f.get(&format!("/{}?process-id={}&limit=1", f.pid, f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["edges"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["page_info"]["has_next_page"], true, "{v}");
    let (status, v) = f.get(&format!("/{}", f.pid)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["edges"].as_array().unwrap().len(), 2, "{v}");
    let (status, v) = f.get(&format!("/{}?limit=x", f.pid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "limit");
    // One message.
    let (status, v) = f.get(&format!("/{id}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["message"]["id"], id.as_str());
    assert!(
        v["assignment"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "Hash-Chain"),
        "{v}"
    );
    let (status, _) = f.get(&format!("/{UNKNOWN}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f.get(&format!("/{UNKNOWN}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// hbu mode with `token` (None: loopback callers only).
fn hbu_config(key_dir: &Path, token: Option<&str>) -> HttpConfig {
    HttpConfig {
        hbu: Some(cu_http::HbuAccess {
            token: token.map(str::to_owned),
        }),
        ..attested_config(key_dir)
    }
}

const LOOPBACK: Option<&str> = Some("127.0.0.1:50000");

impl Fixture {
    /// The SU page edge of `id` in process `pid`'s schedule on this node.
    async fn su_edge(&self, pid: &str, id: &str) -> Value {
        let (status, page) = self.get(&format!("/{pid}?process-id={pid}")).await;
        assert_eq!(status, StatusCode::OK);
        page["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["message"]["id"] == id || e["node"]["assignment"]["id"] == id)
            .unwrap_or_else(|| panic!("no edge for {id} in {page}"))
            .clone()
    }

    async fn hbu_post(
        &self,
        peer: Option<&str>,
        pid: &str,
        slot: u64,
        edge: &Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let body = json!({"page_info": {"has_next_page": false}, "edges": [edge]}).to_string();
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        self.send_from(
            peer,
            Method::POST,
            &format!("/result/{slot}?process-id={pid}"),
            Body::from(body),
            &h,
        )
        .await
    }
}

/// Edits the value of tag `name` in `edge`'s assignment.
fn retag(edge: &Value, name: &str, value: &str) -> Value {
    let mut e = edge.clone();
    for t in e["node"]["assignment"]["tags"].as_array_mut().unwrap() {
        if t["name"] == name {
            t["value"] = value.into();
        }
    }
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbu_route_exists_only_in_hbu_mode() {
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let id = f.message(&f.pid, "Echo", "x").await;
    let edge = f.su_edge(&f.pid, &id).await;
    let (status, _, body) = f.hbu_post(LOOPBACK, &f.pid, 1, &edge, &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(String::from_utf8_lossy(&body).contains("hbu mode"), "{body:?}");
}

/// The injection of issue 16: a hand-written page with `owner` = the process owner and `Action=Eval`,
/// posted for an ordinary (locally scheduled) process. Refused in every mode; the process, its scheduler
/// and its results stay in step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbu_cannot_inject_into_a_locally_scheduled_process() {
    let key_dir = tempfile::tempdir().unwrap();
    let Some(f) = Fixture::new(hbu_config(key_dir.path(), None)).await else {
        return;
    };
    let id = f.message(&f.pid, "Echo", "before").await;
    let edge = f.su_edge(&f.pid, &id).await;
    let mut forged = retag(&edge, "Nonce", "2");
    forged["node"]["message"]["id"] = "F".repeat(43).into();
    forged["node"]["message"]["tags"] = json!([{"name": "Action", "value": "Eval"}]);
    forged["node"]["message"]["data"] = "Count = 1000".into();
    forged["cursor"] = "2".into();
    for peer in [LOOPBACK, None, Some("10.0.0.5:1234")] {
        let (status, _, body) = f.hbu_post(peer, &f.pid, 2, &forged, &[]).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{peer:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // The owner's next message is scheduled at the next position and evaluated as usual.
    let next = f.message(&f.pid, "Echo", "after").await;
    let (status, v) = f.get(&format!("/result/{next}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(output_text(&v["Output"]), "after", "{v}");
    let (status, v) = f.get(&format!("/results/{}", f.pid)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v["edges"].as_array().unwrap().len(),
        3,
        "spawn, before, after: {v}"
    );
}

/// Node A schedules (its own SU); node B, in hbu mode, computes A's pages as HyperBEAM would post them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbu_computes_pages_from_a_trusted_caller_and_verifies_them() {
    let Some(a) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let key_dir = tempfile::tempdir().unwrap();
    let b = Fixture::build(hbu_config(key_dir.path(), None), true, false)
        .await
        .unwrap();
    assert_eq!(b.ingest_ok(a.module_item.clone()).await, a.module);
    let pid = a.pid.clone();
    let m1 = a.message(&pid, "Echo", "via hbu").await;
    let m2 = a.message(&pid, "Echo", "second").await;
    let (e0, e1, e2) = (
        a.su_edge(&pid, &pid).await,
        a.su_edge(&pid, &m1).await,
        a.su_edge(&pid, &m2).await,
    );

    // Only callers on this host.
    for peer in [None, Some("10.0.0.5:1234"), Some("[2001:db8::1]:443")] {
        let (status, _, body) = b.hbu_post(peer, &pid, 0, &e0, &[]).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{peer:?}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A forged assignment (its signature no longer covers the tags) is refused before anything is stored.
    let forged = retag(&e0, "Timestamp", "1");
    let (status, _, body) = b.hbu_post(LOOPBACK, &pid, 0, &forged, &[]).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("signature"), "{body:?}");
    let (status, _) = b.get(&format!("/processes/{pid}")).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing stored from the forged page"
    );
    // An assignment for another process.
    let (status, _, _) = b.hbu_post(LOOPBACK, UNKNOWN, 0, &e0, &[]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (status, _, body) = b.hbu_post(LOOPBACK, &pid, 0, &e0, &[]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, headers, body) = b.hbu_post(Some("[::1]:7000"), &pid, 1, &e1, &[]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(output_text(&v["Output"]), "via hbu", "{v}");
    assert_eq!(headers.get("slot").unwrap(), "1");
    for h in ["timestamp", "block-height", "ao-types"] {
        assert!(headers.get(h).is_some(), "header {h}: {headers:?}");
    }
    // Signed with the slot HyperBEAM asked for.
    let key = cu_attest::NodeKey::load(&cu_attest::NodeKey::path_in(key_dir.path())).unwrap();
    let signed =
        cu_attest::verify_response(&key.verifying_key(), 200, &header_pairs(&headers), &body).unwrap();
    assert_eq!(signed.process_id, pid);
    assert_eq!(signed.position, cu_attest::Position::Slot(1));
    // The same answer for the same slot again.
    let (status, _, again) = b.hbu_post(LOOPBACK, &pid, 1, &e1, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&again).unwrap()["Output"],
        v["Output"]
    );
    let (status, _, body) = b.hbu_post(LOOPBACK, &pid, 2, &e2, &[]).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));

    // Bad requests, from a trusted caller.
    let page = json!({"edges": [e1]}).to_string();
    let (status, v) = b
        .post_json_from(LOOPBACK, &format!("/result/one?process-id={pid}"), &page, &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "slot");
    let (status, v) = b
        .post_json_from(LOOPBACK, &format!("/result/1?process-id={pid}"), "{not json", &[])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "json");
    let (status, v) = b.post_json_from(LOOPBACK, "/result/1", &page, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&v, "process-id");
    // B schedules nothing of its own for this process: a message to it through B's MU is refused.
    let (status, _, _) = b
        .send(
            Method::POST,
            "/",
            Body::from(b.message_item(&pid, "Echo", "no")),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Without signature checks (HyperBEAM's httpsig commitments), the hash chain still binds each slot to the
/// one before; with a token, the token is what is trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hbu_checks_the_hash_chain_and_the_token() {
    let Some(a) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let key_dir = tempfile::tempdir().unwrap();
    let b = Fixture::build(hbu_config(key_dir.path(), Some("s3cret")), false, false)
        .await
        .unwrap();
    assert_eq!(b.ingest_ok(a.module_item.clone()).await, a.module);
    let pid = a.pid.clone();
    let m1 = a.message(&pid, "Echo", "one").await;
    let (e0, e1) = (a.su_edge(&pid, &pid).await, a.su_edge(&pid, &m1).await);
    let bearer = [("authorization", "Bearer s3cret")];
    for (peer, headers) in [
        (LOOPBACK, &[][..]),
        (LOOPBACK, &[("authorization", "Bearer wrong")][..]),
        (LOOPBACK, &[("authorization", "s3cret")][..]),
    ] {
        let (status, _, _) = b.hbu_post(peer, &pid, 0, &e0, headers).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}");
    }
    let (status, _, body) = b.hbu_post(Some("10.1.2.3:9"), &pid, 0, &e0, &bearer).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // Slot 1 whose Hash-Chain does not follow slot 0.
    let broken = retag(&e1, "Hash-Chain", &"A".repeat(43));
    let (status, _, body) = b.hbu_post(None, &pid, 1, &broken, &bearer).await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(
        String::from_utf8_lossy(&body).contains("HashChain invalid"),
        "{body:?}"
    );
    let (status, _, body) = b.hbu_post(None, &pid, 1, &e1, &bearer).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

// ---------------------------------------------------------------------------------------------------------
// Attestation: the published node key, the evidence route and signed results (docs/attestation.md §2.5-2.6).

/// A node configuration for attestation tests.
fn attest_node_config() -> cu_attest::NodeConfig {
    cu_attest::NodeConfig::new(
        "ao-cu test",
        ["wasm32-unknown-emscripten2"],
        [("max_item_bytes".to_owned(), 64u64 << 20)],
    )
}

/// An `HttpConfig` with an attestor over a node key created in `key_dir` (as `ao-cu serve` does in its data
/// directory).
fn attested_config(key_dir: &Path) -> HttpConfig {
    let key = cu_attest::NodeKey::load_or_create(key_dir).unwrap();
    let attestor = cu_attest::Attestor::new(Arc::new(key), &attest_node_config(), None).unwrap();
    HttpConfig {
        attestor: Some(Arc::new(attestor)),
        ..HttpConfig::default()
    }
}

fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
        .collect()
}

fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of tag `name` in an SU message node's assignment.
fn assignment_tag(node: &Value, name: &str) -> String {
    node["assignment"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no {name} tag in {node}"))["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The slot (SU nonce) of message `id` of `pid`, as the SU routes report it.
async fn slot_of(f: &Fixture, pid: &str, id: &str) -> u64 {
    let (status, v) = f.get(&format!("/{id}?process-id={pid}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assignment_tag(&v, "Nonce").parse().unwrap()
}

/// The published node key: `GET /` keeps `address` and `timestamp` and adds the key (matching the key file)
/// and the configuration digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_publishes_the_node_key() {
    let key_dir = tempfile::tempdir().unwrap();
    let Some(f) = Fixture::new(attested_config(key_dir.path())).await else {
        return;
    };
    let (status, v) = f.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["address"], f.node.address());
    assert!(v["timestamp"].is_u64(), "{v}");
    let file_key = cu_attest::NodeKey::load(&cu_attest::NodeKey::path_in(key_dir.path())).unwrap();
    assert_eq!(v["node_key"]["keyid"], file_key.keyid(), "{v}");
    assert_eq!(
        v["node_key"]["public_key"],
        lower_hex(&file_key.public_key()),
        "{v}"
    );
    assert_eq!(v["node_key"]["alg"], "ed25519");
    let published = cu_attest::key::public_key_from_keyid(v["node_key"]["keyid"].as_str().unwrap()).unwrap();
    assert_eq!(published.to_bytes(), file_key.public_key());
    let config = attest_node_config();
    assert_eq!(v["config_digest"], lower_hex(&config.digest().unwrap()), "{v}");
    assert_eq!(v["config"], config.to_value());

    // Without an attestor `GET /` is the plain healthcheck.
    let Some(plain) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let (_, v) = plain.get("/").await;
    assert!(v.get("node_key").is_none(), "{v}");
    assert!(v["address"].is_string());
}

/// `GET /~snp@1.0/report`: 503 "no TEE" on a machine without SEV-SNP, 400 for a bad nonce, and never the
/// SU's `/{id}` route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_route_says_no_tee() {
    let key_dir = tempfile::tempdir().unwrap();
    let Some(f) = Fixture::new(attested_config(key_dir.path())).await else {
        return;
    };
    let nonce = "00112233445566778899aabbccddeeff";
    if cu_attest::guest::tee_present() {
        println!("SKIPPED the no-TEE answer: /dev/sev-guest exists on this machine");
    } else {
        let (status, v) = f.get(&format!("/~snp@1.0/report?nonce={nonce}")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.starts_with("no TEE: "), "{msg}");
        assert!(msg.contains("/dev/sev-guest"), "{msg}");
    }
    for bad in ["zz", "abc", "", &"00".repeat(65)] {
        let (status, v) = f.get(&format!("/~snp@1.0/report?nonce={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "nonce {bad:?}: {v}");
        assert_error(&v, "nonce");
    }
    let (status, v) = f.get("/~snp@1.0/report").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "nonce");

    // A node without a key has no evidence to give either.
    let Some(plain) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let (status, v) = plain.get(&format!("/~snp@1.0/report?nonce={nonce}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("no TEE: "), "{v}");
}

/// `GET /result/{id}` and `POST /dry-run` answers verify under the published key with their process and
/// position; a tampered body, a tampered position or another key fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_and_dry_runs_are_signed() {
    let key_dir = tempfile::tempdir().unwrap();
    let Some(f) = Fixture::new(attested_config(key_dir.path())).await else {
        return;
    };
    let (_, root) = f.get("/").await;
    let key = cu_attest::key::public_key_from_keyid(root["node_key"]["keyid"].as_str().unwrap()).unwrap();

    let id = f.message(&f.pid, "Echo", "signed").await;
    let slot = slot_of(&f, &f.pid, &id).await;
    let (status, headers, body) = f
        .send(
            Method::GET,
            &format!("/result/{id}?process-id={}", f.pid),
            Body::empty(),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(output_text(&v["Output"]), "signed");
    let headers = header_pairs(&headers);
    let signed = cu_attest::verify_response(&key, 200, &headers, &body).unwrap();
    assert_eq!(signed.process_id, f.pid);
    assert_eq!(signed.position, cu_attest::Position::Slot(slot));
    assert_eq!(signed.keyid, root["node_key"]["keyid"]);
    assert!(signed.created.is_some());
    let si = cu_attest::httpsig::header_value(&headers, "signature-input").unwrap();
    for c in [
        "\"@status\"",
        "\"content-type\"",
        "\"content-digest\"",
        "\"ao-process-id\"",
        "\"ao-position\"",
        "alg=\"ed25519\"",
        "tag=\"ao-cu/result/v1\"",
    ] {
        assert!(si.contains(c), "signature-input {si} lacks {c}");
    }

    // Tampering: the body, the position, the process, the status; and another key.
    let mut tampered = body.to_vec();
    let at = tampered.iter().position(|&b| b == b's').unwrap();
    tampered[at] = b'S';
    let e = cu_attest::verify_response(&key, 200, &headers, &tampered).unwrap_err();
    assert!(e.to_string().contains("content-digest"), "{e}");
    let swap = |name: &str, value: &str| -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(k, v)| {
                if k == name {
                    (k.clone(), value.to_owned())
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect()
    };
    for (name, value) in [
        ("ao-position", (slot + 1).to_string()),
        ("ao-position", "dry-run".to_owned()),
        ("ao-process-id", UNKNOWN.to_owned()),
    ] {
        let e = cu_attest::verify_response(&key, 200, &swap(name, &value), &body).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{name}: {e}");
    }
    assert!(cu_attest::verify_response(&key, 201, &headers, &body).is_err());
    let other = cu_attest::NodeKey::generate().unwrap().verifying_key();
    assert!(cu_attest::verify_response(&other, 200, &headers, &body).is_err());

    // Dry-runs: signed with the dry-run position of the state they ran on, cached answers too.
    let uri = format!("/dry-run?process-id={}", f.pid);
    let count =
        json!({"Owner": f.user.address(), "Tags": [{"name": "Action", "value": "Count"}]}).to_string();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let (status, headers, body) = f
            .send(
                Method::POST,
                &uri,
                Body::from(count.clone()),
                &[("content-type", "application/json")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let signed = cu_attest::verify_response(&key, 200, &header_pairs(&headers), &body).unwrap();
        assert_eq!(signed.process_id, f.pid);
        assert_eq!(signed.position, cu_attest::Position::DryRun { after: Some(slot) });
        let e = cu_attest::verify_response(&other, 200, &header_pairs(&headers), &body).unwrap_err();
        assert!(e.to_string().contains("keyid"), "{e}");
        answers.push(body);
    }
    assert_eq!(answers[0], answers[1], "the second dry-run is the cached answer");
    // A dry-run answer cannot pass as the result of a scheduled message.
    let (_, headers, body) = f
        .send(
            Method::POST,
            &uri,
            Body::from(count.clone()),
            &[("content-type", "application/json")],
        )
        .await;
    let mut forged = header_pairs(&headers);
    for (k, v) in &mut forged {
        if k == "ao-position" {
            *v = slot.to_string();
        }
    }
    assert!(cu_attest::verify_response(&key, 200, &forged, &body).is_err());

    // Result pages are not signed (docs/attestation.md §2.6): single results are.
    let (_, headers, _) = f
        .send(Method::GET, &format!("/results/{}", f.pid), Body::empty(), &[])
        .await;
    assert!(headers.get("signature").is_none());
}

// ---------------------------------------------------------------------------------------------------------
// Edges (issue 16): hostile items and queries, and the listener's bounds on a real socket.

/// A signed Arweave data item whose one tag value is `value` (raw bytes, so it may be invalid UTF-8).
fn item_with_raw_tag(wallet: &Wallet, target: &str, value: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let zigzag = |n: usize| -> Vec<u8> {
        let mut z = (n as u64) << 1;
        let mut out = Vec::new();
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    };
    let mut tags = zigzag(1);
    for bytes in [&b"Action"[..], value] {
        tags.extend(zigzag(bytes.len()));
        tags.extend_from_slice(bytes);
    }
    tags.push(0);
    let owner = wallet.owner();
    let target = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(target)
        .unwrap();
    let data = b"x";
    let hash =
        cu_ans104::deep_hash::deep_hash_blobs(&[b"dataitem", b"1", b"1", &owner, &target, b"", &tags, data]);
    let signature = wallet.sign(&hash).unwrap();
    let mut raw = vec![1u8, 0];
    raw.extend_from_slice(&signature);
    raw.extend_from_slice(&owner);
    raw.push(1);
    raw.extend_from_slice(&target);
    raw.push(0);
    raw.extend_from_slice(&1u64.to_le_bytes());
    raw.extend_from_slice(&(tags.len() as u64).to_le_bytes());
    raw.extend_from_slice(&tags);
    raw.extend_from_slice(data);
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_items_and_queries_are_400s_and_the_node_keeps_serving() {
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    // A valid signature over a tag that is not UTF-8: refused, not stored lossily.
    let bad = item_with_raw_tag(&f.user, &f.pid, b"Ech\xff");
    assert!(cu_ans104::DataItem::parse(&bad).unwrap().verify().is_ok());
    let (status, _, body) = f.send(Method::POST, "/", Body::from(bad), &[]).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(String::from_utf8_lossy(&body).contains("UTF-8"), "{body:?}");
    // The same construction with valid UTF-8 is accepted (the check is on the bytes, not the builder).
    let fine = item_with_raw_tag(&f.user, &f.pid, "Echo".as_bytes());
    let (status, _, body) = f.send(Method::POST, "/", Body::from(fine), &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{}", String::from_utf8_lossy(&body));

    // The GraphQL attacks of issue 16 (they overflowed the HTTP thread's stack and aborted the node).
    for query in [
        format!("{}{}", "{a".repeat(7_000), "}".repeat(7_000)),
        format!(
            "{{ transactions(ids: {}1{}) {{ edges }} }}",
            "[".repeat(5_000),
            "]".repeat(5_000)
        ),
        format!(
            "{{ transactions(tags: {}) {{ edges }} }}",
            "{k:".repeat(3_000) + &"}".repeat(3_000)
        ),
    ] {
        let (status, v) = f
            .post_json("/graphql", &json!({"query": query}).to_string(), &[])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"].as_str().unwrap().contains("GraphQL"), "{v}");
    }
    let (status, v) = f
        .post_json(
            "/graphql",
            &json!({"query": "x".repeat(2 << 20)}).to_string(),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (status, v) = f.get(&format!("/processes/{}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "still serving: {v}");
}

/// The router on a real socket under `limits`; answers the address and the connection counters.
async fn listen(
    app: Router,
    limits: cu_http::ServerLimits,
) -> (
    std::net::SocketAddr,
    Arc<cu_http::ConnectionStats>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(cu_http::ConnectionStats::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let s = stats.clone();
    tokio::spawn(async move {
        cu_http::serve(listener, app, limits, s, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stats, stop)
}

/// Reads until the peer closes; the bytes read, or `None` if it is still open after `within`.
async fn read_to_close(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt as _;
    let mut out = Vec::new();
    tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_closes_silent_and_half_sent_connections() {
    use tokio::io::AsyncWriteExt as _;
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let limits = cu_http::ServerLimits {
        header_timeout: Duration::from_millis(400),
        ..cu_http::ServerLimits::default()
    };
    let (addr, stats, _stop) = listen(f.app.clone(), limits).await;
    let generous = Duration::from_secs(15);
    // Silent.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        read_to_close(&mut silent, generous).await.is_some(),
        "a silent connection is closed"
    );
    // Half-sent headers.
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_to_close(&mut half, generous).await.is_some(),
        "half-sent headers are cut off"
    );
    // A keep-alive connection is answered, then closed once idle.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut kept, generous)
        .await
        .expect("closed once idle");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"status\":\"ok\""), "{answer}");
    // The counters followed.
    let deadline = std::time::Instant::now() + generous;
    while stats.open.load(Ordering::SeqCst) != 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.open.load(Ordering::SeqCst), 0);
    assert_eq!(stats.accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_caps_connections_per_peer_and_overall() {
    use tokio::io::AsyncWriteExt as _;
    let Some(f) = Fixture::new(HttpConfig::default()).await else {
        return;
    };
    let limits = cu_http::ServerLimits {
        max_connections: 4,
        max_connections_per_ip: 2,
        header_timeout: Duration::from_secs(30),
        ..cu_http::ServerLimits::default()
    };
    let (addr, stats, _stop) = listen(f.app.clone(), limits).await;
    let held: Vec<_> = futures_connect(addr, 2).await;
    // The peer's third connection is accepted and closed at once.
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(read_to_close(&mut third, Duration::from_secs(10)).await.is_some());
    assert_eq!(stats.refused_per_ip.load(Ordering::SeqCst), 1);
    // The held connections still work.
    let mut first = held.into_iter().next().unwrap();
    first
        .write_all(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut first, Duration::from_secs(10)).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
}

async fn futures_connect(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // Let the listener account for them before the next connection arrives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_hold_bounded_memory_and_time_out() {
    use tokio::io::AsyncWriteExt as _;
    let config = HttpConfig {
        upload_budget: Arc::new(cu_http::UploadBudget::new(4 << 20)),
        body_timeout: Duration::from_millis(1_500),
        ..HttpConfig::default()
    };
    let budget = config.upload_budget.clone();
    let Some(f) = Fixture::new(config).await else {
        return;
    };
    let (addr, _stats, _stop) = listen(f.app.clone(), cu_http::ServerLimits::default()).await;
    let head = |len: usize| format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    // (The fixture's module upload, under 4 MiB, fitted.) Larger than the whole budget: refused before a
    // byte of the body is read.
    let mut big = tokio::net::TcpStream::connect(addr).await.unwrap();
    big.write_all(head(5 << 20).as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(
        &read_to_close(&mut big, Duration::from_secs(10))
            .await
            .unwrap_or_default(),
    )
    .into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    // A stalled upload holds its declared share; a second that does not fit beside it is a 503.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled.write_all(head(3 << 20).as_bytes()).await.unwrap();
    stalled.write_all(&[0u8; 1_000]).await.unwrap();
    // The reservation is made when the head reaches the middleware: wait for it (generously, under load).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while budget.used() != 3 << 20 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(budget.used(), 3 << 20);
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    second.write_all(head(3 << 20).as_bytes()).await.unwrap();
    let answer = String::from_utf8_lossy(
        &read_to_close(&mut second, Duration::from_secs(10))
            .await
            .unwrap_or_default(),
    )
    .into_owned();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // The stalled one is cut off at the body deadline with a 408, and its share comes back.
    let answer = String::from_utf8_lossy(
        &read_to_close(&mut stalled, Duration::from_secs(15))
            .await
            .expect("closed"),
    )
    .into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(budget.used(), 0);
    // Nothing of either was stored: an ordinary message still gets the next nonce and is evaluated.
    let id = f.message(&f.pid, "Echo", "after").await;
    let (status, v) = f.get(&format!("/result/{id}?process-id={}", f.pid)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
}
