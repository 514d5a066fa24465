//! Admission on SEV-SNP evidence, with AMD's real Milan sample (`shared/samples/sev-snp`): AMD's
//! signature and chain verify, but a genuine report does not bind this node's key and the verifier's
//! nonce, so the peer is refused; so is evidence for another key, and a peer with no evidence.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use cu_attest::certs::Cert;
use cu_attest::{CertBundle, Evidence, NodeKey};
use cu_quic::endpoint::EvidenceSource;
use cu_quic::{AllowList, EvidencePolicy, PeerPolicy, QuicConfig, QuicError};
use tokio::time::timeout;

/// `shared/samples/sev-snp` beside the repository.
fn sample(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples/sev-snp");
    let path = dir.join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (the SEV-SNP samples belong in shared/samples/sev-snp beside the repository)",
            path.display()
        )
    })
}

fn node_config() -> serde_json::Value {
    serde_json::json!({ "engine": "ao-cu 0.1.0", "formats": [], "limits": {} })
}

/// Evidence as a node with `key` would serve it for `nonce`, around AMD's genuine Milan report and its
/// certificates. Everything is consistent except that the report's `report_data` was bound by another
/// node for another nonce.
fn milan_evidence(key: &NodeKey, nonce: &[u8]) -> Evidence {
    let report = String::from_utf8(sample("report_milan.hex"))
        .unwrap()
        .trim()
        .to_owned();
    let vcek = Cert::from_der(&sample("vcek_milan.der")).unwrap();
    let chain = Cert::load_all(&sample("cert_chain_milan")).unwrap();
    let ark = chain
        .iter()
        .find(|c| c.is_self_issued())
        .expect("the chain has the ARK");
    let ask = chain
        .iter()
        .find(|c| !c.is_self_issued())
        .expect("the chain has the ASK");
    let config = node_config();
    let digest = cu_attest::binding::config_digest(&config).unwrap();
    let report_data = cu_attest::binding::report_data(&key.public_key(), &digest, nonce).unwrap();
    Evidence {
        report,
        certificates: CertBundle {
            vcek: Some(vcek.to_pem().unwrap()),
            vlek: None,
            ask: Some(ask.to_pem().unwrap()),
            ark: Some(ark.to_pem().unwrap()),
        },
        public_key: hex::encode(key.public_key()),
        keyid: key.keyid(),
        config,
        config_digest: hex::encode(digest),
        nonce: hex::encode(nonce),
        report_data: hex::encode(report_data),
    }
}

fn verifying_policy() -> PeerPolicy {
    PeerPolicy {
        allow: AllowList::Nobody,
        evidence: Some(Arc::new(EvidencePolicy::new(
            cu_attest::Verifier::new().unwrap(),
            None,
        ))),
    }
}

/// A verifying server (seed 1) that admits no key without evidence.
fn verifying_server() -> Server {
    server_with(QuicConfig::new(key(SERVER), verifying_policy()))
}

/// A client (seed 2) that allows the server and answers evidence requests with `source`.
fn attesting_client(source: Option<EvidenceSource>) -> cu_quic::QuicEndpoint {
    let mut c = config(CLIENT, &[SERVER]);
    c.evidence = source;
    client_with(c)
}

/// Connects and checks the connection fails (the server never answers the client's Ping). Returns once
/// the server counted a refusal for `reason`.
async fn assert_refused(server: &Server, client: &cu_quic::QuicEndpoint, reason: &str) {
    let err = timeout(Duration::from_secs(20), client.connect(server.addr))
        .await
        .expect("connect timed out")
        .expect_err("a refused peer connected");
    assert!(matches!(err, QuicError::Connect { .. }), "{err:?}");
    assert!(
        wait_until(Duration::from_secs(5), || server.stats.refusals(reason) >= 1).await,
        "the server did not count a {reason} refusal"
    );
    assert_eq!(server.stats.connections_accepted.load(Ordering::Relaxed), 0);
    assert_eq!(
        server.service.max_in_flight.load(Ordering::SeqCst),
        0,
        "a refused peer was served"
    );
}

/// The names of the failed checks in a `bad_evidence` refusal's detail
/// (`the evidence does not verify: name: detail; name: detail`).
fn failed_checks(detail: &str) -> Vec<&str> {
    let list = detail
        .strip_prefix("the evidence does not verify: ")
        .unwrap_or_else(|| panic!("not a verdict: {detail}"));
    list.split("; ")
        .map(|c| c.split(':').next().unwrap_or_default())
        .collect()
}

#[test]
fn genuine_milan_evidence_verifies_amds_signature_but_does_not_bind_this_key_and_nonce() {
    let policy = verifying_policy();
    let node = key(CLIENT);
    let nonce = [0x5a; 32];
    let json = serde_json::to_vec(&milan_evidence(&node, &nonce)).unwrap();
    let refusal = policy
        .check_evidence(&node.public_key(), &json, &nonce)
        .expect_err("a report bound for someone else was admitted");
    assert_eq!(refusal.reason, "bad_evidence", "{refusal}");
    assert!(refusal.detail.contains("report_data"), "{}", refusal.detail);
    assert!(!refusal.detail.contains("report_signature"), "{}", refusal.detail);
    // Only the binding failed: AMD's chain and signature over the genuine report verified, and the
    // configuration digest, keyid and nonce are consistent.
    assert_eq!(
        failed_checks(&refusal.detail),
        ["report_data"],
        "{}",
        refusal.detail
    );
    // A tampered report fails its signature too.
    let mut tampered = milan_evidence(&node, &nonce);
    let mut bytes = hex::decode(&tampered.report).unwrap();
    bytes[0x90] ^= 1; // inside the measurement, under the signature
    tampered.report = hex::encode(bytes);
    let refusal = policy
        .check_evidence(
            &node.public_key(),
            &serde_json::to_vec(&tampered).unwrap(),
            &nonce,
        )
        .unwrap_err();
    assert_eq!(refusal.reason, "bad_evidence");
    assert!(
        failed_checks(&refusal.detail).contains(&"report_signature"),
        "{}",
        refusal.detail
    );
    // Not evidence at all.
    let refusal = policy
        .check_evidence(&node.public_key(), b"{\"report\": 1}", &nonce)
        .unwrap_err();
    assert_eq!(refusal.reason, "bad_evidence");
}

#[test]
fn evidence_for_another_key_than_the_tls_key_is_a_key_mismatch() {
    let policy = verifying_policy();
    let nonce = [1; 16];
    let json = serde_json::to_vec(&milan_evidence(&key(9), &nonce)).unwrap();
    let refusal = policy
        .check_evidence(&key(CLIENT).public_key(), &json, &nonce)
        .unwrap_err();
    assert_eq!(refusal.reason, "key_mismatch", "{refusal}");
    // Without an evidence policy nothing is admitted on evidence.
    let refusal = PeerPolicy::default()
        .check_evidence(&key(9).public_key(), &json, &nonce)
        .unwrap_err();
    assert_eq!(refusal.reason, "not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_genuine_evidence_that_does_not_bind_its_key_is_refused() {
    let server = verifying_server();
    let node = key(CLIENT);
    let asked = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let log = asked.clone();
    let source: EvidenceSource = Arc::new(move |nonce: &[u8]| {
        log.lock().unwrap().push(nonce.to_vec());
        serde_json::to_vec(&milan_evidence(&node, nonce)).map_err(|e| e.to_string())
    });
    let client = attesting_client(Some(source));
    assert_refused(&server, &client, "bad_evidence").await;
    // The server asked with a fresh nonce of its own.
    let asked = asked.lock().unwrap();
    assert_eq!(asked.len(), 1, "evidence requests: {}", asked.len());
    assert_eq!(asked[0].len(), 32);
    assert_ne!(asked[0], vec![0; 32]);
    assert_eq!(
        server.stats.refusals("key_mismatch") + server.stats.refusals("no_evidence"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_presenting_evidence_for_another_key_is_refused_as_key_mismatch() {
    let server = verifying_server();
    let other = key(9);
    let source: EvidenceSource = Arc::new(move |nonce: &[u8]| {
        serde_json::to_vec(&milan_evidence(&other, nonce)).map_err(|e| e.to_string())
    });
    let client = attesting_client(Some(source));
    assert_refused(&server, &client, "key_mismatch").await;
    assert_eq!(server.stats.refusals("bad_evidence"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_evidence_is_refused_as_no_evidence() {
    let server = verifying_server();
    let client = attesting_client(None);
    assert_refused(&server, &client, "no_evidence").await;
    // A source that fails is no evidence either.
    let failing: EvidenceSource = Arc::new(|_: &[u8]| Err("no TEE here".to_owned()));
    let client = attesting_client(Some(failing));
    let before = server.stats.refusals("no_evidence");
    let connected = timeout(Duration::from_secs(20), client.connect(server.addr))
        .await
        .unwrap();
    assert!(connected.is_err(), "a peer without evidence connected");
    assert!(
        wait_until(Duration::from_secs(5), || server.stats.refusals("no_evidence")
            > before)
        .await
    );
}
