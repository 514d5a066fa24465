//! Certificate fetching from a key distribution service, tested only against a local server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::local_kds::{LocalKds, milan_route};
use common::*;
use cu_attest::kds::{CertCache, KdsFetcher};
use cu_attest::{Product, Tcb};

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
