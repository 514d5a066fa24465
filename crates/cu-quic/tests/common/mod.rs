//! Shared helpers of cu-quic's integration tests: an in-memory [`Service`] with one schedule, endpoints
//! that admit each other by key, and a bounded wait.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cu_attest::NodeKey;
use cu_quic::endpoint::BoxFuture;
use cu_quic::{AllowList, PeerPolicy, QuicConfig, QuicEndpoint, QuicStats, Reply, Service, SlotData};
use tokio::sync::watch;

/// The process every test subscribes to.
pub const PROCESS: &str = "test-process-0000000000000000000000000000000";

/// The edge cursor of slot `n`.
pub fn cursor_of(n: u64) -> String {
    format!("{}", 1_700_000_000_000u64 + n)
}

/// The SU wire node of slot `n`: `{message, assignment}` JSON of about 1 KB naming its nonce.
pub fn node_of(n: u64) -> Vec<u8> {
    let pad = "x".repeat(900);
    serde_json::json!({
        "message": { "id": format!("message-{n}"), "data": pad },
        "assignment": { "nonce": n, "process": PROCESS },
    })
    .to_string()
    .into_bytes()
}

/// Checks that a received slot is exactly what [`TestService::push`] scheduled for its nonce.
pub fn assert_slot(slot: &SlotData) {
    assert_eq!(
        slot.cursor,
        cursor_of(slot.nonce),
        "cursor of slot {}",
        slot.nonce
    );
    let node: serde_json::Value = serde_json::from_slice(&slot.node).expect("slot node is JSON");
    assert_eq!(
        node["assignment"]["nonce"], slot.nonce,
        "node of slot {}",
        slot.nonce
    );
    assert_eq!(
        slot.node,
        node_of(slot.nonce),
        "node bytes of slot {}",
        slot.nonce
    );
}

/// One in-memory schedule (nonce = index) and a bell rung at every push.
#[derive(Debug)]
pub struct TestService {
    slots: Mutex<Vec<SlotData>>,
    bell: watch::Sender<u64>,
    in_flight: AtomicUsize,
    /// The most `result` requests in progress at once.
    pub max_in_flight: AtomicUsize,
    /// Items forwarded.
    pub forwarded: Mutex<Vec<Vec<u8>>>,
}

impl TestService {
    pub fn new() -> Arc<TestService> {
        Arc::new(TestService {
            slots: Mutex::new(Vec::new()),
            bell: watch::channel(0).0,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            forwarded: Mutex::new(Vec::new()),
        })
    }

    /// Schedules the next nonce and rings the bell; returns the nonce.
    pub fn push(&self) -> u64 {
        let n = {
            let mut slots = self.slots.lock().unwrap();
            let n = slots.len() as u64;
            slots.push(SlotData {
                nonce: n,
                cursor: cursor_of(n),
                node: node_of(n),
            });
            n
        };
        self.bell.send_modify(|v| *v += 1);
        n
    }

    /// Schedules `count` slots.
    pub fn push_many(&self, count: u64) {
        for _ in 0..count {
            self.push();
        }
    }

    /// Slots scheduled so far.
    pub fn len(&self) -> u64 {
        self.slots.lock().unwrap().len() as u64
    }
}

fn unknown_process(process: &str) -> Reply {
    Reply::error(404, format!("unknown process {process}"))
}

impl Service for TestService {
    fn slots(&self, process: String, from: u64, max: usize) -> BoxFuture<'_, Result<Vec<SlotData>, Reply>> {
        Box::pin(async move {
            if process != PROCESS {
                return Err(unknown_process(&process));
            }
            let slots = self.slots.lock().unwrap();
            let from = usize::try_from(from).unwrap_or(usize::MAX).min(slots.len());
            Ok(slots[from..].iter().take(max).cloned().collect())
        })
    }

    fn bell(&self, _process: &str) -> watch::Receiver<u64> {
        self.bell.subscribe()
    }

    fn forward(&self, item: Vec<u8>) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let len = item.len();
            self.forwarded.lock().unwrap().push(item);
            Reply {
                status: 202,
                body: serde_json::json!({ "forwarded": len }).to_string().into_bytes(),
            }
        })
    }

    fn result(&self, process: String, message: String) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            // Answers take different times, so replies come back out of order.
            let delay = message.bytes().map(u64::from).sum::<u64>() % 7;
            tokio::time::sleep(Duration::from_millis(delay)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            Reply {
                status: 200,
                body: serde_json::json!({ "process": process, "message": message })
                    .to_string()
                    .into_bytes(),
            }
        })
    }

    fn dry_run(&self, process: String, message: Vec<u8>) -> BoxFuture<'_, Reply> {
        Box::pin(async move {
            let message: serde_json::Value = match serde_json::from_slice(&message) {
                Ok(m) => m,
                Err(e) => return Reply::error(400, e),
            };
            Reply {
                status: 200,
                body: serde_json::json!({ "process": process, "dry_run": message })
                    .to_string()
                    .into_bytes(),
            }
        })
    }
}

/// The node key of seed `n`.
pub fn key(n: u8) -> Arc<NodeKey> {
    Arc::new(NodeKey::from_seed([n; 32]))
}

/// An allow-list of the keys of these seeds.
pub fn allow(seeds: &[u8]) -> AllowList {
    AllowList::Keys(seeds.iter().map(|&n| key(n).public_key()).collect::<HashSet<_>>())
}

/// A config for seed `n` that admits the keys of `allowed` seeds.
pub fn config(n: u8, allowed: &[u8]) -> QuicConfig {
    QuicConfig::new(
        key(n),
        PeerPolicy {
            allow: allow(allowed),
            evidence: None,
        },
    )
}

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A server node serving a fresh [`TestService`].
pub struct Server {
    pub endpoint: QuicEndpoint,
    pub service: Arc<TestService>,
    pub stats: Arc<QuicStats>,
    pub addr: SocketAddr,
}

pub fn server_with(config: QuicConfig) -> Server {
    let service = TestService::new();
    let stats = Arc::new(QuicStats::default());
    let dyn_service: Arc<dyn Service> = service.clone();
    let endpoint = QuicEndpoint::bind(localhost(), config, Some(dyn_service), stats.clone()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    Server {
        endpoint,
        service,
        stats,
        addr,
    }
}

/// A client-only endpoint (no service).
pub fn client_with(config: QuicConfig) -> QuicEndpoint {
    QuicEndpoint::bind(localhost(), config, None, Arc::new(QuicStats::default())).unwrap()
}

/// Seed of the server in [`pair`].
pub const SERVER: u8 = 1;
/// Seed of the client in [`pair`].
pub const CLIENT: u8 = 2;

/// A server (seed 1) and a client (seed 2) that admit each other; `tweak` adjusts each config.
pub fn pair(
    server_tweak: impl FnOnce(&mut QuicConfig),
    client_tweak: impl FnOnce(&mut QuicConfig),
) -> (Server, QuicEndpoint) {
    let mut sc = config(SERVER, &[CLIENT]);
    server_tweak(&mut sc);
    let mut cc = config(CLIENT, &[SERVER]);
    client_tweak(&mut cc);
    (server_with(sc), client_with(cc))
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
