//! Each target over its seed corpus plus generated inputs ([`driver::run`]), that the seeds are what they
//! claim to be (real inputs our code accepts), and the writer of the seed corpus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use cu_ans104::{DataItem, EthereumSigner, Wallet};
use serde_json::{Value, json};

use crate::{driver, targets};

const TEST_JWK: &str = include_str!("../../crates/cu-ans104/tests/oracle/test-jwk.json");

const ANS104_DICT: &[&[u8]] = &[
    b"\x00",
    b"\x01",
    b"\x02\x00",
    b"\x03\x00",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",
];
const GRAPHQL_DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"(",
    b")",
    b"[",
    b"]",
    b":",
    b"$",
    b"\"",
    b"\\",
    b"#",
    b"...",
    b"query",
    b"transactions",
    b"ids",
    b"owners",
    b"tags",
    b"first",
    b"edges",
    b"node",
    b"-",
    b"9999999999999999999999",
    b"\0",
    b"{a",
    b"[[",
    b"{k:",
];
const SU_DICT: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b"null",
    b"\"cursor\":",
    b"\"Nonce\"",
    b"\"Hash-Chain\"",
    b"\"edges\":",
    b"\"tags\":[]",
    b"18446744073709551616",
    b"-1",
];
const SNAPSHOT_DICT: &[&[u8]] = &[
    b"\"memory_len\":",
    b"18446744073709551615",
    b"4294967296",
    b"1099511627776",
    b"\"globals\":[]",
    b"null",
    b"\"fs\":",
    b"\"I64\":",
    b"1e308",
];
const CHECKPOINT_DICT: &[&[u8]] = &[
    b"\"memory_len\":",
    b"\"payload_len\":",
    b"\"runs\":[[0,1]]",
    b"[4294967295,4294967295]",
    b"18446744073709551615",
    b"1099511627776",
    b"\"parent\":",
    b"0",
];
const QUERY_DICT: &[&[u8]] = &[
    b"%",
    b"%2",
    b"%25",
    b"%+f",
    b"%-1",
    b"%zz",
    b"%E2%9C%93",
    b"%FF",
    b"%C3",
    b"+",
    b"&",
    b"=",
    b"&&",
    b"process-id=",
    b"limit=",
    b"sort=",
    b"%00",
];

#[test]
fn ans104() {
    driver::run("ans104", targets::ans104, driver::corpus("ans104"), ANS104_DICT);
}

#[test]
fn graphql() {
    driver::run(
        "graphql",
        targets::graphql,
        driver::corpus("graphql"),
        GRAPHQL_DICT,
    );
}

#[test]
fn su_page() {
    driver::run("su_page", targets::su_page, driver::corpus("su_page"), SU_DICT);
}

#[test]
fn snapshot() {
    driver::run(
        "snapshot",
        targets::snapshot,
        driver::corpus("snapshot"),
        SNAPSHOT_DICT,
    );
}

#[test]
fn checkpoint() {
    driver::run(
        "checkpoint",
        targets::checkpoint,
        driver::corpus("checkpoint"),
        CHECKPOINT_DICT,
    );
}

#[test]
fn http_query() {
    driver::run(
        "http_query",
        targets::http_query,
        driver::corpus("http_query"),
        QUERY_DICT,
    );
}

/// The seeds are valid inputs, so the mutations start from the paths that matter.
#[test]
fn seeds_are_inputs_our_code_accepts() {
    let seeds = |target| driver::corpus_files(target, "seed-");
    let items = seeds("ans104");
    assert!(items.len() >= 3);
    for raw in &items {
        DataItem::parse(raw).unwrap().verify().unwrap();
    }
    let queries = seeds("graphql");
    assert!(queries.len() >= 3);
    for q in &queries {
        let (query, vars) = q.split_at(q.iter().position(|&b| b == 0).unwrap_or(q.len()));
        let vars: Value = serde_json::from_slice(vars.get(1..).unwrap_or_default()).unwrap_or(Value::Null);
        let query = std::str::from_utf8(query).unwrap();
        let fields = cu_node::graphql::parse(query, &vars).unwrap();
        fields[0].tx_filter().unwrap();
    }
    for page in seeds("su_page") {
        let page: Value = serde_json::from_slice(&page).unwrap();
        cu_node::hbu::check_chain(&page).unwrap();
        for slot in 0..3 {
            let edge = cu_node::hbu::edge_at(&page, slot).unwrap();
            let assignment = &edge["node"]["assignment"];
            cu_node::hbu::verify_assignment(assignment).unwrap();
            if slot > 0 {
                cu_node::hbu::msg_of(&edge["node"]["message"], assignment).unwrap();
            }
        }
    }
    let snaps = seeds("snapshot");
    assert!(!snaps.is_empty());
    for s in &snaps {
        cu_wasm::Snapshot::decode(s).unwrap();
    }
    let ckpts = seeds("checkpoint");
    assert!(ckpts.len() >= 2);
    for c in &ckpts {
        cu_engine::checkpoint::decode(c).unwrap();
    }
    let queries = seeds("http_query");
    assert!(queries.len() >= 3);
    for q in &queries {
        cu_http::parse_query(Some(std::str::from_utf8(q).unwrap())).unwrap();
    }
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// Writes the seed corpus `fuzz/corpus/<target>/seed-*` from our own code:
/// `cargo test -p cu-fuzz -- --ignored write_seed_corpus`. RSA-PSS signatures are salted, so the item files
/// change on every run; commit them only when the seeds should change.
#[test]
#[ignore = "writes fuzz/corpus; run by hand when the seeds should change"]
fn write_seed_corpus() {
    let wallet = Arc::new(Wallet::from_jwk_json(TEST_JWK).unwrap());
    let eth = EthereumSigner::from_secret_bytes(&[0x11; 32]).unwrap();
    const TARGET: &str = "6bV9Uh0Bq2N7Z1f7dUP9hKxYQ0KkR3rCq5m3S1lM1xE";
    let anchor = b"00000000000000000000000000000042";

    // ANS-104: an aoconnect-style message (RSA), a spawn, an Ethereum item without tags.
    let message = wallet
        .sign_data_item(
            b"return 1 + 1",
            &[
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", "Message"),
                ("Action", "Eval"),
            ],
            Some(TARGET),
            Some(anchor),
        )
        .unwrap();
    write("ans104", "seed-message-rsa", &message);
    let spawn = wallet
        .sign_data_item(
            b"{}",
            &[
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", "Process"),
                ("Module", TARGET),
                ("Scheduler", &wallet.address()),
                ("Cron-Interval", "5-minutes"),
                ("Ünï", "✓"),
            ],
            None,
            None,
        )
        .unwrap();
    write("ans104", "seed-spawn-rsa", &spawn);
    let e = eth
        .sign_data_item::<&str>(b"hello", &[], None, Some(anchor))
        .unwrap();
    write("ans104", "seed-eth-no-tags", &e);

    // GraphQL: the queries aoconnect and ao-scheduler-utils send (crates/cu-node/tests/node.rs), with their
    // variables after a NUL byte.
    let q = |query: &str, vars: Value| {
        let mut b = query.as_bytes().to_vec();
        b.push(0);
        b.extend_from_slice(vars.to_string().as_bytes());
        b
    };
    write(
        "graphql",
        "seed-verify-module",
        &q(
            "query GetTransactions ($transactionIds: [ID!]!) {\n  transactions(ids: $transactionIds) {\n    edges { node { owner { address } tags { name value } block { id height timestamp } } }\n  }\n}",
            json!({"transactionIds": [TARGET]}),
        ),
    );
    write(
        "graphql",
        "seed-scheduler-location",
        &q(
            "query GetSchedulerLocation ($owner: String!) {\n  transactions (\n    owners: [$owner]\n    tags: [\n      { name: \"Data-Protocol\", values: [\"ao\"] },\n      { name: \"Type\", values: [\"Scheduler-Location\"] }\n    ]\n    # Only need the most recent Scheduler-Location\n    sort: HEIGHT_DESC\n    first: 1\n  ) { edges { node { tags { name value } } } }\n}",
            json!({"owner": wallet.address()}),
        ),
    );
    write(
        "graphql",
        "seed-process-meta",
        &q(
            "query GetTransactions ($transactionIds: [ID!]!) {\n  transactions(ids: $transactionIds tags: [{ name: \"Data-Protocol\", values: [\"ao\"] }]) {\n    pageInfo { hasNextPage } edges { cursor node { id recipient tags { name value } block { height timestamp } } } } }",
            json!({"transactionIds": [TARGET]}),
        ),
    );

    // An SU page: cu-scheduler schedules a spawn and two messages into a store, the wire module pages them.
    let dir = tempfile::tempdir().unwrap();
    let store = cu_store::Store::open(dir.path(), cu_store::StoreOptions::default()).unwrap();
    let scheduler = cu_scheduler::Scheduler::new(store.clone(), wallet.clone(), false);
    let pid = DataItem::parse(&spawn).unwrap().id();
    let record = cu_store::ProcessRecord {
        id: pid.clone(),
        module_id: TARGET.into(),
        owner: wallet.address(),
        tags: Vec::new(),
        env_json: "{}".into(),
        block_height: 0,
        timestamp: 0,
        spawn_json: String::new(),
    };
    let req =
        |id: String, raw: Vec<u8>, spawn: Option<cu_store::ProcessRecord>| cu_scheduler::ScheduleRequest {
            process_id: pid.clone(),
            message_id: id,
            message: Some(raw),
            spawn,
            delivered: Vec::new(),
        };
    scheduler
        .schedule(
            req(pid.clone(), spawn.clone(), Some(record)),
            1_750_000_000_000,
            |_| Ok("{}".into()),
        )
        .unwrap();
    for (i, (action, data)) in [("Count", &b""[..]), ("Echo", &b"from hb"[..])]
        .into_iter()
        .enumerate()
    {
        let raw = wallet
            .sign_data_item(
                data,
                &[("Data-Protocol", "ao"), ("Type", "Message"), ("Action", action)],
                Some(&pid),
                None,
            )
            .unwrap();
        let id = DataItem::parse(&raw).unwrap().id();
        scheduler
            .schedule(
                req(id, raw, None),
                1_750_000_000_000 + 1000 * (i as u64 + 1),
                |_| Ok("{}".into()),
            )
            .unwrap();
    }
    let records = scheduler.reads().page(&pid, None, None, 100).unwrap();
    let page = cu_scheduler::wire::page_json(&records, false).unwrap();
    write("su_page", "seed-page", page.to_string().as_bytes());

    // A snapshot of the emscripten2 WAT probe after three messages, and checkpoints of its memory.
    let snap = cu_tests::on_eval_thread(|| {
        let module = cu_tests::compile(
            &cu_tests::wat_module("emscripten2"),
            cu_types::ModuleFormat::Emscripten2,
        );
        let mut process = cu_tests::boot(&module, cu_types::Limits::default());
        let log = cu_tests::read_log(&cu_tests::repo().join("tests/modules/wat/messages/main.jsonl"));
        for (m, e) in &log[..3] {
            process.handle(m, e).unwrap();
        }
        process.snapshot().unwrap()
    });
    write("snapshot", "seed-emscripten2", &snap.encode().unwrap());
    use cu_engine::checkpoint::{CheckpointState, ChunkTable, encode, nonzero_chunks};
    let mut memory = snap.memory.clone();
    fn state<'a>(snap: &cu_wasm::Snapshot, memory: &'a [u8], pos: u64) -> CheckpointState<'a> {
        CheckpointState {
            format: snap.format,
            module_sha256: snap.module_sha256,
            pos,
            globals: snap.globals.clone(),
            glue: snap.glue.clone(),
            memory,
        }
    }
    let mut table = ChunkTable::default();
    table.diff_and_update(&memory);
    write(
        "checkpoint",
        "seed-base",
        &encode(&state(&snap, &memory, 3), None, &nonzero_chunks(&memory)).unwrap(),
    );
    memory[5000..5100].fill(7);
    memory.resize(memory.len() + 65536, 0);
    let last = memory.len() - 1;
    memory[last] = 1;
    let changed = table.diff_and_update(&memory);
    write(
        "checkpoint",
        "seed-delta",
        &encode(&state(&snap, &memory, 4), Some(1), &changed).unwrap(),
    );

    // HTTP queries the routes take.
    write(
        "http_query",
        "seed-results",
        format!("from=1&to=3&sort=DESC&limit=10&process-id={pid}").as_bytes(),
    );
    write(
        "http_query",
        "seed-assign",
        format!("process-id={pid}&assign={TARGET}").as_bytes(),
    );
    write(
        "http_query",
        "seed-escapes",
        "nonce=00ff&a%20b=c+d&x=%E2%9C%93&flag&=".as_bytes(),
    );
}
