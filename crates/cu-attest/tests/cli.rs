//! `ao-cu attest verify` through `run_verify`: exit codes and the JSON verdict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use std::path::PathBuf;

use common::*;
use cu_attest::{VerifyArgs, run_verify};

fn args(report: PathBuf) -> VerifyArgs {
    VerifyArgs {
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

fn run(a: &VerifyArgs) -> (i32, serde_json::Value) {
    let (code, out) = run_verify(a);
    (
        code,
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("verdict is not JSON ({e}): {out}")),
    )
}

fn status<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))["status"]
        .as_str()
        .unwrap()
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
    let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../attest/policy.example.toml");
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
fn clap_parses_the_documented_command_line() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        verify: VerifyArgs,
    }
    let cmd = Cmd::try_parse_from([
        "verify",
        "--report",
        "R",
        "--vcek",
        "V.der",
        "--chain",
        "C.pem",
        "--policy",
        "P.toml",
        "--report-data",
        "00",
    ])
    .unwrap();
    assert_eq!(cmd.verify.report, PathBuf::from("R"));
    assert_eq!(cmd.verify.vcek, Some(PathBuf::from("V.der")));
    assert_eq!(cmd.verify.report_data.as_deref(), Some("00"));
    assert!(!cmd.verify.offline);
    assert!(Cmd::try_parse_from(["verify"]).is_err(), "--report is required");
}
