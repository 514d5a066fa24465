//! Certificate fetching from a key distribution service, tested only against a local server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use cu_attest::kds::{CertCache, KdsFetcher};
use cu_attest::{Product, Tcb, VerifyArgs, run_verify};

/// A tiny HTTP/1.1 server on loopback that answers from `route` and records request targets. It stops when
/// dropped, after 30 s, or after 50 connections, whichever comes first.
struct LocalKds {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl LocalKds {
    fn start(route: impl Fn(&str) -> (u16, Vec<u8>) + Send + 'static) -> LocalKds {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut served = 0;
            while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline && served < 50 {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                served += 1;
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                seen2.lock().unwrap().push(target.clone());
                let (status, body) = route(&target);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(&body);
            }
        });
        LocalKds { url, seen, stop }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for LocalKds {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn milan_route(target: &str) -> (u16, Vec<u8>) {
    let chip = hex::encode(milan_report().chip_id);
    if target == format!("/vcek/v1/Milan/{chip}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115") {
        (200, sample("vcek_milan.der"))
    } else if target == "/vcek/v1/Milan/cert_chain" {
        (200, sample("cert_chain_milan"))
    } else {
        (404, b"not found".to_vec())
    }
}

fn milan_tcb() -> Tcb {
    Tcb::decode(milan_report().reported_tcb, Product::Milan)
}

#[test]
fn fetches_vcek_for_reported_tcb_and_caches_it() {
    let kds = LocalKds::start(milan_route);
    let dir = tempfile::tempdir().unwrap();
    let fetcher = KdsFetcher::new(&kds.url, CertCache::in_dir(dir.path()), Duration::from_secs(5));
    let r = milan_report();
    let der = fetcher.vcek(Product::Milan, &r.chip_id, &milan_tcb()).unwrap();
    assert_eq!(der, sample("vcek_milan.der"));
    // Second call: from the cache, no request.
    let again = fetcher.vcek(Product::Milan, &r.chip_id, &milan_tcb()).unwrap();
    assert_eq!(again, der);
    assert_eq!(kds.requests().len(), 1, "{:?}", kds.requests());

    // A new fetcher on the same directory needs no server at all.
    drop(kds);
    let cold = KdsFetcher::new(
        "http://127.0.0.1:9",
        CertCache::in_dir(dir.path()),
        Duration::from_secs(2),
    );
    assert_eq!(cold.vcek(Product::Milan, &r.chip_id, &milan_tcb()).unwrap(), der);
}

#[test]
fn fetches_the_chain_and_reports_http_errors() {
    let kds = LocalKds::start(milan_route);
    let fetcher = KdsFetcher::new(&kds.url, CertCache::memory(), Duration::from_secs(5));
    let pem = fetcher.cert_chain(Product::Milan).unwrap();
    assert_eq!(pem, sample("cert_chain_milan"));
    let err = fetcher.cert_chain(Product::Genoa).unwrap_err().to_string();
    assert!(err.contains("HTTP 404"), "{err}");
    // A TCB the server has no VCEK for.
    let mut tcb = milan_tcb();
    tcb.snp = 9;
    assert!(
        fetcher
            .vcek(Product::Milan, &milan_report().chip_id, &tcb)
            .is_err()
    );
}

#[test]
fn a_vcek_for_another_tcb_or_chip_is_not_accepted() {
    // The server answers every VCEK request with the Milan VCEK, whatever was asked.
    let kds = LocalKds::start(|t: &str| {
        if t.starts_with("/vcek/v1/Milan/") {
            (200, sample("vcek_milan.der"))
        } else {
            (404, vec![])
        }
    });
    let fetcher = KdsFetcher::new(&kds.url, CertCache::memory(), Duration::from_secs(5));
    let mut tcb = milan_tcb();
    tcb.microcode = 200;
    let err = fetcher
        .vcek(Product::Milan, &milan_report().chip_id, &tcb)
        .unwrap_err()
        .to_string();
    assert!(err.contains("another TCB"), "{err}");
    let mut chip = milan_report().chip_id;
    chip[0] ^= 1;
    let err = fetcher
        .vcek(Product::Milan, &chip, &milan_tcb())
        .unwrap_err()
        .to_string();
    assert!(err.contains("another chip"), "{err}");
    let err = fetcher
        .vcek(Product::Milan, &[0u8; 64], &milan_tcb())
        .unwrap_err()
        .to_string();
    assert!(err.contains("masked"), "{err}");
}

#[test]
fn prefetch_runs_on_its_own_thread() {
    let kds = LocalKds::start(milan_route);
    let fetcher = Arc::new(KdsFetcher::new(
        &kds.url,
        CertCache::memory(),
        Duration::from_secs(5),
    ));
    let handle = fetcher
        .spawn_prefetch(Product::Milan, milan_report().chip_id.to_vec(), milan_tcb())
        .unwrap();
    assert_eq!(handle.thread().name(), Some("kds-fetch"));
    assert_eq!(handle.join().unwrap().unwrap(), sample("vcek_milan.der"));
}

#[test]
fn cli_fetches_a_missing_vcek_from_the_configured_kds() {
    let kds = LocalKds::start(milan_route);
    let args = VerifyArgs {
        report: samples_dir().join("report_milan.hex"),
        vcek: None,
        chain: Some(samples_dir().join("cert_chain_milan")),
        policy: None,
        report_data: None,
        offline: false,
        kds_url: kds.url.clone(),
        cert_cache: None,
    };
    let (code, out) = run_verify(&args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(kds.requests().len(), 1);
    assert!(kds.requests()[0].contains("ucodeSPL=115"));
}

#[test]
fn urls_follow_the_kds_interface() {
    let f = KdsFetcher::new(
        "https://kds.example/",
        CertCache::memory(),
        Duration::from_secs(1),
    );
    let chip = [0xABu8; 64];
    let milan = f.vcek_url(
        Product::Milan,
        &chip,
        &Tcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: None,
        },
    );
    assert_eq!(
        milan,
        format!(
            "https://kds.example/vcek/v1/Milan/{}?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115",
            "ab".repeat(64)
        )
    );
    let turin = f.vcek_url(
        Product::Turin,
        &chip,
        &Tcb {
            bootloader: 1,
            tee: 2,
            snp: 3,
            microcode: 4,
            fmc: Some(5),
        },
    );
    assert_eq!(
        turin,
        format!(
            "https://kds.example/vcek/v1/Turin/{}?fmcSPL=05&blSPL=01&teeSPL=02&snpSPL=03&ucodeSPL=04",
            "ab".repeat(8)
        )
    );
}
