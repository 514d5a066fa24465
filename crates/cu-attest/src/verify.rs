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

use std::collections::HashSet;
use std::sync::Mutex;

use p384::ecdsa::signature::Verifier as _;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::AttestError;
use crate::certs::{Cert, PinnedRoots};
use crate::policy::{CompiledPolicy, SmtRule};
use crate::report::{Product, SIG_ALGO_ECDSA_P384_SHA384, SIGNED_LEN, SnpReport, Tcb};

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
}

const CACHE_CAP: usize = 4096;

fn pass(v: &mut Verdict, name: &str, detail: impl Into<String>) {
    v.push(name, Status::Pass, detail);
}

fn fail(v: &mut Verdict, name: &str, detail: impl Into<String>) {
    v.push(name, Status::Fail, detail);
}

fn not_configured(v: &mut Verdict, name: &str, detail: impl Into<String>) {
    v.push(name, Status::NotConfigured, detail);
}

fn tcb_str(t: &Tcb) -> String {
    let mut s = format!(
        "bootloader={} tee={} snp={} microcode={}",
        t.bootloader, t.tee, t.snp, t.microcode
    );
    if let Some(f) = t.fmc {
        s.push_str(&format!(" fmc={f}"));
    }
    s
}

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

    /// Runs every check.
    pub fn verify(&self, inputs: &Inputs<'_>) -> Verdict {
        let report = inputs.report;
        let default_policy = CompiledPolicy::default();
        let policy = inputs.policy.unwrap_or(&default_policy);
        let mut v = Verdict {
            ok: true,
            product: None,
            checks: Vec::new(),
            report: Value::Null,
        };

        // report_format
        let mut problems = Vec::new();
        if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
            problems.push(format!(
                "signature algorithm {} is not ECDSA P-384/SHA-384",
                report.sig_algo
            ));
        }
        match report.signing_key() {
            0 | 1 => {}
            7 => problems.push("the report is unsigned (SIGNING_KEY = none)".into()),
            k => problems.push(format!("reserved SIGNING_KEY {k}")),
        }
        if report.mask_chip_key() {
            problems.push("MASK_CHIP_KEY is set: the firmware did not sign the report".into());
        }
        if problems.is_empty() {
            pass(
                &mut v,
                "report_format",
                format!(
                    "version {}, ECDSA P-384/SHA-384, signed by the {}",
                    report.version,
                    if report.signing_key() == 0 { "VCEK" } else { "VLEK" }
                ),
            );
        } else {
            fail(&mut v, "report_format", problems.join("; "));
        }

        // product
        let ark_supplied: Vec<&Cert> = inputs.chain.iter().filter(|c| c.is_self_issued()).collect();
        // Intermediates: everything that is not a root and not the VCEK itself (a bundle may include it).
        let ask_supplied: Vec<&Cert> = inputs
            .chain
            .iter()
            .filter(|c| !c.is_self_issued() && inputs.vek.is_none_or(|v| v.der() != c.der()))
            .collect();
        let mut claims: Vec<(String, Product)> = Vec::new();
        let mut product_problems = Vec::new();
        if report.has_cpuid() {
            match Product::from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id) {
                Ok(Some(p)) => claims.push(("report CPUID".into(), p)),
                Ok(None) => product_problems.push(format!(
                    "report CPUID family {:#x} model {:#x} is a product without pinned AMD roots",
                    report.cpuid_fam_id, report.cpuid_mod_id
                )),
                Err(e) => product_problems.push(e.to_string()),
            }
        }
        if let Some(vek) = inputs.vek {
            if let Some(name) = vek.vek_info().product_name {
                match Product::from_name(&name) {
                    Some(p) => claims.push(("VCEK productName".into(), p)),
                    None => product_problems.push(format!("VCEK productName {name:?} is not known")),
                }
            }
            if let Some(p) = vek.product_from_names() {
                claims.push(("VCEK issuer".into(), p));
            }
        }
        for ark in &ark_supplied {
            match self.pinned_product_of(ark) {
                Some(p) => claims.push(("chain ARK (AMD key)".into(), p)),
                None => {
                    if let Some(p) = ark.product_from_names() {
                        claims.push(("chain ARK name".into(), p));
                    }
                }
            }
        }
        for ask in &ask_supplied {
            if let Some(p) = ask.product_from_names() {
                claims.push(("chain ASK name".into(), p));
            }
        }
        let product = claims.first().map(|c| c.1);
        v.product = product;
        let claims_text = claims
            .iter()
            .map(|(src, p)| format!("{src}: {p}"))
            .collect::<Vec<_>>()
            .join(", ");
        match product {
            None => {
                product_problems.push(
                    "cannot tell the product: the report has no CPUID fields (version 2) and no VCEK or chain names one"
                        .into(),
                );
                fail(&mut v, "product", product_problems.join("; "));
            }
            Some(p) => {
                if claims.iter().any(|c| c.1 != p) {
                    product_problems.push(format!("evidence disagrees on the product ({claims_text})"));
                }
                if !policy.policy.products.is_empty() && !policy.policy.products.contains(&p) {
                    product_problems.push(format!("{p} is not an accepted product"));
                }
                if product_problems.is_empty() {
                    pass(&mut v, "product", format!("{p} ({claims_text})"));
                } else {
                    fail(&mut v, "product", product_problems.join("; "));
                }
            }
        }
        let roots = product.and_then(|p| self.roots(p));

        // ark_pinned
        let ark: Option<&Cert> = match (roots, ark_supplied.as_slice()) {
            (None, _) => {
                fail(
                    &mut v,
                    "ark_pinned",
                    "no product, so no pinned AMD root to compare with",
                );
                ark_supplied.first().copied()
            }
            (Some(r), []) => {
                pass(
                    &mut v,
                    "ark_pinned",
                    format!("no ARK supplied: using AMD's built-in {} ARK", r.product),
                );
                Some(&r.ark)
            }
            (Some(r), [ark]) => {
                let spki = ark.spki_der().ok();
                if spki.as_deref() == Some(r.ark_spki.as_slice()) {
                    match self.signed_by(ark, ark) {
                        Ok(()) => pass(
                            &mut v,
                            "ark_pinned",
                            format!(
                                "ARK holds AMD's {} root key{}",
                                r.product,
                                if ark.der() == r.ark.der() {
                                    " (byte-identical to the built-in certificate)"
                                } else {
                                    ""
                                }
                            ),
                        ),
                        Err(e) => fail(&mut v, "ark_pinned", format!("ARK self-signature: {e}")),
                    }
                } else {
                    let other = self
                        .pinned_product_of(ark)
                        .map(|o| format!("; it is AMD's {o} root"))
                        .unwrap_or_default();
                    fail(
                        &mut v,
                        "ark_pinned",
                        format!(
                            "the chain's root is not AMD's {} ARK{other} (subject CN {:?})",
                            r.product,
                            ark.subject_cn().unwrap_or_default()
                        ),
                    );
                }
                Some(*ark)
            }
            (Some(_), many) => {
                fail(
                    &mut v,
                    "ark_pinned",
                    format!(
                        "{} self-issued certificates in the chain; expected one ARK",
                        many.len()
                    ),
                );
                many.first().copied()
            }
        };

        // ask_pinned
        let vlek = report.signing_key() == 1;
        let ask: Option<&Cert> = match (roots, ask_supplied.as_slice()) {
            (None, _) => {
                fail(
                    &mut v,
                    "ask_pinned",
                    "no product, so no pinned AMD root to check the ASK with",
                );
                ask_supplied.first().copied()
            }
            (Some(r), []) => {
                if vlek {
                    fail(
                        &mut v,
                        "ask_pinned",
                        "the report is VLEK-signed: supply the ASVK (the VLEK cert_chain) with --chain",
                    );
                    None
                } else {
                    pass(
                        &mut v,
                        "ask_pinned",
                        format!("no ASK supplied: using AMD's built-in {} ASK", r.product),
                    );
                    Some(&r.ask)
                }
            }
            (Some(r), [ask]) => {
                match self.signed_by(ask, &r.ark) {
                    Ok(()) => pass(
                        &mut v,
                        "ask_pinned",
                        format!(
                            "{} {:?} is signed by AMD's {} ARK",
                            if vlek { "ASVK" } else { "ASK" },
                            ask.subject_cn().unwrap_or_default(),
                            r.product
                        ),
                    ),
                    Err(e) => fail(
                        &mut v,
                        "ask_pinned",
                        format!("the ASK is not signed by AMD's {} ARK: {e}", r.product),
                    ),
                }
                Some(*ask)
            }
            (Some(_), many) => {
                fail(
                    &mut v,
                    "ask_pinned",
                    format!("{} intermediate certificates; expected one ASK", many.len()),
                );
                many.first().copied()
            }
        };

        // vcek_chain
        let mut vek_key = None;
        match (inputs.vek, ark, ask) {
            (None, _, _) => fail(
                &mut v,
                "vcek_chain",
                "no VCEK supplied (pass --vcek, or let the verifier fetch it from AMD's KDS)",
            ),
            (Some(_), None, _) | (Some(_), _, None) => {
                fail(&mut v, "vcek_chain", "no ARK/ASK to check the VCEK against")
            }
            (Some(vek), Some(ark), Some(ask)) => {
                let res = self
                    .signed_by(ark, ark)
                    .map_err(|e| format!("ARK is not self-signed: {e}"))
                    .and_then(|()| {
                        self.signed_by(ask, ark)
                            .map_err(|e| format!("ARK does not sign ASK: {e}"))
                    })
                    .and_then(|()| {
                        self.signed_by(vek, ask)
                            .map_err(|e| format!("ASK does not sign the VCEK: {e}"))
                    })
                    .and_then(|()| vek.p384_key().map_err(|e| e.to_string()));
                match res {
                    Ok(key) => {
                        vek_key = Some(key);
                        pass(
                            &mut v,
                            "vcek_chain",
                            format!(
                                "{:?} → {:?} → {:?}",
                                ark.subject_cn().unwrap_or_default(),
                                ask.subject_cn().unwrap_or_default(),
                                vek.subject_cn().unwrap_or_default()
                            ),
                        );
                    }
                    Err(e) => fail(&mut v, "vcek_chain", e),
                }
            }
        }

        // report_signature: checked with the VCEK's key even when the chain failed, so that a verdict tells
        // the two apart.
        let sig_key = vek_key.or_else(|| inputs.vek.and_then(|c| c.p384_key().ok()));
        match sig_key {
            None => fail(&mut v, "report_signature", "no usable VCEK public key"),
            Some(key) => match verify_report_signature(report, &key) {
                Ok(()) => pass(
                    &mut v,
                    "report_signature",
                    "ECDSA P-384 signature over bytes 0x000..0x2A0 verifies",
                ),
                Err(e) => fail(&mut v, "report_signature", e.to_string()),
            },
        }

        // vcek_tcb
        match (inputs.vek, product) {
            (None, _) => fail(&mut v, "vcek_tcb", "no VCEK supplied"),
            (_, None) => fail(
                &mut v,
                "vcek_tcb",
                "product unknown, so the TCB layout is unknown",
            ),
            (Some(vek), Some(p)) => {
                let info = vek.vek_info();
                let reported = Tcb::decode(report.reported_tcb, p);
                let mut problems = Vec::new();
                match info.tcb() {
                    None => problems.push("the VCEK lacks TCB extensions".to_string()),
                    Some(mut issued) => {
                        if !p.has_fmc() {
                            issued.fmc = None;
                        }
                        if issued != reported {
                            problems.push(format!(
                                "the VCEK was issued for TCB [{}] but reported_tcb is [{}]",
                                tcb_str(&issued),
                                tcb_str(&reported)
                            ));
                        }
                    }
                }
                if report.signing_key() == 0 {
                    let want = &report.chip_id[..p.hwid_len()];
                    match &info.hwid {
                        None => problems.push("the VCEK has no hwID".into()),
                        Some(h) if h.as_slice() != want => problems.push(format!(
                            "the VCEK hwID {} is not the report's chip_id {}",
                            hex::encode(h),
                            hex::encode(want)
                        )),
                        Some(_) => {}
                    }
                }
                if problems.is_empty() {
                    pass(
                        &mut v,
                        "vcek_tcb",
                        format!(
                            "reported_tcb [{}] matches the VCEK{}",
                            tcb_str(&reported),
                            if report.signing_key() == 0 {
                                " and its hwID matches chip_id"
                            } else {
                                ""
                            }
                        ),
                    );
                } else {
                    fail(&mut v, "vcek_tcb", problems.join("; "));
                }
            }
        }

        // min_tcb
        match (policy.policy.min_tcb, product) {
            (None, _) => not_configured(&mut v, "min_tcb", "no [min_tcb] in the policy"),
            (Some(_), None) => fail(&mut v, "min_tcb", "product unknown, so the TCB layout is unknown"),
            (Some(min), Some(p)) => {
                let t = Tcb::decode(report.reported_tcb, p);
                let mut low = Vec::new();
                let mut cmp = |name: &str, have: u8, want: u8| {
                    if have < want {
                        low.push(format!("{name} {have} < {want}"));
                    }
                };
                cmp("bootloader", t.bootloader, min.bootloader);
                cmp("tee", t.tee, min.tee);
                cmp("snp", t.snp, min.snp);
                cmp("microcode", t.microcode, min.microcode);
                if let Some(f) = t.fmc {
                    cmp("fmc", f, min.fmc);
                }
                if low.is_empty() {
                    pass(
                        &mut v,
                        "min_tcb",
                        format!("reported_tcb [{}] meets the minimum", tcb_str(&t)),
                    );
                } else {
                    fail(
                        &mut v,
                        "min_tcb",
                        format!("reported_tcb below minimum: {}", low.join(", ")),
                    );
                }
            }
        }

        // guest_svn
        match policy.policy.min_guest_svn {
            None => not_configured(&mut v, "guest_svn", "no min_guest_svn in the policy"),
            Some(min) if report.guest_svn >= min => pass(
                &mut v,
                "guest_svn",
                format!("guest_svn {} >= {min}", report.guest_svn),
            ),
            Some(min) => fail(
                &mut v,
                "guest_svn",
                format!("guest_svn {} < {min}", report.guest_svn),
            ),
        }

        // guest policy bits
        if report.policy_debug_allowed() {
            fail(
                &mut v,
                "debug",
                "the guest policy allows debugging (bit 19 set): the host can read guest memory",
            );
        } else {
            pass(&mut v, "debug", "debugging disallowed by the guest policy");
        }
        if report.policy_migrate_ma_allowed() {
            fail(
                &mut v,
                "migration_agent",
                "the guest policy allows a migration agent (bit 18 set)",
            );
        } else {
            pass(
                &mut v,
                "migration_agent",
                "no migration agent allowed by the guest policy",
            );
        }
        match policy.policy.smt {
            SmtRule::Allowed => pass(
                &mut v,
                "smt",
                format!(
                    "SMT allowed by the verifier policy (platform SMT {})",
                    if report.platform_smt_enabled() {
                        "on"
                    } else {
                        "off"
                    }
                ),
            ),
            SmtRule::Forbidden => {
                let mut p = Vec::new();
                if report.platform_smt_enabled() {
                    p.push("the platform reports SMT enabled");
                }
                if report.policy_smt_allowed() {
                    p.push("the guest policy allows SMT (bit 16 set)");
                }
                if p.is_empty() {
                    pass(
                        &mut v,
                        "smt",
                        "SMT off on the platform and forbidden by the guest policy",
                    );
                } else {
                    fail(&mut v, "smt", format!("SMT is forbidden but {}", p.join(" and ")));
                }
            }
        }

        // vmpl
        if report.vmpl == policy.policy.vmpl {
            pass(&mut v, "vmpl", format!("requested at VMPL {}", report.vmpl));
        } else {
            fail(
                &mut v,
                "vmpl",
                format!(
                    "requested at VMPL {}, the policy requires VMPL {}",
                    report.vmpl, policy.policy.vmpl
                ),
            );
        }

        // measurement
        let m = hex::encode(report.measurement);
        if policy.measurements.is_empty() {
            not_configured(
                &mut v,
                "measurement",
                format!("no allow-list in the policy (measurement {m})"),
            );
        } else if policy.measurements.contains(&report.measurement) {
            pass(&mut v, "measurement", format!("{m} is in the allow-list"));
        } else {
            fail(&mut v, "measurement", format!("{m} is not in the allow-list"));
        }

        // optional digests
        match policy.host_data {
            None => not_configured(&mut v, "host_data", "not in the policy"),
            Some(h) if h == report.host_data => pass(&mut v, "host_data", "matches"),
            Some(h) => fail(
                &mut v,
                "host_data",
                format!(
                    "{} is not the expected {}",
                    hex::encode(report.host_data),
                    hex::encode(h)
                ),
            ),
        }
        let list_check = |v: &mut Verdict, name: &str, list: &[[u8; 48]], have: &[u8; 48]| {
            if list.is_empty() {
                not_configured(v, name, "not in the policy");
            } else if list.contains(have) {
                pass(v, name, format!("{} is allowed", hex::encode(have)));
            } else {
                fail(v, name, format!("{} is not in the allow-list", hex::encode(have)));
            }
        };
        list_check(
            &mut v,
            "id_key_digest",
            &policy.id_key_digests,
            &report.id_key_digest,
        );
        if !policy.author_key_digests.is_empty() && !report.author_key_en() {
            fail(
                &mut v,
                "author_key_digest",
                "the policy requires an author key but AUTHOR_KEY_EN is 0",
            );
        } else {
            list_check(
                &mut v,
                "author_key_digest",
                &policy.author_key_digests,
                &report.author_key_digest,
            );
        }

        // report_data binding
        match inputs.expected_report_data {
            None => not_configured(
                &mut v,
                "report_data",
                "no expected report_data (nonce binding) given",
            ),
            Some(want) if want == report.report_data => {
                pass(&mut v, "report_data", "report_data equals the expected binding")
            }
            Some(want) => fail(
                &mut v,
                "report_data",
                format!(
                    "report_data {} is not the expected {} (wrong nonce, key or configuration)",
                    hex::encode(report.report_data),
                    hex::encode(want)
                ),
            ),
        }

        v.report = report.summary(product);
        v
    }
}
