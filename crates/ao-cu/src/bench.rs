//! `ao-cu bench`: a load generator. N processes × M messages of one module and one message template,
//! driven the way a CU is driven, once per worker count:
//!
//! - **engine** (in process): a [`cu_engine::Engine`] over a store in a temporary directory. Each process
//!   is put in the store with its spawn message at log position 1 (evaluated before the clock starts:
//!   compile from the AOT cache, boot); then every process, concurrently, appends one message to its log
//!   and asks the engine for it ([`Engine::evaluate_to`]), waits until the result is committed, and goes on
//!   with the next. Reported: aggregate msg/s (N·M over the wall time), per-process msg/s, latency
//!   p50/p99 from the append to the durable result, resident memory per process (the engine's count, and
//!   the growth of this process's VmRSS divided by N), checkpoint bytes (one explicit checkpoint of every
//!   process after the run, plus any the policy took).
//! - **http**: an in-process node (`cu-node`) behind `cu_http::router` on `127.0.0.1:0`. The module is
//!   uploaded and the N processes spawned as signed data items (`POST /`). Then two phases: *ingest*,
//!   every message pre-signed and posted by a bounded pool of clients (ingest msg/s, `POST /` latency),
//!   ending when every process's last result is readable (`GET /result`); and *latency*, each client
//!   signs a message, posts it and reads its result before the next (p50/p99 from signing to a readable
//!   result). Data items are signed with a fixed secp256k1 key (fast); the node's own wallet is a fresh
//!   RSA-4096 key (a few seconds to generate, once per run).
//!
//! Messages never see the wall clock: ids, nonces and timestamps follow the log position (engine), or
//! the node runs on a counter clock (http).
//!
//! Output: a table on stdout, or one JSON object with `--json`; a progress bar on stderr when it is a
//! terminal (never with `--json`). Bad input exits 1 with a message, a failure while running exits 2.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use cu_ans104::{EthereumSigner, Wallet};
use cu_engine::{CheckpointPolicy, Engine, EngineConfig, EngineError};
use cu_store::{Database, LogEntry, ModuleRecord, ProcessRecord, Store, StoreOptions, Tag};
use cu_types::ModuleFormat;
use cu_types::result::to_js_json;
use cu_wasm::Loader;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::eval::CacheArgs;

/// The default module: the Lua test process `tests/modules/build.sh` builds.
const DEFAULT_MODULE: &str = "tests/modules/build/lua-process.wasm";
/// The default message: a small Lua `Eval` that updates the process's state.
const DEFAULT_CODE: &str = "n = (n or 0) + 1 return n";
/// First timestamp of the generated messages (ms); message at position p gets `+ p * 1000`.
const EPOCH_MS: u64 = 1_717_000_000_000;
/// Block height of the generated messages.
const BLOCK_HEIGHT: u64 = 1_440_000;
/// Owner and sender of the engine mode's messages.
const OWNER: &str = "ao-cu-bench-owner-0000000000000000000000000";

/// Where the benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// In-process engine over a temporary store.
    Engine,
    /// In-process node behind the HTTP API on a local port.
    Http,
    /// Both, one after the other.
    Both,
}

/// Arguments of `ao-cu bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// The WebAssembly module; default: the Lua test process built by `tests/modules/build.sh`.
    #[arg(long)]
    module: Option<PathBuf>,
    /// The module format (the `Module-Format` tag value).
    #[arg(long, default_value = "wasm32-unknown-emscripten2")]
    format: String,
    /// A JSON message template (a `msg` object, or `{"msg": ..., "env": ...}` whose `msg` is used). Id,
    /// Target, Nonce and Timestamp are set per message.
    #[arg(long, conflicts_with_all = ["action", "data"])]
    message: Option<PathBuf>,
    /// The simple form of the message: its `Action` tag.
    #[arg(long, default_value = "Eval")]
    action: String,
    /// The simple form of the message: its `Data` (default: a small Lua Eval, `n = (n or 0) + 1 return n`).
    #[arg(long)]
    data: Option<String>,
    /// Processes.
    #[arg(long, default_value_t = 4)]
    processes: usize,
    /// Messages per process.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Engine workers (shards); a comma list gives one row per count, e.g. `1,2`. Default: one per core.
    #[arg(long, value_delimiter = ',')]
    workers: Vec<usize>,
    /// HTTP clients sending at once (http mode); default: min(processes, 16).
    #[arg(long)]
    concurrency: Option<usize>,
    /// engine, http or both.
    #[arg(long, value_enum, default_value_t = Mode::Engine)]
    mode: Mode,
    /// Run the store on this PostgreSQL server (`postgres://user:password@host:port/dbname`) instead of
    /// SQLite in the temporary directory. Each row works in a schema of its own, dropped afterwards.
    #[arg(long)]
    db_url: Option<String>,
    /// Measure the ao-cu node, or the cluster behind a proxy, already serving at this URL instead of an
    /// in-process node (http mode only; one row, its workers are the server's own).
    #[arg(long)]
    target: Option<String>,
    /// Print one JSON object instead of the table (and no progress bar).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

/// Why `ao-cu bench` failed; each kind has its exit code.
#[derive(Debug)]
pub enum BenchError {
    /// The input is wrong (arguments, module file, message template): exit code 1.
    Input(anyhow::Error),
    /// The run failed: exit code 2.
    Runtime(anyhow::Error),
}

impl BenchError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            BenchError::Input(_) => 1,
            BenchError::Runtime(_) => 2,
        }
    }
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Input(e) => write!(f, "bad input: {e:#}"),
            BenchError::Runtime(e) => write!(f, "{e:#}"),
        }
    }
}

fn input(e: impl Into<anyhow::Error>) -> BenchError {
    BenchError::Input(e.into())
}

fn runtime(e: impl Into<anyhow::Error>) -> BenchError {
    BenchError::Runtime(e.into())
}

/// Everything the modes share, checked before anything runs.
struct Plan {
    module_path: PathBuf,
    wasm: Vec<u8>,
    module_id: String,
    format: ModuleFormat,
    /// The message template (a JSON object).
    template: Map<String, Value>,
    processes: usize,
    messages: usize,
    workers: Vec<usize>,
    concurrency: usize,
    progress: bool,
    /// The store's engine (each row puts PostgreSQL tables in a fresh schema).
    database: Database,
    /// A node or cluster already serving, measured instead of an in-process node (http mode).
    target: Option<String>,
}

/// The module path: `--module`, else the Lua test process under the working directory or this
/// repository.
fn module_path(arg: Option<&Path>) -> Result<PathBuf, BenchError> {
    if let Some(p) = arg {
        return Ok(p.to_path_buf());
    }
    let here = PathBuf::from(DEFAULT_MODULE);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(DEFAULT_MODULE);
    for candidate in [&here, &repo] {
        if candidate.is_file() {
            return Ok(candidate.clone());
        }
    }
    Err(input(anyhow!(
        "no --module given and the default module, the Lua test process {DEFAULT_MODULE}, is missing: build it \
         with tests/modules/build.sh (or pass --module PATH --format FORMAT)"
    )))
}

fn template(args: &BenchArgs) -> Result<Map<String, Value>, BenchError> {
    let Some(path) = &args.message else {
        let code = args.data.clone().unwrap_or_else(|| DEFAULT_CODE.to_string());
        let mut m = Map::new();
        m.insert("Tags".into(), json!([{"name": "Action", "value": args.action}]));
        m.insert("Data".into(), Value::String(code));
        return Ok(m);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the message template {}", path.display()))
        .map_err(input)?;
    let value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))
        .map_err(input)?;
    let msg = match value {
        Value::Object(mut o) if o.get("msg").is_some_and(Value::is_object) => o.remove("msg"),
        other => Some(other),
    };
    let Some(Value::Object(msg)) = msg else {
        return Err(input(anyhow!(
            "{}: the message template must be a JSON object (a msg, or {{\"msg\": ..., \"env\": ...}})",
            path.display()
        )));
    };
    if let Some(tags) = msg.get("Tags") {
        let ok = tags.as_array().is_some_and(|a| {
            a.iter().all(|t| {
                t.get("name").is_some_and(Value::is_string) && t.get("value").is_some_and(Value::is_string)
            })
        });
        if !ok {
            return Err(input(anyhow!(
                "{}: \"Tags\" must be an array of {{\"name\": string, \"value\": string}}",
                path.display()
            )));
        }
    }
    Ok(msg)
}

fn plan(args: &BenchArgs) -> Result<Plan, BenchError> {
    let format: ModuleFormat = args.format.parse().map_err(input)?;
    if args.processes == 0 || args.messages == 0 {
        return Err(input(anyhow!("--processes and --messages must be at least 1")));
    }
    if args.workers.contains(&0) {
        return Err(input(anyhow!("--workers: every count must be at least 1")));
    }
    if args.concurrency == Some(0) {
        return Err(input(anyhow!("--concurrency must be at least 1")));
    }
    let total = args.processes.checked_mul(args.messages);
    if total.is_none_or(|t| t > 100_000_000) {
        return Err(input(anyhow!(
            "--processes × --messages is too large (at most 100,000,000)"
        )));
    }
    if args.target.is_some() && !matches!(args.mode, Mode::Http) {
        return Err(input(anyhow!(
            "--target measures a serving node: use it with --mode http"
        )));
    }
    let template = template(args)?;
    let module_path = module_path(args.module.as_deref())?;
    let wasm = std::fs::read(&module_path)
        .with_context(|| format!("cannot read module {}", module_path.display()))
        .map_err(input)?;
    check_wasm_header(&wasm, &module_path)?;
    let workers = if args.workers.is_empty() {
        vec![std::thread::available_parallelism().map_or(1, |n| n.get())]
    } else {
        args.workers.clone()
    };
    Ok(Plan {
        module_id: hex::encode(Sha256::digest(&wasm)),
        module_path,
        wasm,
        format,
        template,
        processes: args.processes,
        messages: args.messages,
        workers,
        concurrency: args.concurrency.unwrap_or(args.processes.min(16)),
        progress: !args.json && std::io::stderr().is_terminal(),
        database: match &args.db_url {
            None => Database::Sqlite,
            Some(url) => Database::from_url(url).map_err(|e| BenchError::Input(anyhow::anyhow!(e)))?,
        },
        target: args.target.as_ref().map(|t| t.trim_end_matches('/').to_owned()),
    })
}

/// A file that is not WebAssembly is bad input (caught here rather than as a compile failure later).
fn check_wasm_header(wasm: &[u8], path: &Path) -> Result<(), BenchError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(input(anyhow!(
            "{}: not a WebAssembly module (no \\0asm header)",
            path.display()
        )));
    }
    Ok(())
}

/// The tags of the module (record and env): its format and the limits the reference's tests use.
fn module_tags(format: ModuleFormat) -> Vec<(String, String)> {
    [
        ("Data-Protocol", "ao"),
        ("Variant", "ao.TN.1"),
        ("Type", "Module"),
        ("Module-Format", format.as_str()),
        ("Input-Encoding", "JSON-1"),
        ("Output-Encoding", "JSON-1"),
        ("Memory-Limit", "1-gb"),
        ("Compute-Limit", "9000000000000"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

fn tags_json(tags: &[(String, String)]) -> Value {
    Value::Array(tags.iter().map(|(n, v)| json!({"name": n, "value": v})).collect())
}

/// The template's tags as pairs.
fn template_tags(template: &Map<String, Value>) -> Vec<(String, String)> {
    template
        .get("Tags")
        .and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|t| {
                    Some((
                        t.get("name")?.as_str()?.to_string(),
                        t.get("value")?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The template's `Data` as text.
fn template_data(template: &Map<String, Value>) -> String {
    match template.get("Data") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn process_id(i: usize) -> String {
    format!("{:0>43}", format!("bench-process-{i}"))
}

fn message_id(process: usize, pos: u64) -> String {
    format!("{:0>43}", format!("bench-p{process}-m{pos}"))
}

// ------------------------------------------------------------------------------------------------
// Statistics and progress

/// p-quantile (nearest rank) of sorted `xs`; 0 for none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Latency summary in milliseconds.
fn latency_json(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    let mean = if ms.is_empty() {
        0.0
    } else {
        ms.iter().sum::<f64>() / ms.len() as f64
    };
    json!({
        "p50": round3(quantile(&ms, 0.50)),
        "p99": round3(quantile(&ms, 0.99)),
        "max": round3(ms.last().copied().unwrap_or(0.0)),
        "mean": round3(mean),
        "count": ms.len(),
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn rate(count: usize, secs: f64) -> f64 {
    if secs > 0.0 {
        round3(count as f64 / secs)
    } else {
        0.0
    }
}

/// VmRSS of this process in bytes (0 where `/proc` is missing).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `nproc` and the CPU model.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}")
}

/// A progress bar on stderr, redrawn by its own thread; a no-op when disabled.
struct Progress {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(enabled: bool, label: String, total: u64) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = enabled.then(|| {
            let (done, stop) = (done.clone(), stop.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let draw = |final_line: bool| {
                    let n = done.load(Ordering::Relaxed).min(total);
                    let width = 30u64;
                    let filled = (n * width).checked_div(total).unwrap_or(width) as usize;
                    let secs = started.elapsed().as_secs_f64();
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r{label:<22} [{}{}] {n}/{total} msgs  {:.0} msg/s  {secs:.1}s\x1b[K",
                        "#".repeat(filled),
                        "-".repeat(width as usize - filled),
                        if secs > 0.0 { n as f64 / secs } else { 0.0 },
                    );
                    if final_line {
                        let _ = write!(err, "\r\x1b[K");
                    }
                    let _ = err.flush();
                };
                while !stop.load(Ordering::Relaxed) {
                    draw(false);
                    std::thread::sleep(Duration::from_millis(100));
                }
                draw(true);
            })
        });
        Progress { done, stop, thread }
    }

    fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Engine mode

/// The msg of the engine mode at log position `pos` of process `p`: the template with the fields a
/// scheduler sets.
fn engine_message(plan: &Plan, p: usize, pos: u64) -> String {
    let pid = process_id(p);
    let mut m = Map::new();
    m.insert("Id".into(), Value::String(message_id(p, pos)));
    m.insert("Owner".into(), Value::String(OWNER.into()));
    m.insert("Target".into(), Value::String(pid));
    m.insert("From".into(), Value::String(OWNER.into()));
    for (k, v) in &plan.template {
        if !matches!(k.as_str(), "Id" | "Target" | "Nonce" | "Timestamp") {
            m.insert(k.clone(), v.clone());
        }
    }
    m.entry("Tags").or_insert_with(|| json!([]));
    m.entry("Data").or_insert_with(|| Value::String(String::new()));
    m.insert("Epoch".into(), json!(0));
    m.insert("Nonce".into(), json!(pos - 1));
    m.insert("Timestamp".into(), json!(EPOCH_MS + pos * 1000));
    m.entry("Block-Height").or_insert_with(|| json!(BLOCK_HEIGHT));
    m.entry("Cron").or_insert(Value::Bool(false));
    m.entry("Read-Only").or_insert(Value::Bool(false));
    to_js_json(&Value::Object(m))
}

fn process_tags(plan: &Plan) -> Vec<(String, String)> {
    vec![
        ("Data-Protocol".into(), "ao".into()),
        ("Variant".into(), "ao.TN.1".into()),
        ("Type".into(), "Process".into()),
        ("Module".into(), plan.module_id.clone()),
        ("Name".into(), "ao-cu-bench".into()),
    ]
}

/// The spawn message (log position 1) and the env of process `p`.
fn engine_spawn(plan: &Plan, p: usize) -> (String, String) {
    let pid = process_id(p);
    let ptags = process_tags(plan);
    let msg = json!({
        "Id": pid, "Owner": OWNER, "Target": pid, "From": OWNER,
        "Tags": tags_json(&ptags), "Data": "",
        "Epoch": 0, "Nonce": 0, "Timestamp": EPOCH_MS, "Block-Height": BLOCK_HEIGHT,
        "Cron": false, "Read-Only": false,
    });
    let env = json!({
        "Process": {"Id": pid, "Owner": OWNER, "Tags": tags_json(&ptags)},
        "Module": {"Id": plan.module_id, "Owner": OWNER, "Tags": tags_json(&module_tags(plan.format))},
    });
    (to_js_json(&msg), to_js_json(&env))
}

fn log_entry(pid: &str, pos: u64, message_id: String, msg_json: String) -> LogEntry {
    LogEntry {
        process_id: pid.to_string(),
        pos,
        message_id: Some(message_id),
        nonce: Some(pos - 1),
        timestamp: EPOCH_MS + pos * 1000,
        block_height: BLOCK_HEIGHT,
        cron: None,
        msg_json,
    }
}

fn store_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(name, value)| Tag {
            name: name.clone(),
            value: value.clone(),
        })
        .collect()
}

/// What one process's driver measured.
struct ProcessRun {
    /// Append → durable result, per message (ms).
    latencies_ms: Vec<f64>,
    /// From its first append to its last durable result (s).
    secs: f64,
}

/// Drives process `p`: appends its messages one at a time and waits for each durable result.
async fn drive_engine(
    engine: Arc<Engine>,
    store: Store,
    messages: Arc<Vec<Vec<String>>>,
    p: usize,
    done: Arc<AtomicU64>,
) -> Result<ProcessRun, anyhow::Error> {
    let pid = process_id(p);
    let mut latencies_ms = Vec::with_capacity(messages[p].len());
    let started = Instant::now();
    for (i, msg) in messages[p].iter().enumerate() {
        let pos = i as u64 + 2;
        let entry = log_entry(&pid, pos, message_id(p, pos), msg.clone());
        let t0 = Instant::now();
        let s = store.clone();
        tokio::task::spawn_blocking(move || s.append(&[entry]))
            .await
            .context("append task")?
            .with_context(|| format!("appending message {pos} of {pid}"))?;
        let rx = engine
            .evaluate_to(&pid, pos)
            .with_context(|| format!("evaluating {pid} to {pos}"))?;
        rx.await
            .map_err(|_| anyhow!("the engine stopped"))?
            .with_context(|| format!("evaluating {pid} to {pos}"))?;
        latencies_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(ProcessRun {
        latencies_ms,
        secs: started.elapsed().as_secs_f64(),
    })
}

fn engine_row(plan: &Plan, loader: &Arc<Loader>, workers: usize) -> Result<Value, BenchError> {
    let dir = tempfile::Builder::new()
        .prefix("ao-cu-bench-")
        .tempdir()
        .context("creating a temporary store directory")
        .map_err(runtime)?;
    let row_db = RowDatabase::new(&plan.database)?;
    let store = Store::open(dir.path(), row_db.options())
        .context("opening the temporary store")
        .map_err(runtime)?;
    store
        .put_module(&ModuleRecord {
            id: plan.module_id.clone(),
            format: plan.format.as_str().to_string(),
            owner: OWNER.into(),
            owner_key: None,
            tags: store_tags(&module_tags(plan.format)),
            wasm: plan.wasm.clone(),
        })
        .map_err(runtime)?;
    let ptags = store_tags(&process_tags(plan));
    let mut spawns = Vec::with_capacity(plan.processes);
    for p in 0..plan.processes {
        let pid = process_id(p);
        let (msg, env) = engine_spawn(plan, p);
        store
            .put_process(&ProcessRecord {
                id: pid.clone(),
                module_id: plan.module_id.clone(),
                owner: OWNER.into(),
                tags: ptags.clone(),
                env_json: env,
                block_height: BLOCK_HEIGHT,
                timestamp: EPOCH_MS,
                spawn_json: "{}".into(),
            })
            .map_err(runtime)?;
        spawns.push(log_entry(&pid, 1, pid.clone(), msg));
    }
    store.append(&spawns).map_err(runtime)?;
    // Built before the clock starts.
    let messages: Arc<Vec<Vec<String>>> = Arc::new(
        (0..plan.processes)
            .map(|p| {
                (0..plan.messages)
                    .map(|i| engine_message(plan, p, i as u64 + 2))
                    .collect()
            })
            .collect(),
    );
    let config = EngineConfig {
        workers,
        pin_cores: false,
        queue_capacity: 4096.max(2 * plan.processes),
        checkpoints: CheckpointPolicy::default(),
        dry_run_workers: 1,
        ..EngineConfig::default()
    };
    let rss_before = rss_bytes();
    let engine = Arc::new(Engine::start(config, store.clone(), loader.clone()).map_err(runtime)?);

    // Boot every process (position 1) before measuring.
    let boot_started = Instant::now();
    let waiters = (0..plan.processes)
        .map(|p| engine.evaluate_to(&process_id(p), 1))
        .collect::<Result<Vec<_>, EngineError>>()
        .map_err(runtime)?;
    for rx in waiters {
        rx.blocking_recv()
            .map_err(|_| runtime(anyhow!("the engine stopped")))?
            .context("booting the processes (position 1, the spawn message)")
            .map_err(runtime)?;
    }
    let boot_secs = boot_started.elapsed().as_secs_f64();

    let total = plan.processes * plan.messages;
    let progress = Progress::start(
        plan.progress,
        format!("engine, {workers} worker(s)"),
        total as u64,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_name("ao-cu-bench")
        .build()
        .context("starting the async runtime")
        .map_err(runtime)?;
    let started = Instant::now();
    let runs: Result<Vec<ProcessRun>, anyhow::Error> = rt.block_on(async {
        let tasks: Vec<_> = (0..plan.processes)
            .map(|p| {
                tokio::spawn(drive_engine(
                    engine.clone(),
                    store.clone(),
                    messages.clone(),
                    p,
                    progress.counter(),
                ))
            })
            .collect();
        let mut runs = Vec::with_capacity(tasks.len());
        for t in tasks {
            runs.push(t.await.context("driver task")??);
        }
        Ok(runs)
    });
    let wall = started.elapsed().as_secs_f64();
    progress.finish();
    drop(rt);
    let runs = runs.map_err(runtime)?;
    let rss_after = rss_bytes();
    let stats_run = engine.stats();

    // One explicit checkpoint of every process: what a process's state costs on disk.
    let checkpoint_started = Instant::now();
    for p in 0..plan.processes {
        engine.checkpoint(&process_id(p)).map_err(runtime)?;
    }
    let checkpoint_secs = checkpoint_started.elapsed().as_secs_f64();
    let stats = engine.stats();
    let engine = Arc::try_unwrap(engine).map_err(|_| runtime(anyhow!("the engine is still shared")))?;
    engine.shutdown().map_err(runtime)?;

    let mut errors = 0u64;
    for p in 0..plan.processes {
        let pid = process_id(p);
        for pos in 2..plan.messages as u64 + 2 {
            match store.result(&pid, pos).map_err(runtime)? {
                Some(r) if r.has_error => errors += 1,
                Some(_) => {}
                None => return Err(runtime(anyhow!("no result for message {pos} of {pid}"))),
            }
        }
    }

    let per_process: Vec<f64> = runs.iter().map(|r| rate(plan.messages, r.secs)).collect();
    let latencies: Vec<f64> = runs.iter().flat_map(|r| r.latencies_ms.iter().copied()).collect();
    let n = plan.processes as f64;
    let mean = per_process.iter().sum::<f64>() / n;
    let min = per_process.iter().copied().fold(f64::INFINITY, f64::min);
    let max = per_process.iter().copied().fold(0.0, f64::max);
    Ok(json!({
        "workers": workers,
        "messages": latencies.len(),
        "errors": errors,
        "evaluated": stats_run.evaluated,
        "wall_s": round3(wall),
        "msgs_per_s": rate(latencies.len(), wall),
        "per_process_msgs_per_s": {"mean": round3(mean), "min": round3(min), "max": round3(max)},
        "latency_ms": latency_json(latencies),
        "boot_s": round3(boot_secs),
        "resident_bytes_per_process": stats_run.resident_bytes / plan.processes as u64,
        "rss_delta_per_process_bytes": rss_after.saturating_sub(rss_before) / plan.processes as u64,
        "checkpoints": stats.bases + stats.deltas,
        "checkpoint_bytes": stats.checkpoint_bytes,
        "checkpoint_bytes_per_process": stats.checkpoint_bytes / plan.processes as u64,
        "checkpoint_s": round3(checkpoint_secs),
    }))
}

fn engine_mode(plan: &Plan, cache: &CacheArgs) -> Result<Vec<Value>, BenchError> {
    let loader = Arc::new(Loader::new(cache.aot_cache()).map_err(runtime)?);
    // Compile (or read the AOT cache) once, so no row pays for it.
    loader
        .load(&plan.wasm, plan.format)
        .with_context(|| format!("compiling {}", plan.module_path.display()))
        .map_err(input)?;
    plan.workers
        .iter()
        .map(|&w| engine_row(plan, &loader, w))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// HTTP mode

/// A blocking HTTP client of the node (one per client thread; keeps its connection).
struct Client {
    agent: ureq::Agent,
    base: String,
}

impl Client {
    fn new(base: &str) -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build();
        Client {
            agent: config.into(),
            base: base.to_string(),
        }
    }

    /// `POST /` of a signed item; the id the node answers.
    fn post_item(&self, item: &[u8]) -> anyhow::Result<String> {
        let mut resp = self
            .agent
            .post(format!("{}/", self.base))
            .header("content-type", "application/octet-stream")
            .send(item)
            .context("POST /")?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().context("POST / body")?;
        if status != 202 && status != 200 {
            bail!("POST /: HTTP {status}: {body}");
        }
        let v: Value = serde_json::from_str(&body).with_context(|| format!("POST /: not JSON: {body}"))?;
        v.get("id")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| anyhow!("POST /: no id in {body}"))
    }

    /// `GET {path}` answered with 200 and JSON.
    fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut resp = self
            .agent
            .get(url.as_str())
            .call()
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().context("GET body")?;
        if status != 200 {
            bail!("GET {path}: HTTP {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
    }

    /// `GET /result/{id}?process-id=` (the node evaluates up to the message before answering).
    fn result(&self, pid: &str, id: &str) -> anyhow::Result<Value> {
        self.get_json(&format!("/result/{id}?process-id={pid}"))
    }
}

/// Signs the data items of the http mode.
struct Signer {
    key: EthereumSigner,
    tags: Vec<(String, String)>,
    data: Vec<u8>,
}

impl Signer {
    fn new(plan: &Plan) -> anyhow::Result<Signer> {
        // A fixed key: the items differ by their anchor, and nothing random reaches a module.
        let secret = blake3::hash(b"ao-cu bench client key");
        let key = EthereumSigner::from_secret_bytes(secret.as_bytes())?;
        let mut tags: Vec<(String, String)> = vec![
            ("Data-Protocol".into(), "ao".into()),
            ("Variant".into(), "ao.TN.1".into()),
            ("Type".into(), "Message".into()),
        ];
        tags.extend(
            template_tags(&plan.template)
                .into_iter()
                .filter(|(n, _)| !matches!(n.as_str(), "Data-Protocol" | "Variant" | "Type")),
        );
        Ok(Signer {
            key,
            tags,
            data: template_data(&plan.template).into_bytes(),
        })
    }

    /// Message `i` of phase `phase` to `pid` (the anchor makes each item, and so its id, unique).
    fn message(&self, pid: &str, phase: u8, i: usize) -> anyhow::Result<Vec<u8>> {
        let anchor = format!("{phase:02}{i:0>30}");
        Ok(self
            .key
            .sign_data_item(&self.data, &self.tags, Some(pid), Some(anchor.as_bytes()))?)
    }
}

/// Runs `job(client, index)` for `index` in `0..count` on `threads` client threads (each index once);
/// returns each thread's values.
fn on_clients<T: Send>(
    base: &str,
    threads: usize,
    count: usize,
    job: impl Fn(&Client, usize) -> anyhow::Result<T> + Sync,
) -> anyhow::Result<Vec<T>> {
    let next = AtomicU64::new(0);
    let out = Mutex::new(Vec::with_capacity(count));
    let failed = AtomicBool::new(false);
    std::thread::scope(|s| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..threads.min(count).max(1))
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    let client = Client::new(base);
                    while !failed.load(Ordering::Relaxed) {
                        let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                        if i >= count {
                            break;
                        }
                        match job(&client, i) {
                            Ok(v) => out.lock().map_err(|_| anyhow!("poisoned"))?.push(v),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| anyhow!("a client thread panicked"))??;
        }
        Ok(())
    })?;
    out.into_inner().map_err(|_| anyhow!("poisoned"))
}

/// The store engine of one benchmark row: SQLite in the row's temporary directory, or a PostgreSQL schema
/// of its own, dropped when the row ends.
struct RowDatabase {
    base: Database,
    row: Database,
    schema: String,
}

impl RowDatabase {
    fn new(base: &Database) -> Result<RowDatabase, BenchError> {
        static ROWS: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "ao_cu_bench_{}_{}",
            std::process::id(),
            ROWS.fetch_add(1, Ordering::Relaxed)
        );
        let row = base
            .in_schema(&schema)
            .context("preparing the row's PostgreSQL schema")
            .map_err(runtime)?;
        Ok(RowDatabase {
            base: base.clone(),
            row,
            schema,
        })
    }

    fn options(&self) -> StoreOptions {
        StoreOptions {
            database: self.row.clone(),
            ..StoreOptions::default()
        }
    }
}

impl Drop for RowDatabase {
    fn drop(&mut self) {
        if let Err(e) = self.base.drop_schema(&self.schema) {
            eprintln!("ao-cu bench: cannot drop schema {}: {e}", self.schema);
        }
    }
}

fn http_row(plan: &Plan, wallet: &Wallet, aot: &Path, workers: usize) -> Result<Value, BenchError> {
    let row_db = RowDatabase::new(&plan.database)?;
    let dir = tempfile::Builder::new()
        .prefix("ao-cu-bench-node-")
        .tempdir()
        .context("creating a temporary data directory")
        .map_err(runtime)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("ao-cu-bench-http")
        .build()
        .context("starting the async runtime")
        .map_err(runtime)?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .context("listening on 127.0.0.1")
        .map_err(runtime)?;
    let local = listener.local_addr().map_err(runtime)?;
    // A counter clock: scheduled timestamps never come from the wall clock.
    let clock = Arc::new(AtomicU64::new(EPOCH_MS));
    let config = cu_node::NodeConfig {
        data_dir: dir.path().to_path_buf(),
        wallet: wallet.clone(),
        engine: EngineConfig {
            workers,
            pin_cores: false,
            queue_capacity: 4096.max(2 * plan.processes),
            dry_run_workers: 1,
            ..EngineConfig::default()
        },
        store: row_db.options(),
        aot_cache: Some(aot.to_path_buf()),
        max_item_bytes: cu_node::DEFAULT_MAX_ITEM_BYTES.max(plan.wasm.len() + (1 << 20)),
        cron: false,
        clock: Arc::new(move || clock.fetch_add(1, Ordering::SeqCst)),
        public_url: format!("http://{local}"),
        hbu_verify_signatures: false,
        upload_quota: None,
        network: None,
        checkpoint_uploads: None,
        model_budget: cu_node::DEFAULT_MODEL_BUDGET,
        scheduler_role: true,
    };
    let node = {
        let _inside = rt.enter();
        cu_node::Node::open(config)
            .context("opening the node")
            .map_err(runtime)?
    };
    let http = cu_http::HttpConfig {
        body_limit: plan.wasm.len() + (2 << 20),
        ..cu_http::HttpConfig::default()
    };
    let app = cu_http::router(node.clone(), http);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await
    });
    let base = format!("http://{local}");
    let measured = http_measure(plan, &node.address(), &base, workers);
    let _ = stop_tx.send(());
    let served = rt.block_on(server);
    // The node's shutdown blocks (engine, store): off the async worker threads.
    let closed = rt
        .block_on(rt.spawn_blocking(move || node.shutdown()))
        .map_err(|e| runtime(anyhow!("node shutdown task: {e}")))?;
    drop(rt);
    let row = measured.map_err(runtime)?;
    served
        .map_err(|e| runtime(anyhow!("server task: {e}")))?
        .context("serving HTTP")
        .map_err(runtime)?;
    closed.context("shutting the node down").map_err(runtime)?;
    Ok(row)
}

fn http_measure(plan: &Plan, scheduler: &str, base: &str, workers: usize) -> anyhow::Result<Value> {
    let signer = Signer::new(plan)?;
    let setup = Client::new(base);
    let module_item = signer
        .key
        .sign_data_item(&plan.wasm, &module_tags(plan.format), None, None)?;
    let module_id = setup.post_item(&module_item).context("uploading the module")?;
    let mut pids = Vec::with_capacity(plan.processes);
    for p in 0..plan.processes {
        let name = format!("ao-cu-bench-{p}");
        let tags = [
            ("Data-Protocol", "ao"),
            ("Variant", "ao.TN.1"),
            ("Type", "Process"),
            ("Module", module_id.as_str()),
            ("Scheduler", scheduler),
            ("Name", name.as_str()),
        ];
        let anchor = format!("{p:0>32}");
        let item = signer
            .key
            .sign_data_item(b"", &tags, None, Some(anchor.as_bytes()))?;
        let pid = setup.post_item(&item).context("spawning a process")?;
        pids.push(pid);
    }
    // Boot every process (its spawn message) before measuring.
    let boot_started = Instant::now();
    on_clients(base, plan.concurrency, plan.processes, |c, p| {
        c.result(&pids[p], &pids[p]).context("booting a process")
    })?;
    let boot_secs = boot_started.elapsed().as_secs_f64();

    let total = plan.processes * plan.messages;
    // Phase 1, ingest: pre-signed items, posted by a bounded pool, in rounds over the processes.
    let items: Vec<(usize, Vec<u8>)> = (0..plan.messages)
        .flat_map(|i| (0..plan.processes).map(move |p| (p, i)))
        .map(|(p, i)| -> anyhow::Result<(usize, Vec<u8>)> { Ok((p, signer.message(&pids[p], 1, i)?)) })
        .collect::<anyhow::Result<_>>()?;
    let progress = Progress::start(plan.progress, format!("http ingest, {workers} w"), total as u64);
    let done = progress.counter();
    let started = Instant::now();
    let posted = on_clients(base, plan.concurrency, items.len(), |c, k| {
        let (p, item) = &items[k];
        let t0 = Instant::now();
        let id = c.post_item(item)?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        done.fetch_add(1, Ordering::Relaxed);
        Ok((*p, k, id, ms))
    })?;
    let ingest_secs = started.elapsed().as_secs_f64();
    progress.finish();
    // Every result readable: the last message of each process (a process evaluates in order).
    let mut last: BTreeMap<usize, (usize, String)> = BTreeMap::new();
    for (p, k, id, _) in &posted {
        let e = last.entry(*p).or_insert((*k, id.clone()));
        if *k >= e.0 {
            *e = (*k, id.clone());
        }
    }
    let lasts: Vec<(usize, String)> = last.into_iter().map(|(p, (_, id))| (p, id)).collect();
    on_clients(base, plan.concurrency, lasts.len(), |c, j| {
        let (p, id) = &lasts[j];
        c.result(&pids[*p], id)
    })?;
    let drained_secs = started.elapsed().as_secs_f64();
    let post_ms: Vec<f64> = posted.iter().map(|x| x.3).collect();

    // Phase 2, latency: each client signs, posts and reads the result before its next message.
    let progress = Progress::start(plan.progress, format!("http latency, {workers} w"), total as u64);
    let done = progress.counter();
    let latency_started = Instant::now();
    let per_process = on_clients(base, plan.concurrency, plan.processes, |c, p| {
        let mut out = Vec::with_capacity(plan.messages);
        let mut errors = 0u64;
        for i in 0..plan.messages {
            let t0 = Instant::now();
            let item = signer.message(&pids[p], 2, i)?;
            let id = c.post_item(&item)?;
            let result = c.result(&pids[p], &id)?;
            out.push(t0.elapsed().as_secs_f64() * 1000.0);
            if result.get("Error").is_some_and(|e| !e.is_null()) {
                errors += 1;
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
        Ok((out, errors))
    })?;
    let latency_secs = latency_started.elapsed().as_secs_f64();
    progress.finish();
    let errors: u64 = per_process.iter().map(|x| x.1).sum();
    let latencies: Vec<f64> = per_process.into_iter().flat_map(|x| x.0).collect();
    Ok(json!({
        "workers": workers,
        "concurrency": plan.concurrency,
        "messages": posted.len(),
        "boot_s": round3(boot_secs),
        "ingest_s": round3(ingest_secs),
        "ingest_msgs_per_s": rate(posted.len(), ingest_secs),
        "ingest_latency_ms": latency_json(post_ms),
        "drained_s": round3(drained_secs),
        "msgs_per_s": rate(posted.len(), drained_secs),
        "latency_messages": latencies.len(),
        "latency_errors": errors,
        "latency_s": round3(latency_secs),
        "latency_msgs_per_s": rate(latencies.len(), latency_secs),
        "latency_ms": latency_json(latencies),
    }))
}

fn http_mode(plan: &Plan, cache: &CacheArgs) -> Result<Vec<Value>, BenchError> {
    if let Some(target) = &plan.target {
        // A serving node or cluster: its SU address from `GET /`; its workers are its own (0 in the row).
        let root = Client::new(target)
            .get_json("/")
            .with_context(|| format!("reading GET / of {target}"))
            .map_err(runtime)?;
        let scheduler = root
            .get("address")
            .and_then(Value::as_str)
            .ok_or_else(|| runtime(anyhow!("GET / of {target} names no address")))?
            .to_owned();
        let mut row = http_measure(plan, &scheduler, target, 0).map_err(runtime)?;
        if let Value::Object(m) = &mut row {
            m.insert("target".into(), json!(target));
        }
        return Ok(vec![row]);
    }
    // The node compiles through the selected AOT cache; with `--no-cache`, through a temporary one (the
    // node always keeps one), so every row after the first still finds the module compiled.
    let temporary;
    let aot = match cache.aot_dir() {
        Some(dir) => dir,
        None => {
            temporary = tempfile::Builder::new()
                .prefix("ao-cu-bench-aot-")
                .tempdir()
                .context("creating a temporary AOT cache")
                .map_err(runtime)?;
            temporary.path().to_path_buf()
        }
    };
    let wallet = Wallet::generate()
        .context("generating the node's wallet")
        .map_err(runtime)?;
    plan.workers
        .iter()
        .map(|&w| http_row(plan, &wallet, &aot, w))
        .collect()
}

// ------------------------------------------------------------------------------------------------
// Output

fn field(v: &Value, path: &[&str]) -> String {
    match path.iter().try_fold(v, |v, k| v.get(k)) {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
            Some(x) => format!("{x:.1}"),
            None => n.to_string(),
        },
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

fn print_table(report: &Value) {
    println!(
        "ao-cu bench: {} ({}), {} processes × {} messages; {}",
        field(report, &["module"]).trim_matches('"'),
        field(report, &["format"]).trim_matches('"'),
        field(report, &["processes"]),
        field(report, &["messages_per_process"]),
        field(report, &["machine"]).trim_matches('"'),
    );
    if let Some(rows) = report.get("engine").and_then(Value::as_array) {
        println!();
        println!("engine (append → durable result, one message in flight per process)");
        println!(
            "{:>7} {:>9} {:>10} {:>12} {:>9} {:>9} {:>8} {:>12} {:>12} {:>12}",
            "workers",
            "messages",
            "msg/s",
            "msg/s/proc",
            "p50 ms",
            "p99 ms",
            "errors",
            "resident/p",
            "rss/p",
            "ckpt B/p"
        );
        for r in rows {
            println!(
                "{:>7} {:>9} {:>10} {:>12} {:>9} {:>9} {:>8} {:>12} {:>12} {:>12}",
                field(r, &["workers"]),
                field(r, &["messages"]),
                field(r, &["msgs_per_s"]),
                field(r, &["per_process_msgs_per_s", "mean"]),
                field(r, &["latency_ms", "p50"]),
                field(r, &["latency_ms", "p99"]),
                field(r, &["errors"]),
                field(r, &["resident_bytes_per_process"]),
                field(r, &["rss_delta_per_process_bytes"]),
                field(r, &["checkpoint_bytes_per_process"]),
            );
        }
    }
    if let Some(rows) = report.get("http").and_then(Value::as_array) {
        println!();
        println!("http (ingest: POST / of pre-signed items; latency: sign → POST / → GET /result readable)");
        println!(
            "{:>7} {:>9} {:>11} {:>11} {:>11} {:>12} {:>9} {:>9} {:>8}",
            "workers",
            "messages",
            "ingest/s",
            "POST p50",
            "POST p99",
            "drained/s",
            "p50 ms",
            "p99 ms",
            "errors"
        );
        for r in rows {
            println!(
                "{:>7} {:>9} {:>11} {:>11} {:>11} {:>12} {:>9} {:>9} {:>8}",
                field(r, &["workers"]),
                field(r, &["messages"]),
                field(r, &["ingest_msgs_per_s"]),
                field(r, &["ingest_latency_ms", "p50"]),
                field(r, &["ingest_latency_ms", "p99"]),
                field(r, &["msgs_per_s"]),
                field(r, &["latency_ms", "p50"]),
                field(r, &["latency_ms", "p99"]),
                field(r, &["latency_errors"]),
            );
        }
    }
}

/// Runs `ao-cu bench`.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    let plan = plan(&args)?;
    let mut report = Map::new();
    report.insert("module".into(), json!(plan.module_path.display().to_string()));
    report.insert("format".into(), json!(plan.format.as_str()));
    report.insert("module_bytes".into(), json!(plan.wasm.len()));
    report.insert("message".into(), Value::Object(plan.template.clone()));
    report.insert("processes".into(), json!(plan.processes));
    report.insert("messages_per_process".into(), json!(plan.messages));
    report.insert("messages".into(), json!(plan.processes * plan.messages));
    report.insert("workers".into(), json!(plan.workers));
    report.insert("machine".into(), json!(machine()));
    report.insert("debug_build".into(), json!(cfg!(debug_assertions)));
    report.insert(
        "store".into(),
        json!(match &plan.database {
            Database::Sqlite => "sqlite".to_string(),
            Database::Postgres { .. } => "postgres".to_string(),
        }),
    );
    if matches!(args.mode, Mode::Engine | Mode::Both) {
        report.insert("engine".into(), Value::Array(engine_mode(&plan, &args.cache)?));
    }
    if matches!(args.mode, Mode::Http | Mode::Both) {
        report.insert("http".into(), Value::Array(http_mode(&plan, &args.cache)?));
    }
    let report = Value::Object(report);
    if args.json {
        let line = serde_json::to_string(&report).map_err(runtime)?;
        println!("{line}");
    } else {
        print_table(&report);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.5), 50.0);
        assert_eq!(quantile(&xs, 0.99), 99.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn messages_carry_the_template_and_the_scheduler_fields() {
        let mut template = Map::new();
        template.insert("Tags".into(), json!([{"name": "Action", "value": "Eval"}]));
        template.insert("Data".into(), json!("return 1"));
        template.insert("Nonce".into(), json!(99));
        let plan = Plan {
            module_path: "m.wasm".into(),
            wasm: vec![],
            module_id: "mod".into(),
            format: ModuleFormat::Emscripten2,
            template,
            processes: 1,
            messages: 1,
            workers: vec![1],
            concurrency: 1,
            progress: false,
            database: Database::Sqlite,
            target: None,
        };
        let m: Value = serde_json::from_str(&engine_message(&plan, 3, 5)).unwrap();
        assert_eq!(m["Id"], message_id(3, 5));
        assert_eq!(m["Target"], process_id(3));
        assert_eq!(m["Nonce"], 4, "the template's Nonce is replaced");
        assert_eq!(m["Timestamp"], EPOCH_MS + 5000);
        assert_eq!(m["Data"], "return 1");
        assert_eq!(m["Tags"][0]["value"], "Eval");
        assert_eq!(process_id(3).len(), 43);
        cu_store::validate_process_id(&process_id(12345)).unwrap();
    }
}
