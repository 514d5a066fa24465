//! A real [`cu_node::Node`] served over QUIC ([`NodeService`]): what a peer gets over the protocol is
//! what the HTTP routes answer. An embedded node runs the Lua test module (`tests/modules/build.sh`);
//! without it the test prints SKIPPED, or fails when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{client_with, config};
use cu_ans104::Wallet;
use cu_node::{Node, NodeConfig};
use cu_quic::node::NodeService;
use cu_quic::{Event, QuicEndpoint, QuicError, QuicStats, Service};
use serde_json::{Value, json};

fn lua_wasm() -> Option<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/modules/build/lua-process.wasm");
    match std::fs::read(&path) {
        Ok(w) => Some(w),
        Err(_) if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") => {
            panic!(
                "required for the tests under CI: {} (tests/modules/build.sh)",
                path.display()
            )
        }
        Err(_) => None,
    }
}

fn node(dir: &Path, wallet: Wallet) -> Node {
    let clock = Arc::new(AtomicU64::new(1_750_000_000_000));
    Node::open(NodeConfig {
        data_dir: PathBuf::from(dir),
        wallet,
        engine: cu_engine::EngineConfig {
            workers: 1,
            pin_cores: false,
            dry_run_workers: 1,
            ..cu_engine::EngineConfig::default()
        },
        store: cu_store::StoreOptions::default(),
        aot_cache: None,
        max_item_bytes: 64 << 20,
        cron: false,
        clock: Arc::new(move || clock.fetch_add(7, Ordering::SeqCst)),
        public_url: "http://localhost:1".into(),
        hbu_verify_signatures: false,
        upload_quota: None,
        scheduler_role: true,
        network: None,
        checkpoint_uploads: None,
        model_budget: cu_node::DEFAULT_MODEL_BUDGET,
    })
    .unwrap()
}

fn message(user: &Wallet, pid: &str, action: &str) -> Vec<u8> {
    user.sign_data_item(
        b"",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_gets_over_quic_what_the_http_routes_answer() {
    let Some(wasm) = lua_wasm() else {
        println!("SKIPPED: missing tests/modules/build/lua-process.wasm");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let su = Wallet::generate().unwrap();
    let user = Wallet::generate().unwrap();
    let n = node(dir.path(), su.clone());
    let (pid, first) = tokio::task::block_in_place(|| {
        let module_tags = [
            ("Data-Protocol", "ao"),
            ("Variant", "ao.TN.1"),
            ("Type", "Module"),
            ("Module-Format", "wasm32-unknown-emscripten2"),
            ("Input-Encoding", "JSON-1"),
            ("Output-Encoding", "JSON-1"),
            ("Memory-Limit", "1-gb"),
            ("Compute-Limit", "9000000000000"),
        ];
        let module = n
            .ingest(&user.sign_data_item(&wasm, &module_tags, None, None).unwrap())
            .unwrap()
            .id;
        let spawn = user
            .sign_data_item(
                b"quic",
                &[
                    ("Data-Protocol", "ao"),
                    ("Variant", "ao.TN.1"),
                    ("Type", "Process"),
                    ("Module", module.as_str()),
                    ("Scheduler", su.address().as_str()),
                ],
                None,
                None,
            )
            .unwrap();
        let pid = n.ingest(&spawn).unwrap().id;
        let first: Vec<String> = (0..3)
            .map(|_| n.ingest(&message(&user, &pid, "Count")).unwrap().id)
            .collect();
        (pid, first)
    });

    let service: Arc<dyn Service> = Arc::new(NodeService::new(n.clone()));
    let server = QuicEndpoint::bind(
        common::localhost(),
        config(1, &[2]),
        Some(service),
        Arc::new(QuicStats::default()),
    )
    .unwrap();
    let client = client_with(config(2, &[1]));
    let peer = client.connect(server.local_addr().unwrap()).await.unwrap();

    // Results: the body of GET /result/:id.
    for m in &first {
        let reply = peer.result(&pid, m).await.unwrap();
        assert_eq!(reply.status, 200);
        let (http, _) = n.result_with_slot(&pid, m).await.unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&reply.body).unwrap(), http);
    }
    let unknown = peer
        .result(&pid, "no-such-message-000000000000000000000000000")
        .await
        .unwrap();
    assert_eq!(unknown.status, 404);
    assert!(serde_json::from_slice::<Value>(&unknown.body).unwrap()["error"].is_string());

    // A dry-run: the body of POST /dry-run, and nothing persisted.
    let dry = json!({"Target": pid, "Owner": user.address(), "Tags": [{"name": "Action", "value": "Count"}], "Data": ""});
    let reply = peer.dry_run(&pid, dry.to_string().into_bytes()).await.unwrap();
    assert_eq!(reply.status, 200);
    let (http, _) = n.dry_run_with_slot(&pid, dry.clone()).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&reply.body).unwrap(), http);
    let bad = peer.dry_run(&pid, b"[1]".to_vec()).await.unwrap();
    assert_eq!(bad.status, 400);

    // Forward: the MU's POST /, then the message is scheduled and computed.
    let raw = message(&user, &pid, "Count");
    let reply = peer.forward(raw.clone()).await.unwrap();
    assert_eq!(reply.status, 202, "{}", String::from_utf8_lossy(&reply.body));
    let id = serde_json::from_slice::<Value>(&reply.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let counted = peer.result(&pid, &id).await.unwrap();
    let counted: Value = serde_json::from_slice(&counted.body).unwrap();
    assert_eq!(
        counted["Output"]["data"].as_str().or(counted["Output"].as_str()),
        Some("4"),
        "{counted}"
    );
    let mut tampered = raw;
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    let refused = peer.forward(tampered).await.unwrap();
    assert_eq!(refused.status, 400);

    // The subscription carries GET /:pid's edges byte for byte, then keeps pushing.
    let page = tokio::task::block_in_place(|| n.su_messages(&pid, None, None, None)).unwrap();
    let edges = page["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 5);
    let mut sub = peer.subscribe(&pid, 0).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        for ev in sub.next_batch(64).await.unwrap() {
            if let Event::Slot(s) = ev {
                got.push(s);
            }
        }
    }
    for (s, e) in got.iter().zip(&edges) {
        assert_eq!(serde_json::from_slice::<Value>(&s.node).unwrap(), e["node"]);
        assert_eq!(s.cursor, e["cursor"].as_str().unwrap());
    }
    sub.consumed(4).await.unwrap();
    let pushed = tokio::task::block_in_place(|| n.ingest(&message(&user, &pid, "Count"))).unwrap();
    let next = loop {
        let batch = sub.next_batch(64).await.unwrap();
        if let Some(Event::Slot(s)) = batch.into_iter().find(|e| matches!(e, Event::Slot(_))) {
            break s;
        }
    };
    assert_eq!(next.nonce, 5);
    let node: Value = serde_json::from_slice(&next.node).unwrap();
    assert_eq!(node["message"]["id"], pushed.id.as_str());

    // A process this node does not have: the subscription ends with a 404.
    let mut none = peer
        .subscribe("no-such-process-0000000000000000000000000000", 0)
        .await
        .unwrap();
    match none.next_batch(8).await {
        Err(QuicError::Remote { code: 404, .. }) => {}
        other => panic!("expected a 404, got {other:?}"),
    }
}
