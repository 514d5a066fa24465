//! `ao-cu bench` as a user runs it: a tiny configuration in engine and http mode with `--json` (fields
//! present and consistent; no timing assertions), and bad input (exit 1 with a message, never a panic).
//!
//! The runs need the Lua test process (`tests/modules/build.sh`): without it they print SKIPPED, or fail
//! when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lua_module() -> Option<PathBuf> {
    let path = repo().join("tests/modules/build/lua-process.wasm");
    if path.is_file() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!(
            "required under CI: {} (run tests/modules/build.sh)",
            path.display()
        );
    }
    println!("SKIPPED: {} missing (run tests/modules/build.sh)", path.display());
    None
}

fn bench(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .arg("bench")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "one JSON line: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

fn number(v: &Value, path: &[&str]) -> f64 {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("missing number {path:?} in {v}"))
}

fn assert_latency(row: &Value, key: &str, count: f64) {
    let p50 = number(row, &[key, "p50"]);
    let p99 = number(row, &[key, "p99"]);
    let max = number(row, &[key, "max"]);
    assert!(p50 > 0.0, "{key}.p50 > 0: {row}");
    assert!(p50 <= p99 && p99 <= max, "{key}: p50 <= p99 <= max: {row}");
    assert_eq!(number(row, &[key, "count"]), count, "{key}.count: {row}");
}

#[test]
fn engine_mode_reports_consistent_json() {
    let Some(module) = lua_module() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = bench(
        &[
            "--module",
            module.to_str().unwrap(),
            "--processes",
            "2",
            "--messages",
            "5",
            "--workers",
            "1,2",
            "--mode",
            "engine",
            "--json",
        ],
        dir.path(),
    );
    let report = json_of(&out);
    assert!(
        out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains('\r'),
        "no progress bar with --json"
    );
    assert_eq!(number(&report, &["messages"]), 10.0);
    assert_eq!(number(&report, &["processes"]), 2.0);
    assert!(report.get("http").is_none(), "engine mode only: {report}");
    let rows = report["engine"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one row per worker count");
    for (row, workers) in rows.iter().zip([1.0, 2.0]) {
        assert_eq!(number(row, &["workers"]), workers);
        assert_eq!(number(row, &["messages"]), 10.0, "N*M: {row}");
        assert_eq!(number(row, &["errors"]), 0.0, "the default Eval succeeds: {row}");
        assert_eq!(
            number(row, &["evaluated"]),
            12.0,
            "N*M plus N spawn messages: {row}"
        );
        assert!(number(row, &["msgs_per_s"]) > 0.0);
        let per = number(row, &["per_process_msgs_per_s", "mean"]);
        assert!(per > 0.0);
        assert!(number(row, &["per_process_msgs_per_s", "min"]) <= per);
        assert_latency(row, "latency_ms", 10.0);
        assert!(number(row, &["resident_bytes_per_process"]) > 0.0, "{row}");
        assert!(number(row, &["checkpoint_bytes_per_process"]) > 0.0, "{row}");
        assert!(
            number(row, &["checkpoints"]) >= 2.0,
            "one per process at least: {row}"
        );
        number(row, &["rss_delta_per_process_bytes"]);
    }
}

#[test]
fn http_mode_reports_consistent_json() {
    let Some(module) = lua_module() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("msg.json");
    std::fs::write(
        &template,
        r#"{"Tags":[{"name":"Action","value":"Eval"}],"Data":"x = (x or 0) + 1 return x"}"#,
    )
    .unwrap();
    let out = bench(
        &[
            "--module",
            module.to_str().unwrap(),
            "--message",
            template.to_str().unwrap(),
            "--processes",
            "2",
            "--messages",
            "5",
            "--workers",
            "1",
            "--mode",
            "http",
            "--json",
        ],
        dir.path(),
    );
    let report = json_of(&out);
    assert_eq!(number(&report, &["messages"]), 10.0);
    assert!(report.get("engine").is_none(), "http mode only: {report}");
    let rows = report["http"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(number(row, &["messages"]), 10.0, "N*M: {row}");
    assert_eq!(number(row, &["latency_messages"]), 10.0, "N*M: {row}");
    assert_eq!(number(row, &["latency_errors"]), 0.0, "{row}");
    assert!(number(row, &["ingest_msgs_per_s"]) > 0.0);
    assert!(number(row, &["msgs_per_s"]) > 0.0);
    assert!(
        number(row, &["msgs_per_s"]) <= number(row, &["ingest_msgs_per_s"]),
        "drained includes ingest"
    );
    assert_latency(row, "ingest_latency_ms", 10.0);
    assert_latency(row, "latency_ms", 10.0);
}

#[test]
fn bad_input_exits_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-module.wasm");
    let out = bench(&["--module", missing.to_str().unwrap(), "--json"], dir.path());
    assert_eq!(out.status.code(), Some(1), "bad input is exit 1");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read module") && err.contains("no-such-module.wasm"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());

    let not_wasm = dir.path().join("not.wasm");
    std::fs::write(&not_wasm, b"hello, not wasm").unwrap();
    let out = bench(&["--module", not_wasm.to_str().unwrap()], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a WebAssembly module"));

    let template = dir.path().join("bad.json");
    std::fs::write(&template, "[1, 2]").unwrap();
    let out = bench(
        &[
            "--module",
            not_wasm.to_str().unwrap(),
            "--message",
            template.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a JSON object"));

    let out = bench(
        &["--module", missing.to_str().unwrap(), "--processes", "0"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1"));

    let out = bench(
        &[
            "--format",
            "no-such-format",
            "--module",
            missing.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
