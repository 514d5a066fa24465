//! `ao-cu serve` with its state outside the data directory, end to end: the tables in a real PostgreSQL
//! server (`--db-url`) and the checkpoint blobs in a real S3-compatible server (`--checkpoint-s3-*`).
//!
//! Starts a throwaway PostgreSQL server (Debian's, through `tests/pg/start.sh`) and s3s-fs
//! (`tests/s3/start.sh`) on free loopback ports, runs `ao-cu serve` on them with a checkpoint after every
//! message, and drives it with `tests/e2e/aoconnect.mjs run` (the real `@permaweb/aoconnect`: module
//! upload, spawn, messages, results paging, dry-run, outbox between processes, assign). Then: no SQLite
//! file and no checkpoint file was made in the data directory; the results are rows in PostgreSQL and the
//! checkpoints objects in the bucket. After SIGTERM, a node started on a **new, empty data directory**
//! (only the wallet copied) over the same database and bucket answers `aoconnect.mjs verify`: every
//! recorded result identical, and the process state continues (a dry-run on it). A database or bucket
//! that cannot be used makes `serve` exit non-zero with a message that names it (without secrets).
//!
//! Needs what `tests/serve.rs` needs, plus PostgreSQL and s3s-fs (`tests/setup.sh` installs both);
//! without them the test prints SKIPPED, or fails when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::process::{Command, ExitStatus};

mod common;
use common::engines::{Postgres, S3, files_under};
use common::{Server, node_script, repo, signal};

/// Every file under `dir` whose name ends with `suffix`.
fn files_ending(dir: &std::path::Path, suffix: &str) -> Vec<std::path::PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .collect()
}

/// `serve` arguments for the database and the bucket, a checkpoint after every message, and `extra`.
fn shared_args(pg: &Postgres, s3: &S3, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--db-url".to_owned(), pg.url.clone()];
    args.extend(s3.args());
    args.extend(["--checkpoint-every-messages", "1"].map(String::from));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

#[test]
fn aoconnect_against_serve_on_postgres_and_s3_then_a_new_data_directory() {
    if !common::ready() {
        return;
    }
    let (Some(pg), Some(s3)) = (Postgres::start(), S3::start()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let state = tmp.path().join("e2e-state.json");
    let wasm = repo().join("tests/modules/build/lua-process.wasm");
    let args = shared_args(&pg, &s3, &["--checkpoint-s3-prefix", "node-a/"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let server = Server::start_with(&data, &args);
    let status = node_script(&[
        "run",
        &server.url,
        wasm.to_str().unwrap(),
        state.to_str().unwrap(),
    ]);
    assert!(status.success(), "aoconnect.mjs run on PostgreSQL + S3: {status}");
    let exit = server.terminate();
    assert!(exit.success(), "ao-cu serve after SIGTERM: {exit}");

    assert!(
        !data.join(cu_store::DB_FILE).exists(),
        "with --db-url no SQLite database is made in the data directory"
    );
    assert_eq!(
        files_ending(&data, ".ckpt"),
        Vec::<std::path::PathBuf>::new(),
        "no checkpoint files"
    );
    let objects = s3.objects();
    assert!(
        !objects.is_empty()
            && objects
                .iter()
                .all(|o| o.starts_with("node-a/checkpoints/") && o.ends_with(".ckpt")),
        "{objects:?}"
    );
    let indexed: usize = pg.psql("SELECT count(*) FROM checkpoints").parse().unwrap();
    assert!(
        indexed >= 1 && indexed <= objects.len(),
        "{indexed} rows, {} objects",
        objects.len()
    );
    let results: u64 = pg.psql("SELECT count(*) FROM results").parse().unwrap();
    let processes: u64 = pg.psql("SELECT count(*) FROM processes").parse().unwrap();
    let assignments: u64 = pg.psql("SELECT count(*) FROM schedule").parse().unwrap();
    assert!(
        results > 0 && processes >= 2 && assignments >= results,
        "{results} {processes} {assignments}"
    );
    assert_eq!(
        pg.psql("SELECT version FROM cu_schema"),
        cu_store::SCHEMA_VERSION.to_string()
    );

    // A new node on an empty data directory (the wallet kept: the same SU identity) over the same
    // database and bucket: every recorded result identical, the process state continues.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::copy(data.join("wallet.json"), fresh.join("wallet.json")).unwrap();
    let server = Server::start_with(&fresh, &args);
    let status = node_script(&["verify", &server.url, state.to_str().unwrap()]);
    assert!(
        status.success(),
        "aoconnect.mjs verify on a new data directory: {status}"
    );
    let exit = server.terminate();
    assert!(exit.success(), "ao-cu serve after the second SIGTERM: {exit}");
    assert_eq!(files_ending(&fresh, ".ckpt"), Vec::<std::path::PathBuf>::new());
}

#[test]
fn an_unreachable_database_is_a_clear_startup_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(tmp.path())
        .args(["--db-url", "postgres://cu:hunter2@127.0.0.1:1/ao"])
        .env_remove("DB_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("postgres://cu@127.0.0.1:1/ao") && stderr.contains("cannot connect"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password stays out of messages: {stderr}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(tmp.path().join("b"))
        .env("DB_URL", "mysql://x@y/z")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a bad flag value is a usage error: {stderr}"
    );
    assert!(stderr.contains("unsupported database URL"), "{stderr}");

    // A bucket on an endpoint where nothing listens: refused at start, the secret not printed.
    let out = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(tmp.path().join("c"))
        .args([
            "--checkpoint-s3-endpoint",
            "http://127.0.0.1:1",
            "--checkpoint-s3-bucket",
            "b",
        ])
        .args([
            "--checkpoint-s3-access-key",
            "k",
            "--checkpoint-s3-secret-key",
            "hunter3",
        ])
        .env_remove("DB_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("s3://b/") && stderr.contains("cannot be listed"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter3"), "{stderr}");
}

/// Waits for the child to exit (fails after `secs`).
fn wait_exit(server: &mut Server, secs: u64) -> ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ao-cu serve did not exit within {secs} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Active/standby on one database and bucket: node B stands by while node A renews its lease; A is
/// paused (SIGSTOP) past the lease's time to live, B takes over and answers every recorded result
/// identically with the process state continuing; A, resumed, finds its lease taken (its writes fenced
/// by the token) and stops with exit code 3.
#[test]
fn a_standby_takes_over_a_paused_node_and_the_paused_node_is_fenced() {
    if !common::ready() {
        return;
    }
    let (Some(pg), Some(s3)) = (Postgres::start(), S3::start()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("e2e-state.json");
    let wasm = repo().join("tests/modules/build/lua-process.wasm");
    let shared = |owner: &str| {
        shared_args(
            &pg,
            &s3,
            &["--store-lease", owner, "--store-lease-ttl-ms", "1500"],
        )
    };
    let (data_a, data_b) = (tmp.path().join("a"), tmp.path().join("b"));
    let args_a = shared("node-a");
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let mut a = Server::start_with(&data_a, &args_a);
    let status = node_script(&["run", &a.url, wasm.to_str().unwrap(), state.to_str().unwrap()]);
    assert!(status.success(), "aoconnect.mjs run on node A: {status}");
    assert_eq!(pg.psql("SELECT owner || ' ' || token FROM cu_lease"), "node-a 1");

    // Node B (the same wallet: the same SU identity) stands by.
    std::fs::create_dir_all(&data_b).unwrap();
    std::fs::copy(data_a.join("wallet.json"), data_b.join("wallet.json")).unwrap();
    let args_b = shared("node-b");
    let standby = std::thread::spawn(move || {
        let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
        Server::start_with(&data_b, &args_b)
    });
    std::thread::sleep(std::time::Duration::from_millis(3_000));
    assert!(
        !standby.is_finished(),
        "node B serves only once it holds the lease"
    );
    let assignments = pg.psql("SELECT count(*) FROM schedule");

    signal(&a, "-STOP");
    let b = standby.join().unwrap();
    assert_eq!(pg.psql("SELECT owner || ' ' || token FROM cu_lease"), "node-b 2");
    let status = node_script(&["verify", &b.url, state.to_str().unwrap()]);
    assert!(
        status.success(),
        "aoconnect.mjs verify on node B after the takeover: {status}"
    );

    signal(&a, "-CONT");
    let exit = wait_exit(&mut a, 30);
    assert_eq!(
        exit.code(),
        Some(3),
        "node A stops once it finds its lease taken: {exit}"
    );
    assert_eq!(pg.psql("SELECT owner || ' ' || token FROM cu_lease"), "node-b 2");
    assert_eq!(
        pg.psql("SELECT count(*) FROM schedule"),
        assignments,
        "nothing was scheduled twice"
    );
    let exit = b.terminate();
    assert!(exit.success(), "node B after SIGTERM: {exit}");
    // B's clean stop released the lease.
    assert_eq!(pg.psql("SELECT expires_ms FROM cu_lease"), "0");
}
