//! Checkpoint blob storage, files against S3: `Store::write_checkpoint` (blob, then index row) and
//! `Store::read_checkpoint_stream` (read while hashing, length and BLAKE3 checked) of one incompressible
//! blob, alternating between a store with files and one with an S3-compatible bucket, `ROUNDS` times each;
//! prints the median and spread of each.
//!
//! `cargo run --release -p cu-store --example checkpoint_storage -- <endpoint> <bucket> <access key> \
//!  <secret key> [MiB, default 100] [rounds, default 5]` (start a server with `tests/s3/start.sh DIR`: its
//! endpoint, bucket `ao-cu-test`, keys `ao-cu-test` / `ao-cu-test-secret`).

use std::time::Instant;

use cu_store::{CheckpointKind, CheckpointMeta, S3Config, Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [endpoint, bucket, access_key, secret_key, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: checkpoint_storage <endpoint> <bucket> <access key> <secret key> [MiB] [rounds]".into(),
        );
    };
    let mib: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(100);
    let rounds: u64 = rest.get(1).map(|s| s.parse()).transpose()?.unwrap_or(5);
    // Incompressible bytes (xorshift64), as a checkpoint of a heap full of data compresses to.
    let mut blob = vec![0u8; mib << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in blob.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = chunk.len();
        chunk.copy_from_slice(&x.to_le_bytes()[..n]);
    }
    let files_dir = tempfile::tempdir()?;
    let s3_dir = tempfile::tempdir()?;
    let files = Store::open(files_dir.path(), StoreOptions::default())?;
    let prefix = format!("bench-{}/", std::process::id());
    let s3 = Store::open(
        s3_dir.path(),
        StoreOptions {
            checkpoint_bucket: Some(S3Config {
                endpoint: endpoint.clone(),
                bucket: bucket.clone(),
                region: "us-east-1".into(),
                access_key: access_key.clone(),
                secret_key: secret_key.clone(),
                prefix,
            }),
            ..StoreOptions::default()
        },
    )?;
    let mut times: [(Vec<f64>, Vec<f64>); 2] = Default::default();
    for seq in 1..=rounds {
        for (i, store) in [&files, &s3].into_iter().enumerate() {
            let meta = CheckpointMeta {
                process_id: "p".into(),
                seq,
                pos: seq,
                kind: CheckpointKind::Base,
                parent: None,
                memory_len: blob.len() as u64,
            };
            let start = Instant::now();
            let rec = store.write_checkpoint(meta, &blob)?;
            times[i].0.push(start.elapsed().as_secs_f64());
            let start = Instant::now();
            let n = store.read_checkpoint_stream(&rec, |r, _| {
                let mut buf = vec![0u8; 1 << 20];
                let mut n = 0usize;
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => break n,
                        Ok(k) => n += k,
                    }
                }
            })?;
            times[i].1.push(start.elapsed().as_secs_f64());
            assert_eq!(n, blob.len());
            store.delete_checkpoints_before("p", seq + 1)?;
        }
    }
    println!("blob: {mib} MiB incompressible, {rounds} rounds alternating (median [min, max])");
    for (label, (write, read)) in ["files", "s3"].iter().zip(times.iter_mut()) {
        println!(
            "{label:>6}: write {}  read {}",
            stats(write, mib),
            stats(read, mib)
        );
    }
    Ok(())
}

fn stats(v: &mut [f64], mib: usize) -> String {
    v.sort_by(f64::total_cmp);
    let median = v[v.len() / 2];
    format!(
        "{:.0} ms ({:.0} MiB/s) [{:.0}, {:.0}]",
        median * 1e3,
        mib as f64 / median,
        v[0] * 1e3,
        v[v.len() - 1] * 1e3
    )
}
