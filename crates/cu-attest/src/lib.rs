//! AMD SEV-SNP attestation and result signing for ao-cu.
//!
//! A client that buys verifiable compute chains three proofs: **evidence → node key → result**.
//!
//! * [`key`]: the node's ed25519 signing key, created on first run in the data directory (0600).
//! * [`binding`]: what the report's 64-byte `report_data` commits to: SHA-512 over a domain string, the node
//!   public key, the SHA-256 of the canonical node configuration and the verifier's nonce.
//! * [`guest`]: the small path that asks `/dev/sev-guest` for a report at VMPL 0. Outside an SNP guest it
//!   answers [`AttestError::NoTee`]; evidence is never made up.
//! * [`evidence`]: the evidence document served by `GET /~snp@1.0/report?nonce=HEX` and its verification.
//! * [`kds`]: VCEK and chain fetching from AMD's key distribution service, with a cache, off the evaluation
//!   threads.
//! * [`verify`]: the verifier. ARK/ASK pinned to AMD's roots for the detected product (Milan, Genoa,
//!   Turin), the VCEK chain, the report signature over the exact signed bytes, `reported_tcb` against the
//!   VCEK and a minimum, guest policy (debug, migration agent, SMT), VMPL, measurement allow-list, optional
//!   `host_data`/ID-key digests and the `report_data` binding, each a separate check in a JSON verdict.
//!   Each check is a small function listed in [`verify::CHECKS`] ([`verify::checks`]); `Verifier::verify`
//!   runs the list over one [`verify::Context`], and any check can run alone.
//! * [`policy`]: the verifier's TOML policy.
//! * [`httpsig`]: RFC 9421 HTTP Message Signatures (ed25519) over an RFC 9530 `Content-Digest` and the
//!   process/position headers of every served result.
//!
//! The `ao-cu attest verify` command line lives in the binary (`crates/ao-cu/src/attest.rs`); it reads files
//! and prints, and leaves every judgement to [`Verifier`] (with [`policy::hex_n`] for `--report-data`).
//!
//! The byte layouts and the step-by-step client procedure are in `docs/attestation.md`.

pub mod binding;
pub mod certs;
pub mod evidence;
pub mod guest;
pub mod httpsig;
pub mod kds;
pub mod key;
pub mod policy;
pub mod report;
pub mod verify;

pub use binding::{NodeConfig, report_data};
pub use evidence::{Attestor, CertBundle, Evidence, verify_evidence};
pub use httpsig::{Position, SignedResult, sign_response, verify_response};
pub use key::NodeKey;
pub use policy::{CompiledPolicy, Policy};
pub use report::{Product, SnpReport, Tcb};
pub use verify::{Check, Inputs, Status, Verdict, Verifier};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// Not running inside an SEV-SNP guest: no evidence can be produced.
    #[error("no TEE: {0}")]
    NoTee(String),
    /// The SEV-SNP guest firmware refused or failed a request.
    #[error("SEV-SNP guest firmware: {0}")]
    Guest(String),
    /// A report could not be parsed.
    #[error("attestation report: {0}")]
    Report(String),
    /// A certificate could not be parsed or does not verify.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A signature (report or HTTP message) is malformed or does not verify.
    #[error("signature: {0}")]
    Signature(String),
    /// The verifier policy is invalid.
    #[error("policy: {0}")]
    Policy(String),
    /// The node configuration cannot be canonicalized.
    #[error("configuration: {0}")]
    Config(String),
    /// A nonce is malformed.
    #[error("nonce: {0}")]
    Nonce(String),
    /// The node key file is unusable.
    #[error("node key: {0}")]
    Key(String),
    /// The node key file does not exist.
    #[error("node key file {0} does not exist")]
    KeyMissing(String),
    /// Fetching from the key distribution service failed.
    #[error("key distribution service: {0}")]
    Kds(String),
}

impl AttestError {
    /// The HTTP status and JSON body the evidence route answers with for this error: 503 with
    /// `{"error": "no TEE: ..."}` outside an SNP guest, 400 for a bad nonce, 502 for KDS trouble, 500 otherwise.
    pub fn http_response(&self) -> (u16, String) {
        let status = match self {
            AttestError::NoTee(_) => 503,
            AttestError::Nonce(_) => 400,
            AttestError::Kds(_) => 502,
            _ => 500,
        };
        (
            status,
            serde_json::json!({ "error": self.to_string() }).to_string(),
        )
    }
}
