//! The node side: report_data layout, canonical configuration, "no TEE" outside SNP, and the hardware test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use std::sync::Arc;

use cu_attest::binding::{self, DOMAIN, NodeConfig, canonical_json, config_digest};
use cu_attest::guest::{self, SEV_GUEST_DEVICE};
use cu_attest::kds::{AMD_KDS_URL, CertCache, KdsFetcher};
use cu_attest::{AttestError, Attestor, NodeKey, Verifier, verify_evidence};
use sha2::{Digest, Sha256, Sha512};

/// Says why a test skipped, on stderr directly so that the test harness's capture does not hide it.
fn skip(why: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("\nskipped: {why}\n").as_bytes());
}

fn config() -> NodeConfig {
    NodeConfig::new(
        "ao-cu 0.1.0",
        [
            "wasm32-unknown-emscripten4",
            "wasm32-unknown-emscripten2",
            "wasm32-unknown-emscripten4",
        ],
        [
            ("memory_limit_bytes".to_string(), 4_294_967_296u64),
            ("compute_limit".to_string(), 9_000_000_000_000),
        ],
    )
}

#[test]
fn canonical_json_sorts_keys_and_rejects_floats() {
    let c = config();
    assert_eq!(
        c.canonical_json().unwrap(),
        r#"{"engine":"ao-cu 0.1.0","formats":["wasm32-unknown-emscripten2","wasm32-unknown-emscripten4"],"limits":{"compute_limit":9000000000000,"memory_limit_bytes":4294967296}}"#
    );
    assert_eq!(
        c.digest().unwrap(),
        <[u8; 32]>::from(Sha256::digest(c.canonical_json().unwrap().as_bytes()))
    );
    // Member order and whitespace of the input do not matter; escapes are JSON's.
    let a: serde_json::Value = serde_json::from_str(
        r#"{ "b": [1, -2, "x\"\n\u00e9"], "a": {"z": null, "\u00e9": true, "Z": false} }"#,
    )
    .unwrap();
    assert_eq!(
        canonical_json(&a).unwrap(),
        "{\"a\":{\"Z\":false,\"z\":null,\"\u{e9}\":true},\"b\":[1,-2,\"x\\\"\\n\u{e9}\"]}"
    );
    let b: serde_json::Value =
        serde_json::from_str(r#"{"a":{"\u00e9":true,"Z":false,"z":null},"b":[1,-2,"x\"\n\u00e9"]}"#).unwrap();
    assert_eq!(config_digest(&a).unwrap(), config_digest(&b).unwrap());
    assert!(canonical_json(&serde_json::json!({"x": 1.5})).is_err());
}

#[test]
fn report_data_follows_the_documented_layout() {
    let key = NodeKey::from_seed([1; 32]);
    let digest = config().digest().unwrap();
    let nonce = [0xA5u8; 32];
    let mut pre = Vec::new();
    pre.extend_from_slice(b"ao-cu/attest/v1");
    pre.push(0);
    pre.extend_from_slice(&key.public_key());
    pre.extend_from_slice(&digest);
    pre.push(32);
    pre.extend_from_slice(&nonce);
    assert_eq!(DOMAIN, b"ao-cu/attest/v1");
    assert_eq!(pre.len(), 15 + 1 + 32 + 32 + 1 + 32);
    let want: [u8; 64] = Sha512::digest(&pre).into();
    assert_eq!(
        binding::report_data(&key.public_key(), &digest, &nonce).unwrap(),
        want
    );
    // Every input matters.
    assert_ne!(
        binding::report_data(&key.public_key(), &digest, &nonce[..31]).unwrap(),
        want
    );
    assert_ne!(
        binding::report_data(&NodeKey::from_seed([2; 32]).public_key(), &digest, &nonce).unwrap(),
        want
    );
    // Nonce bounds.
    assert!(binding::report_data(&key.public_key(), &digest, &[]).is_err());
    assert!(binding::report_data(&key.public_key(), &digest, &[0; 65]).is_err());
    assert_eq!(binding::parse_nonce_hex("00ff").unwrap(), vec![0, 0xff]);
    assert!(binding::parse_nonce_hex("xyz").is_err());
}

#[test]
fn without_snp_the_node_says_no_tee() {
    if guest::tee_present() {
        skip(&format!(
            "{SEV_GUEST_DEVICE} exists; the no-TEE path is tested on machines without SNP"
        ));
        return;
    }
    let key = Arc::new(NodeKey::from_seed([3; 32]));
    let attestor = Attestor::new(key.clone(), &config(), None).unwrap();
    let err = attestor.evidence(b"nonce-123").unwrap_err();
    assert!(matches!(err, AttestError::NoTee(_)), "{err}");
    let (status, body) = err.http_response();
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(body["error"].as_str().unwrap().starts_with("no TEE: "), "{body}");
    assert!(matches!(
        guest::request_report([0; 64]),
        Err(AttestError::NoTee(_))
    ));
    // A bad nonce is the caller's error, before any firmware question.
    assert_eq!(attestor.evidence(&[]).unwrap_err().http_response().0, 400);
    // GET / publishes the key and says there is no TEE.
    let info = attestor.node_info();
    assert_eq!(info["keyid"], key.keyid());
    assert_eq!(info["tee"], "none");
    assert_eq!(info["config_digest"], hex::encode(config().digest().unwrap()));
}

/// Runs only inside an SEV-SNP guest: real evidence for a fresh nonce, verified with the full verifier
/// (the VCEK comes from the extended report, else AMD's KDS).
#[test]
fn hardware_evidence_verifies_inside_an_snp_guest() {
    if !guest::tee_present() {
        skip(&format!(
            "{SEV_GUEST_DEVICE} is not present, so this is not an SEV-SNP guest and no hardware report can be requested"
        ));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(NodeKey::load_or_create(dir.path()).unwrap());
    let kds = Arc::new(KdsFetcher::new(
        AMD_KDS_URL,
        CertCache::in_dir(dir.path().join("certs")),
        std::time::Duration::from_secs(30),
    ));
    let attestor = Attestor::new(key, &config(), Some(kds)).unwrap();
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).unwrap();
    let evidence = attestor.evidence(&nonce).unwrap();
    let verdict = verify_evidence(&Verifier::new().unwrap(), &evidence, None, &nonce);
    println!("{}", verdict.to_json());
    for name in [
        "ark_pinned",
        "ask_pinned",
        "vcek_chain",
        "report_signature",
        "vcek_tcb",
        "report_data",
        "vmpl",
    ] {
        assert_eq!(
            verdict.check(name).unwrap().status,
            cu_attest::Status::Pass,
            "{name}"
        );
    }
}
