//! Evidence served by `GET /~snp@1.0/report?nonce=HEX`, how a node produces it, and how a client checks it.
//!
//! The evidence JSON:
//!
//! ```json
//! {
//!   "report": "<hex of the 1184-byte report>",
//!   "certificates": { "vcek": "<PEM>", "ask": "<PEM>", "ark": "<PEM>" },
//!   "public_key": "<hex, 32-byte ed25519 node key>",
//!   "keyid": "<base64url of the public key>",
//!   "config": { "engine": "...", "formats": [...], "limits": {...} },
//!   "config_digest": "<hex SHA-256 of the canonical config JSON>",
//!   "nonce": "<hex, as requested>",
//!   "report_data": "<hex, 64 bytes>"
//! }
//! ```

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AttestError;
use crate::binding::{self, NodeConfig};
use crate::certs::Cert;
use crate::guest::{self, CertKind};
use crate::kds::KdsFetcher;
use crate::key::{NodeKey, keyid_for};
use crate::policy::CompiledPolicy;
use crate::report::{Product, SnpReport, Tcb};
use crate::verify::{Inputs, Status, Verdict, Verifier};

/// Certificates that come with a report (PEM). Any may be missing; the verifier says what it lacked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBundle {
    /// The VCEK that signed the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcek: Option<String>,
    /// The VLEK that signed the report (instead of a VCEK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlek: Option<String>,
    /// The ASK (or ASVK for a VLEK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask: Option<String>,
    /// The ARK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ark: Option<String>,
}

/// Attestation evidence for one nonce.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Hex of the raw report.
    pub report: String,
    /// Certificates.
    pub certificates: CertBundle,
    /// Hex of the node's ed25519 public key.
    pub public_key: String,
    /// The node's keyid (as in result signatures).
    pub keyid: String,
    /// The node configuration.
    pub config: Value,
    /// Hex SHA-256 of the canonical configuration JSON.
    pub config_digest: String,
    /// Hex of the verifier's nonce.
    pub nonce: String,
    /// Hex of the report_data the node asked the firmware to bind.
    pub report_data: String,
}

/// What a node needs to produce evidence: its key, configuration and a certificate source.
pub struct Attestor {
    key: Arc<NodeKey>,
    config: Value,
    config_digest: [u8; 32],
    kds: Option<Arc<KdsFetcher>>,
}

impl std::fmt::Debug for Attestor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestor")
            .field("key", &self.key)
            .field("config_digest", &hex::encode(self.config_digest))
            .finish_non_exhaustive()
    }
}

fn pem_of(der: &[u8]) -> Result<String, AttestError> {
    Cert::from_der(der)?.to_pem()
}

impl Attestor {
    /// An attestor for `key` and `config`; `kds` supplies certificates the host did not.
    pub fn new(
        key: Arc<NodeKey>,
        config: &NodeConfig,
        kds: Option<Arc<KdsFetcher>>,
    ) -> Result<Attestor, AttestError> {
        Ok(Attestor {
            key,
            config: config.to_value(),
            config_digest: config.digest()?,
            kds,
        })
    }

    /// The node key, shared (the QUIC endpoint's certificate key).
    pub fn shared_key(&self) -> Arc<NodeKey> {
        self.key.clone()
    }

    /// The node key.
    pub fn key(&self) -> &NodeKey {
        &self.key
    }

    /// What `GET /` publishes about the node's identity: keyid, public key, configuration and its digest,
    /// and whether a TEE is present.
    pub fn node_info(&self) -> Value {
        serde_json::json!({
            "keyid": self.key.keyid(),
            "public_key": hex::encode(self.key.public_key()),
            "signature_alg": "ed25519",
            "config": self.config,
            "config_digest": hex::encode(self.config_digest),
            "tee": if guest::tee_present() { "sev-snp" } else { "none" },
        })
    }

    /// The `report_data` this node binds for `nonce`.
    pub fn report_data(&self, nonce: &[u8]) -> Result<[u8; 64], AttestError> {
        binding::report_data(&self.key.public_key(), &self.config_digest, nonce)
    }

    /// Produces evidence for `nonce`. Blocking (firmware call, maybe a KDS fetch): call it from a blocking
    /// pool, never an evaluation thread. Outside an SNP guest this is [`AttestError::NoTee`].
    pub fn evidence(&self, nonce: &[u8]) -> Result<Evidence, AttestError> {
        let report_data = self.report_data(nonce)?;
        guest::require_tee()?;
        let raw = guest::request_report(report_data)?;
        let report = SnpReport::from_bytes(&raw.report)?;
        if report.report_data != report_data || report.vmpl != guest::REPORT_VMPL {
            return Err(AttestError::Guest(
                "the firmware returned a report for other report_data or VMPL".into(),
            ));
        }
        let mut certs = CertBundle::default();
        for (kind, der) in &raw.certs {
            let pem = Some(pem_of(der)?);
            match kind {
                CertKind::Ark => certs.ark = pem,
                CertKind::Ask => certs.ask = pem,
                CertKind::Vcek => certs.vcek = pem,
                CertKind::Vlek => certs.vlek = pem,
            }
        }
        if certs.vcek.is_none()
            && certs.vlek.is_none()
            && report.signing_key() == 0
            && let Some(kds) = &self.kds
        {
            let product = if report.has_cpuid() {
                Product::from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id)?
            } else {
                guest::host_product()
            };
            // A KDS failure leaves the VCEK out rather than failing the request: the report is still
            // evidence, and the client can fetch the VCEK itself (docs/attestation.md, step 3).
            if let Some(p) = product {
                let tcb = Tcb::decode(report.reported_tcb, p);
                if let Ok(der) = kds.vcek(p, &report.chip_id, &tcb) {
                    certs.vcek = Some(pem_of(&der)?);
                }
            }
        }
        Ok(self.assemble(&raw.report, certs, nonce, report_data))
    }

    fn assemble(
        &self,
        report: &[u8],
        certificates: CertBundle,
        nonce: &[u8],
        report_data: [u8; 64],
    ) -> Evidence {
        Evidence {
            report: hex::encode(report),
            certificates,
            public_key: hex::encode(self.key.public_key()),
            keyid: self.key.keyid(),
            config: self.config.clone(),
            config_digest: hex::encode(self.config_digest),
            nonce: hex::encode(nonce),
            report_data: hex::encode(report_data),
        }
    }
}

/// Parses the evidence's certificates into the VCEK/VLEK and the chain.
fn bundle_certs(b: &CertBundle) -> Result<(Option<Cert>, Vec<Cert>), AttestError> {
    let vek = match (&b.vcek, &b.vlek) {
        (Some(v), _) | (None, Some(v)) => Some(Cert::from_pem(v.as_bytes())?),
        (None, None) => None,
    };
    let mut chain = Vec::new();
    for pem in [&b.ask, &b.ark].into_iter().flatten() {
        chain.push(Cert::from_pem(pem.as_bytes())?);
    }
    Ok((vek, chain))
}

/// Verifies evidence against a verifier-chosen `nonce`: the configuration digest, the key, the binding of
/// key + configuration + nonce into `report_data`, and every report check. On success the evidence's public
/// key is the attested node key that result signatures must verify under.
pub fn verify_evidence(
    verifier: &Verifier,
    evidence: &Evidence,
    policy: Option<&CompiledPolicy>,
    nonce: &[u8],
) -> Verdict {
    let report = match hex::decode(evidence.report.trim())
        .map_err(|e| AttestError::Report(format!("report is not hex: {e}")))
        .and_then(|b| SnpReport::from_bytes(&b))
    {
        Ok(r) => r,
        Err(e) => return Verdict::input_error(e.to_string()),
    };
    let (vek, chain) = match bundle_certs(&evidence.certificates) {
        Ok(x) => x,
        Err(e) => return Verdict::input_error(e.to_string()),
    };
    let public_key = match hex::decode(&evidence.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    {
        Some(k) => k,
        None => return Verdict::input_error("public_key is not 32 bytes of hex"),
    };
    let digest = match binding::config_digest(&evidence.config) {
        Ok(d) => d,
        Err(e) => return Verdict::input_error(e.to_string()),
    };
    let expected = binding::report_data(&public_key, &digest, nonce).ok();
    let mut verdict = verifier.verify(&Inputs {
        report: &report,
        vek: vek.as_ref(),
        chain: &chain,
        policy,
        expected_report_data: expected,
    });
    if expected.is_none() {
        verdict.push("nonce", Status::Fail, "the nonce must be 1..=64 bytes");
    }
    if hex::encode(digest) == evidence.config_digest.to_ascii_lowercase() {
        verdict.push(
            "config_digest",
            Status::Pass,
            "config_digest is the SHA-256 of the canonical configuration",
        );
    } else {
        verdict.push(
            "config_digest",
            Status::Fail,
            format!(
                "config_digest {} does not match the configuration ({})",
                evidence.config_digest,
                hex::encode(digest)
            ),
        );
    }
    if keyid_for(&public_key) == evidence.keyid {
        verdict.push("keyid", Status::Pass, "keyid names public_key");
    } else {
        verdict.push("keyid", Status::Fail, "keyid does not name public_key");
    }
    verdict
}
