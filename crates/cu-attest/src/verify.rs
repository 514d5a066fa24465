//! The report verifier: every check separately, in a JSON verdict.
//!
//! Checks, in order (names as they appear in the verdict):
//!
//! | name | what |
//! | --- | --- |
//! | `report_format` | signature algorithm is ECDSA P-384/SHA-384, signed by a VCEK or VLEK, not masked |
//! | `product` | Milan/Genoa/Turin detected from the report CPUID, the VCEK and the chain, all agreeing |
//! | `ark_pinned` | the ARK is AMD's root for that product (public key pinned to the built-in AMD ARK) |
//! | `ask_pinned` | the ASK (or ASVK) is signed by AMD's pinned ARK for that product |
//! | `vcek_chain` | ARK self-signed, ARK signs ASK, ASK signs the VCEK/VLEK, which is a P-384 key |
//! | `report_signature` | the VCEK/VLEK signs bytes `0..0x2A0` of the report |
//! | `vcek_tcb` | `reported_tcb` equals the TCB the VCEK was issued for; the VCEK `hwID` equals `chip_id` |
//! | `min_tcb` | `reported_tcb` at least the policy's minimum, component by component |
//! | `guest_svn` | `guest_svn` at least the policy's minimum |
//! | `debug` | guest policy bit 19 (debug) is off |
//! | `migration_agent` | guest policy bit 18 (migration agent) is off |
//! | `smt` | SMT as the policy says |
//! | `vmpl` | the report was requested at the policy's VMPL (default 0) |
//! | `measurement` | the launch measurement is in the allow-list |
//! | `host_data`, `id_key_digest`, `author_key_digest` | optional exact matches |
//! | `report_data` | the report binds the expected 64 bytes (node key, configuration, nonce) |
//!
//! A check is `pass`, `fail` or `not_configured`. The verdict is `ok` when no check failed.
//!
//! Each check is a small function in [`checks`], listed in [`CHECKS`] under its name; [`Verifier::verify`]
//! builds one [`Context`] from the [`Inputs`] and runs the list over it.

use std::collections::HashSet;
use std::sync::Mutex;

use p384::ecdsa::signature::Verifier as _;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AttestError;
use crate::certs::{Cert, PinnedRoots};
use crate::policy::CompiledPolicy;
use crate::report::{Product, SIGNED_LEN, SnpReport};

pub mod checks;

pub use checks::{CHECKS, Context, Outcome, Step};

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The check ran and passed.
    Pass,
    /// The check ran and failed, or could not run for lack of evidence.
    Fail,
    /// Nothing to check against: the policy (or the caller) did not configure it.
    NotConfigured,
}

/// One named check of a verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable check name.
    pub name: String,
    /// Outcome.
    pub status: Status,
    /// Why, in words.
    pub detail: String,
}

/// The result of verifying a report.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// True when no check failed.
    pub ok: bool,
    /// The product the report was attributed to.
    pub product: Option<Product>,
    /// Every check, in a fixed order.
    pub checks: Vec<Check>,
    /// A summary of the report's fields.
    pub report: Value,
}

impl Verdict {
    /// A verdict for input that could not be read at all.
    pub fn input_error(detail: impl Into<String>) -> Verdict {
        Verdict {
            ok: false,
            product: None,
            checks: vec![Check {
                name: "input".into(),
                status: Status::Fail,
                detail: detail.into(),
            }],
            report: Value::Null,
        }
    }

    /// The check with this name.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Names of the failed checks.
    pub fn failed(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Adds a check and updates `ok`.
    pub fn push(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        if status == Status::Fail {
            self.ok = false;
        }
        self.checks.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
        });
    }

    /// The verdict as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| format!("{{\"ok\": false, \"error\": \"verdict serialization: {e}\"}}"))
    }
}

/// What to verify.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The report.
    pub report: &'a SnpReport,
    /// The VCEK (or VLEK) that should have signed it.
    pub vek: Option<&'a Cert>,
    /// ARK and ASK/ASVK as supplied (any order); empty means AMD's built-in ones.
    pub chain: &'a [Cert],
    /// The policy; `None` leaves the measurement, minimum-TCB and optional digests unconfigured.
    pub policy: Option<&'a CompiledPolicy>,
    /// The expected `report_data`; `None` leaves the binding check unconfigured.
    pub expected_report_data: Option<[u8; 64]>,
}

/// A verifier with AMD's pinned roots loaded once and a cache of certificate signatures already checked.
pub struct Verifier {
    roots: Vec<PinnedRoots>,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// The policy in force when the caller gives none.
    default_policy: CompiledPolicy,
}

const CACHE_CAP: usize = 4096;

/// Verifies the report's ECDSA P-384 signature over bytes `0..0x2A0` with `key`.
pub fn verify_report_signature(
    report: &SnpReport,
    key: &p384::ecdsa::VerifyingKey,
) -> Result<(), AttestError> {
    let bytes = report.to_bytes();
    // R and S are little-endian, zero-extended to 72 bytes; P-384 scalars are 48 bytes.
    let scalar = |le: &[u8; 72]| -> Result<[u8; 48], AttestError> {
        if le[48..].iter().any(|&b| b != 0) {
            return Err(AttestError::Signature(
                "signature component wider than 384 bits".into(),
            ));
        }
        let mut be = [0u8; 48];
        for (i, b) in le[..48].iter().enumerate() {
            be[47 - i] = *b;
        }
        Ok(be)
    };
    let r = scalar(&report.signature_r)?;
    let s = scalar(&report.signature_s)?;
    let sig = p384::ecdsa::Signature::from_scalars(r, s)
        .map_err(|e| AttestError::Signature(format!("malformed signature: {e}")))?;
    key.verify(&bytes[..SIGNED_LEN], &sig)
        .map_err(|_| AttestError::Signature("the VCEK does not sign this report".into()))
}

impl Verifier {
    /// Loads AMD's roots for every product.
    pub fn new() -> Result<Verifier, AttestError> {
        Ok(Verifier {
            roots: PinnedRoots::load_all()?,
            verified: Mutex::new(HashSet::new()),
            default_policy: CompiledPolicy::default(),
        })
    }

    /// AMD's pinned roots for `product`.
    pub fn roots(&self, product: Product) -> Option<&PinnedRoots> {
        self.roots.iter().find(|r| r.product == product)
    }

    /// Which product's pinned ARK has this public key, if any.
    fn pinned_product_of(&self, ark: &Cert) -> Option<Product> {
        let spki = ark.spki_der().ok()?;
        self.roots.iter().find(|r| r.ark_spki == spki).map(|r| r.product)
    }

    /// `subject.verify_signed_by(issuer)`, remembering successes.
    fn signed_by(&self, subject: &Cert, issuer: &Cert) -> Result<(), AttestError> {
        let mut h = Sha256::new();
        h.update(Sha256::digest(issuer.der()));
        h.update(Sha256::digest(subject.der()));
        let key: [u8; 32] = h.finalize().into();
        if let Ok(set) = self.verified.lock()
            && set.contains(&key)
        {
            return Ok(());
        }
        subject.verify_signed_by(issuer)?;
        if let Ok(mut set) = self.verified.lock() {
            if set.len() >= CACHE_CAP {
                set.clear();
            }
            set.insert(key);
        }
        Ok(())
    }

    /// Runs every check of [`CHECKS`], in order, into a verdict.
    pub fn verify(&self, inputs: &Inputs<'_>) -> Verdict {
        let cx = Context::new(self, inputs);
        let mut verdict = Verdict {
            ok: true,
            product: cx.product(),
            checks: Vec::with_capacity(CHECKS.len()),
            report: Value::Null,
        };
        for step in CHECKS {
            let outcome = step.run(&cx);
            verdict.push(step.name, outcome.status, outcome.detail);
        }
        verdict.report = inputs.report.summary(cx.product());
        verdict
    }
}
