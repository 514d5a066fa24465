//! `ao-cu run`: evaluates a message log of one process on the persistent engine (`cu-engine` over
//! `cu-store`), the durable counterpart of `ao-cu eval`.
//!
//! The input is the JSON Lines log of `ao-cu eval` (`{"msg": {...}, "env": {...}}`, blank lines skipped,
//! each object re-serialised as `JSON.stringify` writes it). The run:
//! 1. opens (or creates) the store in `--data-dir`;
//! 2. registers the module (id: hex SHA-256 of the wasm, owner and tags from the first line's
//!    `env.Module`) and the process (owner and tags from `env.Process`, env: the first line's) if they
//!    are missing;
//! 3. appends the messages that are not yet in the process's log: the n-th message of the file is log
//!    position n, so a run interrupted at any moment (even by `kill -9`) continues where it stopped. A
//!    file that disagrees with the stored log at a stored position, or a line whose env differs from
//!    the process's env (the engine passes one env to every message), is bad input;
//! 4. evaluates the log to its end (results are durable when the run returns), checkpoints per
//!    `--checkpoint-every` / `--base-every` and once more at the end, and prints one summary line (JSON).
//!
//! Exit codes: 0 done, 1 bad input (the message names the line), 2 runtime failure. Batches appended
//! before a malformed line stay in the log (they were valid); fix the line and run again.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use clap::Args;
use cu_engine::{CheckpointPolicy, Engine, EngineConfig};
use cu_store::{LogEntry, ModuleRecord, ProcessRecord, Store, StoreOptions, Tag};
use cu_types::ModuleFormat;
use cu_wasm::{Loader, ProcessConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::eval::{CacheArgs, parse_line};

/// Messages appended (or compared with the stored log) per store transaction.
const BATCH: usize = 512;

/// Arguments of `ao-cu run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The store directory (created if missing): `ao-cu.sqlite` and `checkpoints/`.
    #[arg(long)]
    data_dir: PathBuf,
    /// The WebAssembly module (`.wasm`); its id in the store is the hex SHA-256 of the file.
    #[arg(long)]
    module: PathBuf,
    /// The module format (the `Module-Format` tag value), e.g. `wasm32-unknown-emscripten2`.
    #[arg(long)]
    format: String,
    /// The process id (`[A-Za-z0-9_-]`, 1 to 64 characters).
    #[arg(long)]
    process_id: String,
    /// JSON Lines of `{"msg": ..., "env": ...}`; the n-th message is log position n.
    #[arg(long)]
    messages: PathBuf,
    /// Checkpoint after this many evaluated messages (0: only at the end).
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: u64,
    /// A full (base) checkpoint after this many deltas.
    #[arg(long, default_value_t = 32)]
    base_every: u32,
    /// Engine shards (one process uses one of them).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Resident memory budget of the engine in bytes.
    #[arg(long, default_value_t = 4 << 30)]
    memory_budget: u64,
    /// Crash tests: the engine records here whether a checkpoint write is in progress and how many results
    /// are queued but not committed (see `cu_engine::probe`).
    #[arg(long)]
    phase_file: Option<PathBuf>,
    /// Power-cut safety: fsync every store commit (without it commits survive `kill -9`, not a power cut).
    #[arg(long)]
    fsync: bool,
    #[command(flatten)]
    cache: CacheArgs,
    /// `argv[0]` given to `main` (default `./this.program`).
    #[arg(long)]
    this_program: Option<String>,
    /// Add `"memory_blake3"` (BLAKE3 of the final linear memory) to the summary.
    #[arg(long)]
    memory_hash: bool,
}

/// Why `ao-cu run` failed; each kind has its exit code.
#[derive(Debug)]
pub enum RunError {
    /// The input is wrong (arguments, module file, a line of the log): exit code 1.
    Input(anyhow::Error),
    /// The store or the engine failed: exit code 2.
    Runtime(anyhow::Error),
}

impl RunError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Input(_) => 1,
            RunError::Runtime(_) => 2,
        }
    }
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Input(e) => write!(f, "bad input: {e:#}"),
            RunError::Runtime(e) => write!(f, "{e:#}"),
        }
    }
}

fn input(e: impl Into<anyhow::Error>) -> RunError {
    RunError::Input(e.into())
}

fn runtime(e: impl Into<anyhow::Error>) -> RunError {
    RunError::Runtime(e.into())
}

/// A u64 field of a message: a JSON number or a decimal string.
fn number(msg: &Value, key: &str) -> Option<u64> {
    match msg.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn tags_of(v: Option<&Value>) -> Vec<Tag> {
    v.and_then(Value::as_array)
        .map(|tags| {
            tags.iter()
                .filter_map(|t| {
                    Some(Tag {
                        name: t.get("name")?.as_str()?.to_string(),
                        value: t.get("value")?.as_str()?.to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value, path: &[&str]) -> String {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The log entry of the message at `pos` (its msg JSON exactly as `handle` receives it).
fn log_entry(process_id: &str, pos: u64, msg_json: String) -> Result<LogEntry, serde_json::Error> {
    let msg: Value = serde_json::from_str(&msg_json)?;
    let cron = msg.get("Cron").and_then(Value::as_bool).unwrap_or(false);
    let cron_interval = || {
        tags_of(msg.get("Tags"))
            .into_iter()
            .find(|t| t.name == "Cron-Interval")
            .map_or_else(|| "cron".to_string(), |t| t.value)
    };
    Ok(LogEntry {
        process_id: process_id.to_string(),
        pos,
        message_id: msg.get("Id").and_then(Value::as_str).map(String::from),
        nonce: (!cron).then(|| number(&msg, "Nonce").unwrap_or(pos - 1)),
        timestamp: number(&msg, "Timestamp").unwrap_or(0),
        block_height: number(&msg, "Block-Height").unwrap_or(0),
        cron: cron.then(cron_interval),
        msg_json,
    })
}

/// Registers the module and the process if missing; checks that an existing process is the same one.
fn register(
    store: &Store,
    args: &RunArgs,
    format: ModuleFormat,
    wasm: Vec<u8>,
    module_id: &str,
    first_env: &str,
    first_msg: &str,
) -> Result<String, RunError> {
    let env: Value = serde_json::from_str(first_env).map_err(input)?;
    match store.module(module_id).map_err(runtime)? {
        Some(m) if m.format.trim() != format.as_str() => {
            return Err(input(anyhow!(
                "module {module_id} is stored with format {}, not {}",
                m.format,
                format.as_str()
            )));
        }
        Some(_) => {}
        None => store
            .put_module(&ModuleRecord {
                id: module_id.to_string(),
                format: format.as_str().to_string(),
                owner: text(&env, &["Module", "Owner"]),
                owner_key: None,
                tags: tags_of(env.get("Module").and_then(|m| m.get("Tags"))),
                wasm,
            })
            .map_err(runtime)?,
    }
    if let Some(p) = store.process(&args.process_id).map_err(runtime)? {
        if p.module_id != module_id {
            return Err(input(anyhow!(
                "process {} runs module {}, not {module_id} ({})",
                args.process_id,
                p.module_id,
                args.module.display()
            )));
        }
        return Ok(p.env_json);
    }
    let msg: Value = serde_json::from_str(first_msg).map_err(input)?;
    store
        .put_process(&ProcessRecord {
            id: args.process_id.clone(),
            module_id: module_id.to_string(),
            owner: text(&env, &["Process", "Owner"]),
            tags: tags_of(env.get("Process").and_then(|p| p.get("Tags"))),
            env_json: first_env.to_string(),
            block_height: number(&msg, "Block-Height").unwrap_or(0),
            timestamp: number(&msg, "Timestamp").unwrap_or(0),
            spawn_json: "{}".into(),
        })
        .map_err(runtime)?;
    Ok(first_env.to_string())
}

/// Compares a batch of the file with the stored log and appends what the store does not have yet.
struct Appender<'a> {
    store: &'a Store,
    process_id: &'a str,
    /// Positions already in the store when the run started.
    stored: u64,
    /// (line number, msg JSON) waiting for the next batch.
    pending: Vec<(usize, String)>,
    /// The position of the next message of the file.
    next_pos: u64,
    appended: u64,
}

impl Appender<'_> {
    fn push(&mut self, line_no: usize, msg: String) -> Result<(), RunError> {
        self.pending.push((line_no, msg));
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), RunError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let first = self.next_pos;
        self.next_pos += pending.len() as u64;
        // The part of the batch the store already has must agree with it.
        let known = self.stored.saturating_sub(first - 1).min(pending.len() as u64) as usize;
        if known > 0 {
            let stored = self
                .store
                .log_range(self.process_id, first, known)
                .map_err(runtime)?;
            for (i, (line_no, msg)) in pending[..known].iter().enumerate() {
                let pos = first + i as u64;
                match stored.get(i) {
                    Some(e) if e.pos == pos && &e.msg_json == msg => {}
                    Some(e) if e.pos == pos => {
                        return Err(input(anyhow!(
                            "line {line_no}: message {pos} differs from position {pos} of the stored log of \
                             process {}",
                            self.process_id
                        )));
                    }
                    _ => {
                        return Err(runtime(anyhow!(
                            "the stored log of process {} has no position {pos}",
                            self.process_id
                        )));
                    }
                }
            }
        }
        let entries = pending[known..]
            .iter()
            .enumerate()
            .map(|(i, (line_no, msg))| {
                log_entry(self.process_id, first + (known + i) as u64, msg.clone())
                    .map_err(|e| input(anyhow!("line {line_no}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !entries.is_empty() {
            self.store.append(&entries).map_err(runtime)?;
            self.appended += entries.len() as u64;
        }
        Ok(())
    }
}

/// Reads the log file, registers module and process, appends what is new. Returns (messages in the
/// file, messages appended).
fn ingest(
    store: &Store,
    args: &RunArgs,
    format: ModuleFormat,
    wasm: Vec<u8>,
    module_id: &str,
) -> Result<(u64, u64), RunError> {
    let file = fs::File::open(&args.messages)
        .with_context(|| format!("cannot open messages {}", args.messages.display()))
        .map_err(input)?;
    let mut reader = BufReader::new(file);
    let stored = store.last_pos(&args.process_id).map_err(runtime)?;
    let mut appender = Appender {
        store,
        process_id: &args.process_id,
        stored,
        pending: Vec::new(),
        next_pos: 1,
        appended: 0,
    };
    let mut env: Option<String> = None;
    let mut wasm = Some(wasm);
    let mut bytes = Vec::new();
    let mut line_no = 0;
    loop {
        bytes.clear();
        let n = reader
            .read_until(b'\n', &mut bytes)
            .with_context(|| format!("line {}: cannot read", line_no + 1))
            .map_err(input)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let line =
            std::str::from_utf8(&bytes).map_err(|e| input(anyhow!("line {line_no}: not UTF-8: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let message = parse_line(line.trim_end(), line_no).map_err(input)?;
        let process_env = match &env {
            Some(e) => e,
            None => {
                let module = wasm.take().unwrap_or_default();
                let stored_env =
                    register(store, args, format, module, module_id, &message.env, &message.msg)?;
                env.insert(stored_env)
            }
        };
        if &message.env != process_env {
            return Err(input(anyhow!(
                "line {line_no}: env differs from the process's env (the first line's when it was registered); \
                 ao-cu run passes one env to every message"
            )));
        }
        appender.push(line_no, message.msg)?;
    }
    appender.flush()?;
    if env.is_none() && stored == 0 {
        return Err(input(anyhow!(
            "{}: no messages, and process {} is not in the store",
            args.messages.display(),
            args.process_id
        )));
    }
    Ok((appender.next_pos - 1, appender.appended))
}

/// Runs `ao-cu run`; prints the summary line on success.
pub fn run(args: RunArgs) -> Result<(), RunError> {
    let format: ModuleFormat = args.format.parse().map_err(input)?;
    cu_store::validate_process_id(&args.process_id).map_err(input)?;
    let wasm = fs::read(&args.module)
        .with_context(|| format!("cannot read module {}", args.module.display()))
        .map_err(input)?;
    let module_id = hex::encode(Sha256::digest(&wasm));
    let options = StoreOptions {
        fsync: args.fsync,
        ..StoreOptions::default()
    };
    let store = Store::open(&args.data_dir, options)
        .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))
        .map_err(runtime)?;
    let (messages, appended) = ingest(&store, &args, format, wasm, &module_id)?;

    let loader = Loader::new(args.cache.aot_cache()).map_err(runtime)?;
    let config = EngineConfig {
        workers: args.workers.max(1),
        pin_cores: false,
        memory_budget: args.memory_budget,
        checkpoints: CheckpointPolicy {
            every_messages: args.checkpoint_every,
            base_every: args.base_every.max(1),
            ..CheckpointPolicy::default()
        },
        dry_run_workers: 1,
        ..EngineConfig::default()
    };
    let process_config = ProcessConfig {
        this_program: args
            .this_program
            .clone()
            .unwrap_or_else(|| cu_wasm::THIS_PROGRAM.to_string()),
        ..ProcessConfig::default()
    };
    let engine = Engine::start_with(
        config,
        store.clone(),
        Arc::new(loader),
        process_config,
        args.phase_file.as_deref(),
    )
    .map_err(runtime)?;
    let pid = args.process_id.as_str();
    let last = store.last_pos(pid).map_err(runtime)?;
    engine
        .wait_for(pid, last)
        .with_context(|| format!("evaluating process {pid} to position {last}"))
        .map_err(runtime)?;
    let memory_blake3 = if args.memory_hash {
        let (pos, memory) = engine
            .state(pid)
            .map_err(runtime)?
            .blocking_recv()
            .map_err(|_| runtime(anyhow!("the engine stopped")))?
            .map_err(runtime)?;
        if pos != last {
            return Err(runtime(anyhow!("state at position {pos}, expected {last}")));
        }
        Some(blake3::hash(&memory).to_hex().to_string())
    } else {
        None
    };
    // The final checkpoint (nothing is written when the newest one is already at the end).
    engine.checkpoint(pid).map_err(runtime)?;
    let stats = engine.stats();
    engine.shutdown().map_err(runtime)?;
    let results = store.last_result_pos(pid).map_err(runtime)?;
    let checkpoints = store.checkpoints(pid).map_err(runtime)?;
    let mut summary = BTreeMap::new();
    summary.insert("process", Value::from(pid));
    summary.insert("module", Value::from(module_id));
    summary.insert("messages", Value::from(messages));
    summary.insert("appended", Value::from(appended));
    summary.insert("log", Value::from(last));
    summary.insert("evaluated", Value::from(stats.evaluated));
    summary.insert("results", Value::from(results));
    summary.insert("restored", Value::from(stats.restores > 0));
    summary.insert("checkpoints_written", Value::from(stats.bases + stats.deltas));
    summary.insert("checkpoints", Value::from(checkpoints.len()));
    summary.insert(
        "checkpoint_pos",
        Value::from(checkpoints.last().map_or(0, |c| c.pos)),
    );
    if let Some(hash) = memory_blake3 {
        summary.insert("memory_blake3", Value::from(hash));
    }
    let line = serde_json::to_string(&summary).map_err(runtime)?;
    println!("{line}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_entries_take_ids_and_numbers_from_the_message() {
        let e = log_entry(
            "p",
            3,
            r#"{"Id":"m3","Nonce":"7","Timestamp":1700000000123,"Block-Height":"42","Cron":false}"#.into(),
        )
        .unwrap();
        assert_eq!(e.message_id.as_deref(), Some("m3"));
        assert_eq!(
            (e.nonce, e.timestamp, e.block_height),
            (Some(7), 1_700_000_000_123, 42)
        );
        assert_eq!(e.cron, None);
        let c = log_entry(
            "p",
            4,
            r#"{"Cron":true,"Tags":[{"name":"Cron-Interval","value":"0-10-minutes"}]}"#.into(),
        )
        .unwrap();
        assert_eq!((c.message_id, c.nonce), (None, None));
        assert_eq!(c.cron.as_deref(), Some("0-10-minutes"));
        let plain = log_entry("p", 5, r#"{"Id":"m5"}"#.into()).unwrap();
        assert_eq!(plain.nonce, Some(4), "no Nonce: the position before");
    }
}
