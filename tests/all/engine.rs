//! The process engine (`cu-engine` over `cu-store`) with the Lua test process and the WAT probes: many
//! processes at once, eviction under a tiny budget, restore equality, incremental checkpoints, dry-runs,
//! backpressure and bad input.

use std::sync::Arc;

use cu_engine::{CheckpointPolicy, Engine, EngineConfig, EngineError};
use cu_store::{CheckpointKind, Store, StoreOptions};
use cu_tests::*;
use cu_types::ModuleFormat;
use cu_wasm::Loader;

const LUA: ModuleFormat = ModuleFormat::Emscripten2;

fn lua_log() -> Vec<(String, String)> {
    read_log(&repo().join("tests/modules/lua/messages.jsonl"))
}

fn start(dir: &std::path::Path, config: EngineConfig) -> Engine {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    Engine::start(config, store, Arc::new(Loader::new(None).unwrap())).unwrap()
}

fn config(workers: usize, budget: u64, every: u64) -> EngineConfig {
    EngineConfig {
        workers,
        pin_cores: false,
        memory_budget: budget,
        checkpoints: CheckpointPolicy {
            every_messages: every,
            base_every: 4,
            ..CheckpointPolicy::default()
        },
        dry_run_workers: 1,
        ..EngineConfig::default()
    }
}

fn outputs(store: &Store, pid: &str) -> Vec<String> {
    store
        .all_results(pid)
        .unwrap()
        .into_iter()
        .map(|r| r.output_json)
        .collect()
}

/// Compares result lists, naming the first difference (outputs can be megabytes).
fn same(got: &[String], want: &[String], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: result count");
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        let cut = |s: &str| s.chars().take(300).collect::<String>();
        panic!(
            "{what}: result {} differs:\n got {}\nwant {}",
            i + 1,
            cut(&got[i]),
            cut(&want[i])
        );
    }
}

fn memory_hash(engine: &Engine, pid: &str) -> (u64, String) {
    let (pos, memory) = engine.state(pid).unwrap().blocking_recv().unwrap().unwrap();
    (pos, blake3::hash(&memory).to_hex().to_string())
}

#[test]
fn many_processes_at_once_match_a_straight_run() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = lua_log();
    let (want, want_hash) = straight_outputs(wasm.clone(), LUA, log.clone());
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), config(2, 4 << 30, 10));
    let pids: Vec<String> = (0..8).map(|i| format!("proc-{i}")).collect();
    for pid in &pids {
        seed_process(engine.store(), pid, "lua", &wasm, LUA, &log);
    }
    let waits: Vec<_> = pids
        .iter()
        .map(|pid| engine.evaluate_to(pid, log.len() as u64).unwrap())
        .collect();
    for w in waits {
        assert_eq!(w.blocking_recv().unwrap().unwrap(), log.len() as u64);
    }
    for pid in &pids {
        same(&outputs(engine.store(), pid), &want, pid);
        assert_eq!(memory_hash(&engine, pid), (log.len() as u64, want_hash.clone()));
    }
    let stats = engine.stats();
    assert_eq!(stats.boots, 8);
    assert_eq!(stats.evaluated, 8 * log.len() as u64);
    assert!(stats.bases >= 8, "every 10 messages: {stats:?}");
    engine.shutdown().unwrap();
}

#[test]
fn failed_messages_roll_back_to_the_last_checkpoint_exactly() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = lua_log();
    let (want, want_hash) = straight_outputs(wasm.clone(), LUA, log.clone());
    // A checkpoint after every message (bases and deltas) or every third: the log's failing messages
    // (Error, Fail) roll back by reading the last checkpoint, not an in-memory copy.
    for every in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let engine = start(dir.path(), config(1, 4 << 30, every));
        seed_process(engine.store(), "p", "lua", &wasm, LUA, &log);
        let done = engine.evaluate_to("p", log.len() as u64).unwrap();
        assert_eq!(done.blocking_recv().unwrap().unwrap(), log.len() as u64);
        same(&outputs(engine.store(), "p"), &want, &format!("every {every}"));
        let (pos, memory) = engine.state("p").unwrap().blocking_recv().unwrap().unwrap();
        assert_eq!(pos, log.len() as u64);
        assert_eq!(
            blake3::hash(&memory).to_hex().to_string(),
            want_hash,
            "every {every}"
        );
        if every == 1 {
            // The last message was checkpointed: the process holds its memory once, with no base copy.
            let stats = engine.stats();
            assert_eq!(stats.resident_bytes, memory.len() as u64, "{stats:?}");
        }
        engine.shutdown().unwrap();
    }
}

#[test]
fn eviction_under_a_tiny_budget_restores_exactly() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = lua_log();
    let (want, want_hash) = straight_outputs(wasm.clone(), LUA, log.clone());
    let dir = tempfile::tempdir().unwrap();
    // A budget of one byte: every process is checkpointed and dropped as soon as another one runs.
    let engine = start(dir.path(), config(1, 1, 0));
    let pids = ["a", "b", "c"];
    for pid in pids {
        seed_process(engine.store(), pid, "lua", &wasm, LUA, &log[..1]);
    }
    // Interleave the processes a few messages at a time.
    for (i, chunk) in log.chunks(5).enumerate() {
        for pid in pids {
            append_log(engine.store(), pid, if i == 0 { &chunk[1..] } else { chunk });
            let last = engine.store().last_pos(pid).unwrap();
            engine.wait_for(pid, last).unwrap();
        }
    }
    let stats = engine.stats();
    assert!(stats.evictions >= 20, "{stats:?}");
    assert!(stats.restores >= 20, "{stats:?}");
    assert_eq!(
        stats.boots, 3,
        "each process starts once, then always restores: {stats:?}"
    );
    assert!(stats.deltas > 0, "evictions write deltas: {stats:?}");
    for pid in pids {
        same(&outputs(engine.store(), pid), &want, pid);
        assert_eq!(memory_hash(&engine, pid).1, want_hash);
    }
    // Idle processes cost their checkpoint on disk, not memory.
    let stats = engine.stats();
    assert!(stats.resident_processes <= 1, "{stats:?}");
    engine.shutdown().unwrap();
}

#[test]
fn restart_resumes_from_checkpoint_and_log() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = lua_log();
    let (want, want_hash) = straight_outputs(wasm.clone(), LUA, log.clone());
    let dir = tempfile::tempdir().unwrap();
    let half = log.len() / 2;
    {
        let mut c = config(1, 4 << 30, 7);
        c.checkpoints.on_shutdown = false;
        let engine = start(dir.path(), c);
        seed_process(engine.store(), "p", "lua", &wasm, LUA, &log[..half]);
        engine.wait_for("p", half as u64).unwrap();
        assert!(engine.stats().bases >= 1);
        engine.shutdown().unwrap();
    }
    // Straight run = checkpoint + restore + replay + rest.
    let engine = start(dir.path(), config(1, 4 << 30, 7));
    append_log(engine.store(), "p", &log[half..]);
    engine.wait_for("p", log.len() as u64).unwrap();
    let stats = engine.stats();
    assert_eq!((stats.restores, stats.boots), (1, 0), "{stats:?}");
    assert!(
        stats.evaluated < log.len() as u64,
        "resumed from a checkpoint, not from the start: {stats:?}"
    );
    same(&outputs(engine.store(), "p"), &want, "p");
    assert_eq!(memory_hash(&engine, "p").1, want_hash);
}

#[test]
fn a_corrupt_checkpoint_is_skipped_for_the_one_before_it() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = lua_log();
    let (want, want_hash) = straight_outputs(wasm.clone(), LUA, log.clone());
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = start(dir.path(), config(1, 4 << 30, 5));
        seed_process(engine.store(), "p", "lua", &wasm, LUA, &log[..30]);
        engine.wait_for("p", 30).unwrap();
        engine.shutdown().unwrap();
    }
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let newest = store.checkpoints("p").unwrap().pop().unwrap();
    let path = dir.path().join(&newest.file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    drop(store);
    let engine = start(dir.path(), config(1, 4 << 30, 5));
    append_log(engine.store(), "p", &log[30..]);
    engine.wait_for("p", log.len() as u64).unwrap();
    assert_eq!(engine.stats().restores, 1);
    same(&outputs(engine.store(), "p"), &want, "p");
    assert_eq!(memory_hash(&engine, "p").1, want_hash);
}

fn grow(mb: u32, id: &str) -> (String, String) {
    let msg = format!(
        r#"{{"Id":"{id}","Owner":"o","Target":"p","From":"o","Tags":[{{"name":"Action","value":"Grow"}},{{"name":"MB","value":"{mb}"}}],"Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":false}}"#
    );
    (
        msg,
        r#"{"Process":{"Id":"p","Owner":"o","Tags":[]},"Module":{"Id":"m","Owner":"o","Tags":[]}}"#.into(),
    )
}

#[test]
fn incremental_checkpoints_write_about_what_changed_and_reassemble() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(1, 4 << 30, 0);
    c.checkpoints.base_every = 100;
    let engine = start(dir.path(), c);
    seed_process(engine.store(), "p", "lua", &wasm, LUA, &[grow(24, "g0")]);
    engine.wait_for("p", 1).unwrap();
    engine.checkpoint("p").unwrap().unwrap();
    let mut hashes = Vec::new();
    for i in 1..=3u64 {
        append_log(engine.store(), "p", &[grow(1, &format!("g{i}"))]);
        engine.wait_for("p", 1 + i).unwrap();
        engine.checkpoint("p").unwrap().unwrap();
        hashes.push(memory_hash(&engine, "p"));
    }
    let records = engine.store().checkpoints("p").unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[0].kind, CheckpointKind::Base);
    assert!(records[0].memory_len > 24 << 20);
    for delta in &records[1..] {
        assert_eq!(delta.kind, CheckpointKind::Delta);
        // One new MiB of distinct bytes (compresses well: repeated letters) plus Lua's bookkeeping;
        // never anything like the whole memory.
        assert!(delta.bytes < 512 << 10, "delta of {} bytes", delta.bytes);
    }
    // Restoring from the chain (base + 3 deltas) gives the same memory.
    let want = hashes.last().unwrap().clone();
    engine.shutdown().unwrap();
    let engine = start(dir.path(), config(1, 4 << 30, 0));
    assert_eq!(memory_hash(&engine, "p"), want);
    assert_eq!(engine.stats().restores, 1);
    assert_eq!(
        engine.stats().evaluated,
        0,
        "nothing replayed: the chain is at the end of the log"
    );
}

#[test]
fn dry_runs_see_the_latest_state_and_change_nothing() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = lua_log();
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), config(1, 4 << 30, 0));
    seed_process(engine.store(), "p", "lua", &wasm, LUA, &log[..4]);
    let count = |id: &str| {
        format!(
            r#"{{"Id":"{id}","Owner":"o","Target":"p","From":"o","Tags":[{{"name":"Action","value":"Count"}}],"Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":true}}"#
        )
    };
    let before = memory_hash(&engine, "p");
    let out = engine
        .dry_run("p", count("d1"))
        .unwrap()
        .blocking_recv()
        .unwrap()
        .unwrap();
    let again = engine
        .dry_run("p", count("d2"))
        .unwrap()
        .blocking_recv()
        .unwrap()
        .unwrap();
    assert_eq!(out, again, "the first dry-run left no trace");
    assert_eq!(memory_hash(&engine, "p"), before);
    // The same message for real gives the dry-run's output.
    let real = (count("r1"), log[0].1.clone());
    append_log(engine.store(), "p", &[real]);
    engine.wait_for("p", 5).unwrap();
    let stored = engine.store().result("p", 5).unwrap().unwrap();
    assert_eq!(stored.output_json, serde_json::to_string(&out).unwrap());
    assert_eq!(engine.stats().dry_runs, 2);
    assert!(
        engine.store().result("p", 6).unwrap().is_none(),
        "dry-runs are never persisted"
    );
}

#[test]
fn bad_input_gives_clear_errors_and_other_processes_continue() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let log = lua_log();
    let dir = tempfile::tempdir().unwrap();
    let engine = start(dir.path(), config(1, 4 << 30, 0));
    seed_process(engine.store(), "good", "lua", &wasm, LUA, &log[..3]);
    // Unknown process.
    let e = engine.wait_for("nobody", 1).unwrap_err();
    assert_eq!(e, EngineError::UnknownProcess("nobody".into()));
    // A module that traps at start-up.
    let trap = wat::parse_str(
        r#"(module (memory (export "memory") 1) (global $sp (mut i32) (i32.const 4096))
            (func (export "__wasm_call_ctors") unreachable)
            (func (export "handle") (param i32 i32) (result i32) i32.const 0)
            (func (export "emscripten_stack_get_current") (result i32) global.get $sp)
            (func (export "_emscripten_stack_restore") (param i32) local.get 0 global.set $sp)
            (func (export "_emscripten_stack_alloc") (param i32) (result i32) global.get $sp))"#,
    )
    .unwrap();
    seed_process(
        engine.store(),
        "trap",
        "trap-module",
        &trap,
        ModuleFormat::Emscripten4,
        &log[..1],
    );
    match engine.wait_for("trap", 1).unwrap_err() {
        EngineError::Boot { process, reason } => {
            assert_eq!(process, "trap");
            assert!(reason.contains("unreachable"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A module that is not wasm.
    seed_process(engine.store(), "junk", "junk-module", b"not wasm", LUA, &log[..1]);
    assert!(matches!(
        engine.wait_for("junk", 1).unwrap_err(),
        EngineError::Module { .. }
    ));
    // A position that is not in the log.
    assert!(matches!(
        engine.wait_for("good", 99).unwrap_err(),
        EngineError::Evaluation { .. }
    ));
    // A checkpoint directory that cannot be written (a file where the directory should be; this
    // holds even for root): the checkpoint fails clearly, results stay durable, others continue.
    std::fs::write(dir.path().join("checkpoints").join("good"), b"in the way").unwrap();
    engine.wait_for("good", 3).unwrap();
    assert!(matches!(
        engine.checkpoint("good").unwrap_err(),
        EngineError::Store(_)
    ));
    assert_eq!(outputs(engine.store(), "good").len(), 3);
    seed_process(engine.store(), "other", "lua", &wasm, LUA, &log[..3]);
    engine.wait_for("other", 3).unwrap();
    same(
        &outputs(engine.store(), "other"),
        &outputs(engine.store(), "good"),
        "other",
    );
}

#[test]
fn a_full_queue_is_an_error_the_caller_sees() {
    let Some(wasm) = built_module("lua-process.wasm") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(1, 4 << 30, 0);
    c.queue_capacity = 2;
    let engine = start(dir.path(), c);
    seed_process(engine.store(), "p", "lua", &wasm, LUA, &[grow(64, "g")]);
    // The shard is busy for a while with the first message; the queue holds two more commands.
    let first = engine.evaluate_to("p", 1).unwrap();
    let results: Vec<_> = (0..20).map(|_| engine.advance("p")).collect();
    assert!(
        results.iter().any(|r| matches!(r, Err(EngineError::Busy(0)))),
        "{results:?}"
    );
    assert_eq!(first.blocking_recv().unwrap().unwrap(), 1);
}

#[test]
fn an_engine_can_be_dropped_inside_an_async_runtime() {
    // Regression: shutdown used to wait with tokio's blocking_recv, which panics on a runtime thread.
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        let engine = start(dir.path(), config(1, 1 << 30, 0));
        assert_eq!(engine.checkpoint("nobody").unwrap(), None);
        drop(engine);
    });
}
