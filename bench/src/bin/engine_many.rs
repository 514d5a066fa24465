//! Many small processes: `--processes` Lua test processes, each with a boot message and
//! `--messages - 1` `Count`s in its log, evaluated through one engine whose memory budget
//! (`--budget-mb`) holds only a few of them, so most are checkpointed and evicted. Prints the node's
//! memory (VmRSS now, VmHWM peak, from `/proc/self/status`) and the disk used per idle process
//! (checkpoint files per process from `Store::checkpoint_bytes`, plus the database over the count).
//!
//! `cargo run --release -p cu-bench --bin engine_many -- [--processes 1000] [--messages 3]
//!  [--budget-mb 256] [--workers 2] [--in-flight 256]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::VecDeque;
use std::time::Instant;

use cu_bench::engine::*;
use cu_engine::CheckpointPolicy;

fn main() {
    on_eval_thread(run);
}

fn run() {
    let n: usize = arg("--processes", 1000);
    let per: u64 = arg("--messages", 3);
    let budget_mb: u64 = arg("--budget-mb", 256);
    let workers: usize = arg("--workers", 2);
    let in_flight: usize = arg("--in-flight", 256);
    println!("machine: {}", machine());
    let (rss0, _) = rss();
    let wasm = lua_wasm();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("store");
    let engine = start_engine(
        &db,
        loader(&tmp.path().join("aot")),
        workers,
        false,
        budget_mb << 20,
        CheckpointPolicy::default(),
    );
    let pids: Vec<String> = (0..n).map(|i| format!("small-{i:037}")).collect();
    let t = Instant::now();
    for pid in &pids {
        let msgs = Messages::new(pid);
        let mut log = vec![msgs.boot()];
        log.extend((2..=per).map(|p| msgs.count(p)));
        cu_tests::seed_process(engine.store(), pid, "lua", &wasm, LUA, &log);
    }
    println!("seeded {n} processes x {per} messages in {:.1} s", since(t));

    let t = Instant::now();
    let mut waits = VecDeque::new();
    for pid in &pids {
        waits.push_back(engine.evaluate_to(pid, per).unwrap());
        if waits.len() > in_flight {
            let w = waits.pop_front().unwrap();
            assert_eq!(w.blocking_recv().unwrap().unwrap(), per);
        }
    }
    for w in waits {
        assert_eq!(w.blocking_recv().unwrap().unwrap(), per);
    }
    let took = since(t);
    let stats = engine.stats();
    let (rss_now, hwm) = rss();
    let ckpt: u64 = pids
        .iter()
        .map(|p| engine.store().checkpoint_bytes(p).unwrap())
        .sum();
    let with_ckpt = pids
        .iter()
        .filter(|p| engine.store().checkpoint_bytes(p).unwrap() > 0)
        .count();
    let db_bytes: u64 = std::fs::read_dir(&db)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(cu_store::DB_FILE))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let idle = n as u64 - stats.resident_processes;
    println!(
        "evaluated {} messages of {n} processes in {took:.1} s ({:.1} ms per process, {workers} workers)",
        stats.evaluated,
        took * 1e3 / n as f64
    );
    println!(
        "resident now: {} processes, {:.1} MiB (budget {budget_mb} MiB); evictions {}, bases {}, deltas {}",
        stats.resident_processes,
        mib(stats.resident_bytes),
        stats.evictions,
        stats.bases,
        stats.deltas
    );
    println!(
        "node memory: VmRSS {:.1} MiB now, VmHWM {:.1} MiB peak (VmRSS before the engine: {:.1} MiB)",
        mib(rss_now),
        mib(hwm),
        mib(rss0)
    );
    println!(
        "disk: checkpoint files {:.1} MiB for {with_ckpt} processes = {:.1} KiB per checkpointed process; \
         database {:.1} MiB = {:.1} KiB per process; total per idle process {:.1} KiB ({idle} idle)",
        mib(ckpt),
        ckpt as f64 / 1024.0 / with_ckpt.max(1) as f64,
        mib(db_bytes),
        db_bytes as f64 / 1024.0 / n as f64,
        (ckpt as f64 / with_ckpt.max(1) as f64 + db_bytes as f64 / n as f64) / 1024.0
    );
    println!(
        "{:>10} {:>12} {:>14} {:>14} {:>18}",
        "processes", "time s", "VmRSS MiB", "VmHWM MiB", "disk/idle KiB"
    );
    println!(
        "{:>10} {:>12.1} {:>14.1} {:>14.1} {:>18.1}",
        n,
        took,
        mib(rss_now),
        mib(hwm),
        (ckpt as f64 / with_ckpt.max(1) as f64 + db_bytes as f64 / n as f64) / 1024.0
    );
    engine.shutdown().unwrap();
}
