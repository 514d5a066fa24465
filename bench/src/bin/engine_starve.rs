//! The victim's latency while another tenant loops (issue 16): one shard (`workers = 1`), process B
//! evaluates `--messages` `Count`s one at a time (each appended, then waited for) and `--dry-runs`
//! dry-runs, timed one by one, in three runs on fresh engines:
//!
//! 1. `alone`: B only.
//! 2. `attacked`: process A on the same shard evaluates a Lua `while true` message with
//!    `Compute-Limit` = `--loop-gas` (default 9e12, minutes of looping) while B runs.
//! 3. `attacked, no preemption`: the same with a one-hour time slice (the shard is never handed on, as
//!    before issue 16) and `--loop-gas-off` (default 8e10, seconds) so that the run ends.
//!
//! `cargo run --release -p cu-bench --bin engine_starve -- [--messages 50] [--dry-runs 20]
//!  [--loop-gas 9000000000000] [--loop-gas-off 80000000000] [--slice-ms 250]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::time::{Duration, Instant};

use cu_bench::engine::*;
use cu_engine::{Engine, EngineConfig};
use cu_store::{Store, StoreOptions, Tag};

fn main() {
    on_eval_thread(run);
}

fn run() {
    let messages: u64 = arg("--messages", 50);
    let dry_runs: usize = arg("--dry-runs", 20);
    let loop_gas: u64 = arg("--loop-gas", 9_000_000_000_000);
    let loop_gas_off: u64 = arg("--loop-gas-off", 80_000_000_000);
    let slice = Duration::from_millis(arg("--slice-ms", 250));
    println!("machine: {}", machine());
    let wasm = lua_wasm();
    for (label, attack, slice) in [
        ("alone", None, slice),
        ("attacked", Some(loop_gas), slice),
        (
            "attacked, no preemption",
            Some(loop_gas_off),
            Duration::from_secs(3600),
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store"), StoreOptions::default()).unwrap();
        let config = EngineConfig {
            workers: 1,
            pin_cores: false,
            dry_run_workers: 1,
            time_slice: slice,
            ..EngineConfig::default()
        };
        let engine = Engine::start(config, store, loader(&tmp.path().join("aot"))).unwrap();
        let b = Messages::new("victim");
        cu_tests::seed_process(engine.store(), "victim", "lua", &wasm, LUA, &[b.boot()]);
        engine.wait_for("victim", 1).unwrap();
        let started = Instant::now();
        let attacker = attack.map(|gas| {
            seed_attacker(engine.store(), &wasm, gas);
            let rx = engine.evaluate_to("attacker", 2).unwrap();
            // Let the loop begin (and, with preemption, leave the shard).
            std::thread::sleep(slice.min(Duration::from_secs(1)) * 2);
            rx
        });
        let mut msg = Vec::new();
        for n in 2..messages + 2 {
            cu_tests::append_log(engine.store(), "victim", &[b.count(n)]);
            let ((), s) = time(|| {
                engine.wait_for("victim", n).unwrap();
            });
            msg.push(s * 1e3);
        }
        let mut dry = Vec::new();
        for i in 0..dry_runs {
            let (m, _) = b.count(10_000 + i as u64);
            let (out, s) = time(|| engine.dry_run("victim", m).unwrap().blocking_recv().unwrap());
            out.unwrap();
            dry.push(s * 1e3);
        }
        let looping = attack.is_some() && engine.store().result("attacker", 2).unwrap().is_none();
        let max = |xs: &[f64]| xs.iter().copied().fold(0.0, f64::max);
        println!(
            "{label}: B message p50 {:.1} ms, max {:.1} ms; dry-run p50 {:.1} ms, max {:.1} ms; \
             attacker still looping at the end: {looping}; preemptions {}; {:.1} s",
            median(&mut msg.clone()),
            max(&msg),
            median(&mut dry.clone()),
            max(&dry),
            engine.stats().preemptions,
            since(started),
        );
        if let Some(rx) = attacker
            && !looping
        {
            rx.blocking_recv().unwrap().unwrap();
        }
        // Shutdown stops a loop still running (its result is not stored).
        let (_, s) = time(|| engine.shutdown().unwrap());
        println!("  shutdown {:.2} s", s);
    }
}

/// Process `attacker`: its boot message and one `Loop`, with `Compute-Limit` = `gas`.
fn seed_attacker(store: &Store, wasm: &[u8], gas: u64) {
    let a = Messages::new("attacker");
    store
        .put_module(&cu_store::ModuleRecord {
            id: "lua-attacker".into(),
            format: LUA.as_str().into(),
            owner: "o".into(),
            owner_key: None,
            tags: vec![],
            wasm: wasm.to_vec(),
        })
        .unwrap();
    store
        .put_process(&cu_store::ProcessRecord {
            id: "attacker".into(),
            module_id: "lua-attacker".into(),
            owner: "o".into(),
            tags: vec![Tag {
                name: "Compute-Limit".into(),
                value: gas.to_string(),
            }],
            env_json: a.env(),
            block_height: 0,
            timestamp: 0,
            spawn_json: "{}".into(),
        })
        .unwrap();
    cu_tests::append_log(store, "attacker", &[a.boot(), a.message(2, "Loop", &[])]);
}
