//! Group-commit throughput: results/s written by 4 threads, synchronously (`put_result_sync`, one result in
//! flight per thread) and pipelined (`put_result` with callbacks, then `flush`).
//!
//! `cargo run --release -p cu-store --example group_commit [results per thread] [output bytes] [fsync 0|1]`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cu_store::{ResultRecord, Store, StoreError, StoreOptions};

const THREADS: u64 = 4;

fn record(pid: &str, pos: u64, output: &str) -> ResultRecord {
    ResultRecord {
        process_id: pid.to_owned(),
        pos,
        message_id: Some(format!("message-{pid}-{pos:012}-xxxxxxxxxxxxxxxxxxxx")),
        nonce: Some(pos),
        timestamp: 1_700_000_000_000 + pos,
        block_height: 1_500_000,
        cron: None,
        has_error: false,
        output_json: output.to_owned(),
    }
}

fn run(label: &str, store: &Store, per_thread: u64, output: &str, pipelined: bool) -> Result<(), StoreError> {
    let (commits0, _) = store.writer_stats();
    let failures = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let store = store.clone();
            let failures = Arc::clone(&failures);
            s.spawn(move || {
                let pid = format!("{label}-{t}");
                for pos in 1..=per_thread {
                    if pipelined {
                        let failures = Arc::clone(&failures);
                        store.put_result(
                            record(&pid, pos, output),
                            Box::new(move |r| {
                                if r.is_err() {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                }
                            }),
                        );
                    } else if store.put_result_sync(record(&pid, pos, output)).is_err() {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    store.flush()?;
    let secs = start.elapsed().as_secs_f64();
    let total = THREADS * per_thread;
    let commits = store.writer_stats().0 - commits0;
    println!(
        "{label:>9}: {total} results in {secs:.3} s = {:.0} results/s, {commits} commits ({:.1} results/commit), {} failed",
        total as f64 / secs,
        total as f64 / commits.max(1) as f64,
        failures.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let per_thread: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(25_000);
    let output_bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(300);
    let fsync = args.next().is_some_and(|a| a == "1");
    let dir = tempfile::tempdir()?;
    let store = Store::open(
        dir.path(),
        StoreOptions {
            fsync,
            ..StoreOptions::default()
        },
    )?;
    let output = format!(
        r#"{{"Output":{{"data":"{}"}},"Messages":[]}}"#,
        "x".repeat(output_bytes)
    );
    println!(
        "4 threads, {per_thread} results each, output_json {} bytes, fsync {fsync}",
        output.len()
    );
    run("sync", &store, per_thread, &output, false)?;
    run("pipelined", &store, per_thread, &output, true)?;
    Ok(())
}
