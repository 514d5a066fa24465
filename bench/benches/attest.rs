//! Criterion benchmarks of attestation and result signing (issue 7), next to the evaluation they sign:
//! - `attest/verify_report_cold`: a new verifier (pinned roots parsed, no certificate cache: the RSA-4096
//!   chain checks run) verifying the real AMD Milan sample;
//! - `attest/verify_report_warm`: the whole verifier on the real AMD Milan sample (pinned roots, VCEK
//!   chain, report signature, TCB, policy, binding) with its certificate-signature cache warm;
//! - `attest/verify_report_signature`: the ECDSA P-384 report signature alone;
//! - `attest/sign_result/{bytes}` and `attest/verify_result/{bytes}`: the RFC 9421 signature every served
//!   result carries (SHA-256 `Content-Digest` + ed25519), for 100 B, 4 KiB and 64 KiB bodies;
//! - `attest/lua_eval_then_sign`: one Lua message on a hot process plus signing its result, to set the
//!   signing cost beside the evaluation cost (`evaluator`'s `lua_eval` is the same message unsigned).
//!
//! `cargo bench -p cu-bench --bench attest`. Needs `shared/samples/sev-snp` beside the repository.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group};
use cu_attest::certs::Cert;
use cu_attest::verify::{Inputs, Verifier};
use cu_attest::{NodeKey, Position, SnpReport, sign_response, verify_response};
use cu_types::ModuleFormat;
use cu_wasm::{Loader, Process, ProcessConfig};

fn samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/samples/sev-snp")
}

fn signed(key: &NodeKey, body: &[u8], slot: u64) -> Vec<(String, String)> {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    sign_response(
        key,
        200,
        &mut headers,
        body,
        "pid",
        Position::Slot(slot),
        Some(1_700_000_000),
    )
    .unwrap();
    headers
}

fn benches(c: &mut Criterion) {
    let dir = samples();
    let read =
        |n: &str| std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(n).display()));
    let report = SnpReport::from_raw_or_hex(&read("report_milan.hex")).unwrap();
    let vcek = Cert::from_der(&read("vcek_milan.der")).unwrap();
    let chain = Cert::load_all(&read("cert_chain_milan")).unwrap();
    let verifier = Verifier::new().unwrap();
    let inputs = Inputs {
        report: &report,
        vek: Some(&vcek),
        chain: &chain,
        policy: None,
        expected_report_data: None,
    };
    assert!(verifier.verify(&inputs).ok, "the Milan sample must verify");
    c.bench_function("attest/verify_report_cold", |b| {
        b.iter(|| black_box(Verifier::new().unwrap().verify(&inputs).ok))
    });
    c.bench_function("attest/verify_report_warm", |b| {
        b.iter(|| black_box(verifier.verify(&inputs).ok))
    });
    let vk = vcek.p384_key().unwrap();
    c.bench_function("attest/verify_report_signature", |b| {
        b.iter(|| cu_attest::verify::verify_report_signature(&report, &vk).unwrap())
    });

    let key = NodeKey::from_seed([7; 32]);
    let public = key.verifying_key();
    for size in [100usize, 4096, 65536] {
        let body = vec![b'x'; size];
        c.bench_function(&format!("attest/sign_result/{size}"), |b| {
            b.iter(|| black_box(signed(&key, &body, 42)))
        });
        let headers = signed(&key, &body, 42);
        c.bench_function(&format!("attest/verify_result/{size}"), |b| {
            b.iter(|| verify_response(&public, 200, &headers, &body).unwrap())
        });
    }

    if let Ok(lua) = std::fs::read(cu_tests::repo().join("tests/modules/build/lua-process.wasm")) {
        let loader = Loader::new(None).unwrap();
        let module = loader.load(&lua, ModuleFormat::Emscripten2).unwrap();
        let mut p = Process::boot(module, ProcessConfig::default()).unwrap();
        let env = cu_bench::realistic_env();
        let m = r#"{"Id":"m","Owner":"o","Target":"p","From":"o","Tags":[{"name":"Action","value":"Eval"}],"Data":"x = (x or 0) + 1","Timestamp":1,"Block-Height":1,"Cron":false,"Read-Only":false}"#;
        p.handle(m, &env).unwrap();
        let mut slot = 0;
        c.bench_function("attest/lua_eval_then_sign", |b| {
            b.iter(|| {
                let out = p.handle(m, &env).unwrap();
                let body = serde_json::to_vec(&out).unwrap();
                slot += 1;
                black_box(signed(&key, &body, slot))
            })
        });
    }
}

criterion_group!(group, benches);

fn main() {
    // The Lua row evaluates wasm: run everything on a thread with the evaluator's stack.
    cu_tests::on_eval_thread(|| {
        group();
        Criterion::default().configure_from_args().final_summary();
    });
}
