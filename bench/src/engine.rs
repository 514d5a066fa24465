//! Helpers of the process-engine bench binaries (`src/bin/engine_*.rs`): the Lua test process and its
//! messages, an engine over a fresh store, timing, the machine and the process's memory use.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cu_engine::{CheckpointPolicy, Engine, EngineConfig};
use cu_store::{Store, StoreOptions};
use cu_types::result::to_js_json;
use cu_types::{Limits, ModuleFormat};
use cu_wasm::{AotCache, Loader};
use serde_json::Value;

/// The Lua test process's format.
pub const LUA: ModuleFormat = ModuleFormat::Emscripten2;

/// The limits the template's module tags give (`Memory-Limit: 1-gb`, `Compute-Limit: 9000000000000`),
/// for bare processes run outside the engine.
pub const LUA_LIMITS: Limits = Limits {
    memory_limit: Some(1 << 30),
    compute_limit: Some(9_000_000_000_000),
};

/// The Lua test process (`tests/modules/build.sh` builds it).
pub fn lua_wasm() -> Vec<u8> {
    let path = cu_tests::repo().join("tests/modules/build/lua-process.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run tests/modules/build.sh)", path.display()))
}

/// Messages built from `tests/modules/lua/grow.jsonl` (boot, `Grow`, ..., `Count`): the boot message
/// and env of the process `pid`, and any message with given tags.
pub struct Messages {
    boot: Value,
    count: Value,
    env: Value,
    pid: String,
}

impl Messages {
    /// The template's messages, re-addressed to process `pid` (43 characters or fewer).
    pub fn new(pid: &str) -> Messages {
        let text = std::fs::read_to_string(cu_tests::repo().join("tests/modules/lua/grow.jsonl")).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let mut boot = lines[0]["msg"].clone();
        boot["Id"] = pid.into();
        boot["Target"] = pid.into();
        let mut env = lines[0]["env"].clone();
        env["Process"]["Id"] = pid.into();
        let count = lines
            .iter()
            .find(|l| l["msg"]["Tags"].to_string().contains("\"Count\""))
            .unwrap()["msg"]
            .clone();
        Messages {
            boot,
            count,
            env,
            pid: pid.into(),
        }
    }

    /// The env JSON.
    pub fn env(&self) -> String {
        to_js_json(&self.env)
    }

    /// The boot (process) message with its env, as a log entry.
    pub fn boot(&self) -> (String, String) {
        (to_js_json(&self.boot), self.env())
    }

    /// Message number `n` (its log position; ids, nonces and timestamps follow it) with `Action` and
    /// extra tags.
    pub fn message(&self, n: u64, action: &str, extra: &[(&str, &str)]) -> (String, String) {
        let mut m = self.count.clone();
        m["Id"] = format!("{:0>43}", format!("m{n}-{}", &self.pid[..self.pid.len().min(20)])).into();
        m["Target"] = self.pid.clone().into();
        m["Nonce"] = n.into();
        m["Timestamp"] = (1_717_000_000_000u64 + n * 1000).into();
        let mut tags: Vec<Value> = m["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["name"] != "Action")
            .cloned()
            .collect();
        tags.push(serde_json::json!({"name": "Action", "value": action}));
        for (name, value) in extra {
            tags.push(serde_json::json!({"name": name, "value": value}));
        }
        m["Tags"] = Value::Array(tags);
        (to_js_json(&m), self.env())
    }

    /// `Count` number `n`.
    pub fn count(&self, n: u64) -> (String, String) {
        self.message(n, "Count", &[])
    }

    /// `Eval` of Lua `code`, number `n`.
    pub fn eval(&self, n: u64, code: &str) -> (String, String) {
        let (m, e) = self.message(n, "Eval", &[]);
        let mut v: Value = serde_json::from_str(&m).unwrap();
        v["Data"] = code.into();
        (to_js_json(&v), e)
    }

    /// `Grow` by `mb` megabytes, number `n`.
    pub fn grow(&self, n: u64, mb: u64) -> (String, String) {
        self.message(n, "Grow", &[("MB", &mb.to_string())])
    }
}

/// A loader with an AOT cache in `dir` (compiled once, then read back in milliseconds).
pub fn loader(dir: &Path) -> Arc<Loader> {
    Arc::new(Loader::new(Some(AotCache::new(dir))).unwrap())
}

/// An engine over the store in `dir` with `workers` shards (not pinned unless `pin`), `budget` bytes of
/// resident memory and `policy`.
pub fn start_engine(
    dir: &Path,
    loader: Arc<Loader>,
    workers: usize,
    pin: bool,
    budget: u64,
    policy: CheckpointPolicy,
) -> Engine {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let config = EngineConfig {
        workers,
        pin_cores: pin,
        memory_budget: budget,
        checkpoints: policy,
        dry_run_workers: 1,
        ..EngineConfig::default()
    };
    Engine::start(config, store, loader).unwrap()
}

/// Seconds since `t`.
pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Seconds a closure takes, and its value.
pub fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, since(t))
}

/// The median of `xs` (sorted in place); 0 for none.
pub fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The mean of `xs`; 0 for none.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// `nproc` and the CPU model, for the report.
pub fn machine() -> String {
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
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "nproc {cpus}, {model}, load average {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )
}

/// (VmRSS, VmHWM) of this process in bytes, from `/proc/self/status`.
pub fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Bytes in the files under `path` (recursively).
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Megabytes (MiB), for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Runs `f` on a thread with the evaluator's stack size.
pub fn on_eval_thread(f: impl FnOnce() + Send + 'static) {
    cu_tests::on_eval_thread(f)
}

/// The value of `--name N` on the command line, or `default`.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad value for {name}: {v}")))
        .unwrap_or(default)
}

/// Whether `--name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// (time on a CPU, time runnable but waiting for one) in seconds, summed over this process's threads
/// whose name starts with `prefix`, or of the calling thread for `None` (`/proc/.../schedstat`): what a
/// thread really computed, apart from what the machine's other load made it wait.
pub fn sched(prefix: Option<&str>) -> (f64, f64) {
    let parse = |text: String| {
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    let (run, wait) = match prefix {
        None => parse(std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default()),
        Some(prefix) => std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(Result::ok)
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|c| c.trim_end().starts_with(prefix))
                    })
                    .map(|t| parse(std::fs::read_to_string(t.path().join("schedstat")).unwrap_or_default()))
                    .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
            })
            .unwrap_or((0, 0)),
    };
    (run as f64 / 1e9, wait as f64 / 1e9)
}
