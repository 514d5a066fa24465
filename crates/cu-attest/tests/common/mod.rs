//! Shared test helpers: the real AMD samples ([`samples`]), a local KDS ([`local_kds`]) and a home-made
//! (non-AMD) chain built with rcgen.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly
#![allow(dead_code)]

pub mod local_kds;
pub mod samples;

#[allow(unused_imports)] // not every test binary uses the samples
pub use samples::*;

use cu_attest::SnpReport;
use cu_attest::certs::Cert;
use p384::ecdsa::signature::Signer as _;

/// A P-384 key usable by rcgen (no crypto backend needed).
pub struct P384Key {
    pub sk: p384::ecdsa::SigningKey,
    sec1: Vec<u8>,
}

impl P384Key {
    /// A deterministic test key from a seed byte.
    pub fn from_seed(seed: u8) -> P384Key {
        let mut bytes = [seed; 48];
        bytes[0] = 0x11;
        let sk = p384::ecdsa::SigningKey::from_slice(&bytes).unwrap();
        let sec1 = sk.verifying_key().to_encoded_point(false).as_bytes().to_vec();
        P384Key { sk, sec1 }
    }
}

impl rcgen::PublicKeyData for P384Key {
    fn der_bytes(&self) -> &[u8] {
        &self.sec1
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P384_SHA384
    }
}

impl rcgen::SigningKey for P384Key {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let sig: p384::ecdsa::Signature = self.sk.sign(msg);
        Ok(sig.to_der().as_bytes().to_vec())
    }
}

fn params(cn: &str, ca: bool) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.serial_number = Some(rcgen::SerialNumber::from(cn.len() as u64 + u64::from(ca)));
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "Advanced Micro Devices");
    dn.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name = dn;
    if ca {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    p
}

fn der_int(v: u8) -> Vec<u8> {
    if v >= 0x80 {
        vec![0x02, 0x02, 0x00, v]
    } else {
        vec![0x02, 0x01, v]
    }
}

/// A complete, internally valid ARK → ASK → VCEK chain named like AMD's Milan chain, made with our own keys.
pub struct OwnChain {
    pub ark: Cert,
    pub ask: Cert,
    pub vcek: Cert,
    pub vcek_key: P384Key,
}

/// Builds the chain; the VCEK is issued for `hwid` at TCB (bl, tee, snp, ucode).
pub fn own_milan_chain(hwid: &[u8; 64], tcb: [u8; 4]) -> OwnChain {
    let ark_key = P384Key::from_seed(1);
    let ask_key = P384Key::from_seed(2);
    let vcek_key = P384Key::from_seed(3);

    let ark_params = params("ARK-Milan", true);
    let ark_cert = ark_params.self_signed(&ark_key).unwrap();
    let ark_issuer = rcgen::Issuer::new(ark_params, &ark_key);

    let ask_params = params("SEV-Milan", true);
    let ask_cert = ask_params.signed_by(&ask_key, &ark_issuer).unwrap();
    let ask_issuer = rcgen::Issuer::new(ask_params, &ask_key);

    let mut vp = params("SEV-VCEK", false);
    let ext = |oid: &[u64], content: Vec<u8>| rcgen::CustomExtension::from_oid_content(oid, content);
    let mut product = vec![0x16, 8];
    product.extend_from_slice(b"Milan-B0");
    vp.custom_extensions = vec![
        ext(&[1, 3, 6, 1, 4, 1, 3704, 1, 2], product),
        ext(&[1, 3, 6, 1, 4, 1, 3704, 1, 3, 1], der_int(tcb[0])),
        ext(&[1, 3, 6, 1, 4, 1, 3704, 1, 3, 2], der_int(tcb[1])),
        ext(&[1, 3, 6, 1, 4, 1, 3704, 1, 3, 3], der_int(tcb[2])),
        ext(&[1, 3, 6, 1, 4, 1, 3704, 1, 3, 8], der_int(tcb[3])),
        ext(&[1, 3, 6, 1, 4, 1, 3704, 1, 4], hwid.to_vec()),
    ];
    let vcek_cert = vp.signed_by(&vcek_key, &ask_issuer).unwrap();

    OwnChain {
        ark: Cert::from_der(ark_cert.der()).unwrap(),
        ask: Cert::from_der(ask_cert.der()).unwrap(),
        vcek: Cert::from_der(vcek_cert.der()).unwrap(),
        vcek_key,
    }
}

/// Signs `report` (bytes 0..0x2A0) with `key`, writing R and S little-endian as the firmware does.
pub fn sign_report(report: &mut SnpReport, key: &P384Key) {
    let bytes = report.to_bytes();
    let sig: p384::ecdsa::Signature = key.sk.sign(&bytes[..0x2A0]);
    let (r, s) = sig.split_bytes();
    let le = |be: &[u8]| {
        let mut out = [0u8; 72];
        for (i, b) in be.iter().rev().enumerate() {
            out[i] = *b;
        }
        out
    };
    report.signature_r = le(&r);
    report.signature_s = le(&s);
}
