//! Criterion benchmarks of the process engine with N processes (1, 4 and 16, on 2 workers): one
//! iteration appends one message to every process's log and waits until every result is durable
//! (`Engine::evaluate_to`), as the node does for a burst of messages. Throughput is in messages.
//! - `engine_round/noop/N`: a module whose `handle` does nothing (the engine's own cost per message:
//!   log read, hand-off to the shard, result queued to the store's group commit);
//! - `engine_round/lua_eval/N`: the Lua test process with a small `Eval`, when `tests/modules/build.sh`
//!   has built it;
//! - `encode_env`: the env JSON as `handle` receives it (the message's encoding is in `evaluator`).
//!
//! `cargo bench -p cu-bench --bench engine`; quick smoke run: `-- --quick` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use cu_bench::engine::{LUA, Messages, loader, start_engine};
use cu_bench::{noop_module, realistic_env};
use cu_engine::CheckpointPolicy;

const COUNTS: [usize; 3] = [1, 4, 16];

fn round(c: &mut Criterion, name: &str, wasm: &[u8], message: &dyn Fn(&Messages, u64) -> (String, String)) {
    let mut group = c.benchmark_group(format!("engine_round/{name}"));
    for n in COUNTS {
        let tmp = tempfile::tempdir().unwrap();
        let engine = start_engine(
            &tmp.path().join("store"),
            loader(&tmp.path().join("aot")),
            2,
            false,
            1 << 30,
            CheckpointPolicy::default(),
        );
        let pids: Vec<String> = (0..n).map(|i| format!("{name}-{i:0>30}")).collect();
        let msgs: Vec<Messages> = pids.iter().map(|p| Messages::new(p)).collect();
        for (pid, m) in pids.iter().zip(&msgs) {
            cu_tests::seed_process(engine.store(), pid, name, wasm, LUA, &[m.boot()]);
        }
        for pid in &pids {
            engine.wait_for(pid, 1).unwrap();
        }
        let mut pos = 1;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                pos += 1;
                for (pid, m) in pids.iter().zip(&msgs) {
                    cu_tests::append_log(engine.store(), pid, &[message(m, pos)]);
                }
                let waits: Vec<_> = pids
                    .iter()
                    .map(|pid| engine.evaluate_to(pid, pos).unwrap())
                    .collect();
                for w in waits {
                    assert_eq!(w.blocking_recv().unwrap().unwrap(), pos);
                }
            })
        });
        assert_eq!(
            engine.stats().evaluated,
            n as u64 * pos,
            "every message evaluated once"
        );
        engine.shutdown().unwrap();
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    round(c, "noop", &noop_module(), &|m, pos| m.count(pos));
    let path = cu_tests::repo().join("tests/modules/build/lua-process.wasm");
    match std::fs::read(&path) {
        Ok(lua) => round(c, "lua_eval", &lua, &|m, pos| {
            m.eval(pos, "n = (n or 0) + 1 return n")
        }),
        Err(_) => eprintln!(
            "SKIPPED engine_round/lua_eval: {} missing (run tests/modules/build.sh)",
            path.display()
        ),
    }
    let env: serde_json::Value = serde_json::from_str(&realistic_env()).unwrap();
    c.bench_function("encode_env", |b| {
        b.iter(|| black_box(cu_types::result::to_js_json(&env)))
    });
}

criterion_group!(engine, benches);

fn main() {
    cu_tests::on_eval_thread(|| {
        engine();
        Criterion::default().configure_from_args().final_summary();
    });
}
