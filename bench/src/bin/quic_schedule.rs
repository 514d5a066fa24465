//! Schedule delivery, HTTP pages against the QUIC subscription (cu-quic): how fast a CU receives a
//! process's schedule from its SU, at what CPU cost, and how soon a newly scheduled slot reaches it.
//!
//! Node A (the embedded local AO: SU, MU and CU in one) schedules one Lua process and `--messages`
//! `Count` messages (signed data items through `Node::ingest`, as `catch_up` seeds it; not timed), and
//! serves them two ways in this one process: its HTTP router (axum on loopback) and a QUIC endpoint with
//! `cu_quic::node::NodeService` (the SU side of the subscription, slots from `Node::su_slots`). Then,
//! interleaved, `--runs` times each (median and min–max reported), a client reads the whole schedule,
//! N + 1 slots (the spawn at nonce 0 and the N messages):
//!
//! - **HTTP pages**: `GET {url}/{pid}?process-id={pid}&limit={--page-size}[&from={cursor}]` with one
//!   keep-alive ureq agent, as a network CU's `Upstream::page` asks it, the next `from` being the last
//!   edge's `cursor`, until `page_info.has_next_page` is false; each body parsed into `SuPage` (every
//!   edge into `cu_upstream::wire::SuEdge`), the work a CU does before its checks.
//! - **QUIC, NodeService**: a client endpoint subscribes from nonce 0 (`Peer::subscribe`, window
//!   `--window`, `QuicConfig.window`) and takes `next_batch(--batch)` (512, `UpstreamSubscriptions`'
//!   batch) until it has every slot, calling `consumed(last)` after each batch; every slot's `node` is
//!   parsed into `SuNode` and kept with its cursor as a `SuEdge` (same work as the HTTP side). Also run
//!   without the parse, to split publisher from subscriber cost.
//! - **QUIC, synthetic service** (the protocol's ceiling): the same subscription against an in-bench
//!   `cu_quic::Service` whose `slots()` clones precomputed `SlotData` (A's own node bytes and cursors:
//!   no store read, no JSON encoding on the publisher), with and without the subscriber's parse.
//!
//! Frames/s = slots received / wall time from the first request (or `subscribe`) to the last slot
//! parsed. CPU per 10,000 frames: every thread's on-CPU time (`/proc/self/task/*/schedstat`, ns) over
//! the timed window. Both sides run in this process, so the total is both sides together; each side
//! also has its own threads, counted apart: the publisher (axum, the QUIC servers, their connection
//! drivers and `spawn_blocking` store reads) on a 1-worker tokio runtime whose threads are named `pub`,
//! the subscriber on another named `sub` (the HTTP client on a thread `sub-http`); `other` is the rest
//! (A's engine, its outbox, the main thread), idle once A has evaluated the log (waited for before the
//! runs).
//!
//! **Latency**: with a QUIC subscription to A caught up, `--latency-messages` `Count` messages, signed
//! beforehand (not timed), are scheduled one at a time: `a.ingest(&raw)` on the main thread (not an
//! async worker), `t0 = Instant::now()` as soon as it returns (the assignment is committed then), until
//! the subscriber task's `next_batch` returns that nonce (a channel carries the receipt instant). Next
//! message once the previous one arrived (closed loop). `ingest` rings the schedule bell before it
//! returns, so a slot may arrive before `t0` is taken: counted, as 0 ms.
//!
//! Before the runs, A's own work per slot is timed without any network (twice): `su_slots(from, 512)`
//! over the whole schedule (what the QUIC publisher asks for) and `su_messages` pages of `--page-size`
//! turned into JSON text (what the HTTP route sends). Each path gets one warm-up pass, not counted.
//!
//! Per run the bench also prints the machine's UDP counters (`/proc/net/snmp`): datagrams received
//! (with GRO one counts a coalesced batch) and datagrams dropped because a socket's receive buffer was
//! full. `QuicEndpoint::bind` asks for 4 MiB buffers each way (the kernel may grant less; with its
//! 208 KiB default, bursts of 512 slots lost 80–300 datagrams per run on loopback); `--udp-buffers
//! BYTES` binds the three endpoints over sockets with buffers of that size instead
//! (`QuicEndpoint::with_socket`). Off by default.
//!
//! Seeding costs two RSA-4096 signatures per message (the client's item and A's assignment) and A's
//! evaluation of each: about 4.5 ms per message on the 2-core VM, so the default of 10,000 messages
//! seeds in about 42 s (plus the two RSA-4096 key generations, 4–6 s here, at worst a minute) and the
//! whole bench took 69 s in release.
//!
//! `cargo run --release -p cu-bench --bin quic_schedule -- [--messages 10000] [--runs 5]
//!  [--page-size 1000] [--window 1024] [--batch 512] [--latency-messages 200] [--udp-buffers 0]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cu_ans104::Wallet;
use cu_attest::NodeKey;
use cu_bench::engine::{arg, lua_wasm, machine};
use cu_http::HttpConfig;
use cu_node::{Node, NodeConfig};
use cu_quic::endpoint::BoxFuture;
use cu_quic::node::NodeService;
use cu_quic::{
    AllowList, Event, Peer, PeerPolicy, QuicConfig, QuicEndpoint, QuicStats, Reply, Service, SlotData,
};
use cu_upstream::wire::{SuEdge, SuNode, SuPage};
use tokio::sync::watch;

fn node_config(dir: &Path, wallet: Wallet, public_url: &str) -> NodeConfig {
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
        scheduler_role: true,
        network: None,
        checkpoint_uploads: None,
        model_budget: cu_node::DEFAULT_MODEL_BUDGET,
    }
}

fn count_message(user: &Wallet, pid: &str) -> Vec<u8> {
    user.sign_data_item(
        b"",
        &[
            ("Data-Protocol", "ao"),
            ("Variant", "ao.TN.1"),
            ("Type", "Message"),
            ("Action", "Count"),
        ],
        Some(pid),
        None,
    )
    .unwrap()
}

/// On-CPU time (ns) of this process's live threads, by side.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    publisher: u64,
    subscriber: u64,
    other: u64,
}

impl Cpu {
    fn now() -> Cpu {
        let mut cpu = Cpu::default();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let path = task.path();
            let (Ok(comm), Ok(stat)) = (
                std::fs::read_to_string(path.join("comm")),
                std::fs::read_to_string(path.join("schedstat")),
            ) else {
                continue; // the thread ended meanwhile
            };
            let ns: u64 = stat
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let comm = comm.trim();
            if comm.starts_with("pub") {
                cpu.publisher += ns;
            } else if comm.starts_with("sub") {
                cpu.subscriber += ns;
            } else {
                cpu.other += ns;
            }
        }
        cpu
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            publisher: self.publisher.saturating_sub(before.publisher),
            subscriber: self.subscriber.saturating_sub(before.subscriber),
            other: self.other.saturating_sub(before.other),
        }
    }

    fn total(&self) -> u64 {
        self.publisher + self.subscriber + self.other
    }
}

/// One timed read of the whole schedule.
#[derive(Debug, Clone, Copy)]
struct Sample {
    frames: u64,
    secs: f64,
    cpu: Cpu,
    /// Pages (HTTP) or `next_batch` calls (QUIC).
    batches: u64,
    /// Payload bytes received: HTTP bodies, or slot node bytes.
    bytes: u64,
    /// UDP datagrams received on this machine (both directions: loopback), and those dropped for a
    /// full receive buffer.
    udp: (u64, u64),
}

/// `/proc/net/snmp`'s `Udp: InDatagrams` and `RcvbufErrors`.
fn udp_counters() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return (0, 0);
    };
    let get = |want: &str| {
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == want)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    (get("InDatagrams"), get("RcvbufErrors"))
}

impl Sample {
    fn rate(&self) -> f64 {
        self.frames as f64 / self.secs
    }

    /// CPU ms per 10,000 frames.
    fn per_10k(&self, ns: u64) -> f64 {
        ns as f64 / 1e6 * 10_000.0 / self.frames as f64
    }
}

/// Reads the whole schedule over HTTP pages, as a network CU does, parsing every page.
fn http_read_all(agent: &ureq::Agent, url: &str, pid: &str, page_size: usize) -> (u64, u64, u64) {
    let mut from: Option<String> = None;
    let (mut frames, mut pages, mut bytes) = (0u64, 0u64, 0u64);
    loop {
        let mut u = format!("{url}/{pid}?process-id={pid}&limit={page_size}");
        if let Some(f) = &from {
            u.push_str(&format!("&from={f}"));
        }
        let mut resp = agent.get(&u).call().unwrap();
        assert_eq!(resp.status().as_u16(), 200, "GET {u}");
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .unwrap();
        bytes += body.len() as u64;
        let page: SuPage = serde_json::from_slice(&body).unwrap();
        pages += 1;
        frames += page.edges.len() as u64;
        let more = page.page_info.has_next_page;
        from = page.edges.last().map(|e| e.cursor.clone());
        black_box(&page);
        if !more || from.is_none() {
            break;
        }
    }
    (frames, pages, bytes)
}

/// Subscribes to `pid` from nonce 0 and receives `total` slots: (frames, batches, node bytes, seconds).
async fn quic_read_all(
    peer: Peer,
    pid: String,
    total: u64,
    batch: usize,
    parse: bool,
) -> (u64, u64, u64, f64) {
    let start = Instant::now();
    let mut sub = peer.subscribe(&pid, 0).await.unwrap();
    let (mut next, mut batches, mut bytes) = (0u64, 0u64, 0u64);
    while next < total {
        let events = sub.next_batch(batch).await.unwrap();
        batches += 1;
        let mut edges = Vec::with_capacity(if parse { events.len() } else { 0 });
        let mut last = None;
        for ev in events {
            if let Event::Slot(s) = ev {
                assert_eq!(s.nonce, next, "slots in order");
                next += 1;
                last = Some(s.nonce);
                bytes += s.node.len() as u64;
                if parse {
                    let node: SuNode = serde_json::from_slice(&s.node).unwrap();
                    edges.push(SuEdge {
                        cursor: s.cursor,
                        node,
                    });
                } else {
                    black_box(&s);
                }
            }
        }
        black_box(&edges);
        if let Some(last) = last {
            sub.consumed(last).await.unwrap();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(sub);
    (next, batches, bytes, secs)
}

/// The protocol's ceiling: a schedule served from memory, A's own node bytes and cursors.
struct Synthetic {
    pid: String,
    slots: Vec<SlotData>,
    bell: watch::Sender<u64>,
}

impl Service for Synthetic {
    fn slots(&self, process: String, from: u64, max: usize) -> BoxFuture<'_, Result<Vec<SlotData>, Reply>> {
        Box::pin(async move {
            if process != self.pid {
                return Err(Reply::error(404, format!("unknown process {process}")));
            }
            let from = usize::try_from(from).unwrap_or(usize::MAX).min(self.slots.len());
            Ok(self.slots[from..].iter().take(max).cloned().collect())
        })
    }

    fn bell(&self, _process: &str) -> watch::Receiver<u64> {
        self.bell.subscribe()
    }

    fn forward(&self, _item: Vec<u8>) -> BoxFuture<'_, Reply> {
        Box::pin(async { Reply::error(404, "synthetic schedule only") })
    }

    fn result(&self, _process: String, _message: String) -> BoxFuture<'_, Reply> {
        Box::pin(async { Reply::error(404, "synthetic schedule only") })
    }

    fn dry_run(&self, _process: String, _message: Vec<u8>) -> BoxFuture<'_, Reply> {
        Box::pin(async { Reply::error(404, "synthetic schedule only") })
    }
}

/// A QUIC endpoint on 127.0.0.1: `QuicEndpoint::bind` (the kernel's default socket buffers) when
/// `buffers` is 0, else over a socket whose receive and send buffers were asked for `buffers` bytes.
fn bind_quic(
    buffers: usize,
    config: QuicConfig,
    service: Option<Arc<dyn Service>>,
    stats: Arc<QuicStats>,
) -> QuicEndpoint {
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    if buffers == 0 {
        return QuicEndpoint::bind(local, config, service, stats).unwrap();
    }
    use quinn::Runtime as _;
    let socket = std::net::UdpSocket::bind(local).unwrap();
    let state = quinn::udp::UdpSocketState::new((&socket).into()).unwrap();
    state.set_recv_buffer_size((&socket).into(), buffers).unwrap();
    state.set_send_buffer_size((&socket).into(), buffers).unwrap();
    let got = state.recv_buffer_size((&socket).into()).unwrap();
    println!(
        "UDP socket {}: receive buffer {got} bytes",
        socket.local_addr().unwrap()
    );
    let socket = quinn::TokioRuntime.wrap_udp_socket(socket).unwrap();
    QuicEndpoint::with_socket(socket, config, service, stats).unwrap()
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        // Blocking-pool threads must outlive the runs: a thread that ends takes its CPU time with it.
        .thread_keep_alive(Duration::from_secs(3600))
        .enable_all()
        .build()
        .unwrap()
}

fn median_spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let mid = if !v.len().is_multiple_of(2) {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (mid, v[0], v[v.len() - 1])
}

fn fmt_spread((m, lo, hi): (f64, f64, f64), digits: usize) -> String {
    format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    let messages: usize = arg("--messages", 10_000);
    let runs: usize = arg("--runs", 5);
    let page_size: usize = arg("--page-size", 1000);
    let window: u32 = arg("--window", 1024);
    let batch: usize = arg("--batch", 512);
    let latency_messages: usize = arg("--latency-messages", 200);
    let rcvbuf: usize = arg("--udp-buffers", 0);
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("machine: {}", machine());
    let started = Instant::now();

    let pub_rt = runtime("pub");
    let sub_rt = runtime("sub");
    let su_wallet = Wallet::generate().unwrap();
    let user = Wallet::generate().unwrap();
    let dir_a = tempfile::tempdir().unwrap();

    // Node A, served over HTTP on loopback (publisher side).
    let listener = pub_rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let a = Node::open(node_config(dir_a.path(), su_wallet.clone(), &url)).unwrap();
    let app = cu_http::router(a.clone(), HttpConfig::default());
    pub_rt.spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .await
            .unwrap();
    });

    // Seed A: module, process, messages (not timed).
    println!(
        "set up (two RSA-4096 wallets generated) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
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
            b"quic-schedule",
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
        a.ingest(&count_message(&user, &pid)).unwrap();
    }
    let seeded_s = seeding.elapsed().as_secs_f64();
    // Let A evaluate its log first, so its engine is idle during the timed runs.
    pub_rt.block_on(a.state(&pid)).unwrap();
    println!(
        "seeded A: 1 process, {messages} messages in {seeded_s:.1} s, evaluated by {:.1} s (not timed below)",
        seeding.elapsed().as_secs_f64()
    );
    let total = messages as u64 + 1;

    // The synthetic schedule: A's own slots, read once.
    let mut slots = Vec::with_capacity(total as usize);
    while (slots.len() as u64) < total {
        let more = a.su_slots(&pid, slots.len() as u64, 5000).unwrap();
        assert!(!more.is_empty(), "A has {} slots, expected {total}", slots.len());
        slots.extend(
            more.into_iter()
                .map(|(nonce, cursor, node)| SlotData { nonce, cursor, node }),
        );
    }
    assert!(slots.iter().enumerate().all(|(i, s)| s.nonce == i as u64));
    let node_bytes: usize = slots.iter().map(|s| s.node.len()).sum();
    let mean_node = node_bytes as f64 / total as f64;
    println!("slot node JSON: {mean_node:.0} bytes on average ({node_bytes} in all)");
    // The publisher's own work per slot, no network: A's store reads and JSON, as each path asks.
    for _ in 0..2 {
        let t = Instant::now();
        let mut from = 0u64;
        while from < total {
            from += a.su_slots(&pid, from, 512).unwrap().len() as u64;
        }
        let slots_us = t.elapsed().as_secs_f64() * 1e6 / total as f64;
        let t = Instant::now();
        let (mut cursor, mut read) = (None::<String>, 0usize);
        loop {
            let page = a
                .su_messages(&pid, cursor.as_deref(), None, Some(page_size))
                .unwrap();
            let body = page.to_string(); // what `json_ok` sends
            let edges = page["edges"].as_array().unwrap();
            read += edges.len();
            cursor = edges.last().and_then(|e| e["cursor"].as_str()).map(str::to_owned);
            black_box(body);
            if page["page_info"]["has_next_page"] != true {
                break;
            }
        }
        assert_eq!(read as u64, total);
        let pages_us = t.elapsed().as_secs_f64() * 1e6 / total as f64;
        println!(
            "A alone, no network: `su_slots(from, 512)` {slots_us:.1} µs per slot (QUIC publisher); \
             `su_messages` pages of {page_size} + JSON text {pages_us:.1} µs per slot (HTTP route)"
        );
    }

    // QUIC: A's NodeService and the synthetic service on the publisher runtime, a client on the other.
    let server_key = Arc::new(NodeKey::from_seed([1; 32]));
    let client_key = Arc::new(NodeKey::from_seed([2; 32]));
    let policy = |key: &NodeKey| PeerPolicy {
        allow: AllowList::Keys(HashSet::from([key.public_key()])),
        evidence: None,
    };
    let mut server_config = QuicConfig::new(server_key.clone(), policy(&client_key));
    server_config.window = window;
    let mut client_config = QuicConfig::new(client_key.clone(), policy(&server_key));
    client_config.window = window;
    let (ep_a, ep_syn) = {
        let _guard = pub_rt.enter();
        let ep_a = bind_quic(
            rcvbuf,
            server_config.clone(),
            Some(Arc::new(NodeService::new(a.clone()))),
            Arc::new(QuicStats::default()),
        );
        let synthetic = Synthetic {
            pid: pid.clone(),
            slots: slots.clone(),
            bell: watch::channel(0).0,
        };
        let ep_syn = bind_quic(
            rcvbuf,
            server_config,
            Some(Arc::new(synthetic)),
            Arc::new(QuicStats::default()),
        );
        (ep_a, ep_syn)
    };
    let client = {
        let _guard = sub_rt.enter();
        Arc::new(bind_quic(
            rcvbuf,
            client_config,
            None,
            Arc::new(QuicStats::default()),
        ))
    };
    let connect = |addr: SocketAddr| {
        let c = client.clone();
        sub_rt
            .block_on(sub_rt.spawn(async move { c.connect(addr).await }))
            .unwrap()
            .unwrap()
    };
    let peer_a = connect(ep_a.local_addr().unwrap());
    let peer_syn = connect(ep_syn.local_addr().unwrap());

    // The HTTP client: one keep-alive agent on a thread of its own, kept for every run.
    let (job_tx, job_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<(u64, u64, u64, f64)>();
    let http_thread = {
        let (url, pid) = (url.clone(), pid.clone());
        std::thread::Builder::new()
            .name("sub-http".into())
            .spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(600)))
                    .build()
                    .into();
                for () in job_rx {
                    let start = Instant::now();
                    let (frames, pages, bytes) = http_read_all(&agent, &url, &pid, page_size);
                    done_tx
                        .send((frames, pages, bytes, start.elapsed().as_secs_f64()))
                        .unwrap();
                }
            })
            .unwrap()
    };

    // Same JSON both ways: an HTTP edge's node is the slot's node.
    {
        let agent: ureq::Agent = ureq::Agent::new_with_defaults();
        let mut resp = agent
            .get(format!("{url}/{pid}?process-id={pid}&limit=3"))
            .call()
            .unwrap();
        let body = resp.body_mut().read_to_vec().unwrap();
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for (i, edge) in page["edges"].as_array().unwrap().iter().enumerate() {
            let node: serde_json::Value = serde_json::from_slice(&slots[i].node).unwrap();
            assert_eq!(edge["node"], node, "HTTP edge {i} and QUIC slot {i} differ");
            assert_eq!(edge["cursor"].as_str(), Some(slots[i].cursor.as_str()));
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Kind {
        Http,
        QuicNode { parse: bool },
        QuicSynthetic { parse: bool },
    }
    let paths = [
        (Kind::Http, "HTTP pages (`GET /{pid}`, ureq, `SuPage` parse)"),
        (
            Kind::QuicNode { parse: true },
            "QUIC, A's NodeService, `SuNode` parse",
        ),
        (Kind::QuicNode { parse: false }, "QUIC, A's NodeService, no parse"),
        (
            Kind::QuicSynthetic { parse: true },
            "QUIC, synthetic service, `SuNode` parse",
        ),
        (
            Kind::QuicSynthetic { parse: false },
            "QUIC, synthetic service, no parse",
        ),
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); paths.len()];
    let run_one = |path: Kind| -> Sample {
        std::thread::sleep(Duration::from_millis(100)); // the previous run's tail ends
        let udp_before = udp_counters();
        let before = Cpu::now();
        let (frames, batches, bytes, secs) = match path {
            Kind::Http => {
                job_tx.send(()).unwrap();
                done_rx.recv().unwrap()
            }
            Kind::QuicNode { parse } | Kind::QuicSynthetic { parse } => {
                let peer = if matches!(path, Kind::QuicNode { .. }) {
                    peer_a.clone()
                } else {
                    peer_syn.clone()
                };
                let fut = quic_read_all(peer, pid.clone(), total, batch, parse);
                sub_rt.block_on(sub_rt.spawn(fut)).unwrap()
            }
        };
        let cpu = Cpu::now().since(before);
        let udp_after = udp_counters();
        let udp = (udp_after.0 - udp_before.0, udp_after.1 - udp_before.1);
        assert_eq!(frames, total, "every slot received");
        Sample {
            frames,
            secs,
            cpu,
            batches,
            bytes,
            udp,
        }
    };
    // One warm-up pass of each (connections, page cache, allocator), not counted.
    for (path, _) in paths {
        run_one(path);
    }
    println!(
        "run  path                                              frames/s   CPU ms/10k (pub+sub+other)   UDP datagrams in / per frame / dropped (rcvbuf)"
    );
    for run in 0..runs {
        for (i, (path, name)) in paths.iter().enumerate() {
            let s = run_one(*path);
            println!(
                "{run:>3}  {name:<48} {:>9.0}   {:.0} ({:.0}+{:.0}+{:.0})   {} / {:.2} / {}",
                s.rate(),
                s.per_10k(s.cpu.total()),
                s.per_10k(s.cpu.publisher),
                s.per_10k(s.cpu.subscriber),
                s.per_10k(s.cpu.other),
                s.udp.0,
                s.udp.0 as f64 / s.frames as f64,
                s.udp.1,
            );
            samples[i].push(s);
        }
    }

    // Latency: a caught-up subscription to A, then one message at a time.
    let signed: Vec<Vec<u8>> = (0..latency_messages)
        .map(|_| count_message(&user, &pid))
        .collect();
    let (seen_tx, seen_rx) = mpsc::channel::<(u64, Instant)>();
    let follower = {
        let (peer, pid) = (peer_a.clone(), pid.clone());
        sub_rt.spawn(async move {
            let mut sub = peer.subscribe(&pid, 0).await.unwrap();
            loop {
                let events = sub.next_batch(batch).await.unwrap();
                let at = Instant::now();
                let mut last = None;
                for ev in events {
                    if let Event::Slot(s) = ev {
                        let node: SuNode = serde_json::from_slice(&s.node).unwrap();
                        black_box(SuEdge {
                            cursor: s.cursor,
                            node,
                        });
                        last = Some(s.nonce);
                        let _ = seen_tx.send((s.nonce, at));
                    }
                }
                if let Some(last) = last {
                    sub.consumed(last).await.unwrap();
                }
            }
        })
    };
    while seen_rx.recv_timeout(Duration::from_secs(60)).unwrap().0 < total - 1 {}
    std::thread::sleep(Duration::from_millis(200));
    let mut lat_ms = Vec::with_capacity(latency_messages);
    let mut e2e_ms = Vec::with_capacity(latency_messages);
    let mut early = 0usize;
    for (i, raw) in signed.iter().enumerate() {
        let nonce = total + i as u64;
        let called = Instant::now();
        a.ingest(raw).unwrap();
        let t0 = Instant::now();
        let at = loop {
            let (n, at) = seen_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            if n == nonce {
                break at;
            }
            assert!(n < nonce, "slot {n} arrived before {nonce}");
        };
        if at < t0 {
            early += 1;
        }
        lat_ms.push(at.saturating_duration_since(t0).as_secs_f64() * 1000.0);
        e2e_ms.push(at.duration_since(called).as_secs_f64() * 1000.0);
    }
    follower.abort();
    let percentiles = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
        (pct(0.50), pct(0.99), v[v.len() - 1])
    };
    let (p50, p99, max) = percentiles(lat_ms);
    let (e50, e99, emax) = percentiles(e2e_ms);

    // The report.
    println!();
    println!("command: {command}");
    println!(
        "{messages} messages ({total} slots, {mean_node:.0}-byte nodes on average), {runs} interleaved runs after one warm-up, \
         page size {page_size}, window {window}, next_batch({batch}); CPU = on-CPU time of every thread of this process \
         (publisher `pub` + subscriber `sub` + other), ms per 10,000 frames"
    );
    println!();
    println!(
        "| path | frames/s, median (min–max) | node MB/s | CPU ms / 10k frames, total | publisher | subscriber | other | slots per page / per next_batch |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut medians = Vec::new();
    for (i, (_, name)) in paths.iter().enumerate() {
        let s = &samples[i];
        let rate = median_spread(s.iter().map(Sample::rate).collect());
        medians.push(rate.0);
        let cpu = |f: fn(&Cpu) -> u64| {
            fmt_spread(median_spread(s.iter().map(|x| x.per_10k(f(&x.cpu))).collect()), 0)
        };
        let per_batch = s[0].frames as f64 / s[0].batches as f64;
        println!(
            "| {name} | **{}** ({}–{}) | {:.0} | {} | {} | {} | {} | {per_batch:.1} |",
            thousands(rate.0),
            thousands(rate.1),
            thousands(rate.2),
            rate.0 * mean_node / 1e6,
            cpu(Cpu::total),
            cpu(|c| c.publisher),
            cpu(|c| c.subscriber),
            cpu(|c| c.other),
        );
    }
    println!();
    let http_bytes = samples[0][0].bytes as f64 / total as f64;
    println!(
        "HTTP body bytes per slot: {http_bytes:.0}; QUIC node bytes per slot: {:.0}",
        samples[1][0].bytes as f64 / total as f64
    );
    println!(
        "QUIC/HTTP frames/s (medians, both with the parse): **{:.1}×** (goal ≥ 10×); synthetic ceiling with parse {:.1}×, \
         without {:.1}× (goal ≥ 150,000 frames/s: {})",
        medians[1] / medians[0],
        medians[3] / medians[0],
        medians[4] / medians[0],
        if medians[4] >= 150_000.0 { "met" } else { "not met" },
    );
    println!();
    println!(
        "| latency, `ingest` returns → subscriber has the slot | p50 | p99 | max | arrived before `t0` |"
    );
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {latency_messages} messages, one at a time (goals: p50 ≤ 1 ms, p99 ≤ 5 ms) | **{p50:.3} ms** | **{p99:.3} ms** | {max:.3} ms | {early} |"
    );
    println!(
        "| the same from the `ingest` call (verify, RSA-4096 assignment signature, commit) | {e50:.3} ms | {e99:.3} ms | {emax:.3} ms | |"
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());

    drop(job_tx);
    http_thread.join().unwrap();
    ep_a.close();
    ep_syn.close();
    client.close();
    // The endpoints and the server tasks (HTTP and QUIC) hold clones of A: stop them first.
    drop((peer_a, peer_syn, ep_a, ep_syn, client));
    drop(sub_rt);
    drop(pub_rt);
    a.shutdown().unwrap();
}
