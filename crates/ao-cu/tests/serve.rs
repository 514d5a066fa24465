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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// What is missing for the test, if anything.
fn missing() -> Option<String> {
    let root = repo();
    if !root.join("tests/modules/build/lua-process.wasm").exists() {
        return Some("tests/modules/build/lua-process.wasm (run tests/modules/build.sh)".into());
    }
    if !root.join("tests/e2e/node_modules/@permaweb/aoconnect").exists() {
        return Some("tests/e2e/node_modules (npm ci --ignore-scripts --prefix tests/e2e)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node".into());
    }
    None
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts `ao-cu serve` on a free port over `data`; returns once it listens.
    fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// [`Server::start`] with more `ao-cu serve` arguments.
    fn start_with(data: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
            .args(["serve", "--host", "127.0.0.1", "--port", "0", "--workers", "2"])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env_remove("PORT")
            .env_remove("WALLET_FILE")
            .env("AO_CU_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ao-cu serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[serve] {line}");
                if let Some(rest) = line.strip_prefix("ao-cu serve listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("ao-cu serve did not start listening: {:?}", child.wait());
            }
        };
        Server {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// SIGTERM, then the exit status (fails after 60 s).
    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("ao-cu serve did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A plain HTTP/1.1 GET (no client library in this crate): status, headers (lowercase names) and body.
fn http_get(base: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        !headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")),
        "GET {path}: chunked replies are not parsed here"
    );
    (status, headers, body)
}

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

fn node_script(args: &[&str]) -> ExitStatus {
    Command::new("node")
        .arg(repo().join("tests/e2e/aoconnect.mjs"))
        .args(args)
        .current_dir(repo().join("tests/e2e"))
        .status()
        .expect("run node")
}

#[test]
fn aoconnect_against_serve_and_restart() {
    if let Some(what) = missing() {
        if under_ci() {
            panic!("required for the tests under CI: {what}");
        }
        println!("SKIPPED: missing {what}");
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
