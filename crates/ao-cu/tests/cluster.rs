//! A cluster of `ao-cu serve` nodes, end to end, on real engines: a throwaway PostgreSQL server (the shared
//! store and the process leases), s3s-fs (the shared checkpoints), three nodes (`--cluster-node`) and
//! HAProxy with `deploy/cluster/haproxy.cfg` (consistent hashing on the process id) in front.
//!
//! `tests/e2e/cluster.mjs run` drives the real `@permaweb/aoconnect` through the proxy: it spawns
//! processes and sends each of them its messages (every 10th a `Send` whose outbox message goes to the
//! next process, usually owned by another node). One node is SIGKILLed at a random moment of the run and
//! started again later. Then:
//! - every message the MU acknowledged has its result, and each process's `Count` outputs are exactly
//!   1..K in schedule order (`cluster.mjs verify`): nothing lost, nothing evaluated twice, the state
//!   continuous across the nodes that owned the process;
//! - in PostgreSQL: no message scheduled twice on a process, nonces contiguous (no slot signed twice),
//!   one result per log position, and processes did move between nodes (lease tokens above 1);
//! - a single node (no cluster) on a copy of the database with the results and checkpoints removed
//!   evaluates the same log from scratch: its results are byte-identical to the cluster's.
//!
//! Needs what `tests/postgres.rs` needs, plus HAProxy (`tests/setup.sh` installs it); without them the
//! test prints SKIPPED, or fails when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::hash::{BuildHasher, Hasher};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::engines::{Postgres, S3, free_port, psql_at};
use common::{Server, repo, signal, under_ci};

const PROCESSES: usize = 100;
const MESSAGES: usize = 50;
/// The nodes' process lease time to live.
const LEASE_TTL: Duration = Duration::from_millis(2_000);

/// HAProxy with the shipped configuration in front of `nodes`, stopped on drop.
struct Proxy {
    child: Child,
    url: String,
}

impl Proxy {
    fn start(nodes: &[u16]) -> Option<Proxy> {
        if Command::new("haproxy").arg("-v").output().is_err() {
            if under_ci() {
                panic!("required for the tests under CI: haproxy (tests/setup.sh installs it)");
            }
            println!("SKIPPED: missing haproxy (tests/setup.sh installs it)");
            return None;
        }
        let port = free_port();
        let mut command = Command::new("haproxy");
        command
            .arg("-db")
            .arg("-f")
            .arg(repo().join("deploy/cluster/haproxy.cfg"))
            .env("AO_CU_PROXY_BIND", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (i, p) in nodes.iter().enumerate() {
            command.env(format!("AO_CU_NODE{}", i + 1), format!("127.0.0.1:{p}"));
        }
        let child = command.spawn().expect("start haproxy");
        let proxy = Proxy {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start listening");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(proxy)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_script(args: &[&str]) -> Command {
    let mut command = Command::new("node");
    command
        .arg(repo().join("tests/e2e/cluster.mjs"))
        .args(args)
        .current_dir(repo().join("tests/e2e"));
    command
}

/// A number in `lo..hi` that differs from run to run (the moment of the kill).
fn random_between(lo: u64, hi: u64) -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    lo + h.finish() % (hi - lo)
}

/// Waits until `url`'s health check answers 200.
fn wait_healthy(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::panic::catch_unwind(|| common::http_get(url, "/healthcheck").0 == 200).unwrap_or(false) {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not become healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `cluster.mjs run` has spawned its processes (it writes them to `out` first); their ids.
fn spawned(driver: &mut Child, out: &std::path::Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        // The file may be read while it is being written: a part that does not parse is read again.
        let parsed = std::fs::read_to_string(out)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        if let Some(v) = parsed {
            return v["pids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect();
        }
        assert!(Instant::now() < deadline, "the processes were not spawned");
        assert!(
            driver.try_wait().unwrap().is_none(),
            "cluster.mjs run ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every process's schedule is one chain: nonces 0..n, no slot signed twice, none skipped.
fn assert_one_chain(pg: &Postgres) {
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM (SELECT process_id FROM schedule GROUP BY 1 \
             HAVING max(nonce) + 1 <> count(*)) d"
        ),
        "0",
        "nonces contiguous: no slot signed twice, none skipped"
    );
}

/// `(process, pos, md5 of the output)` of every result, in order.
fn results_of(url: &str) -> String {
    psql_at(
        url,
        "SELECT process_id || ' ' || pos || ' ' || md5(output_json) FROM results ORDER BY process_id, pos",
    )
}

/// Nodes on one database and bucket, sharing one wallet (one SU identity).
struct Cluster {
    pg: Postgres,
    s3: S3,
    tmp: tempfile::TempDir,
    ports: Vec<u16>,
}

impl Cluster {
    /// PostgreSQL, s3s-fs and the ports of `nodes` nodes; `None` (SKIPPED, or a failure under CI) when
    /// what the cluster tests need is missing.
    fn new(nodes: usize) -> Option<Cluster> {
        if !common::ready() {
            return None;
        }
        let (Some(pg), Some(s3)) = (Postgres::start(), S3::start()) else {
            return None;
        };
        Some(Cluster {
            pg,
            s3,
            tmp: tempfile::tempdir().unwrap(),
            ports: (0..nodes).map(|_| free_port()).collect(),
        })
    }

    fn data(&self, i: usize) -> std::path::PathBuf {
        self.tmp.path().join(format!("node{i}"))
    }

    fn wallet(&self) -> std::path::PathBuf {
        self.tmp.path().join("wallet.json")
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    /// Starts node `i` (on its own port, again after a kill); the first node started makes the wallet.
    fn start(&self, i: usize, log: Stdio) -> Server {
        let mut args = vec!["--db-url".to_owned(), self.pg.url.clone()];
        args.extend(self.s3.args());
        args.extend(
            [
                "--checkpoint-every-messages",
                "10",
                "--cluster-node",
                &format!("node{i}"),
                "--cluster-url",
                &self.url(i),
                "--process-lease-ttl-ms",
                &LEASE_TTL.as_millis().to_string(),
            ]
            .map(String::from),
        );
        let made = self.wallet().exists();
        if made {
            args.extend(["--wallet-file".to_owned(), self.wallet().display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = Server::start_logging(&self.data(i), self.ports[i], &args, log);
        if !made {
            std::fs::copy(self.data(i).join("wallet.json"), self.wallet()).unwrap();
        }
        server
    }
}

#[test]
fn a_cluster_behind_haproxy_loses_nothing_when_a_node_is_killed() {
    let Some(cluster) = Cluster::new(3) else {
        return;
    };
    let Some(proxy) = Proxy::start(&cluster.ports) else {
        return;
    };
    let (pg, s3, tmp) = (&cluster.pg, &cluster.s3, cluster.tmp.path());
    let start = |i: usize| cluster.start(i, Stdio::inherit());
    let mut nodes = [Some(start(0)), Some(start(1)), Some(start(2))];
    wait_healthy(&proxy.url);

    let wasm = repo().join("tests/modules/build/lua-process.wasm");
    let out = tmp.join("acked.json");
    let mut driver = cluster_script(&[
        "run",
        &proxy.url,
        wasm.to_str().unwrap(),
        &PROCESSES.to_string(),
        &MESSAGES.to_string(),
        out.to_str().unwrap(),
    ])
    .spawn()
    .expect("run cluster.mjs");
    // Once the processes are spawned and messages flow, kill node 2 at a random moment, and start it
    // again a few lease lifetimes later.
    spawned(&mut driver, &out);
    let kill_after = random_between(500, 6_000);
    println!("killing node 2 {kill_after} ms into the messages");
    std::thread::sleep(Duration::from_millis(kill_after));
    nodes[2].take().unwrap().kill();
    std::thread::sleep(3 * LEASE_TTL);
    nodes[2] = Some(start(2));

    let status = driver.wait().unwrap();
    assert!(status.success(), "cluster.mjs run through the proxy: {status}");
    let status = cluster_script(&["verify", &proxy.url, out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "cluster.mjs verify through the proxy: {status}");

    // The store: every message scheduled once per process, nonces contiguous, one result per position.
    assert_eq!(
        pg.psql(
            "SELECT count(*) FROM (SELECT process_id, message_id FROM schedule GROUP BY 1, 2 \
             HAVING count(*) > 1) d"
        ),
        "0",
        "no message scheduled twice"
    );
    assert_one_chain(pg);
    assert_eq!(
        pg.psql("SELECT count(*) FROM schedule"),
        pg.psql("SELECT count(*) FROM results"),
        "one result per scheduled message"
    );
    let processes: usize = pg.psql("SELECT count(*) FROM processes").parse().unwrap();
    assert_eq!(processes, PROCESSES);
    let moved: usize = pg
        .psql("SELECT count(*) FROM cu_owner WHERE token > 1")
        .parse()
        .unwrap();
    assert!(moved > 0, "processes moved between nodes");
    println!("{moved} of {PROCESSES} processes changed owner");

    // The same log on one node from scratch: the same results, byte for byte.
    for node in nodes.iter_mut() {
        let exit = node.take().unwrap().terminate();
        assert!(exit.success(), "a node after SIGTERM: {exit}");
    }
    let cluster = results_of(&pg.url);
    let base = pg.url.strip_suffix("/postgres").unwrap();
    let (admin, copy) = (format!("{base}/template1"), format!("{base}/single"));
    psql_at(&admin, "CREATE DATABASE single TEMPLATE postgres");
    psql_at(
        &copy,
        "DELETE FROM results; DELETE FROM checkpoints; DELETE FROM cu_owner",
    );
    let single_dir = tmp.join("single");
    let mut args = vec!["--db-url".to_owned(), copy.clone()];
    args.extend(s3.args());
    args.extend(["--checkpoint-s3-prefix", "single/", "--wallet-file"].map(String::from));
    args.push(tmp.join("wallet.json").display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let single = Server::start_with(&single_dir, &args);
    let status = cluster_script(&["verify", &single.url, out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "cluster.mjs verify on a single node: {status}");
    let exit = single.terminate();
    assert!(exit.success(), "the single node after SIGTERM: {exit}");
    let alone = results_of(&copy);
    assert_eq!(
        cluster.lines().count(),
        alone.lines().count(),
        "as many results on one node"
    );
    assert!(cluster == alone, "the cluster's results are the single node's");
}

/// Partition-like: node A owns a process and is paused (SIGSTOP) in the middle of a stream of messages,
/// past its lease; node B takes the process over (a request for it lands on B) and goes on serving it. A,
/// resumed, writes nothing for the process it lost: its writes in flight fail the fence, it says so in its
/// log, and forwards the client's retries to B. The schedule stays one chain, every acknowledged message
/// is on it once, and the Count outputs run 1..K.
#[test]
fn a_node_paused_past_its_leases_writes_nothing_for_the_processes_it_lost() {
    let Some(cluster) = Cluster::new(2) else {
        return;
    };
    let log = cluster.tmp.path().join("node0.log");
    let mut a = Some(cluster.start(0, std::fs::File::create(&log).unwrap().into()));
    let b = cluster.start(1, Stdio::inherit());
    let wasm = repo().join("tests/modules/build/lua-process.wasm");
    let out = cluster.tmp.path().join("acked.json");
    // The client talks to node A only: it spawns the process there (A owns it) and streams messages.
    let mut driver = cluster_script(&[
        "run",
        &cluster.url(0),
        wasm.to_str().unwrap(),
        "1",
        "120",
        out.to_str().unwrap(),
    ])
    .spawn()
    .expect("run cluster.mjs");
    let pid = spawned(&mut driver, &out).swap_remove(0);
    std::thread::sleep(Duration::from_millis(random_between(300, 1_500)));
    let paused = a.as_ref().unwrap();
    signal(paused, "-STOP");
    // Past A's lease, a request for the process lands on B, which takes it over.
    std::thread::sleep(2 * LEASE_TTL);
    let (status, _, body) = common::http_get(&cluster.url(1), &format!("/state/{pid}"));
    assert_eq!(
        status,
        200,
        "B serves the process: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(
        cluster
            .pg
            .psql(&format!("SELECT node FROM cu_owner WHERE process_id = '{pid}'"))[..6],
        *"node1@",
        "B owns the process"
    );
    let (_, _, body) = common::http_get(&cluster.url(1), "/");
    let root: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        root["cluster"]["node"].as_str().unwrap().starts_with("node1@") && root["cluster"]["processes"] == 1,
        "GET / names the node and what it owns: {root}"
    );
    signal(paused, "-CONT");
    let status = driver.wait().unwrap();
    assert!(status.success(), "cluster.mjs run: {status}");
    let status = cluster_script(&["verify", &cluster.url(1), out.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "cluster.mjs verify on B: {status}");
    assert_one_chain(&cluster.pg);
    let exit = a.take().unwrap().terminate();
    assert!(exit.success(), "node A after SIGTERM: {exit}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("lost the lease of a process to another node") && text.contains(&pid),
        "node A logs the process it lost"
    );
    let exit = b.terminate();
    assert!(exit.success(), "node B after SIGTERM: {exit}");
}

/// Cluster settings that do not fit are refused before anything starts, with what is wrong.
#[test]
fn cluster_settings_that_do_not_fit_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let serve = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ao-cu"))
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(tmp.path())
            .args(args)
            .env_remove("DB_URL")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let db = "postgres://cu@127.0.0.1:1/ao";
    let (code, err) = serve(&["--cluster-node", "a"]);
    assert_eq!(code, Some(2), "a cluster needs the shared database: {err}");
    assert!(err.contains("--db-url"), "{err}");
    let (code, err) = serve(&["--db-url", db, "--cluster-node", "a", "--store-lease", "a"]);
    assert_eq!(code, Some(2), "a cluster node or a standby, not both: {err}");
    for (extra, says) in [
        (["--quic-listen", "127.0.0.1:0"], "QUIC"),
        (["--gateway", "http://127.0.0.1:1"], "network mode"),
        (["--unit-mode", "hbu"], "hbu mode"),
    ] {
        let mut args = vec!["--db-url", db, "--cluster-node", "a"];
        args.extend(extra);
        let (code, err) = serve(&args);
        assert_ne!(code, Some(0), "{err}");
        assert!(err.contains(says), "{err}");
    }
    let (code, err) = serve(&["--db-url", db, "--cluster-node", "a@b"]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("without '@'"), "{err}");
}
