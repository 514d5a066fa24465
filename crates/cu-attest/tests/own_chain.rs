//! A complete, internally valid chain and report made with our own keys (rcgen ARK, ASK and VCEK) is rejected
//! because its root is not AMD's, and only for that reason. The same forgery wrapped as node evidence is
//! rejected the same way, while the binding of key, configuration and nonce checks out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use std::sync::Arc;

use common::*;
use cu_attest::binding::{self, NodeConfig};
use cu_attest::evidence::{CertBundle, Evidence, verify_evidence};
use cu_attest::verify::{Inputs, Status, Verifier};
use cu_attest::{NodeKey, Product, SnpReport, Tcb};

fn forged() -> (SnpReport, OwnChain) {
    let mut report = milan_report();
    let chain = own_milan_chain(&report.chip_id, [3, 0, 8, 115]);
    sign_report(&mut report, &chain.vcek_key);
    (report, chain)
}

#[test]
fn own_chain_is_internally_valid_but_not_amds() {
    let (report, chain) = forged();
    let verifier = Verifier::new().unwrap();
    let certs = vec![chain.ask.clone(), chain.ark.clone()];
    let v = verifier.verify(&Inputs {
        report: &report,
        vek: Some(&chain.vcek),
        chain: &certs,
        policy: None,
        expected_report_data: None,
    });
    assert!(!v.ok);
    // Internally everything holds: the chain, the signature, the TCB binding.
    for name in [
        "report_format",
        "product",
        "vcek_chain",
        "report_signature",
        "vcek_tcb",
        "debug",
        "vmpl",
    ] {
        assert_eq!(
            v.check(name).unwrap().status,
            Status::Pass,
            "{name}: {}",
            v.to_json()
        );
    }
    // Rejected for exactly one reason: the root (and so the ASK) is not AMD's.
    let mut failed = v.failed();
    failed.sort();
    assert_eq!(failed, vec!["ark_pinned", "ask_pinned"], "{}", v.to_json());
    assert!(
        v.check("ark_pinned")
            .unwrap()
            .detail
            .contains("not AMD's Milan ARK")
    );

    // Presented without its root, the forged VCEK does not chain to AMD's built-in ASK.
    let v = verifier.verify(&Inputs {
        report: &report,
        vek: Some(&chain.vcek),
        chain: &[],
        policy: None,
        expected_report_data: None,
    });
    assert_eq!(v.failed(), vec!["vcek_chain"], "{}", v.to_json());
    // Dropping only the ARK: the forged ASK is not signed by AMD's ARK.
    let v = verifier.verify(&Inputs {
        report: &report,
        vek: Some(&chain.vcek),
        chain: std::slice::from_ref(&chain.ask),
        policy: None,
        expected_report_data: None,
    });
    assert!(v.failed().contains(&"ask_pinned"), "{}", v.to_json());
}

fn config() -> NodeConfig {
    NodeConfig::new(
        "ao-cu 0.1.0",
        [
            "wasm64-unknown-emscripten-draft_2024_02_15",
            "wasm32-unknown-emscripten4",
        ],
        [
            ("max_memory_bytes".to_string(), 1u64 << 32),
            ("max_compute".to_string(), 9_000_000_000_000),
        ],
    )
}

fn forged_evidence(key: &NodeKey, nonce: &[u8]) -> Evidence {
    let cfg = config();
    let digest = cfg.digest().unwrap();
    let rd = binding::report_data(&key.public_key(), &digest, nonce).unwrap();
    let mut report = milan_report();
    report.report_data = rd;
    let chain = own_milan_chain(&report.chip_id, [3, 0, 8, 115]);
    sign_report(&mut report, &chain.vcek_key);
    Evidence {
        report: hex::encode(report.to_bytes()),
        certificates: CertBundle {
            vcek: Some(chain.vcek.to_pem().unwrap()),
            vlek: None,
            ask: Some(chain.ask.to_pem().unwrap()),
            ark: Some(chain.ark.to_pem().unwrap()),
        },
        public_key: hex::encode(key.public_key()),
        keyid: key.keyid(),
        config: cfg.to_value(),
        config_digest: hex::encode(digest),
        nonce: hex::encode(nonce),
        report_data: hex::encode(rd),
    }
}

#[test]
fn forged_evidence_binds_correctly_but_is_rejected_for_its_root() {
    let key = Arc::new(NodeKey::from_seed([9; 32]));
    let nonce = b"verifier-chosen-nonce-0001";
    let ev = forged_evidence(&key, nonce);
    // Survives a JSON round trip (what the route serves).
    let ev: Evidence = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
    let verifier = Verifier::new().unwrap();
    let v = verify_evidence(&verifier, &ev, None, nonce);
    for name in [
        "report_data",
        "config_digest",
        "keyid",
        "report_signature",
        "vcek_chain",
    ] {
        assert_eq!(
            v.check(name).unwrap().status,
            Status::Pass,
            "{name}: {}",
            v.to_json()
        );
    }
    let mut failed = v.failed();
    failed.sort();
    assert_eq!(failed, vec!["ark_pinned", "ask_pinned"]);

    // Another nonce (a replay) fails the binding.
    let v = verify_evidence(&verifier, &ev, None, b"another-nonce");
    assert!(v.failed().contains(&"report_data"));

    // A configuration edited after the fact fails its digest and the binding.
    let mut edited = ev.clone();
    edited.config["limits"]["max_memory_bytes"] = serde_json::json!(1u64 << 40);
    let v = verify_evidence(&verifier, &edited, None, nonce);
    assert!(v.failed().contains(&"config_digest"), "{}", v.to_json());
    assert!(v.failed().contains(&"report_data"));

    // Another node key substituted fails the binding (and keyid if not updated).
    let mut swapped = ev.clone();
    swapped.public_key = hex::encode(NodeKey::from_seed([8; 32]).public_key());
    let v = verify_evidence(&verifier, &swapped, None, nonce);
    assert!(v.failed().contains(&"report_data"));
    assert!(v.failed().contains(&"keyid"));
}

#[test]
fn tcb_layout_round_trips_for_every_product() {
    for p in Product::ALL {
        let t = Tcb {
            bootloader: 1,
            tee: 2,
            snp: 3,
            microcode: 4,
            fmc: if p.has_fmc() { Some(5) } else { None },
        };
        assert_eq!(Tcb::decode(t.encode(p), p), t);
    }
    // Turin's layout differs from Milan's for the same raw value.
    let raw = 0x7300_0000_0800_0003u64;
    assert_ne!(Tcb::decode(raw, Product::Milan), Tcb::decode(raw, Product::Turin));
}
