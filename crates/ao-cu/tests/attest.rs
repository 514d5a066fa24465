//! `ao-cu attest verify` as a user runs it: exit codes and the JSON verdict on stdout, against the real AMD
//! Milan sample (`shared/samples/sev-snp` beside the repository). KDS fetching is tested only against a local
//! server on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../../cu-attest/tests/common/local_kds.rs"]
mod local_kds;
#[path = "../../cu-attest/tests/common/samples.rs"]
mod samples;

use local_kds::{LocalKds, milan_route};
use samples::*;

/// The flags of one `ao-cu attest verify` call.
struct Flags {
    report: PathBuf,
    vcek: Option<PathBuf>,
    chain: Option<PathBuf>,
    policy: Option<PathBuf>,
    report_data: Option<String>,
    offline: bool,
    kds_url: String,
    cert_cache: Option<PathBuf>,
}

/// The real Milan VCEK and chain, offline.
fn args(report: PathBuf) -> Flags {
    Flags {
        report,
        vcek: Some(samples_dir().join("vcek_milan.der")),
        chain: Some(samples_dir().join("cert_chain_milan")),
        policy: None,
        report_data: None,
        offline: true,
        kds_url: "http://127.0.0.1:9".into(),
        cert_cache: None,
    }
}

/// Runs the binary; the exit code and the verdict it printed.
fn run(a: &Flags) -> (i32, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ao-cu"));
    cmd.args(["attest", "verify", "--report"]).arg(&a.report);
    for (flag, path) in [
        ("--vcek", &a.vcek),
        ("--chain", &a.chain),
        ("--policy", &a.policy),
    ] {
        if let Some(p) = path {
            cmd.arg(flag).arg(p);
        }
    }
    if let Some(h) = &a.report_data {
        cmd.args(["--report-data", h]);
    }
    if a.offline {
        cmd.arg("--offline");
    }
    cmd.args(["--kds-url", &a.kds_url]);
    if let Some(d) = &a.cert_cache {
        cmd.arg("--cert-cache").arg(d);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verdict is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), verdict)
}

fn check<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

fn status<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    check(v, name)["status"].as_str().unwrap()
}

#[test]
fn real_report_hex_and_raw_exit_zero() {
    let hex_path = samples_dir().join("report_milan.hex");
    let (code, v) = run(&args(hex_path));
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["product"], "Milan");
    assert_eq!(status(&v, "measurement"), "not_configured");
    assert_eq!(status(&v, "min_tcb"), "not_configured");
    assert_eq!(status(&v, "report_data"), "not_configured");

    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("report.bin");
    std::fs::write(&raw, milan_report_bytes()).unwrap();
    let (code, _) = run(&args(raw));
    assert_eq!(code, 0);
}

#[test]
fn report_data_flag_binds() {
    let r = milan_report();
    let mut a = args(samples_dir().join("report_milan.hex"));
    a.report_data = Some(hex::encode(r.report_data));
    let (code, v) = run(&a);
    assert_eq!(code, 0);
    assert_eq!(status(&v, "report_data"), "pass");

    let mut wrong = r.report_data;
    wrong[10] ^= 0x80;
    a.report_data = Some(hex::encode(wrong));
    let (code, v) = run(&a);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "report_data"), "fail");

    a.report_data = Some("abcd".into());
    let (code, v) = run(&a);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "input"), "fail");
}

#[test]
fn example_policy_parses_and_applies() {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../attest/policy.example.toml");
    let mut a = args(samples_dir().join("report_milan.hex"));
    a.policy = Some(policy);
    let (code, v) = run(&a);
    // The example allow-lists the sample's measurement and sets a minimum TCB it meets.
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "measurement"), "pass");
    assert_eq!(status(&v, "min_tcb"), "pass");

    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("strict.toml");
    std::fs::write(
        &strict,
        "measurements = [\"".to_string() + &"00".repeat(48) + "\"]\nsmt = \"forbidden\"\n",
    )
    .unwrap();
    a.policy = Some(strict);
    let (code, v) = run(&a);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "measurement"), "fail");
    assert_eq!(status(&v, "smt"), "fail");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "no_such_setting = 1\n").unwrap();
    a.policy = Some(bad);
    let (code, v) = run(&a);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "input"), "fail");
}

#[test]
fn offline_without_vcek_fails_and_missing_files_are_input_errors() {
    let mut a = args(samples_dir().join("report_milan.hex"));
    a.vcek = None;
    let (code, v) = run(&a);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "vcek_chain"), "fail");
    assert_eq!(status(&v, "report_signature"), "fail");

    let a = args(PathBuf::from("/nonexistent/report.hex"));
    let (code, v) = run(&a);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "input"), "fail");
    let detail = check(&v, "input")["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("reading report /nonexistent/report.hex: "),
        "{detail}"
    );
}

#[test]
fn wrong_product_chain_exits_one() {
    let mut a = args(samples_dir().join("report_milan.hex"));
    a.chain = Some(samples_dir().join("cert_chain_turin"));
    let (code, v) = run(&a);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "ark_pinned"), "fail");
}

#[test]
fn a_missing_report_flag_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
        .args(["attest", "verify"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--report"));
}

#[test]
fn fetches_a_missing_vcek_from_the_configured_kds_into_the_cache() {
    let kds = LocalKds::start(milan_route);
    let cache = tempfile::tempdir().unwrap();
    let mut a = args(samples_dir().join("report_milan.hex"));
    a.vcek = None;
    a.offline = false;
    a.kds_url = kds.url.clone();
    a.cert_cache = Some(cache.path().to_path_buf());
    let (code, v) = run(&a);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(kds.requests().len(), 1);
    assert!(kds.requests()[0].contains("ucodeSPL=115"), "{:?}", kds.requests());

    // The fetched VCEK is in the cache directory: a second run needs no server.
    a.kds_url = "http://127.0.0.1:9".into();
    let (code, v) = run(&a);
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn a_failed_fetch_is_explained_in_the_chain_check() {
    let mut a = args(samples_dir().join("report_milan.hex"));
    a.vcek = None;
    a.offline = false;
    let (code, v) = run(&a);
    assert_eq!(code, 1);
    assert_eq!(status(&v, "vcek_chain"), "fail");
    let detail = check(&v, "vcek_chain")["detail"].as_str().unwrap();
    assert!(detail.contains("; fetching it failed: "), "{detail}");
}
