//! Incremental checkpoints and cold start of a big process (the Lua test process grown to ~110 MB):
//! 1. delta size and time: after a base, each round rewrites a `--change-mb` MiB Lua array (an `Eval`
//!    message) and takes a checkpoint through `Engine::checkpoint`; prints the chunks that really
//!    changed (4 KiB, counted on memory copies), the file written and the time, and the parts of that
//!    time measured apart on a copy of the memory: the chunk-digest pass, the whole-memory BLAKE3 the
//!    header carries, zstd of the changed chunks;
//! 2. cold start: one new message appended while no engine runs, a fresh engine over the same directory,
//!    the time from `evaluate_to` to its durable result (restore from the chain, evaluate, commit), and
//!    the split of the restore done by hand with the engine's own public functions: read the files,
//!    decode (zstd + payload BLAKE3), reassemble, whole-memory BLAKE3 check, chunk-digest table,
//!    instantiate + copy the memory in (`Process::restore`).
//!
//! The process's bulk is `--grow-mb` MB of `Grow` strings (one repeated letter each: zstd shrinks them
//! to almost nothing) and/or `--random-mb` MiB of xorshift bytes made by an `Eval` (incompressible).
//!
//! `cargo run --release -p cu-bench --bin engine_checkpoint -- [--grow-mb 90] [--random-mb 0]
//!  [--change-mb 1] [--deltas 3] [--repeat 3]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::Arc;
use std::time::Instant;

use cu_bench::engine::*;
use cu_engine::checkpoint::{self, ChunkTable};
use cu_engine::{CheckpointPolicy, Engine};
use cu_store::{CheckpointKind, Store, StoreOptions};
use cu_wasm::{Loader, Process, ProcessConfig, Snapshot};

const PID: &str = "big-checkpointed-process-000000000000000000";

fn policy() -> CheckpointPolicy {
    // Checkpoints only when asked (and at shutdown), so every one is measured.
    CheckpointPolicy {
        every_messages: 0,
        every_eval_time: std::time::Duration::ZERO,
        every_gas: 0,
        on_evict: true,
        on_shutdown: true,
        base_every: 32,
    }
}

fn memory(engine: &Engine) -> Vec<u8> {
    engine.state(PID).unwrap().blocking_recv().unwrap().unwrap().1
}

fn changed_chunks(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().max(b.len()).div_ceil(checkpoint::CHUNK);
    (0..n)
        .filter(|&i| {
            let r = i * checkpoint::CHUNK..(i + 1) * checkpoint::CHUNK;
            let get = |m: &[u8]| m.get(r.start.min(m.len())..r.end.min(m.len())).unwrap().to_vec();
            get(a) != get(b)
        })
        .count()
}

fn main() {
    on_eval_thread(run);
}

fn run() {
    let grow_mb: u64 = arg("--grow-mb", 90);
    let change_mb: u64 = arg("--change-mb", 1);
    let random_mb: u64 = arg("--random-mb", 0);
    let deltas: u64 = arg("--deltas", 3);
    let repeat: usize = arg("--repeat", 3);
    println!("machine: {}", machine());
    calibrate();
    let wasm = lua_wasm();
    let msgs = Messages::new(PID);
    let tmp = tempfile::tempdir().unwrap();
    let aot = tmp.path().join("aot");
    let db = tmp.path().join("store");
    let engine = start_engine(&db, loader(&aot), 1, false, 4 << 30, policy());
    // Setup: the bulk (compressible `Grow` strings and/or incompressible xorshift bytes), then the table
    // `T` whose `--change-mb` MiB array part each delta round rewrites.
    let mut setup = vec![msgs.boot()];
    if grow_mb > 0 {
        setup.push(msgs.grow(setup.len() as u64 + 1, grow_mb));
    }
    if random_mb > 0 {
        let code = format!(
            "R = R or {{}} local x = 88172645463325252 for s = 1, {} do local parts = {{}} \
             for i = 1, 8192 do x = x ~ (x << 13); x = x ~ (x >> 7); x = x ~ (x << 17); \
             parts[i] = string.pack('<i8', x) end R[#R + 1] = table.concat(parts) parts = nil \
             collectgarbage() end return #R",
            random_mb * 16
        );
        setup.push(msgs.eval(setup.len() as u64 + 1, &code));
    }
    let slots = change_mb * 65536;
    setup.push(msgs.eval(
        setup.len() as u64 + 1,
        &format!("T = {{}} for i = 1, {slots} do T[i] = i end return #T"),
    ));
    cu_tests::seed_process(engine.store(), PID, "lua", &wasm, LUA, &setup);
    let mut pos = setup.len() as u64;
    let (_, t_setup) = time(|| engine.wait_for(PID, pos).unwrap());
    let last = engine.store().result(PID, pos).unwrap().unwrap();
    assert!(
        last.output_json.contains(&format!("\"{slots}\"")),
        "{}",
        last.output_json
    );
    println!("setup ({} messages) evaluated in {t_setup:.1} s", setup.len());
    let mut before = memory(&engine);
    println!("process memory: {:.1} MiB", mib(before.len() as u64));

    // 1. Base, then deltas.
    let s0 = engine.stats();
    let (seq, t) = time(|| engine.checkpoint(PID).unwrap());
    let s1 = engine.stats();
    println!(
        "base checkpoint {seq:?}: {:.2} MiB written in {:.1} ms ({} non-zero chunks = {:.1} MiB before zstd)",
        mib(s1.checkpoint_bytes - s0.checkpoint_bytes),
        t * 1e3,
        checkpoint::nonzero_chunks(&before).len(),
        mib((checkpoint::nonzero_chunks(&before).len() * checkpoint::CHUNK) as u64)
    );
    println!(
        "\n{:>5} {:>16} {:>16} {:>12} | {:>14} {:>14} {:>12}",
        "delta", "changed (4 KiB)", "file written", "time", "digest pass", "memory BLAKE3", "zstd"
    );
    let mut table = ChunkTable::of(&before);
    let mut delta_rows = Vec::new();
    for d in 0..deltas {
        let code = format!("for i = 1, {slots} do T[i] = T[i] + 1 end return T[1]");
        cu_tests::append_log(engine.store(), PID, &[msgs.eval(pos + 1, &code)]);
        pos += 1;
        engine.wait_for(PID, pos).unwrap();
        let after = memory(&engine);
        let changed = changed_chunks(&before, &after);
        let s0 = engine.stats();
        let (_, t) = time(|| engine.checkpoint(PID).unwrap());
        let s1 = engine.stats();
        let kind = if s1.deltas == s0.deltas + 1 {
            "delta"
        } else {
            "BASE"
        };
        let written = s1.checkpoint_bytes - s0.checkpoint_bytes;
        // The parts, on the copy: what Resident::checkpoint does for a delta.
        let (indices, t_digest) = time(|| table.diff_and_update(&after));
        let (_, t_hash) = time(|| blake3::hash(&after));
        let payload: Vec<u8> = indices
            .iter()
            .flat_map(|&i| {
                let s = i as usize * checkpoint::CHUNK;
                after[s..(s + checkpoint::CHUNK).min(after.len())].to_vec()
            })
            .collect();
        let (_, t_zstd) = time(|| zstd::bulk::compress(&payload, 1).unwrap());
        assert_eq!(indices.len(), changed, "digest diff = byte diff");
        println!(
            "{:>5} {:>9} = {:>4.2} MiB {:>12.3} MiB {:>9.1} ms | {:>11.1} ms {:>11.1} ms {:>9.1} ms  {kind}",
            d + 1,
            changed,
            mib((changed * checkpoint::CHUNK) as u64),
            mib(written),
            t * 1e3,
            t_digest * 1e3,
            t_hash * 1e3,
            t_zstd * 1e3
        );
        delta_rows.push((changed, written, t));
        before = after;
    }
    let final_hash = blake3::hash(&before).to_hex().to_string();
    engine.shutdown().unwrap();

    // 2. Cold start, `repeat` times; each leaves one more delta (checkpoint at shutdown).
    println!(
        "\n{:>4} {:>22} {:>14} {:>16}",
        "run", "chain (base+deltas)", "cold start", "module from AOT"
    );
    let mut colds = Vec::new();
    for r in 0..repeat {
        let store = Store::open(&db, StoreOptions::default()).unwrap();
        pos += 1;
        cu_tests::append_log(&store, PID, &[msgs.count(pos)]);
        let chain = chain_of(&store).len();
        drop(store);
        let fresh: Arc<Loader> = loader(&aot);
        let (_, t_module) = time(|| fresh.load(&wasm, LUA).unwrap());
        let fresh = loader(&aot);
        let engine = start_engine(&db, fresh, 1, false, 4 << 30, policy());
        let t0 = Instant::now();
        engine.wait_for(PID, pos).unwrap();
        let t = since(t0);
        let stats = engine.stats();
        assert_eq!(
            (stats.restores, stats.boots, stats.evaluated),
            (1, 0, 1),
            "{stats:?}"
        );
        println!(
            "{:>4} {:>22} {:>11.1} ms {:>13.1} ms",
            r + 1,
            format!("1 + {}", chain - 1),
            t * 1e3,
            t_module * 1e3
        );
        colds.push(t);
        engine.shutdown().unwrap();
    }

    // 3. The split, by hand, on the final chain.
    let store = Store::open(&db, StoreOptions::default()).unwrap();
    let module = loader(&aot).load(&wasm, LUA).unwrap();
    let mut parts: Vec<Vec<f64>> = vec![Vec::new(); 7];
    let mut chain_len = 0;
    for _ in 0..repeat {
        let chain = chain_of(&store);
        chain_len = chain.len();
        let (blobs, t_read) = time(|| {
            chain
                .iter()
                .map(|r| store.read_checkpoint(r).unwrap())
                .collect::<Vec<_>>()
        });
        let (decoded, t_decode) = time(|| {
            blobs
                .iter()
                .map(|b| checkpoint::decode(b).unwrap())
                .collect::<Vec<_>>()
        });
        let (memory, t_apply) = time(|| {
            let len = decoded.last().map_or(0, |d| d.header.memory_len as usize);
            let mut m = vec![0u8; len];
            for d in &decoded {
                checkpoint::apply(&mut m, d).unwrap();
            }
            m
        });
        let header = &decoded.last().unwrap().header;
        let (hash, t_hash) = time(|| blake3::hash(&memory).to_hex().to_string());
        assert_eq!(hash, header.memory_blake3);
        let (_, t_table) = time(|| ChunkTable::of(&memory));
        let snapshot = Snapshot {
            format: header.format,
            module_sha256: module.sha256,
            memory,
            globals: header.globals.clone(),
            glue: header.glue.clone(),
        };
        let config = ProcessConfig {
            limits: LUA_LIMITS,
            ..ProcessConfig::default()
        };
        let (mut process, t_restore) = time(|| Process::restore(module.clone(), snapshot, config).unwrap());
        let (m, e) = msgs.count(pos + 1);
        let (_, t_eval) = time(|| process.handle(&m, &e).unwrap());
        for (i, t) in [t_read, t_decode, t_apply, t_hash, t_table, t_restore, t_eval]
            .into_iter()
            .enumerate()
        {
            parts[i].push(t);
        }
    }
    let names = [
        "read the chain's files (+ BLAKE3 of each file)",
        "decode: zstd decompress + header BLAKE3",
        "reassemble (apply base + deltas)",
        "whole-memory BLAKE3 check",
        "chunk-digest table for the next delta",
        "instantiate + copy memory in (Process::restore)",
        "evaluate one Count",
    ];
    println!("\ncold start split, chain of {chain_len} (median of {repeat}):");
    let mut sum = 0.0;
    for (name, ts) in names.iter().zip(parts.iter_mut()) {
        let m = median(ts);
        sum += m;
        println!("  {name:50} {:>8.1} ms", m * 1e3);
    }
    println!("  {:50} {:>8.1} ms", "sum", sum * 1e3);
    println!(
        "\ncold start through the engine: median {:.1} ms (goal <= 250 ms); final memory BLAKE3 before the cold starts {}",
        median(&mut colds) * 1e3,
        &final_hash[..16]
    );
    let (c, w, t): (Vec<_>, Vec<_>, Vec<_>) = (
        delta_rows.iter().map(|r| r.0).collect(),
        delta_rows.iter().map(|r| r.1).collect(),
        delta_rows.iter().map(|r| r.2).collect(),
    );
    println!(
        "deltas: changed chunks {c:?}, bytes written {w:?}, times {:.1?} ms",
        t.iter().map(|x| x * 1e3).collect::<Vec<_>>()
    );
}

/// The newest chain: the last checkpoint, its parent, ... its base (base first).
fn chain_of(store: &Store) -> Vec<cu_store::CheckpointRecord> {
    let records = store.checkpoints(PID).unwrap();
    let mut chain = vec![records.last().unwrap().clone()];
    while let Some(parent) = chain.last().unwrap().parent {
        chain.push(records.iter().find(|r| r.seq == parent).unwrap().clone());
    }
    assert_eq!(chain.last().unwrap().kind, CheckpointKind::Base);
    chain.reverse();
    chain
}

/// The hashing passes on a 120 MiB buffer of xorshift bytes (no process involved).
fn calibrate() {
    let mut buf = vec![0u8; 120 << 20];
    let mut x: u64 = 88172645463325252;
    for c in buf.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes());
    }
    let (table, t_table) = time(|| ChunkTable::of(&buf));
    let mut table = table;
    buf[12345] ^= 1;
    let (changed, t_diff) = time(|| table.diff_and_update(&buf));
    let (_, t_hash) = time(|| blake3::hash(&buf));
    println!(
        "calibration, 120 MiB of xorshift bytes: ChunkTable::of {:.1} ms, diff_and_update {:.1} ms ({} changed), whole BLAKE3 {:.1} ms",
        t_table * 1e3,
        t_diff * 1e3,
        changed.len(),
        t_hash * 1e3
    );
}
