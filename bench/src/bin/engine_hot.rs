//! Hot big process, side by side: the Lua test process grown to ~110 MB (one `Grow` message), then
//! small `Count` messages
//! - on a bare `cu_wasm::Process::handle` (the module's own work, plus ao-cu's per-call marshalling);
//! - through the engine, one at a time: append to the store's log, `evaluate_to`, answered once the
//!   result is durable (latency);
//! - through the engine, pipelined: a batch appended at once, `evaluate_to` its last position
//!   (throughput per message);
//! - through the reference loader in the reference CU's way (`tests/oracle/run.cjs --mode cu`: the
//!   whole memory passed in and out per message) and its fast path (`--mode hot`), per-message time by
//!   differencing a log without and with the `Count` messages (start-up and `Grow` cancel out); the
//!   driver hashes no memory between messages (`--memory-hash none`), as the other sides do not.
//!
//! Bare and engine run in alternating blocks of `--block` messages, `--counts` x `--repeat` per side
//! (the machine is shared and noisy).
//!
//! `cargo run --release -p cu-bench --bin engine_hot -- [--counts 500] [--repeat 3] [--block 50] [--grow-mb 90]
//!  [--ref-counts 30] [--ref-counts-hot 1000] [--every 1000] [--no-reference]`
//!
//! `--every N`: the engine's checkpoint every N messages (default: the engine's default, 1000; 0: none,
//! which leaves the engine's own per-message overhead alone).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::Command;
use std::time::Instant;

use cu_bench::engine::*;
use cu_engine::CheckpointPolicy;
use cu_wasm::{Process, ProcessConfig};

const PID: &str = "hot-big-process-000000000000000000000000000";

fn main() {
    on_eval_thread(run);
}

fn run() {
    let counts: u64 = arg("--counts", 500);
    let repeat: usize = arg("--repeat", 3);
    let grow_mb: u64 = arg("--grow-mb", 90);
    let ref_counts: u64 = arg("--ref-counts", 30);
    let ref_counts_hot: u64 = arg("--ref-counts-hot", 1000);
    let every: u64 = arg("--every", CheckpointPolicy::default().every_messages);
    let block: u64 = arg("--block", 50);
    println!("machine: {}", machine());
    let wasm = lua_wasm();
    let msgs = Messages::new(PID);
    let tmp = tempfile::tempdir().unwrap();
    let loader = loader(&tmp.path().join("aot"));
    let setup = vec![msgs.boot(), msgs.grow(2, grow_mb)];

    // Bare process.
    let module = loader.load(&wasm, LUA).unwrap();
    let config = ProcessConfig {
        limits: LUA_LIMITS,
        ..ProcessConfig::default()
    };
    let mut bare = Process::boot(module, config).unwrap();
    let mut bare_outputs = Vec::new();
    for (m, e) in &setup {
        let out = bare.handle(m, e).unwrap();
        assert!(out.error.is_none(), "setup failed: {out:?}");
    }
    let memory = bare.memory_size();
    println!(
        "process memory after Grow MB={grow_mb}: {:.1} MiB ({memory} bytes)",
        mib(memory)
    );

    // Engine: one shard, the default checkpoint policy (a checkpoint every 1000 messages) unless
    // `--every N` (0: never on count).
    let db = tmp.path().join("store");
    let policy = CheckpointPolicy {
        every_messages: every,
        ..CheckpointPolicy::default()
    };
    let engine = start_engine(&db, loader.clone(), 1, false, 4 << 30, policy);
    cu_tests::seed_process(engine.store(), PID, "lua", &wasm, LUA, &setup);
    engine.wait_for(PID, 2).unwrap();

    // Blocks of `block` messages, alternating bare / engine one at a time / engine pipelined, so that
    // the machine's slow drifts hit the three sides alike; per side: the median of block means, the
    // overall mean, the median ratio to the bare block next to it, and on-CPU time per message.
    let blocks = (counts * repeat as u64).div_ceil(block);
    let (mut bare_b, mut seq_b, mut piped_b) = (Vec::new(), Vec::new(), Vec::new());
    let (mut seq_ratio, mut piped_ratio) = (Vec::new(), Vec::new());
    let (mut bare_cpu, mut seq_cpu, mut piped_cpu, mut writer_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut seq_append = Vec::new();
    let mut next_bare = 3u64;
    let mut next_engine = 3u64;
    let stats0 = engine.stats();
    let shard_cpu = || sched(Some("cu-shard")).0;
    let writer = || sched(Some("cu-store-writer")).0;
    let per = |a: f64, b: f64| (b - a) / block as f64;
    for _ in 0..blocks {
        // Bare: the same messages.
        let (t0, c0) = (Instant::now(), sched(None).0);
        for _ in 0..block {
            let (m, e) = msgs.count(next_bare);
            next_bare += 1;
            let out = bare.handle(&m, &e).unwrap();
            if bare_outputs.len() < ref_counts.max(ref_counts_hot) as usize {
                bare_outputs.push(serde_json::to_value(&out).unwrap()["Output"].clone());
            }
        }
        let bare_t = since(t0) / block as f64;
        bare_cpu.push(per(c0, sched(None).0));
        // Engine, one message at a time.
        let (t0, c0) = (Instant::now(), shard_cpu());
        for _ in 0..block {
            let entry = msgs.count(next_engine);
            let t = Instant::now();
            cu_tests::append_log(engine.store(), PID, &[entry]);
            seq_append.push(since(t));
            engine.wait_for(PID, next_engine).unwrap();
            next_engine += 1;
        }
        let seq_t = since(t0) / block as f64;
        seq_cpu.push(per(c0, shard_cpu()));
        // Engine, pipelined.
        let batch: Vec<_> = (0..block).map(|i| msgs.count(next_engine + i)).collect();
        let (t0, c0, w0) = (Instant::now(), shard_cpu(), writer());
        cu_tests::append_log(engine.store(), PID, &batch);
        next_engine += block;
        engine.wait_for(PID, next_engine - 1).unwrap();
        let piped_t = since(t0) / block as f64;
        piped_cpu.push(per(c0, shard_cpu()));
        writer_cpu.push(per(w0, writer()));
        bare_b.push(bare_t);
        seq_b.push(seq_t);
        piped_b.push(piped_t);
        seq_ratio.push(seq_t / bare_t);
        piped_ratio.push(piped_t / bare_t);
    }
    let stats = engine.stats();
    let last = engine.store().result(PID, next_engine - 1).unwrap().unwrap();
    assert!(
        last.output_json.contains(&format!("\"{}\"", next_engine - 3)),
        "engine's last Count output: {}",
        last.output_json
    );
    engine.shutdown().unwrap();

    let ms = |s: f64| s * 1e3;
    let us = |s: f64| s * 1e6;
    println!(
        "\nengine checkpoints during the blocks (every {every} messages): {} bases, {} deltas, {:.1} MiB written",
        stats.bases - stats0.bases,
        stats.deltas - stats0.deltas,
        mib(stats.checkpoint_bytes - stats0.checkpoint_bytes)
    );
    println!(
        "\n{} Count messages per side on a {:.0} MiB process, {blocks} alternating blocks of {block}",
        blocks * block,
        mib(memory)
    );
    println!(
        "{:50} {:>11} {:>9} {:>15} {:>14}",
        "side", "median ms", "mean ms", "median vs bare", "on-CPU us/msg"
    );
    let bare_mean = mean(&bare_b);
    let seq_mean = mean(&seq_b);
    let piped_mean = mean(&piped_b);
    let bare_med = median(&mut bare_b);
    let seq_med = median(&mut seq_b);
    println!(
        "{:50} {:>11.3} {:>9.3} {:>15} {:>14.0}",
        "bare Process::handle",
        ms(bare_med),
        ms(bare_mean),
        "1.00x",
        us(median(&mut bare_cpu))
    );
    println!(
        "{:50} {:>11.3} {:>9.3} {:>14.2}x {:>14.0}",
        "engine, one at a time (append+evaluate_to+durable)",
        ms(seq_med),
        ms(seq_mean),
        median(&mut seq_ratio),
        us(median(&mut seq_cpu))
    );
    println!(
        "{:50} {:>11.3} {:>9} {:>15} {:>14}",
        "  of which the append (store write, committed)",
        ms(median(&mut seq_append)),
        "",
        "",
        ""
    );
    let piped_med = median(&mut piped_b);
    println!(
        "{:50} {:>11.3} {:>9.3} {:>14.2}x {:>14.0}",
        "engine, pipelined (batch append, evaluate_to last)",
        ms(piped_med),
        ms(piped_mean),
        median(&mut piped_ratio),
        us(median(&mut piped_cpu))
    );
    println!(
        "{:50} {:>11} {:>9} {:>15} {:>14.0}",
        "  store writer thread (pipelined)",
        "",
        "",
        "",
        us(median(&mut writer_cpu))
    );

    if flag("--no-reference") {
        return;
    }
    // The reference loader, side by side.
    let mut log_short = Vec::new();
    let mut log_full = Vec::new();
    for (m, e) in &setup {
        log_short.push(jsonl(m, e));
        log_full.push(jsonl(m, e));
    }
    let short = tmp.path().join("short.jsonl");
    let module_path = tmp.path().join("lua-process.wasm");
    std::fs::write(&short, log_short.join("\n") + "\n").unwrap();
    std::fs::write(&module_path, &wasm).unwrap();
    let mut rows = Vec::new();
    // The reference CU's way copies the memory twice per message: few messages are enough; its hot
    // path needs many to stand out of the noise of the `Grow` message.
    for (mode, ref_counts) in [("cu", ref_counts), ("hot", ref_counts_hot)] {
        let mut log_full = log_full.clone();
        for n in 0..ref_counts {
            let (m, e) = msgs.count(3 + n);
            log_full.push(jsonl(&m, &e));
        }
        let full = tmp.path().join(format!("full-{mode}.jsonl"));
        std::fs::write(&full, log_full.join("\n") + "\n").unwrap();
        let mut shorts = Vec::new();
        let mut fulls = Vec::new();
        let mut outputs = Vec::new();
        for _ in 0..repeat {
            shorts.push(reference(&module_path, &short, mode).0);
            let (t, out) = reference(&module_path, &full, mode);
            fulls.push(t);
            outputs = out;
        }
        let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let per = (min(&fulls) - min(&shorts)) / ref_counts as f64;
        let n = bare_outputs.len().min(outputs.len() - 2);
        let same = outputs[2..2 + n] == bare_outputs[..n];
        println!(
            "reference mode {mode}: evaluation short {shorts:.3?} s, full {fulls:.3?} s; Count outputs identical to ao-cu: {same}"
        );
        assert!(same, "reference outputs differ: {outputs:?} vs {bare_outputs:?}");
        rows.push((mode, per, ref_counts));
    }
    println!(
        "\nside by side (Count messages through the reference after the same setup, fastest of {repeat} runs, differenced)"
    );
    println!("{:58} {:>10} {:>22}", "side", "ms/msg", "reference / ao-cu");
    for (mode, per, n) in rows {
        let name = match mode {
            "cu" => format!("reference ao-loader, the reference CU's way, {n} msgs"),
            _ => format!("reference ao-loader, hot instance (fast path), {n} msgs"),
        };
        println!(
            "{:58} {:>10.3} {:>10.1}x engine-seq {:>6.1}x engine-piped (medians)",
            name,
            ms(per),
            per / seq_med,
            per / piped_med
        );
    }
}

fn jsonl(msg: &str, env: &str) -> String {
    format!(r#"{{"msg":{msg},"env":{env}}}"#)
}

/// Runs the reference driver on a log: its evaluation time (s) and each message's `Output`.
fn reference(module: &std::path::Path, log: &std::path::Path, mode: &str) -> (f64, Vec<serde_json::Value>) {
    let out = Command::new("node")
        .arg(cu_tests::repo().join("tests/oracle/run.cjs"))
        .args(["--module".as_ref(), module.as_os_str()])
        .args([
            "--format",
            LUA.as_str(),
            "--mode",
            mode,
            "--this-program",
            cu_wasm::THIS_PROGRAM,
            // No memory hash between messages: the bare and engine sides hash nothing either.
            "--memory-hash",
            "none",
        ])
        .args(["--messages".as_ref(), log.as_os_str()])
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "reference failed: {stderr}");
    let ms: f64 = stderr
        .split("evaluation ")
        .nth(1)
        .and_then(|s| s.split(" ms").next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no evaluation time in: {stderr}"));
    let outputs = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Output"].clone())
        .collect();
    (ms / 1e3, outputs)
}
