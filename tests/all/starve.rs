//! One tenant never starves another: a looping message is preempted off its shard (its result unchanged),
//! a looping dry-run is stopped at its time limit or when its caller goes away, and neither holds up other
//! processes or other dry-runs. The bounds are liveness checks (generous, for a loaded 2-core machine),
//! not speed targets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cu_engine::{CheckpointPolicy, Engine, EngineConfig, EngineError};
use cu_store::{Store, StoreOptions, Tag};
use cu_tests::*;
use cu_types::{Limits, ModuleFormat};
use cu_wasm::{Loader, Process, ProcessConfig};

const LUA: ModuleFormat = ModuleFormat::Emscripten2;

/// Gas (fuel) that the Lua `Loop` handler burns in a few seconds before it runs out (`out of gas!`).
const LOOP_LIMIT: u64 = 80_000_000_000;

/// Liveness bound: what "answered while another loops" allows on a loaded machine.
const LIVE: Duration = Duration::from_secs(20);

fn loop_log() -> Vec<(String, String)> {
    read_log(&repo().join("tests/modules/lua/loop.jsonl"))
}

fn lua_log() -> Vec<(String, String)> {
    read_log(&repo().join("tests/modules/lua/messages.jsonl"))
}

fn config() -> EngineConfig {
    EngineConfig {
        workers: 1,
        pin_cores: false,
        dry_run_workers: 1,
        time_slice: Duration::from_millis(100),
        long_evaluations: 1,
        ..EngineConfig::default()
    }
}

fn start(dir: &std::path::Path, config: EngineConfig) -> Engine {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    Engine::start(config, store, Arc::new(Loader::new(None).unwrap())).unwrap()
}

/// The Lua process `pid` with a `Compute-Limit` tag.
fn seed_limited(store: &Store, pid: &str, wasm: &[u8], log: &[(String, String)], compute: u64) {
    let tags = vec![Tag {
        name: "Compute-Limit".into(),
        value: compute.to_string(),
    }];
    seed_process_tagged(store, pid, &format!("lua-{pid}"), wasm, LUA, log, tags);
}

fn dry_msg(pid: &str, action: &str) -> String {
    format!(
        r#"{{"Id":"dry","Owner":"o","Target":"{pid}","From":"o","Tags":[{{"name":"Action","value":"{action}"}}],"Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":true}}"#
    )
}

/// Outputs of `log` on one process with `Compute-Limit` = `compute`, as the engine stores them.
fn straight(wasm: Vec<u8>, log: Vec<(String, String)>, compute: u64) -> Vec<String> {
    on_eval_thread(move || {
        let module = Loader::new(None).unwrap().load(&wasm, LUA).unwrap();
        let config = ProcessConfig {
            limits: Limits {
                compute_limit: Some(compute),
                ..Limits::default()
            },
            ..ProcessConfig::default()
        };
        let mut process = Process::boot(module, config).unwrap();
        log.iter()
            .map(|(m, e)| serde_json::to_string(&process.handle(m, e).unwrap()).unwrap())
            .collect()
    })
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "{what} did not happen within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_looping_message_does_not_starve_its_shard_and_its_result_is_unchanged() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let looping = loop_log();
    // The straight run (same limit) in parallel: it also loads the machine while the engine works.
    let want = {
        let (wasm, log) = (wasm.clone(), looping.clone());
        std::thread::spawn(move || straight(wasm, log, LOOP_LIMIT))
    };
    let dir = tempfile::tempdir().unwrap();
    // A budget of one byte: every command ends by checkpointing and evicting what is resident, so
    // eviction and checkpoints run while the looping process is away from the shard.
    let engine = start(
        dir.path(),
        EngineConfig {
            memory_budget: 1,
            checkpoints: CheckpointPolicy {
                every_messages: 1,
                ..CheckpointPolicy::default()
            },
            ..config()
        },
    );
    seed_limited(engine.store(), "a", &wasm, &looping[..3], LOOP_LIMIT);
    let log = lua_log();
    seed_process(engine.store(), "b", "lua", &wasm, LUA, &log[..3]);
    let a = engine.evaluate_to("a", 3).unwrap();
    wait_until("the loop going off its shard", LIVE, || {
        engine.stats().preemptions >= 1
    });

    // B's messages and a dry-run on B are answered while A loops.
    let mut latencies = Vec::new();
    for (i, line) in log[3..8].iter().enumerate() {
        append_log(engine.store(), "b", std::slice::from_ref(line));
        let start = Instant::now();
        engine.wait_for("b", 4 + i as u64).unwrap();
        latencies.push(start.elapsed());
    }
    let start = Instant::now();
    let dry = engine
        .dry_run("b", dry_msg("b", "Count"))
        .unwrap()
        .blocking_recv()
        .unwrap();
    let dry_latency = start.elapsed();
    assert!(dry.is_ok(), "{dry:?}");
    let still_looping = engine.store().result("a", 3).unwrap().is_none();
    eprintln!(
        "victim while another process loops: messages {latencies:?}, dry-run {dry_latency:?}, \
         loop still running: {still_looping}"
    );
    for l in latencies.iter().chain([&dry_latency]) {
        assert!(*l < LIVE, "answered in {l:?}");
    }

    // A ends with `out of gas!`, exactly as a straight run; then it goes on from its checkpoint.
    assert_eq!(a.blocking_recv().unwrap(), Ok(3));
    append_log(engine.store(), "a", &looping[3..]);
    engine.wait_for("a", 4).unwrap();
    let want = want.join().unwrap();
    let got: Vec<String> = engine
        .store()
        .all_results("a")
        .unwrap()
        .into_iter()
        .map(|r| r.output_json)
        .collect();
    assert!(want[2].contains("out of gas!"), "{}", want[2]);
    assert_eq!(got, want);
    assert!(engine.stats().evictions > 0);
    engine.shutdown().unwrap();
}

#[test]
fn shutdown_while_a_message_loops_stops_it_and_loses_nothing() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let looping = loop_log();
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), config());
    // About half an hour of looping at the default compute limit.
    seed_limited(engine.store(), "a", &wasm, &looping[..3], 9_000_000_000_000);
    engine.wait_for("a", 2).unwrap();
    let a = engine.evaluate_to("a", 3).unwrap();
    wait_until("the loop going off its shard", LIVE, || {
        engine.stats().preemptions >= 1
    });
    let start = Instant::now();
    engine.shutdown().unwrap();
    assert!(start.elapsed() < LIVE, "shutdown took {:?}", start.elapsed());
    assert!(
        matches!(a.blocking_recv(), Err(_) | Ok(Err(EngineError::Stopped))),
        "the waiter learns the engine stopped"
    );
    // The interrupted message left no result; the two before it are durable.
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.last_result_pos("a").unwrap(), 2);
}

#[test]
fn a_looping_dry_run_times_out_and_other_dry_runs_go_on() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_secs(4);
    let engine = Arc::new(start(
        dir.path(),
        EngineConfig {
            dry_run_timeout: timeout,
            ..config()
        },
    ));
    seed_process(engine.store(), "b", "lua", &wasm, LUA, &lua_log()[..3]);
    engine.wait_for("b", 3).unwrap();
    let looping = engine.dry_run("b", dry_msg("b", "Loop")).unwrap();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || (looping.blocking_recv().unwrap(), Instant::now()));
    // The one pool thread is busy with the loop: the pool grows after a time slice.
    std::thread::sleep(Duration::from_millis(300));
    let count = engine
        .dry_run("b", dry_msg("b", "Count"))
        .unwrap()
        .blocking_recv()
        .unwrap();
    let count_done = Instant::now();
    assert!(count.is_ok(), "{count:?}");
    let (looped, loop_done) = waiter.join().unwrap();
    assert_eq!(looped, Err(EngineError::DryRunTimeout(timeout)));
    assert_eq!(
        looped.unwrap_err().to_string(),
        "dry-run exceeded its 4 s time limit"
    );
    assert!(
        count_done < loop_done,
        "the other dry-run did not wait for the loop"
    );
    assert!(loop_done - started < LIVE, "the time limit held");
    assert_eq!(engine.stats().dry_run_timeouts, 1);
}

#[test]
fn dropping_a_dry_run_reply_stops_the_dry_run() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No overflow threads and a long time limit: the second dry-run can only run once the first one
    // is cancelled.
    let engine = start(
        dir.path(),
        EngineConfig {
            dry_run_timeout: Duration::from_secs(600),
            dry_run_overflow: 0,
            ..config()
        },
    );
    seed_process(engine.store(), "b", "lua", &wasm, LUA, &lua_log()[..3]);
    engine.wait_for("b", 3).unwrap();
    let looping = engine.dry_run("b", dry_msg("b", "Loop")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(looping);
    let start = Instant::now();
    let count = engine
        .dry_run("b", dry_msg("b", "Count"))
        .unwrap()
        .blocking_recv()
        .unwrap();
    assert!(count.is_ok(), "{count:?}");
    assert!(start.elapsed() < LIVE, "answered in {:?}", start.elapsed());
    assert_eq!(engine.stats().dry_run_timeouts, 0);
}

#[test]
fn a_process_without_compute_limit_gets_the_operators_default() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let looping = loop_log();
    let dir = tempfile::tempdir().unwrap();
    let engine = start(
        dir.path(),
        EngineConfig {
            limits: cu_engine::LimitPolicy {
                default_compute: 1_000_000_000,
                ..cu_engine::LimitPolicy::default()
            },
            ..config()
        },
    );
    seed_process(engine.store(), "a", "lua", &wasm, LUA, &looping[..3]);
    engine.wait_for("a", 3).unwrap();
    let out = engine.store().result("a", 3).unwrap().unwrap().output_json;
    assert!(out.contains("out of gas!"), "{out}");
}
