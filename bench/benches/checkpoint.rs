//! Criterion benchmarks of checkpoints (cu-engine's `checkpoint` module, the functions the engine's
//! shards call):
//! - `checkpoint_diff`: the per-chunk digest pass that finds what changed since the last checkpoint;
//! - `checkpoint_write_full`: a base (every non-zero chunk, zstd, header with the memory's BLAKE3);
//! - `checkpoint_write_incremental`: a delta holding the changed chunks only;
//! - `checkpoint_restore`: decode a base and a delta, reassemble the memory, check its BLAKE3;
//! - `engine_message_and_checkpoint/lua`: one message on a hot Lua process, then `Engine::checkpoint`
//!   (a delta through the store), when `tests/modules/build.sh` has built the Lua test process.
//!
//! The memory: 32 MiB with 8 MiB of incompressible bytes (a Lua heap full of data) and zeros above; each
//! delta rewrites 64 chunks (256 KiB) spread across the used part.
//!
//! `cargo bench -p cu-bench --bench checkpoint`; quick smoke run: `-- --quick` (CI).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use cu_bench::engine::{Messages, loader, start_engine};
use cu_engine::CheckpointPolicy;
use cu_engine::checkpoint::{self, CHUNK, CheckpointState, ChunkTable};
use cu_types::ModuleFormat;
use cu_wasm::GlobalValue;
use cu_wasm::state::GlueState;

const MEMORY: usize = 32 << 20;
const USED: usize = 8 << 20;
const CHANGED: usize = 64;

/// Deterministic incompressible bytes (xorshift64).
fn fill_random(bytes: &mut [u8], mut x: u64) {
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
}

fn state(memory: &[u8], pos: u64) -> CheckpointState<'_> {
    CheckpointState {
        format: ModuleFormat::Emscripten2,
        module_sha256: [7; 32],
        pos,
        globals: vec![("__stack_pointer".into(), GlobalValue::I32(5 << 20))],
        glue: GlueState::new(ModuleFormat::Emscripten2),
        memory,
    }
}

/// Rewrites `CHANGED` chunks spread over the used part (round `round` writes other bytes).
fn touch(memory: &mut [u8], round: u64) {
    let stride = USED / CHUNK / CHANGED;
    for i in 0..CHANGED {
        let at = i * stride * CHUNK;
        fill_random(&mut memory[at..at + CHUNK], round * 1_000 + i as u64 + 1);
    }
}

fn benches(c: &mut Criterion) {
    let mut memory = vec![0u8; MEMORY];
    fill_random(&mut memory[..USED], 0x9e37_79b9_7f4a_7c15);
    let mut table = ChunkTable::of(&memory);
    let base_chunks = checkpoint::nonzero_chunks(&memory);
    let base = checkpoint::encode(&state(&memory, 1), None, &base_chunks).unwrap();

    let mut group = c.benchmark_group("checkpoint");
    group.throughput(Throughput::Bytes(MEMORY as u64));
    group.bench_function("checkpoint_diff/32mib", |b| {
        let mut t = table.clone();
        b.iter(|| black_box(t.diff_and_update(&memory)))
    });
    group.throughput(Throughput::Bytes(USED as u64));
    group.bench_function("checkpoint_write_full/8mib_used_of_32mib", |b| {
        b.iter(|| {
            let chunks = checkpoint::nonzero_chunks(&memory);
            black_box(checkpoint::encode(&state(&memory, 1), None, &chunks).unwrap())
        })
    });

    touch(&mut memory, 1);
    let changed = table.diff_and_update(&memory);
    assert_eq!(changed.len(), CHANGED, "the delta holds the touched chunks");
    let delta = checkpoint::encode(&state(&memory, 2), Some(1), &changed).unwrap();
    group.throughput(Throughput::Bytes((CHANGED * CHUNK) as u64));
    group.bench_function("checkpoint_write_incremental/256kib_changed", |b| {
        // What a shard does: find the changed chunks, then encode them.
        let mut round = 2;
        b.iter(|| {
            touch(&mut memory, round);
            round += 1;
            let changed = table.diff_and_update(&memory);
            black_box(checkpoint::encode(&state(&memory, round), Some(1), &changed).unwrap())
        })
    });

    // Restore the base and the first delta (the memory after `touch(.., 1)`).
    let mut expected = vec![0u8; MEMORY];
    fill_random(&mut expected[..USED], 0x9e37_79b9_7f4a_7c15);
    touch(&mut expected, 1);
    group.throughput(Throughput::Bytes(MEMORY as u64));
    group.bench_function("checkpoint_restore/base_and_delta_32mib", |b| {
        b.iter(|| {
            let mut rebuilt = vec![0u8; MEMORY];
            let base = checkpoint::decode(&base).unwrap();
            checkpoint::apply(&mut rebuilt, &base).unwrap();
            let delta = checkpoint::decode(&delta).unwrap();
            checkpoint::apply(&mut rebuilt, &delta).unwrap();
            checkpoint::verify(&rebuilt, &delta.header).unwrap();
            black_box(rebuilt)
        })
    });
    group.finish();
    let mut rebuilt = vec![0u8; MEMORY];
    checkpoint::apply(&mut rebuilt, &checkpoint::decode(&base).unwrap()).unwrap();
    checkpoint::apply(&mut rebuilt, &checkpoint::decode(&delta).unwrap()).unwrap();
    assert!(rebuilt == expected, "base + delta reassemble the memory");

    engine_checkpoint(c);
}

/// One Eval on a hot Lua process and an explicit checkpoint through the engine and the store.
fn engine_checkpoint(c: &mut Criterion) {
    let path = cu_tests::repo().join("tests/modules/build/lua-process.wasm");
    let Ok(wasm) = std::fs::read(&path) else {
        eprintln!(
            "SKIPPED engine_message_and_checkpoint: {} missing (run tests/modules/build.sh)",
            path.display()
        );
        return;
    };
    let pid = "checkpointed-process-00000000000000000000000";
    let tmp = tempfile::tempdir().unwrap();
    let policy = CheckpointPolicy {
        every_messages: 0,
        every_eval_time: std::time::Duration::ZERO,
        every_gas: 0,
        on_evict: true,
        on_shutdown: false,
        base_every: 32,
    };
    let engine = start_engine(
        &tmp.path().join("store"),
        loader(&tmp.path().join("aot")),
        1,
        false,
        1 << 30,
        policy,
    );
    let msgs = Messages::new(pid);
    let log = vec![
        msgs.boot(),
        msgs.eval(2, "t = {} for i = 1, 20000 do t[i] = i * 3 end return #t"),
    ];
    cu_tests::seed_process(engine.store(), pid, "lua", &wasm, cu_bench::engine::LUA, &log);
    engine.wait_for(pid, 2).unwrap();
    engine.checkpoint(pid).unwrap();
    let mut pos = 2;
    c.bench_function("engine_message_and_checkpoint/lua", |b| {
        b.iter(|| {
            pos += 1;
            let m = msgs.eval(pos, "for i = 1, 2000 do t[i] = t[i] + 1 end return t[1]");
            cu_tests::append_log(engine.store(), pid, &[m]);
            engine.wait_for(pid, pos).unwrap();
            black_box(engine.checkpoint(pid).unwrap())
        })
    });
    let stats = engine.stats();
    assert!(
        stats.bases + stats.deltas >= 2,
        "checkpoints were written: {stats:?}"
    );
    engine.shutdown().unwrap();
}

criterion_group!(checkpoints, benches);

fn main() {
    // The engine part evaluates wasm: run everything on a thread with the evaluator's stack.
    cu_tests::on_eval_thread(|| {
        checkpoints();
        Criterion::default().configure_from_args().final_summary();
    });
}
