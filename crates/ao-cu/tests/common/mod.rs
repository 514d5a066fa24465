//! What the `ao-cu serve` tests share: the repository, the CI switch, starting and stopping the server
//! binary, and a plain HTTP GET.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod engines;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/e2e/aoconnect.mjs` (node + the real `@permaweb/aoconnect`) with these arguments.
pub fn node_script(args: &[&str]) -> ExitStatus {
    Command::new("node")
        .arg(repo().join("tests/e2e/aoconnect.mjs"))
        .args(args)
        .current_dir(repo().join("tests/e2e"))
        .status()
        .expect("run node")
}

pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// What is missing for the test, if anything.
pub fn missing() -> Option<String> {
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

/// Whether the test can run: what it needs is here. Without it the test is SKIPPED (`false`), or fails
/// under CI.
pub fn ready() -> bool {
    match missing() {
        None => true,
        Some(what) if under_ci() => panic!("required for the tests under CI: {what}"),
        Some(what) => {
            println!("SKIPPED: missing {what}");
            false
        }
    }
}

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The QUIC endpoint's address, when `--quic-listen` was given.
    pub quic: Option<String>,
}

impl Server {
    /// Starts `ao-cu serve` on a free port over `data`; returns once it listens.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// [`Server::start`] with more `ao-cu serve` arguments.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        Server::start_on(data, 0, extra)
    }

    /// [`Server::start_with`] on `port` (0: a free one).
    pub fn start_on(data: &Path, port: u16, extra: &[&str]) -> Server {
        Server::start_logging(data, port, extra, Stdio::inherit())
    }

    /// [`Server::start_on`] with the node's log (its stderr) sent to `log`.
    pub fn start_logging(data: &Path, port: u16, extra: &[&str], log: Stdio) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
            .args(["serve", "--host", "127.0.0.1", "--workers", "2"])
            .args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env_remove("PORT")
            .env_remove("WALLET_FILE")
            .env("AO_CU_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start ao-cu serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[serve] {line}");
                if let Some(rest) = line.strip_prefix("ao-cu QUIC listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send((true, addr));
                } else if let Some(rest) = line.strip_prefix("ao-cu serve listening on ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send((false, addr));
                }
            }
        });
        // The QUIC line, when there is one, comes first.
        let mut quic = None;
        let addr = loop {
            match rx.recv_timeout(Duration::from_secs(120)) {
                Ok((true, addr)) => quic = Some(addr),
                Ok((false, addr)) => break addr,
                Err(_) => {
                    let _ = child.kill();
                    panic!("ao-cu serve did not start listening: {:?}", child.wait());
                }
            }
        };
        Server {
            child,
            url: format!("http://{addr}"),
            quic,
        }
    }

    /// SIGTERM, then the exit status (fails after 60 s).
    pub fn terminate(mut self) -> ExitStatus {
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

impl Server {
    /// SIGKILL: the node dies wherever it is, with no shutdown.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Sends `sig` (`-STOP`, `-CONT`, …) to the server's process.
pub fn signal(server: &Server, sig: &str) {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args([sig, &pid]).status().unwrap().success());
}

/// A plain HTTP/1.1 GET (no client library in this crate): status, headers (lowercase names) and body.
pub fn http_get(base: &str, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
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
