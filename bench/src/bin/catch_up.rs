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
//! Side by side (`--reference-cu DIR`, a `servers/cu` checkout of permaweb/ao with its `node_modules`, as
//! `tests/refcu/README.md` gets it): after B's runs, a fresh B served over HTTP and then the reference Node
//! CU, pointed at A as its gateway and SU (page size `--page-size`), are each asked once for the result
//! of the last message (`GET /result/:id?process-id=`), which computes the whole process from scratch;
//! both answers must be A's. That request is what is timed on both sides.
//!
//! `cargo run --release -p cu-bench --bin catch_up -- [--messages 1000] [--page-size 1000] [--runs 3]
//!  [--reference-cu DIR]`

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
        scheduler_role: network.is_none(),
        network,
        checkpoint_uploads: None,
        model_budget: cu_node::DEFAULT_MODEL_BUDGET,
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
    let mut last = String::new();
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
        last = a.ingest(&m).unwrap().id;
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
    if let Some(refcu) = std::env::args()
        .position(|a| a == "--reference-cu")
        .and_then(|i| std::env::args().nth(i + 1))
    {
        let expected = rt.block_on(a.result(&pid, &last)).unwrap();
        side_by_side(
            &rt, &url, &su_wallet, &dir_a, &pid, &last, &expected, messages, page_size, &refcu,
        );
    }
    // The server task holds a clone of A: stop it first.
    drop(rt);
    a.shutdown().unwrap();
}

/// `GET {url}/result/{last}?process-id={pid}` on a CU that has not computed the process yet: the time it
/// took and the result.
fn time_result(url: &str, pid: &str, last: &str) -> (Duration, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3600)))
        .build()
        .into();
    let start = Instant::now();
    let mut r = agent
        .get(format!("{url}/result/{last}?process-id={pid}"))
        .call()
        .unwrap();
    let took = start.elapsed();
    let status = r.status().as_u16();
    let body = r.body_mut().read_to_string().unwrap();
    assert_eq!(status, 200, "{url}: {body}");
    (took, serde_json::from_str(&body).unwrap())
}

/// Waits until `url` answers HTTP at all.
fn wait_up(url: &str, what: &str, log: &Path) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    for _ in 0..300 {
        if agent.get(url).call().is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!(
        "{what} did not answer at {url}; its log: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One fresh B over HTTP and the reference CU, each asked for the last result (see the crate docs).
#[allow(clippy::too_many_arguments)]
fn side_by_side(
    rt: &tokio::runtime::Runtime,
    url: &str,
    wallet: &Wallet,
    dir_a: &tempfile::TempDir,
    pid: &str,
    last: &str,
    expected: &serde_json::Value,
    messages: usize,
    page_size: usize,
    refcu: &str,
) {
    // ao-cu: a fresh network CU served over HTTP.
    let dir_b = tempfile::tempdir().unwrap();
    let mut upstream = UpstreamConfig::for_gateway(url);
    upstream.page_size = page_size;
    let network = NetworkConfig {
        upstream,
        poll: None,
        fresh_for: Duration::from_secs(3600),
        checkpoints: None,
    };
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let b_url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = node_config(dir_b.path(), wallet.clone(), &b_url, Some(network));
    config.aot_cache = Some(dir_a.path().join("aot"));
    let b = Node::open(config).unwrap();
    let app = cu_http::router(
        b.clone(),
        HttpConfig {
            roles: cu_http::Roles {
                mu: false,
                su: false,
                cu: true,
                gateway: false,
            },
            ..HttpConfig::default()
        },
    );
    let server = rt.spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });
    let (ours, answer) = time_result(&b_url, pid, last);
    assert_eq!(&answer, expected, "ao-cu B's last result differs from A's");
    server.abort();

    // The reference CU, with its own wallet, store and caches in a temporary folder.
    let work = tempfile::tempdir().unwrap();
    let wallet_file = work.path().join("wallet.json");
    std::fs::write(&wallet_file, Wallet::generate().unwrap().to_jwk_json()).unwrap();
    let port = free_port();
    let log = work.path().join("refcu.log");
    let preload = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/refcu/preload.mjs");
    let dirs = ["wasm", "mem", "ckpt"].map(|d| {
        let p = work.path().join(d);
        std::fs::create_dir_all(&p).unwrap();
        p
    });
    let mut child = std::process::Command::new("node")
        .current_dir(refcu)
        .args(["--experimental-wasm-memory64", "--import"])
        .arg(&preload)
        .arg("src/app.js")
        .env("NODE_CONFIG_ENV", "development")
        .env("WALLET_FILE", &wallet_file)
        .env("PORT", port.to_string())
        .env("GATEWAY_URL", url)
        .env("GRAPHQL_URLS", format!("{url}/graphql"))
        .env("UPLOADER_URL", url)
        .env("DB_URL", work.path().join("ao-cache"))
        .env("WASM_BINARY_FILE_DIRECTORY", &dirs[0])
        .env("PROCESS_MEMORY_CACHE_FILE_DIR", &dirs[1])
        .env("PROCESS_MEMORY_FILE_CHECKPOINTS_DIR", &dirs[2])
        .env("RATE_LIMIT_MAX_REQUESTS", "1000000")
        .env("WASM_EVALUATION_MAX_WORKERS", "2")
        .env("DEFAULT_LOG_LEVEL", "error")
        .env("LOAD_MESSAGES_PAGE_SIZE", page_size.to_string())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(work.path().join("refcu.err")).unwrap())
        .spawn()
        .expect("node and the reference CU (servers/cu with node_modules)");
    let ref_url = format!("http://127.0.0.1:{port}");
    wait_up(&ref_url, "the reference CU", &log);
    let (theirs, answer) = time_result(&ref_url, pid, last);
    let _ = child.kill();
    let _ = child.wait();
    let keep = ["Output", "Messages", "Spawns", "Assignments", "Error"];
    for k in keep {
        assert_eq!(
            answer.get(k),
            expected.get(k),
            "the reference CU's {k} differs from A's"
        );
    }
    let rate = |d: Duration| messages as f64 / d.as_secs_f64();
    println!(
        "side by side, one GET /result of the last message on a fresh CU (pages of {page_size}):\n  \
         ao-cu network CU: {:.2} s, {:.0} msg/s\n  reference CU:     {:.2} s, {:.0} msg/s\n  ratio: {:.1}x",
        ours.as_secs_f64(),
        rate(ours),
        theirs.as_secs_f64(),
        rate(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    rt.block_on(async { tokio::task::yield_now().await });
    b.shutdown().unwrap();
}
