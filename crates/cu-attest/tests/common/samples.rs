//! The real AMD SEV-SNP samples in `shared/samples/sev-snp`. Shared with `ao-cu`'s tests, which include this
//! file by path.
#![allow(dead_code)]

use std::path::PathBuf;

use cu_attest::SnpReport;
use cu_attest::certs::Cert;

/// `shared/samples/sev-snp` beside the repository (CI places `shared/` next to the clone).
pub fn samples_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/samples/sev-snp");
    assert!(
        dir.join("report_milan.hex").is_file(),
        "the SEV-SNP samples are missing: expected {} (shared/samples/sev-snp beside the repository)",
        dir.display()
    );
    dir
}

pub fn sample(name: &str) -> Vec<u8> {
    let path = samples_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub fn milan_report_bytes() -> Vec<u8> {
    hex::decode(String::from_utf8(sample("report_milan.hex")).unwrap().trim()).unwrap()
}

pub fn milan_report() -> SnpReport {
    SnpReport::from_bytes(&milan_report_bytes()).unwrap()
}

pub fn milan_vcek() -> Cert {
    Cert::from_der(&sample("vcek_milan.der")).unwrap()
}

pub fn milan_chain() -> Vec<Cert> {
    Cert::load_all(&sample("cert_chain_milan")).unwrap()
}

pub fn turin_chain() -> Vec<Cert> {
    Cert::load_all(&sample("cert_chain_turin")).unwrap()
}

pub fn turin_vcek() -> Cert {
    Cert::from_der(&sample("vcek_turin.der")).unwrap()
}
