//! [`Node`]: the node itself (configuration, start-up, shutdown, shared state). Its use cases are one
//! module per role, each an `impl Node`: `mu` (ingest, assign), `outbox` (delivery), `cu` (result,
//! results, cron, dry-run, state), `su` (SU reads), `gateway` (GraphQL, raw data, headers), `hbu`,
//! `network` (remote processes), `bundler` (uploads), `checkpoints` (Arweave), `metrics`. Async use
//! cases run every store call on the blocking pool (`Node::off_worker`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use cu_ans104::Wallet;
use cu_engine::{Engine, EngineConfig};
use cu_scheduler::Scheduler;
use cu_store::{ProcessRecord, Store, StoreOptions, Tag};
use cu_wasm::Loader;
use serde_json::{Value, json};

use crate::error::NodeError;
use crate::quota::{QuotaBook, UploadQuota};

/// Default most bytes of an ingested data item.
pub const DEFAULT_MAX_ITEM_BYTES: usize = 64 << 20;
/// Reference default `PROCESS_WASM_MEMORY_MAX_LIMIT` (1 GiB); the operator's value is
/// `NodeConfig::engine.limits.max_memory`.
pub const MEMORY_MAX_LIMIT: u64 = cu_types::limits::MEMORY_MAX_LIMIT;
/// Reference default `PROCESS_WASM_COMPUTE_MAX_LIMIT`; the operator's value is
/// `NodeConfig::engine.limits.max_compute`.
pub const COMPUTE_MAX_LIMIT: u64 = cu_types::limits::COMPUTE_MAX_LIMIT;

/// How a node runs.
#[derive(Clone)]
pub struct NodeConfig {
    /// Data directory (the store lives here).
    pub data_dir: PathBuf,
    /// The node wallet: signs assignments and pushed messages.
    pub wallet: Wallet,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Store settings.
    pub store: StoreOptions,
    /// Compiled-module cache directory.
    pub aot_cache: Option<PathBuf>,
    /// Most bytes of an ingested item (413 beyond).
    pub max_item_bytes: usize,
    /// Generate cron messages.
    pub cron: bool,
    /// The clock (ms since the epoch); tests pass a fake.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    /// The node's public URL (its Scheduler-Location `Url`).
    pub public_url: String,
    /// hbu mode: require every posted assignment to verify as a signed ANS-104 item
    /// ([`hbu::verify_assignment`]). Off by default: HyperBEAM's aos-2 JSON carries httpsig commitments.
    pub hbu_verify_signatures: bool,
    /// Bytes of data items one wallet may post per window through [`Node::ingest`] (429 beyond);
    /// `None`: no quota.
    pub upload_quota: Option<UploadQuota>,
    /// Network mode: compute processes that remote SUs schedule ([`crate::network`]); `None`: off.
    pub network: Option<crate::NetworkConfig>,
    /// Upload process checkpoints to Arweave through a bundler ([`crate::checkpoints`]); `None`: off.
    pub checkpoint_uploads: Option<crate::CheckpointUploads>,
    /// Whether this node is an SU: its MU schedules here. `false` (an MU without the SU role, network
    /// mode): every message and spawn goes to the SU that schedules it.
    pub scheduler_role: bool,
    /// Bytes of language models (`ao_tensor.model_*`) the node keeps converted for its processes
    /// ([`cu_wasm::models`]); they also count against the engine's memory budget.
    pub model_budget: u64,
}

pub(crate) struct Inner {
    /// Processes taken over from other nodes (cluster mode).
    pub(crate) cluster_moves: AtomicU64,
    /// The client that hands outbox items to the nodes that own their targets (cluster mode).
    pub(crate) peers: Option<cu_upstream::http::Fetcher>,
    pub(crate) store: Store,
    pub(crate) engine: Engine,
    pub(crate) scheduler: Scheduler,
    pub(crate) wallet: Arc<Wallet>,
    pub(crate) address: String,
    pub(crate) clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    pub(crate) max_item_bytes: usize,
    pub(crate) limits: cu_engine::LimitPolicy,
    pub(crate) public_url: String,
    pub(crate) hbu_verify_signatures: bool,
    pub(crate) upload_quota: Option<QuotaBook>,
    /// hbu mode: the last slot evaluated per process, with its assignment id and hash chain, so the next
    /// slot's `Hash-Chain` is checked against it (after a restart only its presence is, as the reference
    /// CU does on a hot start that lacks them).
    pub(crate) hbu_chain: std::sync::Mutex<std::collections::HashMap<String, crate::hbu::HbuLink>>,
    pub(crate) ingested: AtomicU64,
    /// Whether this node schedules (`NodeConfig::scheduler_role`).
    pub(crate) scheduler_role: bool,
    /// Items the MU handed to a remote SU (network mode).
    pub(crate) forwarded: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// Data items stored through the bundler surface ([`Node::upload`]).
    pub(crate) uploaded: AtomicU64,
    pub(crate) outbox: std::sync::Mutex<Option<std::sync::mpsc::Sender<String>>>,
    /// Network mode: the upstream SU and gateway (`None`: only local and hbu processes).
    pub(crate) network: Option<crate::network::Network>,
    /// The checkpoint uploader (`None`: uploads off).
    pub(crate) uploader: Option<crate::checkpoints::Uploader>,
    pub(crate) checkpoint_stats: crate::checkpoints::CheckpointStats,
    /// Rung when a process's log grows ([`Node::schedule_bell`]).
    pub(crate) bells: crate::bells::ScheduleBells,
    /// Another way to hand items to a remote SU than HTTP ([`Node::set_item_transport`]).
    pub(crate) item_transport: std::sync::OnceLock<Arc<dyn ItemTransport>>,
}

/// A transport to hand a data item to a remote SU other than its HTTP `POST /` (the QUIC protocol,
/// installed by the binary once its endpoint runs).
pub trait ItemTransport: Send + Sync {
    /// Posts `raw` to the SU at `su_url` and answers its JSON reply; `None` when this transport does
    /// not reach that SU (the MU then posts over HTTP). Blocking.
    fn post_item(&self, su_url: &str, raw: &[u8]) -> Option<Result<serde_json::Value, NodeError>>;
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) fn bad(e: impl std::fmt::Display) -> NodeError {
    NodeError::BadRequest(e.to_string())
}

pub(crate) fn tag_of<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

pub(crate) fn store_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(n, v)| Tag {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

pub(crate) fn tags_value(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"name": t.name, "value": t.value}))
            .collect(),
    )
}

impl Node {
    /// Opens the store in `data_dir`, starts the engine and the scheduler.
    pub fn open(config: NodeConfig) -> Result<Node, NodeError> {
        let store = Store::open(&config.data_dir, config.store.clone())?;
        let loader = Arc::new(
            Loader::new(config.aot_cache.clone().map(cu_wasm::AotCache::new))
                .map_err(|e| NodeError::Internal(e.to_string()))?,
        );
        // WeaveDrive: the node's store, and in network mode the gateway (with a cache in the data dir).
        let gateway_drive = config.network.as_ref().map(|network| {
            let up = &network.upstream;
            crate::drive::GatewayDrive::new(
                cu_upstream::http::Fetcher::new(up.http.clone()),
                up.graphql_url.clone(),
                up.arweave_url.clone(),
                config.data_dir.join("weavedrive"),
            )
        });
        let drive = crate::drive::NodeDrive::new(
            crate::drive::LocalDrive::new(store.clone(), config.clock.clone()),
            gateway_drive,
        );
        let drive: Arc<dyn cu_wasm::drive::DriveSource> = Arc::new(drive);
        let process_config = cu_wasm::ProcessConfig {
            this_program: config.engine.this_program.clone(),
            drive: Some(cu_wasm::drive::Drive {
                source: drive.clone(),
                spawn_tags: Vec::new(),
                module_tags: Vec::new(),
            }),
            // Models are data items too: read from the store, or in network mode the gateway.
            models: Some(cu_wasm::models::ModelHost {
                registry: Arc::new(cu_wasm::models::ModelRegistry::new(config.model_budget)),
                source: drive,
            }),
            ..cu_wasm::ProcessConfig::default()
        };
        let engine = Engine::start_with(config.engine.clone(), store.clone(), loader, process_config, None)?;
        let wallet = Arc::new(config.wallet);
        let scheduler = Scheduler::new(store.clone(), wallet.clone(), config.cron);
        let node = Node {
            inner: Arc::new(Inner {
                cluster_moves: AtomicU64::new(0),
                peers: store.ownership().map(|_| {
                    cu_upstream::http::Fetcher::new(cu_upstream::http::HttpOptions {
                        timeout: std::time::Duration::from_secs(10),
                        retries: 3,
                        backoff: std::time::Duration::from_millis(200),
                        max_body: 1 << 20,
                    })
                }),
                address: wallet.address(),
                store,
                engine,
                scheduler,
                wallet,
                clock: config.clock,
                max_item_bytes: config.max_item_bytes,
                limits: config.engine.limits,
                public_url: config.public_url,
                hbu_verify_signatures: config.hbu_verify_signatures,
                upload_quota: config.upload_quota.map(QuotaBook::new),
                hbu_chain: std::sync::Mutex::default(),
                ingested: AtomicU64::new(0),
                forwarded: AtomicU64::new(0),
                scheduler_role: config.scheduler_role,
                delivered: AtomicU64::new(0),
                uploaded: AtomicU64::new(0),
                outbox: std::sync::Mutex::new(None),
                network: config.network.map(crate::network::Network::new).transpose()?,
                uploader: config.checkpoint_uploads.map(crate::checkpoints::Uploader::new),
                checkpoint_stats: crate::checkpoints::CheckpointStats::default(),
                bells: crate::bells::ScheduleBells::default(),
                item_transport: std::sync::OnceLock::new(),
            }),
        };
        if node.clustered() && node.inner.network.is_some() {
            return Err(NodeError::BadRequest(
                "cluster mode (process ownership) computes the processes its own nodes schedule; it \
                 cannot be combined with network mode yet"
                    .into(),
            ));
        }
        node.start_cluster()?;
        node.start_outbox()?;
        node.start_catch_up()?;
        node.start_checkpoint_uploads()?;
        Ok(node)
    }

    /// Starts the outbox delivery thread and queues every known process once (delivery resumes after a
    /// restart where it stopped).
    pub(crate) fn start_outbox(&self) -> Result<(), NodeError> {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("cu-node-outbox".into())
            .spawn(move || {
                // Processes whose delivery failed (a target's node unreachable, a store error), tried
                // again after a pause even if nothing new is scheduled on them.
                let mut retry: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
                let pause = std::time::Duration::from_millis(500);
                let mut retried = std::time::Instant::now();
                loop {
                    let mut pids: Vec<String> = match rx.recv_timeout(pause) {
                        Ok(pid) => vec![pid],
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Vec::new(),
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    if retried.elapsed() >= pause {
                        retried = std::time::Instant::now();
                        pids.extend(std::mem::take(&mut retry));
                    }
                    let Some(inner) = weak.upgrade() else { break };
                    let node = Node { inner };
                    for pid in pids {
                        if let Err(e) = node.deliver(&pid) {
                            tracing::warn!(process = %pid, error = %e, "outbox delivery (tried again shortly)");
                            retry.insert(pid);
                        }
                    }
                }
            })
            .map_err(|e| NodeError::Internal(format!("cannot start the outbox thread: {e}")))?;
        for pid in self.inner.store.process_ids()? {
            let _ = tx.send(pid);
        }
        if let Ok(mut g) = self.inner.outbox.lock() {
            *g = Some(tx);
        }
        Ok(())
    }

    pub(crate) fn notify(&self, pid: &str) {
        let _ = self.inner.engine.advance(pid);
        self.inner.bells.ring(pid);
        self.queue_outbox(pid);
    }

    /// Queues `pid` for outbox delivery.
    pub(crate) fn queue_outbox(&self, pid: &str) {
        if let Ok(g) = self.inner.outbox.lock()
            && let Some(tx) = g.as_ref()
        {
            let _ = tx.send(pid.to_string());
        }
    }

    /// A value that changes whenever slots are appended to `pid`'s log (scheduled here or read from
    /// its SU).
    pub fn schedule_bell(&self, pid: &str) -> tokio::sync::watch::Receiver<u64> {
        self.inner.bells.listen(pid)
    }

    /// Makes the MU hand items to remote SUs through `transport` where it reaches them (once; a second
    /// call is ignored).
    pub fn set_item_transport(&self, transport: Arc<dyn ItemTransport>) {
        let _ = self.inner.item_transport.set(transport);
    }

    /// The node wallet's address.
    pub fn address(&self) -> String {
        self.inner.address.clone()
    }

    /// The local chain's block height at `now` (ms): what `GET /timestamp`, `GET /` and GraphQL
    /// `blocks` report.
    pub fn block_height_at(&self, now: u64) -> u64 {
        cu_scheduler::block_height(now)
    }

    /// The node's clock (ms).
    pub fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    /// Runs `f` on tokio's blocking pool, so that store (SQLite) calls never run on an async worker.
    pub(crate) async fn off_worker<T, F>(&self, f: F) -> Result<T, NodeError>
    where
        F: FnOnce(&Node) -> Result<T, NodeError> + Send + 'static,
        T: Send + 'static,
    {
        let node = self.clone();
        tokio::task::spawn_blocking(move || f(&node))
            .await
            .map_err(|e| NodeError::Internal(format!("a blocking store task failed: {e}")))?
    }

    pub(crate) fn known_process(&self, process_id: &str) -> Result<ProcessRecord, NodeError> {
        self.inner
            .store
            .process(process_id)?
            .ok_or_else(|| NodeError::NotFound(format!("Process {process_id} was not found")))
    }

    /// Whether this node held the store lease (a shared PostgreSQL store) and another node took it over:
    /// its writes are fenced off, and it must stop serving.
    pub fn lease_lost(&self) -> bool {
        self.inner
            .store
            .lease()
            .is_some_and(cu_store::lease::LeaseState::lost)
    }

    /// Stops outbox delivery and the engine (checkpointing per policy). Waits up to 60 s for other
    /// clones (an outbox delivery in progress) to go away.
    pub fn shutdown(self) -> Result<(), NodeError> {
        if let Ok(mut g) = self.inner.outbox.lock() {
            g.take();
        }
        let mut inner = self.inner;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match Arc::try_unwrap(inner) {
                Ok(i) => {
                    i.engine.shutdown()?;
                    return Ok(());
                }
                Err(still) if std::time::Instant::now() < deadline => {
                    inner = still;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(_) => {
                    return Err(NodeError::Internal(
                        "the node is still in use (clones alive)".into(),
                    ));
                }
            }
        }
    }
}

/// Refuses a spawn whose `Memory-Limit` or `Compute-Limit` (the process's tag, else the module's) exceeds
/// the operator's maximum (413), as the reference does with `PROCESS_WASM_*_MAX_LIMIT`.
pub(crate) fn check_limits(
    process_tags: &[(String, String)],
    module_tags: &[Tag],
    limits: &cu_engine::LimitPolicy,
) -> Result<(), NodeError> {
    let pick = |name: &str| {
        tag_of(process_tags, name).map(str::to_string).or_else(|| {
            module_tags
                .iter()
                .find(|t| t.name == name)
                .map(|t| t.value.clone())
        })
    };
    if let Some(m) = pick("Memory-Limit") {
        let v = cu_types::parse_memory_limit(&m).map_err(|e| bad(e.to_string()))?;
        if v > limits.max_memory {
            return Err(NodeError::TooLarge(format!(
                "Memory-Limit {m} exceeds the maximum of {} bytes",
                limits.max_memory
            )));
        }
    }
    if let Some(c) = pick("Compute-Limit") {
        let v = cu_types::parse_compute_limit(&c).map_err(|e| bad(e.to_string()))?;
        if v > limits.max_compute {
            return Err(NodeError::TooLarge(format!(
                "Compute-Limit {c} exceeds the maximum of {}",
                limits.max_compute
            )));
        }
    }
    Ok(())
}
