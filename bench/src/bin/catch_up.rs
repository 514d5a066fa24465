//! Network-mode catch-up (issue 11): node A (the embedded local AO, served over HTTP on loopback) schedules
//! one Lua process with `--messages` `Count` messages; node B, a network CU (`--roles cu`, gateway = A),
//! then computes the process from scratch: it locates the SU through A's `Scheduler-Location` record,
//! loads the module from A's gateway, reads the schedule in pages of `--page-size`, checks every slot
//! (nonce, hash chain), stores each page in one transaction and evaluates to the end. Timed from B's first
//! request to B's state at the last message; the page reads are timed alone too (the engine evaluates
//! page k while page k+1 is fetched, so the total is less than their sum).
//!
//! Seeding A (two RSA-4096 signatures per message: the client's and the SU's assignment) is not timed.
//!
//! `cargo run --release -p cu-bench --bin catch_up -- [--messages 1000] [--page-size 1000] [--runs 3]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cu_ans104::Wallet;
use cu_bench::engine::{arg, lua_wasm, machine};
use cu_http::HttpConfig;
use cu_node::{HttpOptions, NetworkConfig, Node, NodeConfig, UpstreamConfig};

fn node_config(dir: &Path, wallet: Wallet, public_url: &str, network: Option<NetworkConfig>) -> NodeConfig {
    let clock = Arc::new(AtomicU64::new(1_750_000_000_000));
    NodeConfig {
        data_dir: dir.to_path_buf(),
        wallet,
        engine: cu_engine::EngineConfig {
            workers: 1,
            pin_cores: false,
            dry_run_workers: 1,
            ..cu_engine::EngineConfig::default()
        },
        store: cu_store::StoreOptions::default(),
        aot_cache: Some(dir.join("aot")),
        max_item_bytes: 64 << 20,
        cron: false,
        clock: Arc::new(move || clock.fetch_add(7, Ordering::SeqCst)),
        public_url: public_url.to_owned(),
        hbu_verify_signatures: false,
        upload_quota: None,
        network,
        checkpoint_uploads: None,
    }
}

fn main() {
    let messages: usize = arg("--messages", 1000);
    let page_size: usize = arg("--page-size", 1000);
    let runs: usize = arg("--runs", 3);
    println!("machine: {}", machine());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let su_wallet = Wallet::generate().unwrap();
    let user = Wallet::generate().unwrap();
    let dir_a = tempfile::tempdir().unwrap();

    // Node A, served on loopback.
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let a = Node::open(node_config(dir_a.path(), su_wallet.clone(), &url, None)).unwrap();
    let app = cu_http::router(a.clone(), HttpConfig::default());
    rt.spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });

    // Seed A: module, process, messages (not timed).
    let seeding = Instant::now();
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
    let module = a
        .ingest(
            &user
                .sign_data_item(&lua_wasm(), &module_tags, None, None)
                .unwrap(),
        )
        .unwrap()
        .id;
    let spawn = user
        .sign_data_item(
            b"catch-up",
            &[
                ("Data-Protocol", "ao"),
                ("Variant", "ao.TN.1"),
                ("Type", "Process"),
                ("Module", module.as_str()),
                ("Scheduler", su_wallet.address().as_str()),
            ],
            None,
            None,
        )
        .unwrap();
    let pid = a.ingest(&spawn).unwrap().id;
    for _ in 0..messages {
        let m = user
            .sign_data_item(
                b"",
                &[
                    ("Data-Protocol", "ao"),
                    ("Variant", "ao.TN.1"),
                    ("Type", "Message"),
                    ("Action", "Count"),
                ],
                Some(&pid),
                None,
            )
            .unwrap();
        a.ingest(&m).unwrap();
    }
    println!(
        "seeded A: 1 process, {messages} messages in {:.1} s (not timed below)",
        seeding.elapsed().as_secs_f64()
    );
    // A's own evaluation of the same log, for the check below.
    let a_state = rt.block_on(a.state(&pid)).unwrap();

    println!("run  total_s  msgs_per_s  sync_s  pages  ms_per_page");
    let mut rates = Vec::new();
    for run in 0..runs {
        let dir_b = tempfile::tempdir().unwrap();
        let mut upstream = UpstreamConfig::for_gateway(&url);
        upstream.page_size = page_size;
        upstream.http = HttpOptions {
            timeout: Duration::from_secs(60),
            ..HttpOptions::default()
        };
        let network = NetworkConfig {
            upstream,
            poll: None,
            fresh_for: Duration::from_secs(3600),
            checkpoints: None,
        };
        // A fresh B each run (empty store), sharing A's AOT cache: the module is already compiled, as for
        // a CU that has run it before (Cranelift's 0.2-3.7 s per module is not catch-up).
        let mut config = node_config(
            dir_b.path(),
            su_wallet.clone(),
            "http://localhost:1",
            Some(network),
        );
        config.aot_cache = Some(dir_a.path().join("aot"));
        let b = Node::open(config).unwrap();
        let start = Instant::now();
        let slots = b.sync_remote(&pid).unwrap();
        let synced = start.elapsed();
        let b_state = rt.block_on(b.state(&pid)).unwrap();
        let total = start.elapsed();
        assert_eq!(slots as usize, messages + 1, "B read every slot");
        assert!(
            b_state.memory == a_state.memory,
            "B's memory differs from A's after {messages} messages"
        );
        let pages = messages.div_ceil(page_size).max(1) as f64;
        let rate = messages as f64 / total.as_secs_f64();
        rates.push(rate);
        println!(
            "{run:>3}  {:>7.2}  {rate:>10.0}  {:>6.2}  {pages:>5}  {:>11.1}",
            total.as_secs_f64(),
            synced.as_secs_f64(),
            synced.as_secs_f64() * 1000.0 / pages,
        );
        b.shutdown().unwrap();
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median: {:.0} messages/s caught up (min {:.0}, max {:.0}); identical memory to A each run",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1]
    );
    // The server task holds a clone of A: stop it first.
    drop(rt);
    a.shutdown().unwrap();
}
