//! The shared engines of the tests (a throwaway PostgreSQL server and s3s-fs, through `tests/pg` and
//! `tests/s3`), and file helpers.

use std::process::{Command, Stdio};

use super::{repo, under_ci};

/// Runs `tests/<kind>/start.sh` on a new directory and a free port: the directory and the URL the script
/// prints; `None` (SKIPPED, or a failure under CI) when the server cannot be started.
pub fn start_server(kind: &str, what: &str) -> Option<(tempfile::TempDir, String)> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(repo().join(format!("tests/{kind}/start.sh")))
        .arg(dir.path())
        .arg(free_port().to_string())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run tests/{kind}/start.sh: {e}"));
    if !out.status.success() {
        let why = format!("{what} (tests/{kind}/start.sh failed; tests/setup.sh installs it)");
        if under_ci() {
            panic!("required for the tests under CI: {why}");
        }
        println!("SKIPPED: missing {why}");
        return None;
    }
    let url = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    Some((dir, url))
}

/// Stops what `tests/<kind>/start.sh` started in `dir`.
pub fn stop_server(kind: &str, dir: &std::path::Path) {
    let _ = Command::new(repo().join(format!("tests/{kind}/stop.sh")))
        .arg(dir)
        .status();
}

/// A PostgreSQL server for one test, stopped on drop.
pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub url: String,
}

impl Postgres {
    pub fn start() -> Option<Postgres> {
        let (dir, url) = start_server("pg", "PostgreSQL")?;
        Some(Postgres { dir, url })
    }

    pub fn psql(&self, sql: &str) -> String {
        psql_at(&self.url, sql)
    }
}

/// Runs `sql` with psql on the database at `url`: its unaligned output, trimmed.
pub fn psql_at(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-Atc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// An s3s-fs server for one test, stopped on drop.
pub struct S3 {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
}

impl S3 {
    pub fn start() -> Option<S3> {
        let (dir, endpoint) = start_server("s3", "s3s-fs")?;
        Some(S3 { dir, endpoint })
    }

    /// The object files of the bucket (s3s-fs keeps each object as a file under its root), relative to it.
    pub fn objects(&self) -> Vec<String> {
        let root = self.dir.path().join("root/ao-cu-test");
        let mut out: Vec<String> = files_under(&root)
            .iter()
            .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        out.sort();
        out
    }

    /// `serve` arguments for this bucket (credentials of `tests/s3/start.sh`).
    pub fn args(&self) -> Vec<String> {
        [
            "--checkpoint-s3-endpoint",
            self.endpoint.as_str(),
            "--checkpoint-s3-bucket",
            "ao-cu-test",
            "--checkpoint-s3-access-key",
            "ao-cu-test",
            "--checkpoint-s3-secret-key",
            "ao-cu-test-secret",
        ]
        .map(String::from)
        .to_vec()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        stop_server("s3", self.dir.path());
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every file under `dir`, at any depth (none when `dir` does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

impl Drop for Postgres {
    fn drop(&mut self) {
        stop_server("pg", self.dir.path());
    }
}
