//! `ao-cu serve` end to end with the real AO client.
//!
//! Starts `ao-cu serve` on a free port (`--port 0`, the bound address read from its stdout) with a
//! temporary data directory, runs `tests/e2e/aoconnect.mjs run` (node + `@permaweb/aoconnect`: module
//! upload, spawn, message, result, results paging, dryrun, outbox between two processes, `assign` of one
//! process's message to another), SIGTERMs the server and checks it exits 0, restarts it on the same
//! data directory and runs
//! `tests/e2e/aoconnect.mjs verify`: every recorded result must read back identical. Before the restart, a
//! network CU (`ao-cu serve --roles cu --gateway <the first node>`) on another data directory runs the same
//! `verify`: it computes every result from the first node's SU and gateway. Attestation: the node
//! key is created on first run and kept across the restart, `GET /` publishes it, every recorded result
//! fetched again carries a signature that verifies under it, and the evidence route says "no TEE" here.
//!
//! Needs `node`, `tests/e2e/node_modules` (`npm ci --ignore-scripts --prefix tests/e2e`) and the Lua
//! test module (`tests/modules/build.sh`). Without them the test prints SKIPPED, or fails when `CI` is
//! set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::path::Path;

mod common;
use common::{Server, http_get, node_script, repo};

/// `GET /` publishes the key in the data directory; recorded results verify under it; no TEE here.
fn check_attestation(url: &str, data: &Path, state: &Path) -> String {
    let key = cu_attest::NodeKey::load(&cu_attest::NodeKey::path_in(data)).unwrap();
    let (status, _, body) = http_get(url, "/");
    assert_eq!(status, 200);
    let root: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(root["node_key"]["keyid"], key.keyid(), "{root}");
    assert!(
        root["address"].is_string() && root["timestamp"].is_u64(),
        "{root}"
    );
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    let recorded = state["recorded"].as_array().unwrap();
    assert!(!recorded.is_empty());
    for r in recorded {
        let (pid, message) = (r["process"].as_str().unwrap(), r["message"].as_str().unwrap());
        let (status, headers, body) = http_get(url, &format!("/result/{message}?process-id={pid}"));
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let signed = cu_attest::verify_response(&key.verifying_key(), status, &headers, &body)
            .unwrap_or_else(|e| panic!("result of {message}: {e}"));
        assert_eq!(signed.process_id, pid);
        assert!(matches!(signed.position, cu_attest::Position::Slot(_)));
    }
    if !cu_attest::guest::tee_present() {
        let (status, _, body) = http_get(url, "/~snp@1.0/report?nonce=0123456789abcdef");
        assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"].as_str().unwrap().starts_with("no TEE"), "{v}");
    }
    key.keyid()
}

#[test]
fn aoconnect_against_serve_and_restart() {
    if !common::ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let state = tmp.path().join("e2e-state.json");
    let wasm = repo().join("tests/modules/build/lua-process.wasm");

    let server = Server::start(&data);
    assert!(
        data.join("wallet.json").exists(),
        "the wallet is generated on first run"
    );
    let status = node_script(&[
        "run",
        &server.url,
        wasm.to_str().unwrap(),
        state.to_str().unwrap(),
    ]);
    assert!(status.success(), "aoconnect.mjs run: {status}");
    let keyid = check_attestation(&server.url, &data, &state);

    // A network CU (`--roles cu --gateway A`) on its own data directory computes every recorded result
    // from A's SU and gateway, through aoconnect, identically; it serves no MU, SU or gateway routes.
    let network_data = tmp.path().join("network-cu");
    let cu = Server::start_with(&network_data, &["--roles", "cu", "--gateway", &server.url]);
    let status = node_script(&["verify", &cu.url, state.to_str().unwrap()]);
    assert!(
        status.success(),
        "aoconnect.mjs verify on the network CU: {status}"
    );
    let (status, _, _) = http_get(&cu.url, "/graphql");
    assert_eq!(status, 404, "a --roles cu node has no gateway routes");
    let exit = cu.terminate();
    assert!(exit.success(), "the network CU after SIGTERM: {exit}");

    let exit = server.terminate();
    assert!(exit.success(), "ao-cu serve after SIGTERM: {exit}");

    // Same data directory: same wallet, same results, state continues.
    let wallet = std::fs::read_to_string(data.join("wallet.json")).unwrap();
    let server = Server::start(&data);
    assert_eq!(std::fs::read_to_string(data.join("wallet.json")).unwrap(), wallet);
    let status = node_script(&["verify", &server.url, state.to_str().unwrap()]);
    assert!(status.success(), "aoconnect.mjs verify: {status}");
    assert_eq!(
        check_attestation(&server.url, &data, &state),
        keyid,
        "the node key is kept across restarts"
    );
    let exit = server.terminate();
    assert!(exit.success(), "ao-cu serve after the second SIGTERM: {exit}");
}
