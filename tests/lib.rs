//! Shared helpers of ao-cu's integration tests (`tests/all`) and benchmarks: locating and building the
//! test modules, running message logs through ao-cu in process and through the reference loader
//! (`tests/oracle/run.cjs` on `@permaweb/ao-loader@0.0.49`), and comparing the two.
//!
//! Test modules are built from source: the WAT ABI probes under `tests/modules/wat/` with the `wat`
//! crate, the Lua process with `tests/modules/build.sh` (Debian's emscripten). When something a test needs
//! is missing, the test fails if `CI` is set and otherwise prints why it skipped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use cu_types::result::to_js_json;
use cu_types::{Limits, ModuleFormat};
use cu_wasm::{CompiledModule, Loader, Process, ProcessConfig};
use serde_json::Value;

/// `argv[0]` used by both sides so memory layouts agree (the oracle's `--this-program`).
pub const THIS_PROGRAM: &str = "thisProgram";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// True when running under CI, where nothing may be skipped.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Skips (prints why) outside CI, fails in CI.
pub fn missing(what: &str) {
    if in_ci() {
        panic!("required for the tests under CI: {what}");
    }
    eprintln!("SKIPPED: {what}");
}

/// The seven WAT ABI probes: (file stem, format).
pub const WAT_MODULES: [(&str, ModuleFormat); 7] = [
    ("emscripten1-minified", ModuleFormat::Emscripten1),
    ("emscripten2", ModuleFormat::Emscripten2),
    ("emscripten3", ModuleFormat::Emscripten3),
    ("emscripten4", ModuleFormat::Emscripten4),
    ("emscripten-metering", ModuleFormat::Emscripten4Metering),
    ("wasm64", ModuleFormat::Wasm64),
    ("wasm64-metering", ModuleFormat::Wasm64Metering),
];

/// Builds a WAT probe from source.
pub fn wat_module(stem: &str) -> Vec<u8> {
    wat::parse_file(repo().join("tests/modules/wat").join(format!("{stem}.wat"))).unwrap()
}

/// A module built by `tests/modules/build.sh`, if it exists.
pub fn built_module(name: &str) -> Option<Vec<u8>> {
    let path = repo().join("tests/modules/build").join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) => {
            missing(&format!("{} (run tests/modules/build.sh)", path.display()));
            None
        }
    }
}

/// A message log: the (msg, env) JSON texts, as `JSON.stringify` writes them.
pub fn read_log(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (to_js_json(&v["msg"]), to_js_json(&v["env"]))
        })
        .collect()
}

/// Runs `f` on a thread with the evaluator's stack size (the wasm stack limit needs it).
pub fn on_eval_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(cu_wasm::EVAL_THREAD_STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// Compiles a module without a cache.
pub fn compile(wasm: &[u8], format: ModuleFormat) -> Arc<CompiledModule> {
    Loader::new(None).unwrap().load(wasm, format).unwrap()
}

/// Boots a process with the test `argv[0]`.
pub fn boot(module: &Arc<CompiledModule>, limits: Limits) -> Process {
    let config = ProcessConfig {
        limits,
        this_program: THIS_PROGRAM.into(),
        ..ProcessConfig::default()
    };
    Process::boot(Arc::clone(module), config).unwrap()
}

/// Runs a log through ao-cu; each result as JSON (the `ao-cu eval` line) plus `MemoryHash`.
pub fn run_ours(
    wasm: Vec<u8>,
    format: ModuleFormat,
    log: Vec<(String, String)>,
    limits: Limits,
) -> Vec<Value> {
    on_eval_thread(move || {
        let module = compile(&wasm, format);
        let mut process = boot(&module, limits);
        log.iter()
            .map(|(m, e)| {
                let out = process.handle(m, e).unwrap();
                let mut v = serde_json::to_value(&out).unwrap();
                v["MemoryHash"] = Value::String(process.memory_hash());
                v
            })
            .collect()
    })
}

/// Whether the reference loader is installed (`npm ci --prefix tests/oracle`).
pub fn oracle_available() -> bool {
    let ok = repo()
        .join("tests/oracle/node_modules/@permaweb/ao-loader")
        .exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        missing("node and tests/oracle/node_modules (run: npm ci --prefix tests/oracle)");
    }
    ok
}

/// Runs a log through the reference loader in the reference CU's way (memory in and out per message).
pub fn run_reference(
    wasm: &[u8],
    format: ModuleFormat,
    log: &Path,
    compute_limit: Option<u64>,
) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, wasm).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/oracle/run.cjs"))
        .arg("--module")
        .arg(&module)
        .arg("--format")
        .arg(format.as_str())
        .arg("--this-program")
        .arg(THIS_PROGRAM)
        .arg("--messages")
        .arg(log)
        .env("TZ", "UTC");
    if let Some(limit) = compute_limit {
        cmd.arg("--compute-limit").arg(limit.to_string());
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A difference the comparison tolerates, with the reason (documented in docs/determinism.md).
pub struct Allowed {
    /// 0-based message index.
    pub index: usize,
    /// Result field.
    pub field: &'static str,
    /// Why the reference differs.
    pub reason: &'static str,
}

fn error_text(v: &Value) -> Option<String> {
    match v.get("Error") {
        None | Some(Value::Null) => None,
        // JavaScript errors reach the oracle as "Name: message"; ao-cu reports `out of gas!` bare.
        Some(Value::String(s)) => Some(s.strip_prefix("Error: ").unwrap_or(s).to_string()),
        Some(other) => Some(other.to_string()),
    }
}

/// Compares ao-cu's results with the reference's field by field; returns how many messages were compared.
pub fn compare(label: &str, ours: &[Value], reference: &[Value], allowed: &[Allowed]) -> usize {
    assert_eq!(ours.len(), reference.len(), "{label}: number of results");
    assert!(!ours.is_empty(), "{label}: nothing compared");
    let mut problems = Vec::new();
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        let is_allowed = |field: &str| allowed.iter().any(|x| x.index == i && x.field == field);
        for field in ["Output", "Messages", "Spawns", "Assignments"] {
            if a.get(field) != b.get(field) && !is_allowed(field) {
                problems.push(format!(
                    "#{i} {field}: ours {:.200} reference {:.200}",
                    a[field].to_string(),
                    b[field].to_string()
                ));
            }
        }
        if error_text(a) != error_text(b) && !is_allowed("Error") {
            problems.push(format!(
                "#{i} Error: ours {:?} reference {:?}",
                error_text(a),
                error_text(b)
            ));
        }
        // The reference has no GasUsed for messages that threw.
        if let Some(g) = b.get("GasUsed").filter(|g| !g.is_null())
            && a.get("GasUsed") != Some(g)
            && !is_allowed("GasUsed")
        {
            problems.push(format!("#{i} GasUsed: ours {} reference {g}", a["GasUsed"]));
        }
    }
    assert!(
        problems.is_empty(),
        "{label}: {} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
    ours.len()
}

/// Puts a module and a process into `store` and appends `log` (the env of the first line is the
/// process's env). Cron messages (no `Id`) get no message id or nonce, as the node stores them.
pub fn seed_process(
    store: &cu_store::Store,
    process_id: &str,
    module_id: &str,
    wasm: &[u8],
    format: ModuleFormat,
    log: &[(String, String)],
) {
    seed_process_tagged(store, process_id, module_id, wasm, format, log, Vec::new());
}

/// [`seed_process`] with `tags` on the process (a `Compute-Limit`, say).
pub fn seed_process_tagged(
    store: &cu_store::Store,
    process_id: &str,
    module_id: &str,
    wasm: &[u8],
    format: ModuleFormat,
    log: &[(String, String)],
    tags: Vec<cu_store::Tag>,
) {
    store
        .put_module(&cu_store::ModuleRecord {
            id: module_id.into(),
            format: format.as_str().into(),
            owner: "test-owner".into(),
            owner_key: None,
            tags: vec![],
            wasm: wasm.to_vec(),
        })
        .unwrap();
    store
        .put_process(&cu_store::ProcessRecord {
            id: process_id.into(),
            module_id: module_id.into(),
            owner: "test-owner".into(),
            tags,
            env_json: log.first().map(|(_, e)| e.clone()).unwrap_or_else(|| "{}".into()),
            block_height: 0,
            timestamp: 0,
            spawn_json: "{}".into(),
        })
        .unwrap();
    append_log(store, process_id, log);
}

/// Appends `log` to the process's log after its last position.
pub fn append_log(store: &cu_store::Store, process_id: &str, log: &[(String, String)]) {
    let start = store.last_pos(process_id).unwrap();
    let entries: Vec<cu_store::LogEntry> = log
        .iter()
        .enumerate()
        .map(|(i, (msg, _))| {
            let v: Value = serde_json::from_str(msg).unwrap();
            let id = v.get("Id").and_then(Value::as_str).map(String::from);
            let cron = v.get("Cron").and_then(Value::as_bool).unwrap_or(false);
            cu_store::LogEntry {
                process_id: process_id.into(),
                pos: start + i as u64 + 1,
                nonce: (!cron).then_some(start + i as u64),
                message_id: id,
                timestamp: v.get("Timestamp").and_then(Value::as_u64).unwrap_or(0),
                block_height: v.get("Block-Height").and_then(Value::as_u64).unwrap_or(0),
                cron: cron.then(|| "0-1-minute".to_string()),
                msg_json: msg.clone(),
            }
        })
        .collect();
    store.append(&entries).unwrap();
}

/// The outputs of a log run straight through one process, serialized as the engine stores them,
/// and the final memory's BLAKE3.
pub fn straight_outputs(
    wasm: Vec<u8>,
    format: ModuleFormat,
    log: Vec<(String, String)>,
) -> (Vec<String>, String) {
    on_eval_thread(move || {
        let module = compile(&wasm, format);
        let mut process = Process::boot(module, ProcessConfig::default()).unwrap();
        let outs = log
            .iter()
            .map(|(m, e)| serde_json::to_string(&process.handle(m, e).unwrap()).unwrap())
            .collect();
        (outs, process.memory_hash())
    })
}

/// Data items by id, as a node's store answers them to WeaveDrive and `ao_tensor.model_open`
/// (no attestations, blocks or transaction headers).
pub struct MemoryItems(pub std::collections::HashMap<String, std::sync::Arc<Vec<u8>>>);

impl cu_wasm::drive::DriveSource for MemoryItems {
    fn data_size(&self, id: &str) -> Result<Option<u64>, cu_wasm::drive::DriveError> {
        Ok(self.0.get(id).map(|d| d.len() as u64))
    }
    fn read(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>, cu_wasm::drive::DriveError> {
        let d = self
            .0
            .get(id)
            .ok_or_else(|| cu_wasm::drive::DriveError(format!("{id} is gone")))?;
        let start = (offset as usize).min(d.len());
        let end = start.saturating_add(len as usize).min(d.len());
        Ok(d[start..end].to_vec())
    }
    fn attested(&self, _: &cu_wasm::drive::AttestationQuery) -> Result<bool, cu_wasm::drive::DriveError> {
        Ok(false)
    }
    fn block(&self, _: &str) -> Result<Option<Vec<u8>>, cu_wasm::drive::DriveError> {
        Ok(None)
    }
    fn tx(&self, _: &str) -> Result<Option<serde_json::Value>, cu_wasm::drive::DriveError> {
        Ok(None)
    }
}
