//! cu-node end to end without HTTP: the Lua test process (`tests/modules/build/lua-process.wasm`, built by
//! `tests/modules/build.sh`), a fake clock, a temporary data directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cu_ans104::Wallet;
use cu_engine::EngineConfig;
use cu_node::{IngestKind, Node, NodeConfig, ResultsParams};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lua_wasm() -> Option<Vec<u8>> {
    let path = repo().join("tests/modules/build/lua-process.wasm");
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
                panic!(
                    "{} is required under CI (run tests/modules/build.sh)",
                    path.display()
                );
            }
            eprintln!("SKIPPED: {} missing (run tests/modules/build.sh)", path.display());
            None
        }
    }
}

fn wallet() -> Wallet {
    let jwk = std::fs::read_to_string(repo().join("crates/cu-ans104/tests/oracle/test-jwk.json")).unwrap();
    Wallet::from_jwk_json(&jwk).unwrap()
}

struct Fixture {
    node: Node,
    clock: Arc<AtomicU64>,
    user: Wallet,
    _dir: tempfile::TempDir,
}

/// The node settings every test uses: one worker, the test wallet, time from `clock`.
fn node_config(data_dir: std::path::PathBuf, cron: bool, clock: &Arc<AtomicU64>) -> NodeConfig {
    let c = clock.clone();
    NodeConfig {
        data_dir,
        wallet: wallet(),
        engine: EngineConfig {
            workers: 1,
            pin_cores: false,
            dry_run_workers: 1,
            ..EngineConfig::default()
        },
        store: cu_store::StoreOptions::default(),
        aot_cache: None,
        max_item_bytes: cu_node::DEFAULT_MAX_ITEM_BYTES,
        cron,
        clock: Arc::new(move || c.load(Ordering::SeqCst)),
        public_url: "http://localhost:6363".into(),
        hbu_verify_signatures: false,
        upload_quota: None,
        network: None,
        checkpoint_uploads: None,
        model_budget: cu_node::DEFAULT_MODEL_BUDGET,
        scheduler_role: true,
    }
}

fn open(dir: tempfile::TempDir, cron: bool) -> Fixture {
    let clock = Arc::new(AtomicU64::new(1_750_000_000_000));
    let node = Node::open(node_config(dir.path().to_path_buf(), cron, &clock)).unwrap();
    Fixture {
        node,
        clock,
        user: wallet(),
        _dir: dir,
    }
}

fn module(f: &Fixture, wasm: &[u8]) -> String {
    let raw = module_item(f, wasm);
    let r = f.node.ingest(&raw).unwrap();
    assert_eq!(r.kind, IngestKind::Module);
    r.id
}

fn module_item(f: &Fixture, wasm: &[u8]) -> Vec<u8> {
    f.user
        .sign_data_item(
            wasm,
            &[
                ("Data-Protocol", "ao"),
                ("Type", "Module"),
                ("Module-Format", "wasm32-unknown-emscripten2"),
                ("Input-Encoding", "JSON-1"),
                ("Output-Encoding", "JSON-1"),
                ("Memory-Limit", "500-mb"),
                ("Compute-Limit", "9000000000000"),
            ],
            None,
            None,
        )
        .unwrap()
}

fn spawn(f: &Fixture, module_id: &str, extra: &[(&str, &str)]) -> String {
    let mut tags = vec![
        ("Data-Protocol", "ao"),
        ("Variant", "ao.TN.1"),
        ("Type", "Process"),
        ("Module", module_id),
        ("Scheduler", "x"),
    ];
    tags.extend_from_slice(extra);
    let raw = f.user.sign_data_item(b"1984", &tags, None, None).unwrap();
    let r = f.node.ingest(&raw).unwrap();
    assert_eq!(r.kind, IngestKind::Process);
    r.id
}

fn message(f: &Fixture, pid: &str, tags: &[(&str, &str)], data: &[u8]) -> String {
    let mut all = vec![
        ("Data-Protocol", "ao"),
        ("Variant", "ao.TN.1"),
        ("Type", "Message"),
    ];
    all.extend_from_slice(tags);
    let raw = f.user.sign_data_item(data, &all, Some(pid), None).unwrap();
    f.node.ingest(&raw).unwrap().id
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn spawn_message_result_results_dry_run() {
    let Some(wasm) = lua_wasm() else { return };
    let f = open(tempfile::tempdir().unwrap(), false);
    let rt = rt();
    let m = module(&f, &wasm);
    let pid = spawn(&f, &m, &[]);
    let mut ids = Vec::new();
    for i in 0..5 {
        f.clock.fetch_add(1000, Ordering::SeqCst);
        ids.push(message(
            &f,
            &pid,
            &[("Action", "Echo")],
            format!("hello {i}").as_bytes(),
        ));
    }
    let r = rt.block_on(f.node.result(&pid, &ids[3])).unwrap();
    assert_eq!(r["Output"], "hello 3", "{r}");
    let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["Messages", "Assignments", "Spawns", "Output", "GasUsed"]);
    // The spawn itself is nonce 0 and has a result.
    rt.block_on(f.node.result(&pid, &pid)).unwrap();
    rt.block_on(f.node.result(&pid, &ids[4])).unwrap();

    // /results: 6 results (spawn + 5), pages of 2 with cursors.
    let mut seen = Vec::new();
    let mut from = None;
    loop {
        let page = f
            .node
            .results(
                &pid,
                ResultsParams {
                    from: from.clone(),
                    limit: Some(2),
                    ..Default::default()
                },
            )
            .unwrap();
        let edges = page["edges"].as_array().unwrap().clone();
        for e in &edges {
            seen.push(e["node"]["Output"].clone());
            assert!(e["node"].get("GasUsed").is_none());
        }
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        from = Some(edges.last().unwrap()["cursor"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 6);
    assert_eq!(seen[5], "hello 4");
    let desc = f
        .node
        .results(
            &pid,
            ResultsParams {
                sort: Some("DESC".into()),
                limit: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(desc["edges"][0]["node"]["Output"], "hello 4");
    assert!(
        f.node
            .results(
                &pid,
                ResultsParams {
                    from: Some("!!".into()),
                    ..Default::default()
                }
            )
            .is_err()
    );

    // Dry-run: Read-Only, not persisted.
    let before = f
        .node
        .results(
            &pid,
            ResultsParams {
                limit: Some(100),
                ..Default::default()
            },
        )
        .unwrap();
    let owner = f.user.address();
    let out = rt
        .block_on(f.node.dry_run(
            &pid,
            json!({"Owner": owner, "Tags": [{"name": "Action", "value": "Info"}]}),
        ))
        .unwrap();
    assert_eq!(out["Output"]["readonly"], true, "{out}");
    assert_eq!(out["Output"]["count"], 0);
    let after = f
        .node
        .results(
            &pid,
            ResultsParams {
                limit: Some(100),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(before, after);

    // SU reads: nonce 0 is the process, then 1..5 with a valid hash chain.
    let p = f.node.su_process(&pid).unwrap();
    assert_eq!(p["process_id"], pid.as_str());
    let page = f.node.su_messages(&pid, None, None, None).unwrap();
    let edges = page["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 6);
    let mut prev: Option<(String, String)> = None;
    for (n, e) in edges.iter().enumerate() {
        let a = &e["node"]["assignment"];
        let tag = |name: &str| {
            a["tags"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == name)
                .unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string()
        };
        assert_eq!(tag("Nonce"), n.to_string());
        let expected = match &prev {
            None => cu_scheduler::hash_chain(&pid, None).unwrap(),
            Some((id, chain)) => cu_scheduler::hash_chain(chain, Some(id)).unwrap(),
        };
        assert_eq!(tag("Hash-Chain"), expected);
        prev = Some((a["id"].as_str().unwrap().to_string(), expected));
    }
    let latest = f.node.su_latest(&pid).unwrap();
    assert_eq!(latest["message"]["id"], ids[4].as_str());
    assert!(f.node.metrics().contains("ao_cu_ingested_total 7"));
}

#[test]
fn bad_items_store_nothing_and_unknown_process_is_404() {
    let Some(wasm) = lua_wasm() else { return };
    let f = open(tempfile::tempdir().unwrap(), false);
    let rt = rt();
    let m = module(&f, &wasm);
    let pid = spawn(&f, &m, &[]);
    let page = |f: &Fixture| {
        f.node.su_messages(&pid, None, None, None).unwrap()["edges"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(page(&f), 1);
    // A retried item is answered with its id and scheduled once.
    let raw = f
        .user
        .sign_data_item(b"x", &[("Type", "Message"), ("Action", "Echo")], Some(&pid), None)
        .unwrap();
    let first = f.node.ingest(&raw).unwrap().id;
    assert_eq!(f.node.ingest(&raw).unwrap().id, first);
    assert_eq!(page(&f), 2);
    // Tampered signature.
    let mut raw = f
        .user
        .sign_data_item(b"x", &[("Type", "Message"), ("Action", "Echo")], Some(&pid), None)
        .unwrap();
    raw[10] ^= 1;
    assert_eq!(f.node.ingest(&raw).unwrap_err().status(), 400);
    // Garbage.
    assert_eq!(f.node.ingest(b"not a data item").unwrap_err().status(), 400);
    // Unknown target.
    let other = cu_scheduler::hash_chain(&pid, None).unwrap();
    let raw = f
        .user
        .sign_data_item(b"x", &[("Type", "Message")], Some(&other), None)
        .unwrap();
    assert_eq!(f.node.ingest(&raw).unwrap_err().status(), 400);
    // Unknown module.
    let raw = f
        .user
        .sign_data_item(
            b"x",
            &[("Type", "Process"), ("Module", other.as_str())],
            None,
            None,
        )
        .unwrap();
    assert_eq!(f.node.ingest(&raw).unwrap_err().status(), 400);
    // Memory-Limit over the maximum: 413.
    let raw = f
        .user
        .sign_data_item(
            b"x",
            &[
                ("Type", "Process"),
                ("Module", m.as_str()),
                ("Memory-Limit", "16-gb"),
            ],
            None,
            None,
        )
        .unwrap();
    assert_eq!(f.node.ingest(&raw).unwrap_err().status(), 413);
    assert_eq!(page(&f), 2);
    assert_eq!(
        f.node
            .results(&other, ResultsParams::default())
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        rt.block_on(f.node.result(&other, &other)).unwrap_err().status(),
        404
    );
    assert_eq!(
        rt.block_on(f.node.result(&pid, &other)).unwrap_err().status(),
        404
    );
    assert_eq!(f.node.su_process(&other).unwrap_err().status(), 404);
}

#[test]
fn two_processes_message_each_other_through_the_outbox() {
    let Some(wasm) = lua_wasm() else { return };
    let f = open(tempfile::tempdir().unwrap(), false);
    let rt = rt();
    let m = module(&f, &wasm);
    let a = spawn(&f, &m, &[]);
    let b = spawn(&f, &m, &[]);
    // A sends to B with Reply-Action=Echo: B evaluates an Echo of the data.
    let id = message(
        &f,
        &a,
        &[("Action", "Send"), ("Recipient", &b), ("Reply-Action", "Echo")],
        b"ping",
    );
    let r = rt.block_on(f.node.result(&a, &id)).unwrap();
    assert_eq!(r["Messages"][0]["Target"], b.as_str());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let page = f.node.su_messages(&b, None, None, None).unwrap();
        let edges = page["edges"].as_array().unwrap();
        if edges.len() == 2 {
            let msg = &edges[1]["node"]["message"];
            let tags = msg["tags"].as_array().unwrap();
            let tag = |n: &str| tags.iter().find(|t| t["name"] == n).map(|t| t["value"].clone());
            assert_eq!(tag("From-Process"), Some(Value::String(a.clone())));
            assert_eq!(tag("From-Module"), Some(Value::String(m.clone())));
            assert_eq!(tag("Pushed-For"), Some(Value::String(id.clone())));
            let pushed = msg["id"].as_str().unwrap().to_string();
            let out = rt.block_on(f.node.result(&b, &pushed)).unwrap();
            assert_eq!(out["Output"], "ping");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox message never reached B"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn cron_ticks_with_a_fake_clock() {
    let Some(wasm) = lua_wasm() else { return };
    let f = open(tempfile::tempdir().unwrap(), true);
    let rt = rt();
    let m = module(&f, &wasm);
    let pid = spawn(
        &f,
        &m,
        &[("Cron-Interval", "10-seconds"), ("Cron-Tag-Action", "Cron")],
    );
    f.clock.fetch_add(65_000, Ordering::SeqCst);
    let page = rt.block_on(f.node.cron(&pid, ResultsParams::default())).unwrap();
    let edges = page["edges"].as_array().unwrap();
    // Ticks at +10 s .. +60 s (a tick is generated once its second has passed: now - 1 s = +64 s).
    assert_eq!(edges.len(), 6, "{page}");
    assert!(
        edges[0]["node"]["Output"]
            .as_str()
            .unwrap()
            .starts_with("cron 1 at ")
    );
    // A message after the crons comes after them in the log.
    f.clock.fetch_add(20_000, Ordering::SeqCst);
    let id = message(&f, &pid, &[("Action", "Count")], b"");
    rt.block_on(f.node.result(&pid, &id)).unwrap();
    let all = f
        .node
        .results(
            &pid,
            ResultsParams {
                limit: Some(100),
                ..Default::default()
            },
        )
        .unwrap();
    let outs: Vec<String> = all["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["Output"].to_string())
        .collect();
    assert_eq!(outs.len(), 1 + 8 + 1, "{outs:?}");
    assert_eq!(outs.last().unwrap(), "\"1\"");
}

#[test]
fn graphql_answers_the_queries_aoconnect_sends() {
    let Some(wasm) = lua_wasm() else { return };
    let f = open(tempfile::tempdir().unwrap(), false);
    let m = module(&f, &wasm);
    let pid = spawn(&f, &m, &[]);
    // aoconnect spawn: verifyModule (loadTransactionMeta).
    let q = r#"
    query GetTransactions ($transactionIds: [ID!]!) {
      transactions(ids: $transactionIds) {
        edges { node { owner { address } tags { name value } block { id height timestamp } } }
      }
    }"#;
    let r = f.node.graphql(q, json!({"transactionIds": [m]})).unwrap();
    let node = &r["data"]["transactions"]["edges"][0]["node"];
    assert_eq!(
        node.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["owner", "tags", "block"]
    );
    assert!(
        node["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "Module-Format")
    );
    assert_eq!(node["owner"]["address"], f.user.address().as_str());
    // ao-scheduler-utils: the Scheduler-Location of the node's address.
    let q = r#"
    query GetSchedulerLocation ($owner: String!) {
      transactions (
        owners: [$owner]
        tags: [
          { name: "Data-Protocol", values: ["ao"] },
          { name: "Type", values: ["Scheduler-Location"] }
        ]
        # Only need the most recent Scheduler-Location
        sort: HEIGHT_DESC
        first: 1
      ) { edges { node { tags { name value } } } }
    }"#;
    let r = f.node.graphql(q, json!({"owner": f.node.address()})).unwrap();
    let tags = r["data"]["transactions"]["edges"][0]["node"]["tags"]
        .as_array()
        .unwrap()
        .clone();
    assert!(tags.contains(&json!({"name": "Url", "value": "http://localhost:6363"})));
    assert!(tags.iter().any(|t| t["name"] == "Time-To-Live"));
    let r = f.node.graphql(q, json!({"owner": "someone-else"})).unwrap();
    assert_eq!(r["data"]["transactions"]["edges"], json!([]));
    // The process with the Data-Protocol filter, and its block.
    let q = r#"query GetTransactions ($transactionIds: [ID!]!) {
      transactions(ids: $transactionIds tags: [{ name: "Data-Protocol", values: ["ao"] }]) {
        pageInfo { hasNextPage } edges { cursor node { id recipient tags { name value } block { height timestamp } } } } }"#;
    let r = f.node.graphql(q, json!({"transactionIds": [pid]})).unwrap();
    let t = &r["data"]["transactions"];
    assert_eq!(t["pageInfo"]["hasNextPage"], false);
    assert_eq!(t["edges"][0]["node"]["id"], pid.as_str());
    assert_eq!(t["edges"][0]["node"]["block"]["timestamp"], 1_750_000_000);
    // blocks: the local chain up to the current height (the reference CU's cron query); an
    // unsupported top-level field is still a 400.
    let r = f
        .node
        .graphql("{ blocks(first: 2) { edges { node { height } } } }", json!({}))
        .unwrap();
    assert_eq!(r["data"]["blocks"]["edges"][1]["node"]["height"], 1);
    assert!(matches!(
        f.node.graphql("{ wallets { edges } }", json!({})),
        Err(cu_node::NodeError::BadRequest(_))
    ));
    assert!(f.node.graphql("query { transactions(", json!({})).is_err());
}

#[test]
fn hbu_mode_evaluates_pages_of_another_scheduler() {
    let Some(wasm) = lua_wasm() else { return };
    let rt = rt();
    // The scheduler side: our own node's SU pages stand in for HyperBEAM's.
    let su = open(tempfile::tempdir().unwrap(), false);
    let module_raw = module_item(&su, &wasm);
    let m = su.node.ingest(&module_raw).unwrap().id;
    let pid = spawn(&su, &m, &[]);
    let a = message(&su, &pid, &[("Action", "Count")], b"");
    let b = message(&su, &pid, &[("Action", "Echo")], b"from hb");
    let page = su.node.su_messages(&pid, None, None, None).unwrap();
    let want = rt.block_on(su.node.result(&pid, &b)).unwrap();
    rt.block_on(su.node.result(&pid, &a)).unwrap();

    let cu = open(tempfile::tempdir().unwrap(), false);
    assert_eq!(cu.node.ingest(&module_raw).unwrap().id, m);
    // Slots must arrive in order.
    let err = rt
        .block_on(cu.node.hbu_result(&pid, 1, page.clone()))
        .unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
    rt.block_on(cu.node.hbu_result(&pid, 0, page.clone())).unwrap();
    let err = rt
        .block_on(cu.node.hbu_result(&pid, 2, page.clone()))
        .unwrap_err();
    assert_eq!(err.status(), 422, "{err}");
    let (r1, h1) = rt.block_on(cu.node.hbu_result(&pid, 1, page.clone())).unwrap();
    assert_eq!(r1["Output"], "1");
    assert_eq!(h1[0], ("slot".to_string(), "1".to_string()));
    let (r2, h2) = rt.block_on(cu.node.hbu_result(&pid, 2, page.clone())).unwrap();
    assert_eq!(r2, want);
    let ts = page["edges"][2]["cursor"].as_str().unwrap();
    assert!(h2.contains(&("timestamp".to_string(), ts.to_string())));
    // Posting a slot again answers the same result.
    assert_eq!(
        rt.block_on(cu.node.hbu_result(&pid, 2, page.clone())).unwrap().0,
        want
    );
    // A broken hash chain is a 422.
    let mut bad = page.clone();
    let tags = bad["edges"][2]["node"]["assignment"]["tags"]
        .as_array_mut()
        .unwrap();
    for t in tags.iter_mut() {
        if t["name"] == "Hash-Chain" {
            t["value"] = json!(cu_scheduler::hash_chain(&pid, None).unwrap());
        }
    }
    assert_eq!(
        rt.block_on(cu.node.hbu_result(&pid, 2, bad))
            .unwrap_err()
            .status(),
        422
    );
}

#[test]
fn restart_continues_the_schedule_and_never_redelivers() {
    let Some(wasm) = lua_wasm() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let f = open(dir, false);
    let rt = rt();
    let m = module(&f, &wasm);
    let a = spawn(&f, &m, &[]);
    let b = spawn(&f, &m, &[]);
    let id = message(
        &f,
        &a,
        &[("Action", "Send"), ("Recipient", &b), ("Reply-Action", "Count")],
        b"x",
    );
    rt.block_on(f.node.result(&a, &id)).unwrap();
    let count = |n: &Node, p: &str| {
        n.su_messages(p, None, None, None).unwrap()["edges"]
            .as_array()
            .unwrap()
            .len()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count(&f.node, &b) < 2 {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let Fixture {
        node,
        clock,
        user,
        _dir,
    } = f;
    node.shutdown().unwrap();
    // Reopen the same directory.
    let node = Node::open(node_config(path, false, &clock)).unwrap();
    let f = Fixture {
        node,
        clock,
        user,
        _dir,
    };
    // The outbox thread re-checks every process at start (after A is evaluated again); nothing is
    // delivered twice.
    rt.block_on(f.node.result(&a, &id)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    assert_eq!(count(&f.node, &b), 2);
    // The schedule continues: nonce 2 on A, chained to nonce 1.
    let id2 = message(&f, &a, &[("Action", "Count")], b"");
    assert_eq!(rt.block_on(f.node.result(&a, &id2)).unwrap()["Output"], "1");
    let page = f.node.su_messages(&a, None, None, None).unwrap();
    let edges = page["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3);
    let tag = |e: &Value, n: &str| {
        e["node"]["assignment"]["tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(tag(&edges[2], "Nonce"), "2");
    let expected = cu_scheduler::hash_chain(
        &tag(&edges[1], "Hash-Chain"),
        edges[1]["node"]["assignment"]["id"].as_str(),
    )
    .unwrap();
    assert_eq!(tag(&edges[2], "Hash-Chain"), expected);
    assert!(
        tag(&edges[2], "Timestamp").parse::<u64>().unwrap()
            > tag(&edges[1], "Timestamp").parse::<u64>().unwrap()
    );
}

#[test]
fn outbox_spawns_and_assignments() {
    let Some(wasm) = lua_wasm() else { return };
    let f = open(tempfile::tempdir().unwrap(), false);
    let rt = rt();
    let m = module(&f, &wasm);
    let a = spawn(&f, &m, &[]);
    let b = spawn(&f, &m, &[]);
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !cond() {
            assert!(std::time::Instant::now() < deadline, "{what} never happened");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // Spawn: A's outbox spawn becomes a process of this node, found through GraphQL by its tags.
    let s = message(&f, &a, &[("Action", "Spawn")], b"child data");
    rt.block_on(f.node.result(&a, &s)).unwrap();
    let q = r#"query ($p: [String!]!) { transactions(tags: [{name: "From-Process", values: $p}, {name: "Type", values: ["Process"]}]) { edges { node { id tags { name value } } } } }"#;
    let children = || {
        f.node.graphql(q, json!({"p": [a]})).unwrap()["data"]["transactions"]["edges"]
            .as_array()
            .unwrap()
            .clone()
    };
    wait("the spawn", &|| !children().is_empty());
    let child = children()[0]["node"]["id"].as_str().unwrap().to_string();
    let tags = children()[0]["node"]["tags"].clone();
    assert!(
        tags.as_array()
            .unwrap()
            .contains(&json!({"name": "Pushed-For", "value": s}))
    );
    // The spawn named no Scheduler: as the reference MU, the child goes to the spawner's SU (this
    // node), which the child's own tag says, so another CU can locate it.
    assert!(
        tags.as_array()
            .unwrap()
            .contains(&json!({"name": "Scheduler", "value": f.node.address()})),
        "{tags}"
    );
    let out = rt.block_on(f.node.result(&child, &child)).unwrap();
    assert!(out.get("Error").is_none(), "{out}");
    assert_eq!(f.node.su_process(&child).unwrap()["data"], "child data");
    // Assign: A assigns a message it received to B; B's schedule gets it with `message: null`.
    let target_msg = message(&f, &a, &[("Action", "Echo")], b"assigned data");
    let asg = message(
        &f,
        &a,
        &[("Action", "Assign"), ("Processes", &b), ("Message", &target_msg)],
        b"",
    );
    rt.block_on(f.node.result(&a, &asg)).unwrap();
    wait("the assignment", &|| {
        f.node.su_messages(&b, None, None, None).unwrap()["edges"]
            .as_array()
            .unwrap()
            .len()
            == 2
    });
    let page = f.node.su_messages(&b, None, None, None).unwrap();
    let node = &page["edges"][1]["node"];
    assert!(node["message"].is_null());
    assert!(
        node["assignment"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "Message", "value": target_msg}))
    );
    let out = rt.block_on(f.node.result(&b, &target_msg)).unwrap();
    assert_eq!(out["Output"], "assigned data", "{out}");
}

/// An id no process or message has (43 base64url characters).
const NO_SUCH_ID: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

#[test]
fn assign_puts_a_stored_message_on_another_process() {
    let Some(wasm) = lua_wasm() else { return };
    let f = open(tempfile::tempdir().unwrap(), false);
    let rt = rt();
    let m = module(&f, &wasm);
    let a = spawn(&f, &m, &[]);
    let b = spawn(&f, &m, &[]);
    let echo = message(&f, &a, &[("Action", "Echo")], b"assigned by the MU");
    let info = message(&f, &a, &[("Action", "Info"), ("Extra", "1")], b"");
    let edges = |pid: &str| {
        f.node.su_messages(pid, None, None, None).unwrap()["edges"]
            .as_array()
            .unwrap()
            .clone()
    };
    assert_eq!(edges(&b).len(), 1);
    // Errors write nothing.
    let status = |r: Result<String, cu_node::NodeError>| r.unwrap_err().status();
    assert_eq!(status(f.node.assign(NO_SUCH_ID, &echo, None)), 404);
    assert_eq!(status(f.node.assign(&b, NO_SUCH_ID, None)), 404);
    assert_eq!(status(f.node.assign(&b, "short", None)), 400);
    assert_eq!(status(f.node.assign(&a, &echo, None)), 400, "already on A");
    assert_eq!(status(f.node.assign(&b, &echo, Some("Data"))), 400);
    assert_eq!(edges(&b).len(), 1);
    assert_eq!(edges(&a).len(), 3);
    // The assignment: B's schedule gets it with `message: null` and tag `Message`.
    let id = f.node.assign(&b, &echo, Some("")).unwrap();
    let page = edges(&b);
    assert_eq!(page.len(), 2);
    let node = &page[1]["node"];
    assert!(node["message"].is_null(), "{node}");
    assert_eq!(node["assignment"]["id"], id.as_str());
    let tags = node["assignment"]["tags"].as_array().unwrap();
    assert!(tags.contains(&json!({"name": "Message", "value": echo})));
    assert!(tags.contains(&json!({"name": "Process", "value": b})));
    assert!(tags.contains(&json!({"name": "Nonce", "value": "1"})));
    // B evaluates the original message.
    let out = rt.block_on(f.node.result(&b, &echo)).unwrap();
    assert_eq!(out["Output"], "assigned by the MU", "{out}");
    // Twice is refused; the schedule is unchanged.
    assert_eq!(status(f.node.assign(&b, &echo, None)), 400);
    assert_eq!(edges(&b).len(), 2);
    // The process sees the original's sender and tags, and its own state.
    f.clock.fetch_add(5_000, Ordering::SeqCst);
    let id2 = f.node.assign(&b, &info, None).unwrap();
    assert_ne!(id2, id);
    let out = rt.block_on(f.node.result(&b, &info)).unwrap();
    assert_eq!(out["Output"]["id"], b.as_str(), "{out}");
    assert_eq!(out["Output"]["from"], f.user.address().as_str());
    assert_eq!(out["Output"]["tags"], 5, "{out}");
    let ts = edges(&b)[2]["node"]["assignment"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "Timestamp")
        .unwrap()["value"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_eq!(out["Output"]["timestamp"], ts);
    // A's own results are untouched by the assignments.
    let out = rt.block_on(f.node.result(&a, &echo)).unwrap();
    assert_eq!(out["Output"], "assigned by the MU");
    assert_eq!(edges(&a).len(), 3);
}

/// The operator's limits: a spawn asking for more than the largest `Compute-Limit` is refused (413), a
/// looping dry-run stops at the dry-run time limit (422, a clear error), and the process goes on.
#[test]
fn operator_limits_and_the_dry_run_time_limit() {
    let Some(wasm) = lua_wasm() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_750_000_000_000));
    let mut config = node_config(dir.path().to_path_buf(), false, &clock);
    config.engine.limits.max_compute = 1_000_000_000_000;
    config.engine.dry_run_timeout = std::time::Duration::from_secs(1);
    let f = Fixture {
        node: Node::open(config).unwrap(),
        clock,
        user: wallet(),
        _dir: dir,
    };
    let rt = rt();
    let m = module(&f, &wasm);
    // The module's own tag (9e12) is beyond this node's maximum.
    let raw = f
        .user
        .sign_data_item(b"x", &[("Type", "Process"), ("Module", m.as_str())], None, None)
        .unwrap();
    let refused = f.node.ingest(&raw).unwrap_err();
    assert_eq!(refused.status(), 413);
    assert!(
        refused
            .to_string()
            .contains("exceeds the maximum of 1000000000000"),
        "{refused}"
    );
    let pid = spawn(&f, &m, &[("Compute-Limit", "1000000000000")]);
    let looped = rt
        .block_on(f.node.dry_run(
            &pid,
            json!({"Owner": f.user.address(), "Tags": [{"name": "Action", "value": "Loop"}]}),
        ))
        .unwrap_err();
    assert_eq!(looped.status(), 422, "{looped}");
    assert_eq!(looped.to_string(), "dry-run exceeded its 1 s time limit");
    let out = rt
        .block_on(f.node.dry_run(
            &pid,
            json!({"Owner": f.user.address(), "Tags": [{"name": "Action", "value": "Info"}]}),
        ))
        .unwrap();
    assert_eq!(out["Output"]["readonly"], true, "{out}");
}
