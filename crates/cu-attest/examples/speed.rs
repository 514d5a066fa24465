//! Quick throughput figures: report verifications per second (with the certificate-signature cache warm)
//! and the cost of signing / verifying one result.
//!
//! `cargo run --release -p cu-attest --example speed` (needs `shared/samples/sev-snp` beside the repository).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a measuring tool, not library code

use std::path::PathBuf;
use std::time::Instant;

/// Nanoseconds this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`), so that figures taken on
/// a busy shared machine are not inflated by waiting for a core. `None` elsewhere.
fn cpu_ns() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `f` `n` times; returns (wall µs, CPU µs) per call.
fn measure(n: usize, mut f: impl FnMut(usize)) -> (f64, Option<f64>) {
    let c0 = cpu_ns();
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    let wall = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let cpu = match (c0, cpu_ns()) {
        (Some(a), Some(b)) => Some((b - a) / 1e3 / n as f64),
        _ => None,
    };
    (wall, cpu)
}

fn show(cpu: Option<f64>) -> String {
    cpu.map_or("n/a".into(), |c| format!("{c:.1} µs"))
}

use cu_attest::certs::Cert;
use cu_attest::verify::{Inputs, Verifier};
use cu_attest::{NodeKey, Position, SnpReport, sign_response, verify_response};

fn main() {
    let dir = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples/sev-snp"),
        PathBuf::from,
    );
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

    let t = Instant::now();
    let first = verifier.verify(&inputs);
    let cold = t.elapsed();
    assert!(first.ok, "{}", first.to_json());

    let (wall, cpu) = measure(2000, |_| assert!(verifier.verify(&inputs).ok));
    println!(
        "report verification, cold (first call, RSA chain checks): {:.2} ms",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "report verification, certificate cache warm: wall {wall:.0} µs ({:.0}/s), CPU {} ({}/s)",
        1e6 / wall,
        show(cpu),
        cpu.map_or("n/a".into(), |c| format!("{:.0}", 1e6 / c))
    );

    let vk = vcek.p384_key().unwrap();
    let (_, sig_cpu) = measure(500, |_| {
        cu_attest::verify::verify_report_signature(&report, &vk).unwrap()
    });
    println!(
        "  of which the ECDSA P-384 report signature check alone: CPU {}",
        show(sig_cpu)
    );

    let key = NodeKey::from_seed([7; 32]);
    for size in [100usize, 4096, 65536] {
        let body = vec![b'x'; size];
        let mut headers = Vec::new();
        let (sw, sc) = measure(20_000, |i| {
            headers = vec![("content-type".to_string(), "application/json".to_string())];
            sign_response(
                &key,
                200,
                &mut headers,
                &body,
                "pid",
                Position::Slot(i as u64),
                Some(1_700_000_000),
            )
            .unwrap();
        });
        let vk = key.verifying_key();
        let (vw, vc) = measure(20_000, |_| {
            verify_response(&vk, 200, &headers, &body).unwrap();
        });
        println!(
            "result of {size} B: sign wall {sw:.1} µs / CPU {}, verify wall {vw:.1} µs / CPU {}",
            show(sc),
            show(vc)
        );
    }
}
