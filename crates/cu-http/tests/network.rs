//! Network mode over real HTTP on loopback: node A is the embedded local AO (MU + SU + CU + gateway), node B
//! is a network CU (`--roles cu`, gateway = A) that computes A's processes from A's SU and gateway routes.
//! B must answer `/result`, `/results`, `/dry-run` and `/state` exactly as A does, resume from its stored
//! upstream cursor after a restart, refuse a schedule whose hash chain breaks (422, nothing stored past the
//! break) and answer 503 when its gateway is unreachable. A fresh B cold-starts from the Arweave-format
//! checkpoint A uploaded to its own bundler route, skipping a forged one.
//!
//! WeaveDrive: a process on A reads a data item uploaded to A; B (through A as its gateway) and the reference
//! loader with the real `@permaweb/weavedrive` (`tests/oracle/weavedrive.cjs`, reading A) observe the same.
//!
//! Uses the Lua test process (`tests/modules/build/lua-process.wasm`) and the WeaveDrive probe
//! (`weavedrive-probe.wasm`); without them the tests print SKIPPED, or fail when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cu_ans104::{DataItem, Wallet};
use cu_http::{HttpConfig, Roles};
use cu_node::{
    CheckpointColdStart, CheckpointUploads, HttpOptions, NetworkConfig, Node, NodeConfig, UpstreamConfig,
};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lua_wasm() -> Option<Vec<u8>> {
    test_module("lua-process.wasm")
}

/// Whether `CI` is set: what a test needs is then required, never skipped.
fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// A module built by `tests/modules/build.sh`; `None` (SKIPPED) when missing, a failure under CI.
fn test_module(name: &str) -> Option<Vec<u8>> {
    let path = repo().join("tests/modules/build").join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            assert!(
                !under_ci(),
                "required under CI: {} ({e}); run tests/modules/build.sh",
                path.display()
            );
            println!("SKIPPED: {} missing (run tests/modules/build.sh)", path.display());
            None
        }
    }
}

/// The nodes' wallet and the client's, generated once per test binary (RSA-4096 keygen is slow).
fn wallets() -> &'static (Wallet, Wallet) {
    static W: OnceLock<(Wallet, Wallet)> = OnceLock::new();
    W.get_or_init(|| (Wallet::generate().unwrap(), Wallet::generate().unwrap()))
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

/// A node served over HTTP on a loopback port. Shut down off the async runtime when dropped (the
/// engine's shutdown blocks).
struct Served {
    url: String,
    node: Option<Node>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
        if let Some(node) = self.node.take() {
            let _ = std::thread::spawn(move || node.shutdown()).join();
        }
    }
}

impl Served {
    fn node(&self) -> &Node {
        self.node.as_ref().expect("the node runs until dropped")
    }
}

fn node_config(
    dir: &Path,
    public_url: &str,
    network: Option<NetworkConfig>,
    checkpoint_uploads: Option<CheckpointUploads>,
) -> NodeConfig {
    // Each node has its own clock; A's decides every timestamp B sees (B takes them from A's SU).
    let clock = Arc::new(AtomicU64::new(1_700_000_000_000));
    NodeConfig {
        data_dir: dir.to_path_buf(),
        wallet: wallets().0.clone(),
        engine: cu_engine::EngineConfig {
            workers: 1,
            pin_cores: false,
            dry_run_workers: 1,
            ..cu_engine::EngineConfig::default()
        },
        store: cu_store::StoreOptions::default(),
        aot_cache: Some(repo().join("target/aot-cache-cu-http-tests")),
        max_item_bytes: 64 << 20,
        cron: false,
        clock: Arc::new(move || clock.fetch_add(1_000, Ordering::SeqCst)),
        public_url: public_url.to_owned(),
        hbu_verify_signatures: false,
        upload_quota: None,
        scheduler_role: network.is_none(),
        model_budget: cu_node::DEFAULT_MODEL_BUDGET,
        network,
        checkpoint_uploads,
    }
}

/// Opens a node on `dir` and serves it with `roles` on a fresh loopback port.
async fn serve(dir: &Path, roles: Roles, network: impl FnOnce(&str) -> Option<NetworkConfig>) -> Served {
    serve_with(dir, roles, network, |_| None).await
}

/// [`serve`], with checkpoint uploads configured from the node's own URL.
async fn serve_with(
    dir: &Path,
    roles: Roles,
    network: impl FnOnce(&str) -> Option<NetworkConfig>,
    uploads: impl FnOnce(&str) -> Option<CheckpointUploads>,
) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = node_config(dir, &url, network(&url), uploads(&url));
    let node = tokio::task::spawn_blocking(move || Node::open(config))
        .await
        .unwrap()
        .unwrap();
    let app = cu_http::router(
        node.clone(),
        HttpConfig {
            roles,
            ..HttpConfig::default()
        },
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    Served {
        url,
        node: Some(node),
        server,
    }
}

/// A network CU's settings for a gateway at `gateway`: no background polling (every sync in these tests
/// is caused by a read), a fresh sync on every read, fast retries.
fn network(gateway: &str, retries: u32) -> NetworkConfig {
    let mut upstream = UpstreamConfig::for_gateway(gateway);
    upstream.page_size = 3; // several pages for a handful of slots
    upstream.http = HttpOptions {
        timeout: Duration::from_secs(20),
        retries,
        backoff: Duration::from_millis(50),
        ..HttpOptions::default()
    };
    NetworkConfig {
        upstream,
        poll: None,
        fresh_for: Duration::ZERO,
        checkpoints: None,
    }
}

const CU_ONLY: Roles = Roles {
    mu: false,
    su: false,
    cu: true,
    gateway: false,
};

/// One HTTP exchange, blocking (run off the async workers): status, content type and body.
fn http(method: &str, url: &str, body: Option<(&str, Vec<u8>)>) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let response = match (method, body) {
        ("GET", None) => agent.get(url).call(),
        ("POST", Some((ct, bytes))) => agent.post(url).header("content-type", ct).send(&bytes[..]),
        ("POST", None) => agent.post(url).send_empty(),
        other => panic!("unsupported request {other:?}"),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let ct = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    (status, ct, body)
}

async fn call(method: &'static str, url: String, body: Option<(&'static str, Vec<u8>)>) -> (u16, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let (status, _, body) = http(method, &url, body);
        (status, body)
    })
    .await
    .unwrap()
}

async fn get_json(url: String) -> (u16, Value) {
    let (status, body) = call("GET", url.clone(), None).await;
    let v = serde_json::from_slice(&body)
        .unwrap_or_else(|_| panic!("{url}: not JSON: {}", String::from_utf8_lossy(&body)));
    (status, v)
}

async fn ingest(mu: &Served, item: Vec<u8>) -> String {
    let (status, body) = call(
        "POST",
        format!("{}/", mu.url),
        Some(("application/octet-stream", item)),
    )
    .await;
    assert_eq!(status, 202, "POST /: {}", String::from_utf8_lossy(&body));
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// A second connection to a node's database (WAL: it reads what the node committed).
fn sqlite(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(cu_store::DB_FILE)).unwrap()
}

fn user() -> &'static Wallet {
    &wallets().1
}

async fn spawn(a: &Served, module: &str, name: &str) -> String {
    let item = user()
        .sign_data_item(
            name.as_bytes(),
            &[
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", "Process"),
                ("Module", module),
                ("Scheduler", a.node().address().as_str()),
                ("Name", name),
            ],
            None,
            Some(format!("{name:0>32}").as_bytes()),
        )
        .unwrap();
    ingest(a, item).await
}

async fn send(a: &Served, pid: &str, action: &str, data: &str) -> String {
    let item = user()
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
        .unwrap();
    ingest(a, item).await
}

async fn result(node: &Served, pid: &str, msg: &str) -> (u16, Value) {
    get_json(format!("{}/result/{msg}?process-id={pid}", node.url)).await
}

async fn dry_run(node: &Served, pid: &str, action: &str) -> (u16, Value) {
    let body = json!({"Owner": user().address(), "Tags": [{"name": "Action", "value": action}]});
    let (status, body) = call(
        "POST",
        format!("{}/dry-run?process-id={pid}", node.url),
        Some(("application/json", body.to_string().into_bytes())),
    )
    .await;
    (status, serde_json::from_slice(&body).unwrap())
}

/// A's module and one process with a few messages: `(module, pid, message ids)`.
async fn seed(a: &Served, wasm: Vec<u8>) -> (String, String, Vec<String>) {
    let module = ingest(a, user().sign_data_item(&wasm, &TAGS_MODULE, None, None).unwrap()).await;
    let pid = spawn(a, &module, "net").await;
    let mut msgs = Vec::new();
    for (action, data) in [
        ("Count", ""),
        ("Echo", "hello"),
        ("Count", ""),
        ("Info", ""),
        ("Send", "x"),
        ("Count", ""),
    ] {
        msgs.push(send(a, &pid, action, data).await);
    }
    (module, pid, msgs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_network_cu_computes_what_the_scheduling_node_computes() {
    let Some(wasm) = lua_wasm() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(dir_a.path(), Roles::ALL, |_| None).await;
    let (module, pid, msgs) = seed(&a, wasm).await;
    let gateway = a.url.clone();
    let b = serve(dir_b.path(), CU_ONLY, |_| Some(network(&gateway, 2))).await;

    // A network CU serves no MU, SU or gateway routes.
    let (status, _) = call("GET", format!("{}/processes/{pid}", b.url), None).await;
    assert_eq!(status, 404);
    let (status, root) = get_json(format!("{}/", b.url)).await;
    assert_eq!((status, root["roles"].as_str()), (200, Some("cu")), "{root}");
    assert!(root.get("height").is_none(), "{root}");
    let (_, root) = get_json(format!("{}/", a.url)).await;
    assert!(root["height"].as_u64().is_some_and(|h| h > 1_440_000), "{root}");

    // Every result, read first on B (cold: B locates the SU, loads the module from A's gateway and
    // reads the schedule in pages of 3), equals A's.
    for m in &msgs {
        let (sb, rb) = result(&b, &pid, m).await;
        let (sa, ra) = result(&a, &pid, m).await;
        assert_eq!((sa, sb), (200, 200), "A: {ra}\nB: {rb}");
        assert_eq!(rb, ra, "result of {m}");
    }
    let (_, info) = result(&b, &pid, &msgs[3]).await;
    assert!(info["Output"].to_string().contains(&user().address()), "{info}");
    let (_, sent) = result(&b, &pid, &msgs[4]).await;
    assert_eq!(sent["Messages"].as_array().map(Vec::len), Some(1), "{sent}");

    // B holds the module A's gateway served, with its owner key.
    let key: Option<String> = sqlite(dir_b.path())
        .query_row("SELECT owner_key FROM modules WHERE id = ?1", [&module], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(key.as_deref(), Some(user().owner_b64url().as_str()));

    // /results, /dry-run and the memory after the last message are A's too.
    let (_, pa) = get_json(format!("{}/results/{pid}?sort=ASC&limit=100", a.url)).await;
    let (_, pb) = get_json(format!("{}/results/{pid}?sort=ASC&limit=100", b.url)).await;
    assert_eq!(pa["edges"].as_array().map(Vec::len), Some(msgs.len() + 1), "{pa}");
    assert_eq!(pb, pa);
    let (da, db) = (dry_run(&a, &pid, "Count").await, dry_run(&b, &pid, "Count").await);
    assert_eq!(da.0, 200, "{}", da.1);
    assert_eq!(db, da);
    let (sa, state_a) = call("GET", format!("{}/state/{pid}", a.url), None).await;
    let (sb, state_b) = call("GET", format!("{}/state/{pid}", b.url), None).await;
    assert_eq!((sa, sb), (200, 200));
    assert!(state_a.len() > 1 << 20);
    assert!(state_a == state_b, "the memories differ");

    // A message sent after B caught up is fetched on its first read.
    let late = send(&a, &pid, "Count", "").await;
    let (_, ra) = result(&a, &pid, &late).await;
    assert_eq!(result(&b, &pid, &late).await, (200, ra));

    // Restarted on the same directory, B keeps what it stored and resumes from its cursor.
    drop(b);
    let later = send(&a, &pid, "Echo", "after restart").await;
    let b = serve(dir_b.path(), CU_ONLY, |_| Some(network(&gateway, 2))).await;
    let (_, ra) = result(&a, &pid, &later).await;
    assert_eq!(result(&b, &pid, &later).await, (200, ra));
    let (_, pa) = get_json(format!("{}/results/{pid}?sort=ASC&limit=100", a.url)).await;
    let (_, pb) = get_json(format!("{}/results/{pid}?sort=ASC&limit=100", b.url)).await;
    assert_eq!(pa["edges"].as_array().map(Vec::len), Some(msgs.len() + 3), "{pa}");
    assert_eq!(pb, pa, "no slot lost or doubled across the restart");
    let metrics = String::from_utf8(call("GET", format!("{}/metrics", b.url), None).await.1).unwrap();
    assert!(
        metrics.contains("ao_cu_upstream_slots_total 1\n"),
        "only the new slot was read again:\n{metrics}"
    );

    // An unknown process is a 404 from the network CU, as from A.
    let unknown = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let (status, v) = result(&b, unknown, unknown).await;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broken_hash_chain_is_refused_and_nothing_past_it_is_stored() {
    let Some(wasm) = lua_wasm() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(dir_a.path(), Roles::ALL, |_| None).await;
    let (_, pid, msgs) = seed(&a, wasm).await;

    // Replace slot 3's assignment on A by one signed by the same SU key with a wrong Hash-Chain: the
    // signature verifies, the chain does not.
    let db = sqlite(dir_a.path());
    let raw: Vec<u8> = db
        .query_row(
            "SELECT assignment FROM schedule WHERE process_id = ?1 AND nonce = 3",
            [&pid],
            |r| r.get(0),
        )
        .unwrap();
    let original = DataItem::parse(&raw).unwrap();
    let tags: Vec<(String, String)> = original
        .tags()
        .iter()
        .map(|(n, v)| {
            let v = if n == "Hash-Chain" {
                "A".repeat(43)
            } else {
                v.clone()
            };
            (n.clone(), v)
        })
        .collect();
    let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let forged = wallets()
        .0
        .sign_data_item(original.data(), &tag_refs, None, None)
        .unwrap();
    let changed = db
        .execute(
            "UPDATE schedule SET assignment = ?1 WHERE process_id = ?2 AND nonce = 3",
            rusqlite::params![forged, pid],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(db);

    let gateway = a.url.clone();
    let b = serve(dir_b.path(), CU_ONLY, |_| Some(network(&gateway, 0))).await;
    // Slots before the break are computed (as A computes them) ...
    let (sa, ra) = result(&a, &pid, &msgs[1]).await;
    let (sb, rb) = result(&b, &pid, &msgs[1]).await;
    assert_eq!((sa, sb), (200, 200), "{rb}");
    assert_eq!(rb, ra);
    // ... the slot at the break and after it are refused with a clear error, every time.
    for m in [&msgs[2], &msgs[4]] {
        let (status, v) = result(&b, &pid, m).await;
        assert_eq!(status, 422, "{v}");
        let e = v["error"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .replace([' ', '-'], "");
        assert!(
            e.contains("hashchaininvalid") && e.contains("slot 3".replace(' ', "").as_str()),
            "{v}"
        );
    }
    // Nothing past the break is stored: B's log ends at the slot before it (the process at nonce 0,
    // then messages 0 and 1).
    let last: i64 = sqlite(dir_b.path())
        .query_row("SELECT max(pos) FROM log WHERE process_id = ?1", [&pid], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(last, 3, "B stored slots past the break");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_is_a_503_with_an_error() {
    if lua_wasm().is_none() {
        return;
    }
    // A port nothing listens on: bound, then closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let dir = tempfile::tempdir().unwrap();
    let b = serve(dir.path(), CU_ONLY, |_| Some(network(&closed, 1))).await;
    let pid = "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB";
    let (status, v) = result(&b, pid, pid).await;
    assert_eq!(status, 503, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("127.0.0.1")),
        "{v}"
    );
    let (status, v) = dry_run(&b, pid, "Count").await;
    assert_eq!(status, 503, "{v}");
    // Nothing was stored for it.
    let n: i64 = sqlite(dir.path())
        .query_row("SELECT count(*) FROM processes", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 0);
}

/// A's checkpoint uploads: to its own bundler route, once a process has evaluated `every` messages,
/// then not again for an hour.
fn uploads(url: &str, every: u64) -> CheckpointUploads {
    CheckpointUploads {
        uploader_url: url.to_owned(),
        graphql_url: format!("{url}/graphql"),
        throttle: Duration::from_secs(3600),
        every_messages: every,
        poll: Duration::from_millis(50),
        http: HttpOptions {
            timeout: Duration::from_secs(20),
            retries: 2,
            backoff: Duration::from_millis(50),
            ..HttpOptions::default()
        },
    }
}

fn tag_value<'a>(node: &'a Value, name: &str) -> Option<&'a str> {
    node["tags"]
        .as_array()?
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["value"].as_str())
}

async fn graphql(node: &Served, query: &str, variables: Value) -> Value {
    let body = json!({"query": query, "variables": variables})
        .to_string()
        .into_bytes();
    let (status, body) = call(
        "POST",
        format!("{}/graphql", node.url),
        Some(("application/json", body)),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_network_cu_cold_starts_from_the_checkpoint_the_scheduling_node_uploaded() {
    let Some(wasm) = lua_wasm() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The spawn and six messages are log positions 1-7: one upload, of the state after nonce 6.
    let a = serve_with(dir_a.path(), Roles::ALL, |_| None, |url| Some(uploads(url, 7))).await;
    let (module, pid, msgs) = seed(&a, wasm).await;
    let (status, _) = result(&a, &pid, msgs.last().unwrap()).await;
    assert_eq!(status, 200);
    let (_, state_at_6) = call("GET", format!("{}/state/{pid}", a.url), None).await;

    // The checkpoint appears on A's gateway, found by the reference CU's own query.
    let owner = a.node().address();
    let vars = json!({"owners": [owner], "processId": pid, "limit": 50});
    let mut found = Value::Null;
    for _ in 0..600 {
        let answer = graphql(&a, cu_upstream::gateway::PROCESS_CHECKPOINTS, vars.clone()).await;
        if let Some(edge) = answer["data"]["transactions"]["edges"]
            .as_array()
            .and_then(|e| e.first())
        {
            found = edge["node"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found.is_object(), "no checkpoint was uploaded");
    let tags: Vec<&str> = found["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "Data-Protocol",
            "Variant",
            "Type",
            "Module",
            "Process",
            "Nonce",
            "Timestamp",
            "Block-Height",
            "Content-Type",
            "SHA-256",
            "Content-Encoding",
            "Unit-Identifier",
            "Ordinate",
            "Assignment",
            "Hash-Chain"
        ],
        "the reference's tags, in its order: {found}"
    );
    assert_eq!(tag_value(&found, "Module"), Some(module.as_str()));
    assert_eq!(tag_value(&found, "Nonce"), Some("6"));
    assert_eq!(tag_value(&found, "Content-Encoding"), Some("gzip"));
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&state_at_6));
    assert_eq!(tag_value(&found, "SHA-256"), Some(sha.as_str()));
    let ckpt_id = found["id"].as_str().unwrap().to_owned();
    let (status, gz) = call("GET", format!("{}/raw/{ckpt_id}", a.url), None).await;
    assert_eq!(status, 200);
    let mut memory = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut memory).unwrap();
    assert!(
        memory == state_at_6,
        "the checkpoint's data is the gzipped memory"
    );

    // A forged checkpoint by the same (trusted) owner at a later nonce, whose memory does not match
    // its SHA-256 tag: B must skip it.
    let forged = wallets()
        .0
        .sign_data_item(
            &vec![0u8; 65536],
            &[
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", "Checkpoint"),
                ("Module", module.as_str()),
                ("Process", pid.as_str()),
                ("Nonce", "7"),
                ("Timestamp", "1800000000000"),
                ("Block-Height", "1"),
                ("SHA-256", &"0".repeat(64)),
            ],
            None,
            None,
        )
        .unwrap();
    let (status, body) = call(
        "POST",
        format!("{}/tx/arweave", a.url),
        Some(("application/octet-stream", forged)),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, _) = call(
        "POST",
        format!("{}/tx/arweave", a.url),
        Some(("application/octet-stream", b"not a data item".to_vec())),
    )
    .await;
    assert_eq!(status, 400);

    // Two messages after the checkpoint.
    let late = [
        send(&a, &pid, "Count", "").await,
        send(&a, &pid, "Echo", "late").await,
    ];
    let gateway = a.url.clone();
    let cold_start = |gateway: &str| {
        let mut config = network(gateway, 2);
        config.checkpoints = Some(CheckpointColdStart {
            trusted_owners: vec![owner.clone()],
            ..CheckpointColdStart::default()
        });
        Some(config)
    };
    let b = serve(dir_b.path(), CU_ONLY, |_| cold_start(&gateway)).await;
    for m in late.iter().rev() {
        let (sa, ra) = result(&a, &pid, m).await;
        let (sb, rb) = result(&b, &pid, m).await;
        assert_eq!((sa, sb), (200, 200), "A: {ra}\nB: {rb}");
        assert_eq!(rb, ra, "result of {m}");
    }
    let (sa, state_a) = call("GET", format!("{}/state/{pid}", a.url), None).await;
    let (sb, state_b) = call("GET", format!("{}/state/{pid}", b.url), None).await;
    assert_eq!((sa, sb), (200, 200));
    assert!(
        state_a == state_b,
        "the memories differ after resuming from the checkpoint"
    );
    let (da, db) = (dry_run(&a, &pid, "Count").await, dry_run(&b, &pid, "Count").await);
    assert_eq!(da.0, 200, "{}", da.1);
    assert_eq!(db, da);

    // B never evaluated what the checkpoint already held: its log starts after nonce 6.
    let (status, v) = result(&b, &pid, &msgs[0]).await;
    assert_eq!(status, 404, "{v}");
    let (_, pb) = get_json(format!("{}/results/{pid}?sort=ASC&limit=100", b.url)).await;
    assert_eq!(pb["edges"].as_array().map(Vec::len), Some(2), "{pb}");
    let metrics = String::from_utf8(call("GET", format!("{}/metrics", b.url), None).await.1).unwrap();
    assert!(
        metrics.contains("ao_cu_arweave_checkpoints_adopted_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ao_cu_arweave_checkpoints_rejected_total 1\n"),
        "{metrics}"
    );
    let (origin, nonce): (String, i64) = sqlite(dir_b.path())
        .query_row(
            "SELECT checkpoint_id, nonce FROM adopted WHERE process_id = ?1",
            [&pid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((origin.as_str(), nonce), (ckpt_id.as_str(), 6));

    // Restarted, B resumes from its own checkpoints and cursor, without adopting again.
    drop(b);
    let later = send(&a, &pid, "Count", "").await;
    let b = serve(dir_b.path(), CU_ONLY, |_| cold_start(&gateway)).await;
    let (_, ra) = result(&a, &pid, &later).await;
    assert_eq!(result(&b, &pid, &later).await, (200, ra));
    let metrics = String::from_utf8(call("GET", format!("{}/metrics", b.url), None).await.1).unwrap();
    assert!(
        metrics.contains("ao_cu_arweave_checkpoints_adopted_total 0\n"),
        "{metrics}"
    );

    // A network CU that trusts nobody who checkpointed computes the process from its first slot.
    let dir_c = tempfile::tempdir().unwrap();
    let c = serve(dir_c.path(), CU_ONLY, |_| {
        let mut config = network(&gateway, 2);
        config.checkpoints = Some(CheckpointColdStart {
            trusted_owners: vec![user().address()],
            ..CheckpointColdStart::default()
        });
        Some(config)
    })
    .await;
    let (_, ra) = result(&a, &pid, &msgs[0]).await;
    assert_eq!(result(&c, &pid, &msgs[0]).await, (200, ra));
}

/// FNV-1a 64, as the probe hashes what it read.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The probe's report of one read: what `weavedrive_read` returned and what landed in the buffer.
fn read_line(got: usize, buf: &[u8]) -> String {
    let head: String = buf.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("read={got} fnv={} head={head}\n", fnv(buf))
}

async fn upload(node: &Served, item: Vec<u8>) -> String {
    let (status, body) = call(
        "POST",
        format!("{}/tx", node.url),
        Some(("application/octet-stream", item)),
    )
    .await;
    assert_eq!(status, 200, "POST /tx: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn weavedrive_reads_an_uploaded_item_identically_on_the_network_cu_and_under_the_reference() {
    let Some(wasm) = test_module("weavedrive-probe.wasm") else {
        return;
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(dir_a.path(), Roles::ALL, |_| None).await;
    let gateway = a.url.clone();
    let b = serve(dir_b.path(), CU_ONLY, |_| Some(network(&gateway, 2))).await;

    // The data: 100,000 pseudo-random bytes, attested by the process's Attestor; a second item is not.
    let data: Vec<u8> = (0u32..100_000)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let item = upload(
        &a,
        user()
            .sign_data_item(&data, &[("Content-Type", "application/octet-stream")], None, None)
            .unwrap(),
    )
    .await;
    let other = upload(
        &a,
        user()
            .sign_data_item(b"not attested", &[("Content-Type", "text/plain")], None, None)
            .unwrap(),
    )
    .await;
    let attestation = [
        ("Data-Protocol", "ao"),
        ("Type", "Attestation"),
        ("Message", item.as_str()),
    ];
    upload(&a, user().sign_data_item(b"", &attestation, None, None).unwrap()).await;
    // The gateway honours WeaveDrive's ranges: a valid one, an invalid one (start past end: everything)
    // and one past the end (416).
    for (range, status, len) in [
        ("bytes=10-19", 206, 10),
        ("bytes=0500-20", 200, 100_000),
        ("bytes=100000-100000", 416, 0),
    ] {
        let (s, body) = tokio::task::spawn_blocking({
            let url = format!("{}/raw/{item}", a.url);
            move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .into();
                let mut r = agent.get(&url).header("range", range).call().unwrap();
                (r.status().as_u16(), r.body_mut().read_to_vec().unwrap())
            }
        })
        .await
        .unwrap();
        assert_eq!((s, body.len()), (status, len), "{range}");
    }

    let module_tags = [
        ("Data-Protocol", "ao"),
        ("Variant", "ao.TN.1"),
        ("Type", "Module"),
        ("Module-Format", "wasm32-unknown-emscripten4"),
        ("Input-Encoding", "JSON-1"),
        ("Output-Encoding", "JSON-1"),
        ("Memory-Limit", "1-gb"),
        ("Compute-Limit", "9000000000000"),
        ("Extension", "WeaveDrive"),
    ];
    let module = ingest(
        &a,
        user().sign_data_item(&wasm, &module_tags, None, None).unwrap(),
    )
    .await;
    let attestor = user().address();
    let scheduler = a.node().address();
    let spawn_tags = [
        ("Data-Protocol", "ao"),
        ("Variant", "ao.TN.1"),
        ("Type", "Process"),
        ("Module", module.as_str()),
        ("Scheduler", scheduler.as_str()),
        ("Extension", "WeaveDrive"),
        ("Attestor", attestor.as_str()),
    ];
    let pid = ingest(
        &a,
        user()
            .sign_data_item(b"probe", &spawn_tags, None, Some(&[7u8; 32]))
            .unwrap(),
    )
    .await;
    // The block the item was uploaded in, as A's GraphQL places it.
    let q = format!("{{ transactions(ids: [\"{item}\"]) {{ edges {{ node {{ block {{ height }} }} }} }} }}");
    let height =
        graphql(&a, &q, Value::Null).await["data"]["transactions"]["edges"][0]["node"]["block"]["height"]
            .as_u64()
            .unwrap();
    // GraphQL's `block` filter, which WeaveDrive's attestation query relies on.
    let attested = |max: u64| {
        format!(
            "{{ transactions(owners: [\"{}\"], block: {{min: 0, max: {max}}}, tags: [{{name: \"Message\", values: [\"{item}\"]}}]) {{ edges {{ node {{ id }} }} }} }}",
            user().address()
        )
    };
    let edges = |v: Value| v["data"]["transactions"]["edges"].as_array().map_or(0, Vec::len);
    assert_eq!(edges(graphql(&a, &attested(height), Value::Null).await), 1);
    if height > 0 {
        assert_eq!(edges(graphql(&a, &attested(height - 1), Value::Null).await), 0);
    }
    let (status, block) = get_json(format!("{}/block/height/{height}", a.url)).await;
    assert_eq!(status, 200, "{block}");
    assert!(
        block["txs"].as_array().unwrap().iter().any(|t| t == &item),
        "{block}"
    );
    let commands = [
        format!("get /data/{item}"),
        format!("read /data/{item} 100 200 40000 70000"),
        format!("seekread /data/{item} 99990 100"),
        format!("get /data/{item}"),
        "open /usr/local/share/lua/5.3/json.lua".to_string(),
        format!("get /tx/{item}"),
        format!("get /block/{height}"),
    ];
    let mut msgs = Vec::new();
    for c in &commands {
        msgs.push(send(&a, &pid, "Probe", c).await);
    }
    let halting = send(&a, &pid, "Probe", &format!("get /data/{other}")).await;

    // What aos's getData, sequential reads and a seek observe, checked against the data itself.
    let mut outputs = Vec::new();
    for m in &msgs {
        let (sa, ra) = result(&a, &pid, m).await;
        let (sb, rb) = result(&b, &pid, m).await;
        assert_eq!((sa, sb), (200, 200), "A: {ra}\nB: {rb}");
        assert_eq!(rb, ra, "result of {m} on B");
        assert!(ra.get("Error").is_none(), "{ra}");
        outputs.push(ra["Output"].as_str().unwrap().to_owned());
    }
    let get = format!(
        "open=3\nend=100000 tell=100000\n{}close=0\n",
        read_line(100_000, &data)
    );
    assert_eq!(outputs[0], get);
    let reads = format!(
        "open=3\n{}{}{}{}tell=100000\nclose=0\n",
        read_line(100, &data[..100]),
        read_line(200, &data[100..300]),
        read_line(40_000, &data[300..40_300]),
        // Past the end: what is left, the rest of the buffer stays zero.
        read_line(59_700, &[&data[40_300..], &[0u8; 10_300][..]].concat()),
    );
    assert_eq!(outputs[1], reads);
    assert_eq!(
        outputs[2],
        format!(
            "open=3\nseek=99990\n{}tell=100000\nclose=0\n",
            read_line(10, &[&data[99_990..], &[0u8; 90][..]].concat())
        )
    );
    assert_eq!(
        outputs[3], get,
        "opened again, the file is read again the same way"
    );
    assert_eq!(outputs[4], "open=0\n", "not a WeaveDrive path: NULL");
    // The header files hold the gateway's JSON (the transaction's with `ownerAddress` added).
    let (_, mut tx) = get_json(format!("{}/tx/{item}", a.url)).await;
    tx["ownerAddress"] = json!(user().address());
    let tx = tx.to_string().into_bytes();
    assert_eq!(
        outputs[5],
        format!(
            "open=3\nend={0} tell={0}\n{1}close=0\n",
            tx.len(),
            read_line(tx.len(), &tx)
        )
    );
    let block = block.to_string().into_bytes();
    assert_eq!(
        outputs[6],
        format!(
            "open=3\nend={0} tell={0}\n{1}close=0\n",
            block.len(),
            read_line(block.len(), &block)
        )
    );

    // An item without an attestation halts the process at that message: 503, nothing stored.
    for node in [&a, &b] {
        let (status, v) = result(node, &pid, &halting).await;
        assert_eq!(status, 503, "{v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("HALT: FILE NOT FOUND") && error.contains(&other),
            "{v}"
        );
    }

    // The reference loader with the real extension, reading from A as its gateway, observes the same.
    let Some(oracle) = weavedrive_oracle() else { return };
    let (_, schedule) = get_json(format!("{}/{pid}?limit=100", a.url)).await;
    let height_of = |id: &str| -> u64 {
        schedule["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["node"]["message"]["id"] == id)
            .and_then(|e| {
                e["node"]["assignment"]["tags"]
                    .as_array()?
                    .iter()
                    .find(|t| t["name"] == "Block-Height")?["value"]
                    .as_str()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no Block-Height for {id} in {schedule}"))
    };
    let tags = |pairs: &[(&str, &str)]| -> Value {
        Value::Array(
            pairs
                .iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect(),
        )
    };
    let env = json!({
        "Process": {"Id": pid, "Owner": user().address(), "Tags": tags(&spawn_tags)},
        "Module": {"Id": module, "Owner": user().address(), "Tags": tags(&module_tags)},
    });
    let log: String = msgs
        .iter()
        .chain([&halting])
        .zip(commands.iter().cloned().chain([format!("get /data/{other}")]))
        .map(|(id, data)| {
            let msg = json!({"Id": id, "Owner": user().address(), "Target": pid, "From": user().address(),
                "Tags": tags(&[("Action", "Probe")]), "Data": data, "Block-Height": height_of(id), "Timestamp": 1});
            format!("{}\n", json!({"msg": msg, "env": env}))
        })
        .collect();
    let probe = repo().join("tests/modules/build/weavedrive-probe.wasm");
    let url = a.url.clone();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("node")
            .arg(oracle)
            .args([
                "--module",
                probe.to_str().unwrap(),
                "--format",
                "wasm32-unknown-emscripten4",
                "--arweave",
                &url,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), log.as_bytes()).unwrap();
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines.len(),
        outputs.len() + 1,
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (i, out) in outputs.iter().enumerate() {
        assert_eq!(
            lines[i]["Output"].as_str(),
            Some(out.as_str()),
            "message {i} ({})",
            commands[i]
        );
    }
    assert!(lines[outputs.len()]["Halted"].as_str().is_some(), "{stdout}");
    assert_eq!(output.status.code(), Some(5));
}

/// `tests/oracle/weavedrive.cjs` when node and the oracle's packages are here (required under CI).
fn weavedrive_oracle() -> Option<PathBuf> {
    let script = repo().join("tests/oracle/weavedrive.cjs");
    let ready = repo()
        .join("tests/oracle/node_modules/@permaweb/weavedrive")
        .is_dir()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok();
    if ready {
        return Some(script);
    }
    assert!(
        !under_ci(),
        "required under CI: node and tests/oracle's npm packages (npm ci)"
    );
    println!("SKIPPED: the WeaveDrive oracle (node, tests/oracle/node_modules) is missing");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mu_without_an_su_hands_messages_and_spawns_to_the_scheduling_node() {
    let Some(wasm) = lua_wasm() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve(dir_a.path(), Roles::ALL, |_| None).await;
    let (module, pid, msgs) = seed(&a, wasm).await;
    let gateway = a.url.clone();
    let mu_cu = Roles {
        mu: true,
        su: false,
        cu: true,
        gateway: false,
    };
    let b = serve(dir_b.path(), mu_cu, |_| Some(network(&gateway, 2))).await;

    // A message posted to B's MU is scheduled by A, and both compute it the same.
    let item = user()
        .sign_data_item(
            b"via B",
            &[
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", "Message"),
                ("Action", "Echo"),
            ],
            Some(&pid),
            None,
        )
        .unwrap();
    let id = ingest(&b, item.clone()).await;
    let (status, on_a) = get_json(format!("{}/{id}?process-id={pid}", a.url)).await;
    assert_eq!(status, 200, "A's SU has the message: {on_a}");
    let (sa, ra) = result(&a, &pid, &id).await;
    let (sb, rb) = result(&b, &pid, &id).await;
    assert_eq!((sa, sb), (200, 200), "A: {ra}\nB: {rb}");
    assert_eq!(ra["Output"], "via B");
    assert_eq!(rb, ra);
    // Posted again, it answers its id and is not scheduled twice.
    assert_eq!(ingest(&b, item).await, id);
    let (_, page) = get_json(format!("{}/{pid}?limit=100", a.url)).await;
    assert_eq!(
        page["edges"].as_array().map(Vec::len),
        Some(msgs.len() + 2),
        "{page}"
    );

    // A spawn naming A as its Scheduler goes to A.
    let spawn = user()
        .sign_data_item(
            b"spawned via B",
            &[
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", "Process"),
                ("Module", module.as_str()),
                ("Scheduler", a.node().address().as_str()),
            ],
            None,
            Some(&[9u8; 32]),
        )
        .unwrap();
    let child = ingest(&b, spawn).await;
    let (status, v) = get_json(format!("{}/processes/{child}", a.url)).await;
    assert_eq!(status, 200, "{v}");
    // An assignment asked of B is made by A's SU.
    let (status, body) = call("POST", format!("{}/?process-id={child}&assign={id}", b.url), None).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let (status, v) = get_json(format!("{}/{id}?process-id={child}", a.url)).await;
    assert_eq!(
        status, 200,
        "the child's schedule on A holds the assigned message: {v}"
    );

    // A message to a process no SU knows is refused with A's answer, and nothing is stored on B.
    let stray = user()
        .sign_data_item(
            b"",
            &[("Data-Protocol", "ao"), ("Type", "Message")],
            Some(&"A".repeat(43)),
            None,
        )
        .unwrap();
    let (status, body) = call(
        "POST",
        format!("{}/", b.url),
        Some(("application/octet-stream", stray)),
    )
    .await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    let metrics = String::from_utf8(call("GET", format!("{}/metrics", b.url), None).await.1).unwrap();
    assert!(metrics.contains("ao_cu_forwarded_items_total 4\n"), "{metrics}");
}
