//! [`Node`]: the use cases.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cu_ans104::{DataItem, Wallet};
use cu_engine::{Engine, EngineConfig};
use cu_scheduler::{Assigned, ScheduleRequest, Scheduler, wire};
use cu_store::{ModuleRecord, ProcessRecord, ResultsQuery, Sort, Store, StoreOptions, Tag};
use cu_wasm::Loader;
use serde_json::{Map, Value, json};

use crate::error::NodeError;
use crate::network::Refresh;
use crate::quota::{QuotaBook, UploadQuota};
use crate::{graphql, hbu};

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
}

/// What [`Node::ingest`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestKind {
    /// A module was registered.
    Module,
    /// A process was spawned.
    Process,
    /// A message was scheduled.
    Message,
}

/// The answer to [`Node::ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingested {
    /// The item id.
    pub id: String,
    /// What it was.
    pub kind: IngestKind,
}

/// Query of `/results` and `/cron`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultsParams {
    /// Exclusive lower bound: a cursor or a timestamp.
    pub from: Option<String>,
    /// Inclusive upper bound: a cursor or a timestamp.
    pub to: Option<String>,
    /// `ASC` or `DESC`.
    pub sort: Option<String>,
    /// Most items.
    pub limit: Option<usize>,
}

/// The answer to [`Node::state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateReply {
    /// Timestamp of the last evaluated message.
    pub timestamp: u64,
    /// Its ordinate (nonce as a string).
    pub ordinate: String,
    /// Its block height.
    pub block_height: u64,
    /// The linear memory.
    pub memory: Vec<u8>,
}

pub(crate) struct Inner {
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
    hbu_chain: std::sync::Mutex<std::collections::HashMap<String, HbuLink>>,
    pub(crate) ingested: AtomicU64,
    pub(crate) delivered: AtomicU64,
    /// Data items stored through the bundler surface ([`Node::upload`]).
    pub(crate) uploaded: AtomicU64,
    pub(crate) outbox: std::sync::Mutex<Option<std::sync::mpsc::Sender<String>>>,
    /// Network mode: the upstream SU and gateway (`None`: only local and hbu processes).
    pub(crate) network: Option<crate::network::Network>,
    /// The checkpoint uploader (`None`: uploads off).
    pub(crate) uploader: Option<crate::checkpoints::Uploader>,
    pub(crate) checkpoint_stats: crate::checkpoints::CheckpointStats,
}

/// The last hbu slot evaluated for a process: what the next slot's `Hash-Chain` must follow from.
struct HbuLink {
    slot: u64,
    assignment_id: String,
    hash_chain: String,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

fn bad(e: impl std::fmt::Display) -> NodeError {
    NodeError::BadRequest(e.to_string())
}

fn tag_of<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn store_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(n, v)| Tag {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

fn tags_value(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"name": t.name, "value": t.value}))
            .collect(),
    )
}

/// The msg of a scheduled message exactly as the reference CU builds it (§2.7 key order).
pub fn build_msg(item: &DataItem, a: &Assigned) -> String {
    Value::Object(build_msg_map(item, a)).to_string()
}

fn build_msg_map(item: &DataItem, a: &Assigned) -> Map<String, Value> {
    let tags = item.tags();
    let owner = item.owner_address();
    let from_process = tag_of(tags, "From-Process").filter(|v| !v.is_empty());
    let mut m = Map::new();
    m.insert("Id".into(), item.id().into());
    m.insert("Signature".into(), item.signature_b64url().into());
    m.insert(
        "Data".into(),
        String::from_utf8_lossy(item.data()).into_owned().into(),
    );
    m.insert("Owner".into(), owner.clone().into());
    m.insert("Target".into(), a.process_id.clone().into());
    // The SU serves `"anchor": null` for an item without one and the reference keeps that null
    // (`Anchor: path(['anchor'])`), so the key is always there.
    m.insert(
        "Anchor".into(),
        wire::anchor_of(item).map_or(Value::Null, Value::from),
    );
    m.insert(
        "From".into(),
        from_process.map_or(owner.clone(), str::to_string).into(),
    );
    if tag_of(tags, "From-Process").is_some() {
        m.insert("Forwarded-By".into(), owner.into());
    }
    m.insert(
        "Tags".into(),
        Value::Array(
            tags.iter()
                .filter(|(n, _)| n != "From" && n != "Owner")
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect(),
        ),
    );
    m.insert("Epoch".into(), a.epoch.into());
    m.insert("Nonce".into(), a.nonce.into());
    m.insert("Timestamp".into(), a.timestamp.into());
    m.insert("Block-Height".into(), a.block_height.into());
    m.insert("Hash-Chain".into(), a.hash_chain.clone().into());
    m.insert("Cron".into(), false.into());
    m.insert("Read-Only".into(), false.into());
    m
}

/// The msg of an assigned message as the reference CU hydrates it (§2.7, `loadFromChain` merged over the
/// SU's assignment record): the original's fields with `Target` = its recipient (`""` when none) and no
/// `Forwarded-By` (the reference sets it only from the SU's `message`, which is null for assignments);
/// nonce, timestamp, block height and hash chain from the assignment.
fn assignment_msg(item: &DataItem, a: &Assigned) -> String {
    let mut m = build_msg_map(item, a);
    m.insert("Target".into(), item.target().unwrap_or_default().into());
    m.shift_remove("Forwarded-By");
    Value::Object(m).to_string()
}

impl Node {
    /// Opens the store in `data_dir`, starts the engine and the scheduler.
    pub fn open(config: NodeConfig) -> Result<Node, NodeError> {
        let store = Store::open(&config.data_dir, config.store)?;
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
        let process_config = cu_wasm::ProcessConfig {
            this_program: config.engine.this_program.clone(),
            drive: Some(cu_wasm::drive::Drive {
                source: Arc::new(drive),
                spawn_tags: Vec::new(),
                module_tags: Vec::new(),
            }),
            ..cu_wasm::ProcessConfig::default()
        };
        let engine = Engine::start_with(config.engine.clone(), store.clone(), loader, process_config, None)?;
        let wallet = Arc::new(config.wallet);
        let scheduler = Scheduler::new(store.clone(), wallet.clone(), config.cron);
        let node = Node {
            inner: Arc::new(Inner {
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
                delivered: AtomicU64::new(0),
                uploaded: AtomicU64::new(0),
                outbox: std::sync::Mutex::new(None),
                network: config.network.map(crate::network::Network::new).transpose()?,
                uploader: config.checkpoint_uploads.map(crate::checkpoints::Uploader::new),
                checkpoint_stats: crate::checkpoints::CheckpointStats::default(),
            }),
        };
        node.start_outbox()?;
        node.start_catch_up()?;
        node.start_checkpoint_uploads()?;
        Ok(node)
    }

    /// Starts the outbox delivery thread and queues every known process once (delivery resumes after a
    /// restart where it stopped).
    fn start_outbox(&self) -> Result<(), NodeError> {
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("cu-node-outbox".into())
            .spawn(move || {
                while let Ok(pid) = rx.recv() {
                    let Some(inner) = weak.upgrade() else { break };
                    let node = Node { inner };
                    if let Err(e) = node.deliver(&pid) {
                        tracing::warn!(process = %pid, error = %e, "outbox delivery");
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

    fn notify(&self, pid: &str) {
        let _ = self.inner.engine.advance(pid);
        if let Ok(g) = self.inner.outbox.lock()
            && let Some(tx) = g.as_ref()
        {
            let _ = tx.send(pid.to_string());
        }
    }

    /// Delivers the outboxes of `pid`'s results not delivered yet (waits for its evaluation).
    fn deliver(&self, pid: &str) -> Result<(), NodeError> {
        let store = &self.inner.store;
        let last = store.last_pos(pid)?;
        let reads = self.inner.scheduler.reads();
        // A process read from a remote SU: the network's MUs push its outbox, not its CUs.
        if reads.upstream_cursor(pid)?.is_some() {
            return Ok(());
        }
        let cursor = reads.outbox_cursor(pid)?;
        if last <= cursor {
            return Ok(());
        }
        self.inner.engine.wait_for(pid, last)?;
        let record = self.known_process(pid)?;
        for pos in cursor + 1..=last {
            let Some(result) = store.result(pid, pos)? else {
                break;
            };
            let out: Value =
                serde_json::from_str(&result.output_json).map_err(|e| NodeError::Internal(e.to_string()))?;
            let entry = store.log_range(pid, pos, 1)?;
            let initial = entry.first().and_then(|e| {
                let m: Value = serde_json::from_str(&e.msg_json).ok()?;
                let pushed = m.get("Tags").and_then(Value::as_array).and_then(|t| {
                    t.iter()
                        .find(|t| t.get("name").and_then(Value::as_str) == Some("Pushed-For"))
                        .and_then(|t| t.get("value").and_then(Value::as_str).map(str::to_string))
                });
                pushed.or_else(|| m.get("Id").and_then(Value::as_str).map(str::to_string))
            });
            let list = |n: &str| out.get(n).and_then(Value::as_array).cloned().unwrap_or_default();
            for (i, m) in list("Messages").iter().enumerate() {
                let key = format!("m{i}");
                if reads.delivered(pid, pos, &key)? {
                    continue;
                }
                let Some(target) = m.get("Target").and_then(Value::as_str) else {
                    continue;
                };
                // Only processes this node schedules (not wallets, not remote or hbu processes).
                if reads.by_nonce(target, 0)?.is_none() {
                    continue;
                }
                let mut tags = filtered_tags(
                    m,
                    &[
                        "Data-Protocol",
                        "Type",
                        "From-Process",
                        "From-Module",
                        "Assignments",
                    ],
                );
                tags.push(("Data-Protocol".into(), "ao".into()));
                tags.push(("Type".into(), "Message".into()));
                tags.push(("From-Process".into(), pid.into()));
                tags.push(("From-Module".into(), record.module_id.clone()));
                if let Some(p) = &initial {
                    tags.push(("Pushed-For".into(), p.clone()));
                }
                let raw = self.sign(m, &tags, Some(target))?;
                let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                let mark = cu_store::schedule::DeliveryMark {
                    process_id: pid.into(),
                    pos,
                    item: key,
                };
                self.schedule_item(target, &item, Some(raw), vec![mark])?;
                self.inner.delivered.fetch_add(1, Relaxed);
            }
            for (i, sp) in list("Spawns").iter().enumerate() {
                let key = format!("s{i}");
                if reads.delivered(pid, pos, &key)? {
                    continue;
                }
                let mut tags = filtered_tags(sp, &["Data-Protocol", "Type"]);
                let variant = if tags.iter().any(|(n, v)| n == "Variant" && v == "ao.N.1") {
                    "ao.N.1"
                } else {
                    "ao.TN.1"
                };
                tags.retain(|(n, _)| n != "Variant");
                tags.push(("Variant".into(), variant.into()));
                tags.push(("Data-Protocol".into(), "ao".into()));
                tags.push(("Type".into(), "Process".into()));
                tags.push(("From-Process".into(), pid.into()));
                if let Some(p) = &initial {
                    tags.push(("Pushed-For".into(), p.clone()));
                }
                // As the reference MU (`spawn-process.js`): `From-Module` names the spawning process's
                // module, and a spawn without a `Scheduler` goes to the spawning process's SU (this node).
                for (n, v) in tags.iter_mut() {
                    if n == "From-Module" {
                        v.clone_from(&record.module_id);
                    }
                }
                if !tags.iter().any(|(n, _)| n == "Scheduler") {
                    tags.push(("Scheduler".into(), self.inner.address.clone()));
                }
                let raw = self.sign(sp, &tags, None)?;
                let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                let mark = cu_store::schedule::DeliveryMark {
                    process_id: pid.into(),
                    pos,
                    item: key,
                };
                match self.spawn(&item, raw, vec![mark]) {
                    Ok(()) => {
                        self.inner.delivered.fetch_add(1, Relaxed);
                    }
                    Err(NodeError::BadRequest(e)) => {
                        tracing::warn!(process = %pid, pos, error = %e, "spawn not delivered")
                    }
                    Err(e) => return Err(e),
                }
            }
            for (i, a) in list("Assignments").iter().enumerate() {
                let Some(message_id) = a.get("Message").and_then(Value::as_str) else {
                    continue;
                };
                let Some(raw) = reads.message_item(message_id)? else {
                    continue;
                };
                let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                let targets = a
                    .get("Processes")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for t in targets.iter().filter_map(Value::as_str) {
                    let key = format!("a{i}:{t}");
                    if reads.delivered(pid, pos, &key)? || reads.by_nonce(t, 0)?.is_none() {
                        continue;
                    }
                    let mark = cu_store::schedule::DeliveryMark {
                        process_id: pid.into(),
                        pos,
                        item: key,
                    };
                    self.schedule_item(t, &item, None, vec![mark])?;
                }
            }
            store.commit_schedule(cu_store::schedule::ScheduleBatch {
                outbox_cursors: vec![(pid.to_string(), pos)],
                ..Default::default()
            })?;
        }
        Ok(())
    }

    fn sign(&self, m: &Value, tags: &[(String, String)], target: Option<&str>) -> Result<Vec<u8>, NodeError> {
        let data = match m.get("Data") {
            Some(Value::String(s)) => s.clone().into_bytes(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => other.to_string().into_bytes(),
        };
        let anchor = m
            .get("Anchor")
            .and_then(Value::as_str)
            .filter(|a| a.len() == 32)
            .map(str::as_bytes);
        self.inner
            .wallet
            .sign_data_item(&data, tags, target, anchor)
            .map_err(|e| NodeError::Internal(format!("signing an outbox item: {e}")))
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

    /// MU ingress: verifies a signed ANS-104 item and registers, spawns or schedules it.
    pub fn ingest(&self, raw: &[u8]) -> Result<Ingested, NodeError> {
        let item = self.accept_item(raw, || self.now())?;
        let tags = item.tags().to_vec();
        let id = item.id();
        match tag_of(&tags, "Type") {
            Some("Module") => {
                let format = tag_of(&tags, "Module-Format")
                    .ok_or_else(|| bad("Tag 'Module-Format': was not found on module"))?;
                format
                    .trim()
                    .parse::<cu_types::ModuleFormat>()
                    .map_err(|e| NodeError::Unprocessable(e.to_string()))?;
                for t in ["Input-Encoding", "Output-Encoding"] {
                    if tag_of(&tags, t).is_none() {
                        return Err(bad(format!("Tag '{t}': was not found on module")));
                    }
                }
                self.inner.store.put_module(&ModuleRecord {
                    id: id.clone(),
                    format: format.to_string(),
                    owner: item.owner_address(),
                    owner_key: Some(item.owner_b64url()),
                    tags: store_tags(&tags),
                    wasm: item.data().to_vec(),
                })?;
                self.inner.ingested.fetch_add(1, Relaxed);
                Ok(Ingested {
                    id,
                    kind: IngestKind::Module,
                })
            }
            Some("Process") => {
                // A retried spawn answers its id again without scheduling anything.
                if self.inner.scheduler.reads().by_nonce(&id, 0)?.is_none() {
                    self.spawn(&item, raw.to_vec(), Vec::new())?;
                }
                self.inner.ingested.fetch_add(1, Relaxed);
                Ok(Ingested {
                    id,
                    kind: IngestKind::Process,
                })
            }
            Some("Message") | None => {
                let target = item.target().ok_or_else(|| bad("a message needs a Target"))?;
                if self.inner.scheduler.reads().by_nonce(&target, 0)?.is_none() {
                    return Err(bad(format!(
                        "process {target} not found (or not scheduled by this node)"
                    )));
                }
                // A retried message answers its id again without scheduling it twice.
                if self.inner.scheduler.reads().by_message(&target, &id)?.is_none() {
                    self.schedule_item(&target, &item, Some(raw.to_vec()), Vec::new())?;
                }
                self.inner.ingested.fetch_add(1, Relaxed);
                Ok(Ingested {
                    id,
                    kind: IngestKind::Message,
                })
            }
            Some(other) => Err(bad(format!("unsupported Type {other:?}"))),
        }
    }

    /// What every posted data item passes, on the MU and the bundler routes alike: the size limit (413),
    /// a parse and a signature that verifies, tags that are valid UTF-8 (400), and the signer's upload
    /// quota at `now()` (429; the clock is read only when a quota is set).
    pub(crate) fn accept_item(&self, raw: &[u8], now: impl FnOnce() -> u64) -> Result<DataItem, NodeError> {
        if raw.len() > self.inner.max_item_bytes {
            return Err(NodeError::TooLarge(format!(
                "data item of {} bytes exceeds the limit of {} bytes",
                raw.len(),
                self.inner.max_item_bytes
            )));
        }
        let item = DataItem::parse(raw).map_err(bad)?;
        if let Some(i) = item.non_utf8_tag() {
            return Err(bad(format!(
                "tag {i} is not valid UTF-8 (the signature covers its raw bytes, which a text copy would not keep)"
            )));
        }
        item.verify().map_err(bad)?;
        if let Some(book) = &self.inner.upload_quota {
            book.charge(&item.owner_address(), raw.len() as u64, now())?;
        }
        Ok(item)
    }

    fn spawn(
        &self,
        item: &DataItem,
        raw: Vec<u8>,
        delivered: Vec<cu_store::schedule::DeliveryMark>,
    ) -> Result<(), NodeError> {
        let tags = item.tags().to_vec();
        let pid = item.id();
        let module_id =
            tag_of(&tags, "Module").ok_or_else(|| bad("Tag 'Module': was not found on process"))?;
        let module = self
            .inner
            .store
            .module(module_id)?
            .ok_or_else(|| bad(format!("module {module_id} not found")))?;
        check_limits(&tags, &module.tags, &self.inner.limits)?;
        if self.inner.store.process(&pid)?.is_some() {
            return Err(bad(format!("process {pid} already exists")));
        }
        let owner = item.owner_address();
        let env = json!({
            "Process": {"Id": pid, "Owner": owner, "Tags": tags_value(&store_tags(&tags))},
            "Module": {"Id": module.id, "Owner": module.owner, "Tags": tags_value(&module.tags)},
        });
        let record = ProcessRecord {
            id: pid.clone(),
            module_id: module.id.clone(),
            owner,
            tags: store_tags(&tags),
            env_json: env.to_string(),
            block_height: 0,
            timestamp: 0,
            spawn_json: String::new(),
        };
        let req = ScheduleRequest {
            process_id: pid.clone(),
            message_id: pid.clone(),
            message: Some(raw),
            spawn: Some(record),
            delivered,
        };
        self.inner
            .scheduler
            .schedule(req, self.now(), |a| Ok(build_msg(item, a)))?;
        self.notify(&pid);
        Ok(())
    }

    /// Schedules `item` onto `target`: as a message when its bytes `raw` are given, otherwise as an
    /// assignment of the stored item (`message: null` on the SU wire, tag `Message=<id>`; the one path of
    /// outbox `Assignments` and [`Node::assign`]). A message already scheduled on `target` is answered with
    /// its existing assignment and nothing is written.
    fn schedule_item(
        &self,
        target: &str,
        item: &DataItem,
        raw: Option<Vec<u8>>,
        delivered: Vec<cu_store::schedule::DeliveryMark>,
    ) -> Result<Assigned, NodeError> {
        let build: fn(&DataItem, &Assigned) -> String =
            if raw.is_some() { build_msg } else { assignment_msg };
        let req = ScheduleRequest {
            process_id: target.to_string(),
            message_id: item.id(),
            message: raw,
            spawn: None,
            delivered,
        };
        let s = self
            .inner
            .scheduler
            .schedule(req, self.now(), |a| Ok(build(item, a)))?;
        self.notify(target);
        Ok(s.assigned)
    }

    /// MU `POST /?process-id=&assign=`: assigns the message `message_id`, stored on this node (scheduled
    /// on another process of it), to `process_id`; answers the assignment's id. The process evaluates it
    /// with `msg.Target` = the message's own recipient (so aos sees `msg.Target ~= ao.id` and checks
    /// `ao.assignables`).
    ///
    /// `exclude` (the MU's comma-separated `exclude` query, aop-1) is refused when non-empty: the embedded
    /// scheduler does not put `Exclude` tags on its assignments, and excluding fields only in the msg
    /// would make our schedule evaluate differently elsewhere. Errors write nothing: an unknown process
    /// or message is [`NodeError::NotFound`]; a message id that is not 43 characters, a non-empty
    /// `exclude`, or a message already scheduled on `process_id` (the SU's duplicate deep-hash check) is
    /// [`NodeError::BadRequest`]. Two concurrent calls for the same pair both answer the one assignment
    /// (the scheduler never schedules a message twice on a process).
    pub fn assign(
        &self,
        process_id: &str,
        message_id: &str,
        exclude: Option<&str>,
    ) -> Result<String, NodeError> {
        self.known_process(process_id)?;
        let reads = self.inner.scheduler.reads();
        if reads.by_nonce(process_id, 0)?.is_none() {
            return Err(NodeError::NotFound(format!(
                "Process {process_id} is not scheduled by this node"
            )));
        }
        if message_id.len() != 43 {
            return Err(bad("assign param must be 43 characters"));
        }
        if exclude.is_some_and(|e| !e.trim().is_empty()) {
            return Err(bad(
                "exclude is not supported by this node: its scheduler does not sign Exclude tags",
            ));
        }
        let raw = reads
            .message_item(message_id)?
            .ok_or_else(|| NodeError::NotFound(format!("Message {message_id} was not found on this node")))?;
        if reads.by_message(process_id, message_id)?.is_some() {
            return Err(bad(format!(
                "Message {message_id} is already scheduled on process {process_id}"
            )));
        }
        let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
        Ok(self
            .schedule_item(process_id, &item, None, Vec::new())?
            .assignment_id)
    }

    async fn evaluate_to(&self, process_id: &str, pos: u64) -> Result<(), NodeError> {
        let rx = self.inner.engine.evaluate_to(process_id, pos)?;
        rx.await
            .map_err(|_| NodeError::Internal("the engine stopped".into()))??;
        Ok(())
    }

    fn known_process(&self, process_id: &str) -> Result<ProcessRecord, NodeError> {
        self.inner
            .store
            .process(process_id)?
            .ok_or_else(|| NodeError::NotFound(format!("Process {process_id} was not found")))
    }

    /// `GET /result/:id?process-id=`: evaluates up to that message; the reference's result shape.
    pub async fn result(&self, process_id: &str, message_id: &str) -> Result<Value, NodeError> {
        Ok(self.result_with_slot(process_id, message_id).await?.0)
    }

    /// [`Node::result`] and the message's slot (its scheduler nonce; `None` only for a message without
    /// one), which a signed result names as its position.
    pub async fn result_with_slot(
        &self,
        process_id: &str,
        message_id: &str,
    ) -> Result<(Value, Option<u64>), NodeError> {
        self.refresh_remote(process_id, Refresh::UnlessKnown(message_id))
            .await?;
        self.known_process(process_id)?;
        let entry = self
            .inner
            .store
            .log_entry_by_message(process_id, message_id)?
            .ok_or_else(|| {
                NodeError::NotFound(format!("Message {message_id} not found on process {process_id}"))
            })?;
        // A durable result is served from the store without a round trip through the owning shard.
        if let Some(r) = self.inner.store.result(process_id, entry.pos)? {
            return Ok((result_shape(&r.output_json, true)?, entry.nonce));
        }
        self.evaluate_to(process_id, entry.pos).await?;
        let r = self.inner.store.result(process_id, entry.pos)?.ok_or_else(|| {
            NodeError::Internal(format!("result at {} missing after evaluation", entry.pos))
        })?;
        Ok((result_shape(&r.output_json, true)?, entry.nonce))
    }

    /// `GET /results/:pid`: cached results, cursor paging (does not evaluate, as the reference).
    pub fn results(&self, process_id: &str, q: ResultsParams) -> Result<Value, NodeError> {
        self.refresh_remote_blocking(process_id)?;
        self.known_process(process_id)?;
        self.results_page(process_id, q, false, 25, usize::MAX)
    }

    fn results_page(
        &self,
        process_id: &str,
        q: ResultsParams,
        only_cron: bool,
        default_limit: usize,
        max_limit: usize,
    ) -> Result<Value, NodeError> {
        let from = q
            .from
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(parse_cursor)
            .transpose()?;
        let to =
            q.to.as_deref()
                .filter(|s| !s.is_empty())
                .map(parse_cursor)
                .transpose()?;
        let mut sort = match q.sort.as_deref() {
            None | Some("ASC") => Sort::Asc,
            Some("DESC") => Sort::Desc,
            Some(other) => {
                return Err(bad(format!(
                    "'sort': invalid value {other:?}, expected ASC or DESC"
                )));
            }
        };
        if let Some(s) = from
            .as_ref()
            .and_then(|c| c.sort)
            .or(to.as_ref().and_then(|c| c.sort))
        {
            sort = s;
        }
        if only_cron {
            sort = Sort::Asc;
        }
        let limit = q.limit.unwrap_or(default_limit).min(max_limit);
        let query = ResultsQuery {
            after: from.map(|c| c.bound),
            upto: to.map(|c| c.bound),
            sort,
            limit,
            only_cron,
            skip_errors: true,
        };
        let page = self.inner.store.results(process_id, &query)?;
        let sort_s = if sort == Sort::Desc { "DESC" } else { "ASC" };
        let edges = page
            .items
            .iter()
            .map(|r| {
                let cursor = json!({
                    "timestamp": r.timestamp,
                    "ordinate": r.nonce.map(|n| n.to_string()).unwrap_or_else(|| r.pos.to_string()),
                    "cron": r.cron,
                    "sort": sort_s,
                    "pos": r.pos,
                });
                Ok(json!({"cursor": STANDARD.encode(cursor.to_string()), "node": result_shape(&r.output_json, false)?}))
            })
            .collect::<Result<Vec<Value>, NodeError>>()?;
        Ok(json!({"pageInfo": {"hasNextPage": page.has_next_page}, "edges": edges}))
    }

    /// `GET /cron/:pid`: generates due crons, evaluates to the end, returns cron results only.
    pub async fn cron(&self, process_id: &str, q: ResultsParams) -> Result<Value, NodeError> {
        self.known_process(process_id)?;
        let last = self.inner.scheduler.tick_crons(process_id, self.now())?;
        if last > 0 {
            self.evaluate_to(process_id, last).await?;
        }
        self.results_page(process_id, q, true, 500, 1000)
    }

    /// `POST /dry-run?process-id=`: evaluates `body` on a fork at the latest state; never persisted.
    pub async fn dry_run(&self, process_id: &str, body: Value) -> Result<Value, NodeError> {
        Ok(self.dry_run_with_slot(process_id, body).await?.0)
    }

    /// [`Node::dry_run`] and the slot (scheduler nonce) of the last message of the state it ran on; `None`
    /// when that state is the initial one, ends with a cron message (which has no slot), or is not known
    /// exactly (a message was scheduled while the dry-run started).
    pub async fn dry_run_with_slot(
        &self,
        process_id: &str,
        body: Value,
    ) -> Result<(Value, Option<u64>), NodeError> {
        self.refresh_remote(process_id, Refresh::IfStale).await?;
        self.known_process(process_id)?;
        let Value::Object(body) = body else {
            return Err(bad("the dry-run body must be a JSON object"));
        };
        // The engine's dry-run evaluates the log to its end before it freezes the state (no separate
        // round trip to the shard to wait for it here).
        let last = self.inner.store.last_pos(process_id)?;
        let (ts, height, slot) = match self.inner.store.log_range(process_id, last.max(1), 1)?.first() {
            Some(e) => (e.timestamp, e.block_height, e.nonce.filter(|_| last > 0)),
            None => (0, 0, None),
        };
        let msg = dry_run_msg(process_id, &body, ts, height)?;
        let rx = self.inner.engine.dry_run(process_id, msg)?;
        let out = rx
            .await
            .map_err(|_| NodeError::Internal("the engine stopped".into()))??;
        let text = serde_json::to_string(&out).map_err(|e| NodeError::Internal(e.to_string()))?;
        // The fork ran on the end of the log at the time it was made: exactly `last` only if the log did
        // not grow meanwhile; otherwise the slot is not known and none is claimed.
        let slot = slot.filter(|_| self.inner.store.last_pos(process_id).ok() == Some(last));
        Ok((result_shape(&text, true)?, slot))
    }

    /// `GET /state/:pid?to=`: [`Node::state`] when `to` (ms) is at or after the newest evaluated
    /// message; a 422 when it is before, since a node keeps only the newest state of a process (the
    /// reference evaluates a fresh copy up to `to`; a silently newer state would be wrong data).
    pub async fn state_at(&self, process_id: &str, to: Option<u64>) -> Result<StateReply, NodeError> {
        let reply = self.state(process_id).await?;
        match to {
            Some(to) if reply.timestamp > to => Err(NodeError::Unprocessable(format!(
                "the state of process {process_id} at to={to} is not served: its newest evaluated message \
                 (ordinate {}) is at {}, and this node keeps only the newest state; ask without `to`",
                reply.ordinate, reply.timestamp
            ))),
            _ => Ok(reply),
        }
    }

    /// `GET /state/:pid`: evaluates to the end; memory and the last message's position.
    pub async fn state(&self, process_id: &str) -> Result<StateReply, NodeError> {
        self.refresh_remote(process_id, Refresh::IfStale).await?;
        self.known_process(process_id)?;
        let rx = self.inner.engine.state(process_id)?;
        let (pos, memory) = rx
            .await
            .map_err(|_| NodeError::Internal("the engine stopped".into()))??;
        let (timestamp, ordinate, block_height) =
            match self.inner.store.log_range(process_id, pos.max(1), 1)?.first() {
                Some(e) if pos > 0 => (
                    e.timestamp,
                    e.nonce.map_or_else(|| e.pos.to_string(), |n| n.to_string()),
                    e.block_height,
                ),
                _ => (0, "0".into(), 0),
            };
        Ok(StateReply {
            timestamp,
            ordinate,
            block_height,
            memory,
        })
    }

    /// hbu mode: evaluates the message at `slot` of one SU-wire-format page (see [`crate::hbu`]); the
    /// result JSON and the headers `slot`, `timestamp`, `block-height`, `ao-types`. Slot 0 (the process
    /// itself) creates the process (its module must be registered here). Slots must arrive in order.
    pub async fn hbu_result(
        &self,
        process_id: &str,
        slot: u64,
        page: Value,
    ) -> Result<(Value, Vec<(String, String)>), NodeError> {
        if self.inner.scheduler.reads().by_nonce(process_id, 0)?.is_some() {
            return Err(NodeError::Forbidden(format!(
                "process {process_id} is scheduled by this node's own scheduler: hbu may only compute processes HyperBEAM schedules"
            )));
        }
        hbu::check_chain(&page)?;
        let edge = hbu::edge_at(&page, slot)?;
        let assignment = &edge["node"]["assignment"];
        if hbu::tag(&assignment["tags"], "Process") != Some(process_id) {
            return Err(NodeError::Unprocessable(format!(
                "the assignment at slot {slot} is not for process {process_id}"
            )));
        }
        if self.inner.hbu_verify_signatures {
            hbu::verify_assignment(assignment)?;
        }
        self.check_hbu_link(process_id, slot, assignment)?;
        let message = match &edge["node"]["message"] {
            Value::Null => {
                let mid = hbu::tag(&assignment["tags"], "Message")
                    .ok_or_else(|| bad("an assignment without message needs a Message tag"))?;
                let raw = self.inner.scheduler.reads().message_item(mid)?.ok_or_else(|| {
                    NodeError::Unprocessable(format!("assigned message {mid} is not known here"))
                })?;
                let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
                wire::message_json(&item)
            }
            m => m.clone(),
        };
        let (msg_json, nonce, timestamp, height, mid) = hbu::msg_of(&message, assignment)?;
        let pos = slot + 1;
        let store = &self.inner.store;
        if slot == 0 && store.process(process_id)?.is_none() {
            if mid != process_id {
                return Err(bad("slot 0 must be the process itself"));
            }
            let module_id = hbu::tag(&message["tags"], "Module")
                .ok_or_else(|| bad("Tag 'Module': was not found on process"))?;
            let module = store.module(module_id)?.ok_or_else(|| {
                NodeError::Unprocessable(format!("module {module_id} is not registered here"))
            })?;
            let ptags: Vec<(String, String)> = message["tags"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.get("name")?.as_str()?.to_string(),
                        t.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect();
            check_limits(&ptags, &module.tags, &self.inner.limits)?;
            let owner = hbu::address_from(&message["owner"]);
            store.commit_schedule(cu_store::schedule::ScheduleBatch {
                process: Some(ProcessRecord {
                    id: process_id.to_string(),
                    module_id: module.id.clone(),
                    owner: owner.clone(),
                    tags: store_tags(&ptags),
                    env_json: hbu::env_of(process_id, &owner, &message["tags"], &module),
                    block_height: height,
                    timestamp,
                    spawn_json: msg_json.clone(),
                }),
                ..Default::default()
            })?;
        }
        self.known_process(process_id)?;
        let last = store.last_pos(process_id)?;
        if pos == last + 1 {
            store.append(&[cu_store::LogEntry {
                process_id: process_id.to_string(),
                pos,
                message_id: Some(mid.clone()),
                nonce: Some(nonce),
                timestamp,
                block_height: height,
                cron: None,
                msg_json,
            }])?;
        } else if pos > last + 1 {
            return Err(NodeError::Unprocessable(format!(
                "slot {slot} of process {process_id}: slots {last} to {} were never posted",
                slot - 1
            )));
        } else {
            let have = store.log_range(process_id, pos, 1)?;
            if have.first().and_then(|e| e.message_id.as_deref()) != Some(mid.as_str()) {
                return Err(NodeError::Unprocessable(format!(
                    "slot {slot} of process {process_id} already holds another message"
                )));
            }
        }
        self.evaluate_to(process_id, pos).await?;
        let r = store
            .result(process_id, pos)?
            .ok_or_else(|| NodeError::Internal(format!("result at {pos} missing after evaluation")))?;
        self.record_hbu_link(process_id, slot, assignment);
        Ok((
            result_shape(&r.output_json, true)?,
            hbu::headers(slot, timestamp, height),
        ))
    }

    /// The slot after the last one evaluated must chain from it: `Hash-Chain` =
    /// sha256(previous assignment id ‖ previous Hash-Chain).
    fn check_hbu_link(&self, process_id: &str, slot: u64, assignment: &Value) -> Result<(), NodeError> {
        let chains = self
            .inner
            .hbu_chain
            .lock()
            .map_err(|_| NodeError::Internal("hbu chain lock poisoned".into()))?;
        let (Some(prev), Some(chain)) = (
            chains.get(process_id).filter(|l| l.slot + 1 == slot),
            hbu::tag(&assignment["tags"], "Hash-Chain"),
        ) else {
            return Ok(());
        };
        let expected = cu_scheduler::hash_chain(&prev.hash_chain, Some(&prev.assignment_id))
            .map_err(|e| NodeError::Unprocessable(e.to_string()))?;
        if expected != chain {
            let id = assignment.get("id").and_then(Value::as_str).unwrap_or_default();
            return Err(NodeError::Unprocessable(format!(
                "HashChain invalid on message {id}: it does not follow slot {} of process {process_id}",
                prev.slot
            )));
        }
        Ok(())
    }

    fn record_hbu_link(&self, process_id: &str, slot: u64, assignment: &Value) {
        let (Some(id), Some(chain)) = (
            assignment.get("id").and_then(Value::as_str),
            hbu::tag(&assignment["tags"], "Hash-Chain"),
        ) else {
            return;
        };
        if let Ok(mut chains) = self.inner.hbu_chain.lock()
            && chains.get(process_id).is_none_or(|l| l.slot < slot)
        {
            chains.insert(
                process_id.to_owned(),
                HbuLink {
                    slot,
                    assignment_id: id.to_owned(),
                    hash_chain: chain.to_owned(),
                },
            );
        }
    }

    /// SU `GET /processes/:pid`.
    pub fn su_process(&self, process_id: &str) -> Result<Value, NodeError> {
        let r = self
            .inner
            .scheduler
            .reads()
            .by_nonce(process_id, 0)?
            .ok_or_else(|| NodeError::NotFound(format!("Process {process_id} not found")))?;
        Ok(wire::process_json(&r)?)
    }

    /// SU `GET /:pid?from&to&limit` (timestamps; from exclusive, to inclusive; limit default 100).
    pub fn su_messages(
        &self,
        process_id: &str,
        from: Option<&str>,
        to: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Value, NodeError> {
        self.known_process(process_id)?;
        let num = |s: Option<&str>, what: &str| -> Result<Option<u64>, NodeError> {
            s.filter(|s| !s.is_empty())
                .map(|s| s.parse::<u64>().map_err(|_| bad(format!("invalid {what} {s:?}"))))
                .transpose()
        };
        let (from, to) = (num(from, "from")?, num(to, "to")?);
        let limit = limit.unwrap_or(100).clamp(1, 5000);
        let mut records = self
            .inner
            .scheduler
            .reads()
            .page(process_id, from, to, limit + 1)?;
        let more = records.len() > limit;
        records.truncate(limit);
        Ok(wire::page_json(&records, more)?)
    }

    /// SU `GET /:message_id?process-id=`: one message.
    pub fn su_message(&self, message_id: &str, process_id: &str) -> Result<Value, NodeError> {
        let r = self
            .inner
            .scheduler
            .reads()
            .by_message(process_id, message_id)?
            .ok_or_else(|| NodeError::NotFound(format!("Message {message_id} not found")))?;
        Ok(wire::message_node(&r)?)
    }

    /// SU `GET /:pid/latest`.
    pub fn su_latest(&self, process_id: &str) -> Result<Value, NodeError> {
        let r = self
            .inner
            .scheduler
            .latest(process_id)?
            .ok_or_else(|| NodeError::NotFound(format!("Process {process_id} not found")))?;
        Ok(wire::message_node(&r)?)
    }

    /// SU `GET /timestamp`.
    pub fn su_timestamp(&self) -> Value {
        wire::timestamp_json(self.now())
    }

    /// The GraphQL subset aoconnect needs (see [`crate::graphql`]): `transactions` over the stored modules,
    /// processes and messages, plus the node's own `Scheduler-Location` record (`Url` = its public URL).
    pub fn graphql(&self, query: &str, variables: Value) -> Result<Value, NodeError> {
        let fields = graphql::parse(query, &variables)?;
        let mut data = Map::new();
        for f in fields {
            match f.name() {
                "transactions" => {
                    let filter = f.tx_filter()?;
                    let mut nodes = Vec::new();
                    match &filter.ids {
                        Some(ids) => {
                            for id in ids {
                                if let Some(n) = self.gql_node(id)? {
                                    nodes.push(n);
                                }
                            }
                        }
                        None => {
                            nodes.push(self.scheduler_location());
                            for pid in self.inner.store.process_ids()? {
                                if let Some(n) = self.gql_node(&pid)? {
                                    nodes.push(n);
                                }
                            }
                            // Uploaded items, newest first: through the tag index when a tag filter
                            // names values (the other filters are applied below).
                            let items = match filter.tags.iter().find(|(_, values)| !values.is_empty()) {
                                Some((name, values)) => self.inner.store.items_tagged(
                                    name,
                                    values,
                                    cu_store::items::MAX_ITEMS_PER_QUERY,
                                )?,
                                None => self
                                    .inner
                                    .store
                                    .items_newest(cu_store::items::MAX_ITEMS_PER_QUERY)?,
                            };
                            nodes.extend(items.iter().map(crate::bundler::item_node));
                        }
                    }
                    nodes.retain(|n| filter.matches(n));
                    data.insert(
                        "transactions".into(),
                        graphql::transactions_answer(&f, nodes, filter.first),
                    );
                }
                "blocks" => {
                    let now = self.now();
                    let answer = graphql::blocks_answer(
                        &f,
                        cu_scheduler::chain::block_height(now),
                        cu_scheduler::chain::block_timestamp,
                    )?;
                    data.insert("blocks".into(), answer);
                }
                other => return Err(bad(format!("GraphQL: field {other:?} is not supported"))),
            }
        }
        Ok(json!({ "data": data }))
    }

    fn scheduler_location(&self) -> Value {
        use sha2::Digest;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(format!(
            "Scheduler-Location:{}",
            self.inner.address
        )));
        json!({
            "id": id, "anchor": null, "signature": null, "recipient": "",
            "owner": {"address": self.inner.address, "key": self.inner.wallet.owner_b64url()},
            "fee": {"winston": "0", "ar": "0"}, "quantity": {"winston": "0", "ar": "0"},
            "data": {"size": "0", "type": null},
            "tags": [
                {"name": "Data-Protocol", "value": "ao"},
                {"name": "Variant", "value": "ao.TN.1"},
                {"name": "Type", "value": "Scheduler-Location"},
                {"name": "Url", "value": self.inner.public_url},
                {"name": "Time-To-Live", "value": "3600000"},
            ],
            "block": null, "parent": null,
        })
    }

    /// `GET /raw/{id}` as a gateway serves it: the data of a stored module (its WASM), process or
    /// message, with its `Content-Type` tag (`application/octet-stream` when none).
    pub fn raw(&self, id: &str) -> Result<(Vec<u8>, String), NodeError> {
        let reads = self.inner.scheduler.reads();
        let raw = match reads.by_nonce(id, 0)? {
            Some(r) => r.message,
            None => reads.message_item(id)?,
        };
        if let Some(raw) = raw {
            let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
            let ty = item
                .tag("Content-Type")
                .unwrap_or("application/octet-stream")
                .to_owned();
            return Ok((item.data().to_vec(), ty));
        }
        if let Some(m) = self.inner.store.module(id)? {
            let ty = m
                .tags
                .iter()
                .find(|t| t.name == "Content-Type")
                .map_or("application/wasm", |t| t.value.as_str())
                .to_owned();
            return Ok((m.wasm, ty));
        }
        if let Some(found) = self.item_data(id)? {
            return Ok(found);
        }
        Err(NodeError::NotFound(format!("transaction {id} was not found")))
    }

    /// `GET /block/height/{h}`: block `h` of the node's chain (see [`crate::arweave`]).
    pub fn block_header(&self, height: &str) -> Result<Value, NodeError> {
        let missing = || NodeError::NotFound(format!("block {height} was not found"));
        let h = height.parse::<u64>().map_err(|_| missing())?;
        let current = self.block_height_at(self.now());
        crate::arweave::block_header(&self.inner.store, h, current)?.ok_or_else(missing)
    }

    /// `GET /tx/{id}`: an uploaded item's Arweave transaction header.
    pub fn tx_header(&self, id: &str) -> Result<Value, NodeError> {
        self.inner
            .store
            .item(id)?
            .map(|m| crate::arweave::tx_header(&m))
            .ok_or_else(|| NodeError::NotFound(format!("transaction {id} was not found")))
    }

    /// The gateway node of a stored item: a module, a process (its spawn) or a scheduled message.
    fn gql_node(&self, id: &str) -> Result<Option<Value>, NodeError> {
        let sl = self.scheduler_location();
        if sl["id"] == id {
            return Ok(Some(sl));
        }
        let reads = self.inner.scheduler.reads();
        let found = match reads.by_nonce(id, 0)? {
            Some(r) => Some((r.message, r.timestamp, r.block_height)),
            None => reads.message_item(id)?.map(|raw| (Some(raw), 0, 0)),
        };
        if let Some((Some(raw), ts, height)) = found {
            let item = DataItem::parse(&raw).map_err(|e| NodeError::Internal(e.to_string()))?;
            let block = if ts > 0 {
                json!({"id": format!("local-{height}"), "timestamp": ts / 1000, "height": height, "previous": null})
            } else {
                Value::Null
            };
            return Ok(Some(json!({
                "id": item.id(), "anchor": wire::anchor_of(&item), "signature": item.signature_b64url(),
                "recipient": item.target().unwrap_or_default(),
                "owner": {"address": item.owner_address(), "key": item.owner_b64url()},
                "fee": {"winston": "0", "ar": "0"}, "quantity": {"winston": "0", "ar": "0"},
                "data": {"size": item.data().len().to_string(), "type": item.tag("Content-Type")},
                "tags": item.tags().iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
                "block": block, "parent": null,
            })));
        }
        if let Some(m) = self.inner.store.item(id)? {
            return Ok(Some(crate::bundler::item_node(&m)));
        }
        if let Some(m) = self.inner.store.module(id)? {
            return Ok(Some(json!({
                "id": m.id, "anchor": null, "signature": null, "recipient": "",
                "owner": {"address": m.owner, "key": m.owner_key},
                "fee": {"winston": "0", "ar": "0"}, "quantity": {"winston": "0", "ar": "0"},
                "data": {"size": m.wasm.len().to_string(), "type": null},
                "tags": tags_value(&m.tags), "block": null, "parent": null,
            })));
        }
        Ok(None)
    }

    /// Prometheus text: engine stats and node counters.
    pub fn metrics(&self) -> String {
        let s = self.inner.engine.stats();
        let mut out = String::new();
        let mut line = |name: &str, help: &str, kind: &str, v: u64| {
            out.push_str(&format!(
                "# HELP ao_cu_{name} {help}\n# TYPE ao_cu_{name} {kind}\nao_cu_{name} {v}\n"
            ));
        };
        line(
            "resident_processes",
            "Processes resident in memory.",
            "gauge",
            s.resident_processes,
        );
        line(
            "resident_bytes",
            "Bytes of resident process memory.",
            "gauge",
            s.resident_bytes,
        );
        line("evaluations_total", "Messages evaluated.", "counter", s.evaluated);
        line("dry_runs_total", "Dry-runs evaluated.", "counter", s.dry_runs);
        line(
            "checkpoint_bases_total",
            "Base checkpoints written.",
            "counter",
            s.bases,
        );
        line(
            "checkpoint_deltas_total",
            "Delta checkpoints written.",
            "counter",
            s.deltas,
        );
        line(
            "checkpoint_bytes_total",
            "Checkpoint bytes written.",
            "counter",
            s.checkpoint_bytes,
        );
        line("evictions_total", "Processes evicted.", "counter", s.evictions);
        line(
            "restores_total",
            "Processes restored from checkpoints.",
            "counter",
            s.restores,
        );
        line("boots_total", "Processes booted.", "counter", s.boots);
        line(
            "ingested_total",
            "Data items ingested.",
            "counter",
            self.inner.ingested.load(Relaxed),
        );
        line(
            "uploaded_items_total",
            "Data items stored through the bundler surface (POST /tx).",
            "counter",
            self.inner.uploaded.load(Relaxed),
        );
        for (name, help, value) in self.checkpoint_stats() {
            line(name, help, "counter", value);
        }
        if let Some((pages, slots, failures)) = self.network_stats() {
            line(
                "upstream_pages_total",
                "SU pages read (network mode).",
                "counter",
                pages,
            );
            line(
                "upstream_slots_total",
                "Remote slots checked and appended.",
                "counter",
                slots,
            );
            line(
                "upstream_failures_total",
                "Upstream syncs that failed.",
                "counter",
                failures,
            );
        }
        out
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

fn filtered_tags(m: &Value, drop: &[&str]) -> Vec<(String, String)> {
    m.get("Tags")
        .and_then(Value::as_array)
        .map(|t| {
            t.iter()
                .filter_map(|t| {
                    let n = t.get("name")?.as_str()?;
                    let v = match t.get("value")? {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (!drop.contains(&n)).then(|| (n.to_string(), v))
                })
                .collect()
        })
        .unwrap_or_default()
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

struct Cursor {
    bound: cu_store::Bound,
    sort: Option<Sort>,
}

/// A cursor (base64 JSON `{timestamp, ordinate, cron, sort}`) or a plain timestamp.
fn parse_cursor(s: &str) -> Result<Cursor, NodeError> {
    if let Ok(ts) = s.parse::<u64>() {
        return Ok(Cursor {
            bound: cu_store::Bound::Timestamp(ts),
            sort: None,
        });
    }
    let bytes = STANDARD
        .decode(s)
        .map_err(|_| bad(format!("invalid cursor {s:?}")))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| bad(format!("invalid cursor {s:?}")))?;
    let sort = match v.get("sort").and_then(Value::as_str) {
        Some("DESC") => Some(Sort::Desc),
        Some("ASC") => Some(Sort::Asc),
        _ => None,
    };
    let bound = match v.get("pos").and_then(Value::as_u64) {
        Some(p) => cu_store::Bound::Pos(p),
        None => cu_store::Bound::Timestamp(
            v.get("timestamp")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("invalid cursor {s:?}")))?,
        ),
    };
    Ok(Cursor { bound, sort })
}

/// A stored `EvalOutput` in the reference's route shape: `{Messages, Assignments, Spawns, Output,
/// GasUsed?, Error?}`.
fn result_shape(output_json: &str, with_gas: bool) -> Result<Value, NodeError> {
    let v: Value =
        serde_json::from_str(output_json).map_err(|e| NodeError::Internal(format!("stored result: {e}")))?;
    let field = |n: &str| v.get(n).cloned().unwrap_or(Value::Array(Vec::new()));
    let mut m = Map::new();
    m.insert("Messages".into(), field("Messages"));
    m.insert("Assignments".into(), field("Assignments"));
    m.insert("Spawns".into(), field("Spawns"));
    m.insert(
        "Output".into(),
        v.get("Output").cloned().unwrap_or(Value::String(String::new())),
    );
    if with_gas {
        m.insert("GasUsed".into(), v.get("GasUsed").cloned().unwrap_or(0.into()));
    }
    if let Some(e) = v.get("Error") {
        m.insert("Error".into(), e.clone());
    }
    Ok(Value::Object(m))
}

/// The dry-run msg: `{Timestamp, Block-Height, Cron:false, Target, ...body, From, Read-Only:true}` put in
/// the reference's `messageSchema` key order (unknown keys dropped, tags `From`/`Owner` removed).
fn dry_run_msg(
    process_id: &str,
    body: &Map<String, Value>,
    ts: u64,
    height: u64,
) -> Result<String, NodeError> {
    let mut all = Map::new();
    all.insert("Timestamp".into(), ts.into());
    all.insert("Block-Height".into(), height.into());
    all.insert("Cron".into(), false.into());
    all.insert("Target".into(), process_id.into());
    for (k, v) in body {
        all.insert(k.clone(), v.clone());
    }
    let owner = match body.get("Owner") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => return Err(bad("'Owner': Required")),
        Some(_) => return Err(bad("'Owner': Expected string")),
    };
    let tags: Vec<Value> = match body.get("Tags") {
        Some(Value::Array(t)) => t.clone(),
        None => Vec::new(),
        Some(_) => return Err(bad("'Tags': Expected array")),
    };
    if let Some(i) = tags.iter().position(|t| {
        !(t.get("name").is_some_and(Value::is_string) && t.get("value").is_some_and(Value::is_string))
    }) {
        return Err(bad(format!(
            "'Tags[{i}]': Expected {{name: string, value: string}}"
        )));
    }
    let from = tags
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some("From-Process"))
        .and_then(|t| t.get("value").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map_or(owner, str::to_string);
    all.insert("From".into(), from.into());
    all.insert("Read-Only".into(), true.into());
    all.insert(
        "Tags".into(),
        Value::Array(
            tags.into_iter()
                .filter(|t| !matches!(t.get("name").and_then(Value::as_str), Some("From" | "Owner")))
                .collect(),
        ),
    );
    let order = [
        "Id",
        "Signature",
        "Data",
        "Owner",
        "Target",
        "Anchor",
        "From",
        "Forwarded-By",
        "Tags",
        "Epoch",
        "Nonce",
        "Timestamp",
        "Block-Height",
        "Hash-Chain",
        "Cron",
        "Read-Only",
    ];
    let mut m = Map::new();
    for k in order {
        if let Some(v) = all.remove(k)
            && !v.is_null()
        {
            m.insert(k.into(), v);
        }
    }
    Ok(Value::Object(m).to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn wallet() -> Wallet {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cu-ans104/tests/oracle/test-jwk.json");
        Wallet::from_jwk_json(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn assigned(process_id: &str, message_id: &str) -> Assigned {
        Assigned {
            process_id: process_id.into(),
            message_id: message_id.into(),
            nonce: 7,
            epoch: 0,
            timestamp: 1_750_000_000_123,
            block_height: 42,
            hash_chain: "chain".into(),
            assignment_id: "assignment".into(),
            pos: 8,
        }
    }

    #[test]
    fn an_assigned_msg_keeps_the_original_target_and_has_no_forwarded_by() {
        let w = wallet();
        let original_target = "Q".repeat(43);
        let from_process = "P".repeat(43);
        let raw = w
            .sign_data_item(
                b"payload",
                &[
                    ("Action", "Transfer"),
                    ("From-Process", from_process.as_str()),
                    ("Owner", "dropped"),
                ],
                Some(&original_target),
                None,
            )
            .unwrap();
        let item = DataItem::parse(&raw).unwrap();
        let a = assigned("B".repeat(43).as_str(), &item.id());
        // A scheduled message: Target = the process, Forwarded-By = the signer.
        let scheduled: Value = serde_json::from_str(&build_msg(&item, &a)).unwrap();
        assert_eq!(scheduled["Target"], "B".repeat(43));
        assert_eq!(scheduled["Forwarded-By"], w.address());
        // The assignment: the original's recipient, no Forwarded-By, the rest the same, in the same order.
        let s = assignment_msg(&item, &a);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["Target"], original_target);
        assert!(v.get("Forwarded-By").is_none(), "{s}");
        assert_eq!(v["From"], from_process);
        assert_eq!(v["Owner"], w.address());
        assert_eq!(v["Id"], item.id());
        assert_eq!(v["Data"], "payload");
        assert_eq!(v["Nonce"], 7);
        assert_eq!(v["Timestamp"], 1_750_000_000_123u64);
        assert_eq!(v["Hash-Chain"], "chain");
        let tags: Vec<&str> = v["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(tags, ["Action", "From-Process"]);
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "Id",
                "Signature",
                "Data",
                "Owner",
                "Target",
                "Anchor",
                "From",
                "Tags",
                "Epoch",
                "Nonce",
                "Timestamp",
                "Block-Height",
                "Hash-Chain",
                "Cron",
                "Read-Only"
            ]
        );
        // Without a recipient the Target is "" (the reference's `recipient || ''`).
        let raw = w.sign_data_item(b"", &[("Action", "Echo")], None, None).unwrap();
        let item = DataItem::parse(&raw).unwrap();
        let v: Value = serde_json::from_str(&assignment_msg(&item, &a)).unwrap();
        assert_eq!(v["Target"], "");
    }
}
