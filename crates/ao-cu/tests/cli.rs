//! `ao-cu eval` as a user runs it: exit codes, line numbers, state files.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn probe(dir: &Path) -> PathBuf {
    let wasm = wat::parse_file(repo().join("tests/modules/wat/emscripten4.wat")).unwrap();
    let path = dir.join("probe.wasm");
    std::fs::write(&path, wasm).unwrap();
    path
}

fn line(command: &str) -> String {
    format!(
        r#"{{"msg":{{"Id":"i","Data":"{command}","Owner":"o","Target":"p","From":"o","Tags":[],"Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":false}},"env":{{"Process":{{"Id":"p","Owner":"o","Tags":[]}},"Module":{{"Id":"m","Owner":"o","Tags":[]}}}}}}"#
    )
}

fn eval(args: &[&str], stdin: &str, cache: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .arg("eval")
        .args(args)
        .arg("--cache-dir")
        .arg(cache)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const FORMAT: &str = "wasm32-unknown-emscripten4";

#[test]
fn evaluates_standard_input_and_keeps_going_after_errors() {
    let dir = tempfile::tempdir().unwrap();
    let module = probe(dir.path());
    let input = [line("count"), line("unreachable"), String::new(), line("count")].join("\n");
    let out = eval(
        &["--module", module.to_str().unwrap(), "--format", FORMAT],
        &input,
        dir.path(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results = lines(&out);
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["Output"], "count=1");
    assert_eq!(results[1]["Error"], "RuntimeError: unreachable");
    assert_eq!(results[2]["Output"], "count=2");
    let keys: Vec<&String> = results[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["Output", "Messages", "Spawns", "Assignments", "GasUsed"]);
}

#[test]
fn a_malformed_line_exits_non_zero_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let module = probe(dir.path());
    let input = [line("count"), "{not json".to_string()].join("\n");
    let out = eval(
        &["--module", module.to_str().unwrap(), "--format", FORMAT],
        &input,
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&out).len(),
        1,
        "the first message was still evaluated and printed"
    );
}

#[test]
fn bad_modules_and_formats_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let module = probe(dir.path());
    let out = eval(
        &["--module", module.to_str().unwrap(), "--format", "wasm32-wasi"],
        "",
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown module format"));

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let out = eval(
        &["--module", junk.to_str().unwrap(), "--format", FORMAT],
        "",
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not compile"));

    let out = eval(
        &["--module", "/nonexistent.wasm", "--format", FORMAT],
        "",
        dir.path(),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read module"));
}

#[test]
fn state_files_resume_where_the_previous_run_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let module = probe(dir.path());
    let m = module.to_str().unwrap();
    let state = dir.path().join("state.snap");
    let s = state.to_str().unwrap();
    let first = eval(
        &["--module", m, "--format", FORMAT, "--state-out", s],
        &[line("count"), line("count")].join("\n"),
        dir.path(),
    );
    assert!(first.status.success());
    let second = eval(
        &["--module", m, "--format", FORMAT, "--state-in", s],
        &line("count"),
        dir.path(),
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(lines(&second)[0]["Output"], "count=3");

    std::fs::write(&state, b"AOCUSNAP garbage").unwrap();
    let bad = eval(
        &["--module", m, "--format", FORMAT, "--state-in", s],
        &line("count"),
        dir.path(),
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid snapshot"));
}

#[test]
fn compute_limit_ends_an_infinite_loop() {
    let dir = tempfile::tempdir().unwrap();
    let module = probe(dir.path());
    let out = eval(
        &[
            "--module",
            module.to_str().unwrap(),
            "--format",
            FORMAT,
            "--compute-limit",
            "20000000",
        ],
        &line("loop"),
        dir.path(),
    );
    assert_eq!(lines(&out)[0]["Error"], "out of gas!");
}

#[test]
fn timing_reports_the_messages_from_a_given_one_alone() {
    let dir = tempfile::tempdir().unwrap();
    let module = probe(dir.path());
    let input = [line("count"), line("count"), line("count")].join("\n");
    let out = eval(
        &[
            "--module",
            module.to_str().unwrap(),
            "--format",
            FORMAT,
            "--timing",
            "--time-from",
            "1",
        ],
        &input,
        dir.path(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lines(&out).len(), 3, "timing changes nothing on standard output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let total: f64 = field(&stderr, "3 messages, evaluation ", " ms");
    let tail: f64 = field(&stderr, "evaluation from message 1: ", " ms");
    assert!(tail >= 0.0 && tail <= total, "{stderr}");
}

fn field(text: &str, before: &str, after: &str) -> f64 {
    let start = text
        .find(before)
        .unwrap_or_else(|| panic!("no '{before}' in {text}"))
        + before.len();
    let end = start + text[start..].find(after).unwrap();
    text[start..end].parse().unwrap()
}
