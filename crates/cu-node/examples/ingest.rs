//! Message ingest throughput and latency: signed data item → scheduled (assignment signed, committed)
//! → evaluated → result readable, for the Lua test process. Also times the node wallet's assignment
//! signature alone, to show how much of ingest it takes.
//!
//! `cargo run -p cu-node --example ingest [--release] -- [messages]` (needs tests/modules/build.sh).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cu_ans104::Wallet;
use cu_node::{Node, NodeConfig};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm =
        std::fs::read(repo.join("tests/modules/build/lua-process.wasm")).expect("run tests/modules/build.sh");
    let jwk = std::fs::read_to_string(repo.join("crates/cu-ans104/tests/oracle/test-jwk.json")).unwrap();
    let user = Wallet::from_jwk_json(&jwk).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let clock = Arc::new(move || 1_750_000_000_000 + start.elapsed().as_millis() as u64);
    let node = Node::open(NodeConfig {
        data_dir: dir.path().to_path_buf(),
        wallet: Wallet::from_jwk_json(&jwk).unwrap(),
        engine: cu_engine::EngineConfig {
            pin_cores: false,
            ..Default::default()
        },
        store: cu_store::StoreOptions::default(),
        aot_cache: None,
        max_item_bytes: cu_node::DEFAULT_MAX_ITEM_BYTES,
        cron: false,
        clock,
        public_url: "http://localhost:6363".into(),
        hbu_verify_signatures: false,
        upload_quota: None,
        network: None,
        checkpoint_uploads: None,
        model_budget: cu_node::DEFAULT_MODEL_BUDGET,
        scheduler_role: true,
    })
    .unwrap();
    let module = user
        .sign_data_item(
            &wasm,
            &[
                ("Data-Protocol", "ao"),
                ("Type", "Module"),
                ("Module-Format", "wasm32-unknown-emscripten2"),
                ("Input-Encoding", "JSON-1"),
                ("Output-Encoding", "JSON-1"),
            ],
            None,
            None,
        )
        .unwrap();
    let m = node.ingest(&module).unwrap().id;
    let spawn = user
        .sign_data_item(
            b"",
            &[
                ("Data-Protocol", "ao"),
                ("Type", "Process"),
                ("Module", m.as_str()),
            ],
            None,
            None,
        )
        .unwrap();
    let pid = node.ingest(&spawn).unwrap().id;
    let items: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            user.sign_data_item(
                format!("m{i}").as_bytes(),
                &[("Data-Protocol", "ao"), ("Type", "Message"), ("Action", "Echo")],
                Some(&pid),
                None,
            )
            .unwrap()
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(node.result(&pid, &pid)).unwrap();

    // 1. Sequential: ingest then wait for the result, one at a time.
    let half = n / 2;
    let mut ingest_lat = Vec::new();
    let mut total_lat = Vec::new();
    let t = Instant::now();
    for raw in &items[..half] {
        let t0 = Instant::now();
        let id = node.ingest(raw).unwrap().id;
        ingest_lat.push(t0.elapsed());
        rt.block_on(node.result(&pid, &id)).unwrap();
        total_lat.push(t0.elapsed());
    }
    let seq = t.elapsed();
    println!(
        "sequential: {half} messages in {:.2?} = {:.1} msg/s; ingest p50 {:.2?} p99 {:.2?}; ingest→result p50 {:.2?} p99 {:.2?}",
        seq,
        half as f64 / seq.as_secs_f64(),
        pct(&mut ingest_lat, 0.5),
        pct(&mut ingest_lat, 0.99),
        pct(&mut total_lat, 0.5),
        pct(&mut total_lat, 0.99)
    );

    // 2. Pipelined: 2 threads ingest, then wait for the last result.
    let rest: Vec<Vec<u8>> = items[half..].to_vec();
    let t = Instant::now();
    let chunks: Vec<Vec<Vec<u8>>> = rest
        .chunks(rest.len().div_ceil(2).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|c| {
            let node = node.clone();
            std::thread::spawn(move || {
                c.iter()
                    .map(|raw| node.ingest(raw).unwrap().id)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let ingested = t.elapsed();
    for id in &ids {
        rt.block_on(node.result(&pid, id)).unwrap();
    }
    let all = t.elapsed();
    println!(
        "concurrent (2 ingest threads, one process): {} messages ingested in {:.2?} = {:.1} msg/s; all results readable after {:.2?} = {:.1} msg/s",
        ids.len(),
        ingested,
        ids.len() as f64 / ingested.as_secs_f64(),
        all,
        ids.len() as f64 / all.as_secs_f64()
    );

    // 3. The assignment signature alone (RSA-4096 PSS by the node wallet).
    let w = Wallet::from_jwk_json(&jwk).unwrap();
    let k = 20;
    let t = Instant::now();
    for i in 0..k {
        w.sign_data_item(&[], &[("Nonce", i.to_string().as_str())], None, None)
            .unwrap();
    }
    println!("assignment signature alone: {:.2?} each", t.elapsed() / k);
    drop(rt);
    node.shutdown().unwrap();
}
