//! Scaling with shards: `--processes` Lua test processes, each with `--messages` `Count`s after its boot
//! message, evaluated through the engine in process (no HTTP) with 1 and with 2 workers. Every run
//! starts from a fresh store with every process booted (not timed), then times `evaluate_to` of every
//! process's last position, all queued at once, until every result is durable. Runs alternate between
//! the worker counts, `--runs` times each; the median throughput per worker count and their ratio are
//! printed. `--pin` pins shards to cores (default: not pinned, which suits a machine shared with other
//! work).
//!
//! `cargo run --release -p cu-bench --bin engine_scaling -- [--processes 64] [--messages 200] [--runs 3]
//!  [--pin]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::Instant;

use cu_bench::engine::*;
use cu_engine::CheckpointPolicy;

fn main() {
    on_eval_thread(run);
}

fn run() {
    let n: usize = arg("--processes", 64);
    let per: u64 = arg("--messages", 200);
    let runs: usize = arg("--runs", 3);
    let pin = flag("--pin");
    println!("machine: {}", machine());
    let wasm = lua_wasm();
    let tmp = tempfile::tempdir().unwrap();
    let loader = loader(&tmp.path().join("aot"));
    loader.load(&wasm, LUA).unwrap();
    let pids: Vec<String> = (0..n).map(|i| format!("scale-{i:037}")).collect();
    let logs: Vec<Vec<(String, String)>> = pids
        .iter()
        .map(|pid| {
            let msgs = Messages::new(pid);
            let mut log = vec![msgs.boot()];
            log.extend((2..=per + 1).map(|p| msgs.count(p)));
            log
        })
        .collect();
    let mut results: Vec<(usize, Vec<f64>)> = vec![(1, Vec::new()), (2, Vec::new())];
    for run in 0..runs {
        for (workers, rates) in results.iter_mut() {
            let dir = tempfile::tempdir().unwrap();
            let policy = CheckpointPolicy {
                on_shutdown: false,
                ..CheckpointPolicy::default()
            };
            let engine = start_engine(dir.path(), loader.clone(), *workers, pin, 4 << 30, policy);
            for (pid, log) in pids.iter().zip(&logs) {
                cu_tests::seed_process(engine.store(), pid, "lua", &wasm, LUA, log);
            }
            let boots: Vec<_> = pids.iter().map(|p| engine.evaluate_to(p, 1).unwrap()).collect();
            for b in boots {
                b.blocking_recv().unwrap().unwrap();
            }
            let (shards0, writer0, main0) = (
                sched(Some("cu-shard")),
                sched(Some("cu-store-writer")),
                sched(Some("engine_scaling")),
            );
            let t = Instant::now();
            let waits: Vec<_> = pids
                .iter()
                .map(|p| engine.evaluate_to(p, per + 1).unwrap())
                .collect();
            for w in waits {
                assert_eq!(w.blocking_recv().unwrap().unwrap(), per + 1);
            }
            let took = since(t);
            let (shards1, writer1, main1) = (
                sched(Some("cu-shard")),
                sched(Some("cu-store-writer")),
                sched(Some("engine_scaling")),
            );
            let total = n as u64 * per;
            let stats = engine.stats();
            assert_eq!(stats.evaluated, n as u64 * (per + 1));
            let last = engine.store().result(&pids[0], per + 1).unwrap().unwrap();
            assert!(
                last.output_json.contains(&format!("\"{per}\"")),
                "{}",
                last.output_json
            );
            let rate = total as f64 / took;
            println!(
                "run {run}: {workers} worker(s): {total} messages in {took:.2} s = {rate:.0} msg/s",
                workers = *workers
            );
            println!(
                "        CPU s on a core / s waiting for one: shards {:.2} / {:.2}, store writer {:.2} / {:.2}, \
                 bench threads {:.2} / {:.2}; wall {took:.2} s",
                shards1.0 - shards0.0,
                shards1.1 - shards0.1,
                writer1.0 - writer0.0,
                writer1.1 - writer0.1,
                main1.0 - main0.0,
                main1.1 - main0.1
            );
            if *workers > 1 {
                let per: Vec<String> = (0..*workers)
                    .map(|i| {
                        let (run, wait) = sched(Some(&format!("cu-shard-{i}")));
                        format!("shard {i}: {run:.2} / {wait:.2}")
                    })
                    .collect();
                println!("        since its start: {}", per.join(", "));
            }
            rates.push(rate);
            engine.shutdown().unwrap();
        }
    }
    let one = median(&mut results[0].1);
    let two = median(&mut results[1].1);
    println!(
        "\n{n} processes x {per} Count messages, pinned: {pin}, median of {runs} runs (machine: {})",
        machine()
    );
    println!("{:>8} {:>12} {:>8}", "workers", "msg/s", "ratio");
    println!("{:>8} {:>12.0} {:>8.2}", 1, one, 1.0);
    println!("{:>8} {:>12.0} {:>8.2}", 2, two, two / one);
}
