//! The checks of a verdict, one small function each, and [`CHECKS`], the list [`Verifier::verify`] runs in
//! order.
//!
//! Every check reads one [`Context`], built once per report by [`Context::new`]: the inputs, the policy in
//! force, and what can be read off the evidence without judging it (which product it claims, which ARK and
//! ASK the VCEK is to be checked against). No check changes the context or depends on another check's
//! outcome, so each can run, and be tested, alone:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cu_attest::SnpReport;
//! use cu_attest::verify::{Context, Inputs, Verifier, checks};
//!
//! let report = SnpReport::from_raw_or_hex(&std::fs::read("report.hex")?)?;
//! let verifier = Verifier::new()?;
//! let inputs = Inputs { report: &report, vek: None, chain: &[], policy: None, expected_report_data: None };
//! let cx = Context::new(&verifier, &inputs);
//! let debug = checks::step("debug").map(|s| s.run(&cx));
//! # Ok(()) }
//! ```

use p384::ecdsa::VerifyingKey;

use super::{Inputs, Status, Verifier, verify_report_signature};
use crate::certs::{Cert, PinnedRoots};
use crate::policy::{CompiledPolicy, SmtRule};
use crate::report::{Product, SIG_ALGO_ECDSA_P384_SHA384, SnpReport, Tcb};

/// What one check decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Pass, fail or not configured.
    pub status: Status,
    /// Why, in words (the verdict's `detail`).
    pub detail: String,
}

impl Outcome {
    /// The check passed.
    pub fn pass(detail: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Pass,
            detail: detail.into(),
        }
    }

    /// The check failed.
    pub fn fail(detail: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Fail,
            detail: detail.into(),
        }
    }

    /// Nothing to check against.
    pub fn not_configured(detail: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::NotConfigured,
            detail: detail.into(),
        }
    }

    /// Passes with `detail` when there are no `problems`, else fails with them joined by `"; "`.
    fn unless(problems: &[String], detail: impl FnOnce() -> String) -> Outcome {
        if problems.is_empty() {
            Outcome::pass(detail())
        } else {
            Outcome::fail(problems.join("; "))
        }
    }
}

/// One entry of [`CHECKS`]: the name the verdict reports and the function that decides it.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The stable check name, as in the verdict.
    pub name: &'static str,
    check: fn(&Context<'_>) -> Outcome,
}

impl Step {
    const fn new(name: &'static str, check: fn(&Context<'_>) -> Outcome) -> Step {
        Step { name, check }
    }

    /// Runs this check alone on `cx`.
    pub fn run(&self, cx: &Context<'_>) -> Outcome {
        (self.check)(cx)
    }
}

/// Every check, in the order of the verdict.
pub const CHECKS: &[Step] = &[
    Step::new("report_format", report_format),
    Step::new("product", product),
    Step::new("ark_pinned", ark_pinned),
    Step::new("ask_pinned", ask_pinned),
    Step::new("vcek_chain", vcek_chain),
    Step::new("report_signature", report_signature),
    Step::new("vcek_tcb", vcek_tcb),
    Step::new("min_tcb", min_tcb),
    Step::new("guest_svn", guest_svn),
    Step::new("debug", debug),
    Step::new("migration_agent", migration_agent),
    Step::new("smt", smt),
    Step::new("vmpl", vmpl),
    Step::new("measurement", measurement),
    Step::new("host_data", host_data),
    Step::new("id_key_digest", id_key_digest),
    Step::new("author_key_digest", author_key_digest),
    Step::new("report_data", report_data),
];

/// The check called `name`.
pub fn step(name: &str) -> Option<&'static Step> {
    CHECKS.iter().find(|s| s.name == name)
}

/// What the checks read: the inputs, the policy in force and what the evidence claims, worked out once.
pub struct Context<'a> {
    verifier: &'a Verifier,
    report: &'a SnpReport,
    vek: Option<&'a Cert>,
    policy: &'a CompiledPolicy,
    expected_report_data: Option<[u8; 64]>,
    /// The chain's self-issued certificates (ARK candidates).
    arks: Vec<&'a Cert>,
    /// Intermediates: everything that is not a root and not the VCEK itself (a bundle may include it).
    asks: Vec<&'a Cert>,
    /// Which product each piece of evidence names, with where it came from, in order.
    claims: Vec<(String, Product)>,
    /// Evidence that names no product with pinned roots.
    claim_problems: Vec<String>,
    /// The product: the first claim's.
    product: Option<Product>,
    /// AMD's pinned roots for the product.
    roots: Option<&'a PinnedRoots>,
    /// The ARK the VCEK chain is checked against: the supplied one, else AMD's built-in one.
    ark: Option<&'a Cert>,
    /// The ASK (or ASVK) the VCEK chain is checked against: the supplied one, else AMD's built-in ASK (none
    /// is built in for a VLEK).
    ask: Option<&'a Cert>,
}

impl<'a> Context<'a> {
    /// Reads the evidence in `inputs`; no signature is checked here. Without a policy the default one applies.
    pub fn new(verifier: &'a Verifier, inputs: &Inputs<'a>) -> Context<'a> {
        let report = inputs.report;
        let arks: Vec<&Cert> = inputs.chain.iter().filter(|c| c.is_self_issued()).collect();
        let asks: Vec<&Cert> = inputs
            .chain
            .iter()
            .filter(|c| !c.is_self_issued() && inputs.vek.is_none_or(|v| v.der() != c.der()))
            .collect();
        let (claims, claim_problems) = product_claims(verifier, report, inputs.vek, &arks, &asks);
        let product = claims.first().map(|c| c.1);
        let roots = product.and_then(|p| verifier.roots(p));
        let ark = match (roots, arks.as_slice()) {
            (Some(r), []) => Some(&r.ark),
            (_, supplied) => supplied.first().copied(),
        };
        let ask = match (roots, asks.as_slice()) {
            (Some(r), []) if report.signing_key() != 1 => Some(&r.ask),
            (_, supplied) => supplied.first().copied(),
        };
        Context {
            verifier,
            report,
            vek: inputs.vek,
            policy: inputs.policy.unwrap_or(&verifier.default_policy),
            expected_report_data: inputs.expected_report_data,
            arks,
            asks,
            claims,
            claim_problems,
            product,
            roots,
            ark,
            ask,
        }
    }

    /// The product the report is attributed to.
    pub fn product(&self) -> Option<Product> {
        self.product
    }

    /// Whether a VLEK (not a VCEK) signed the report.
    fn vlek(&self) -> bool {
        self.report.signing_key() == 1
    }
}

/// A TCB in words, for details.
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

/// What the report CPUID, the VCEK and the chain say the product is.
fn product_claims(
    verifier: &Verifier,
    report: &SnpReport,
    vek: Option<&Cert>,
    arks: &[&Cert],
    asks: &[&Cert],
) -> (Vec<(String, Product)>, Vec<String>) {
    let mut claims: Vec<(String, Product)> = Vec::new();
    let mut problems = Vec::new();
    if report.has_cpuid() {
        match Product::from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id) {
            Ok(Some(p)) => claims.push(("report CPUID".into(), p)),
            Ok(None) => problems.push(format!(
                "report CPUID family {:#x} model {:#x} is a product without pinned AMD roots",
                report.cpuid_fam_id, report.cpuid_mod_id
            )),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if let Some(vek) = vek {
        if let Some(name) = vek.vek_info().product_name {
            match Product::from_name(&name) {
                Some(p) => claims.push(("VCEK productName".into(), p)),
                None => problems.push(format!("VCEK productName {name:?} is not known")),
            }
        }
        if let Some(p) = vek.product_from_names() {
            claims.push(("VCEK issuer".into(), p));
        }
    }
    for ark in arks {
        match verifier.pinned_product_of(ark) {
            Some(p) => claims.push(("chain ARK (AMD key)".into(), p)),
            None => {
                if let Some(p) = ark.product_from_names() {
                    claims.push(("chain ARK name".into(), p));
                }
            }
        }
    }
    for ask in asks {
        if let Some(p) = ask.product_from_names() {
            claims.push(("chain ASK name".into(), p));
        }
    }
    (claims, problems)
}

/// `report_format`: ECDSA P-384/SHA-384, signed by a VCEK or VLEK, not masked.
fn report_format(cx: &Context<'_>) -> Outcome {
    let report = cx.report;
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
    Outcome::unless(&problems, || {
        format!(
            "version {}, ECDSA P-384/SHA-384, signed by the {}",
            report.version,
            if cx.vlek() { "VLEK" } else { "VCEK" }
        )
    })
}

/// `product`: the report CPUID, the VCEK and the chain agree on a product the policy accepts.
fn product(cx: &Context<'_>) -> Outcome {
    let mut problems = cx.claim_problems.clone();
    let Some(p) = cx.product else {
        problems.push(
            "cannot tell the product: the report has no CPUID fields (version 2) and no VCEK or chain names one"
                .into(),
        );
        return Outcome::fail(problems.join("; "));
    };
    let claims_text = cx
        .claims
        .iter()
        .map(|(src, p)| format!("{src}: {p}"))
        .collect::<Vec<_>>()
        .join(", ");
    if cx.claims.iter().any(|c| c.1 != p) {
        problems.push(format!("evidence disagrees on the product ({claims_text})"));
    }
    let accepted = &cx.policy.policy.products;
    if !accepted.is_empty() && !accepted.contains(&p) {
        problems.push(format!("{p} is not an accepted product"));
    }
    Outcome::unless(&problems, || format!("{p} ({claims_text})"))
}

/// `ark_pinned`: the supplied ARK (if any) holds AMD's root key for the product and signs itself.
fn ark_pinned(cx: &Context<'_>) -> Outcome {
    match (cx.roots, cx.arks.as_slice()) {
        (None, _) => Outcome::fail("no product, so no pinned AMD root to compare with"),
        (Some(r), []) => Outcome::pass(format!("no ARK supplied: using AMD's built-in {} ARK", r.product)),
        (Some(r), [ark]) => {
            if ark.spki_der().ok().as_deref() != Some(r.ark_spki.as_slice()) {
                let other = cx
                    .verifier
                    .pinned_product_of(ark)
                    .map(|o| format!("; it is AMD's {o} root"))
                    .unwrap_or_default();
                return Outcome::fail(format!(
                    "the chain's root is not AMD's {} ARK{other} (subject CN {:?})",
                    r.product,
                    ark.subject_cn().unwrap_or_default()
                ));
            }
            match cx.verifier.signed_by(ark, ark) {
                Ok(()) => Outcome::pass(format!(
                    "ARK holds AMD's {} root key{}",
                    r.product,
                    if ark.der() == r.ark.der() {
                        " (byte-identical to the built-in certificate)"
                    } else {
                        ""
                    }
                )),
                Err(e) => Outcome::fail(format!("ARK self-signature: {e}")),
            }
        }
        (Some(_), many) => Outcome::fail(format!(
            "{} self-issued certificates in the chain; expected one ARK",
            many.len()
        )),
    }
}

/// `ask_pinned`: the supplied ASK (or ASVK) is signed by AMD's pinned ARK for the product.
fn ask_pinned(cx: &Context<'_>) -> Outcome {
    match (cx.roots, cx.asks.as_slice()) {
        (None, _) => Outcome::fail("no product, so no pinned AMD root to check the ASK with"),
        (Some(_), []) if cx.vlek() => {
            Outcome::fail("the report is VLEK-signed: supply the ASVK (the VLEK cert_chain) with --chain")
        }
        (Some(r), []) => Outcome::pass(format!("no ASK supplied: using AMD's built-in {} ASK", r.product)),
        (Some(r), [ask]) => match cx.verifier.signed_by(ask, &r.ark) {
            Ok(()) => Outcome::pass(format!(
                "{} {:?} is signed by AMD's {} ARK",
                if cx.vlek() { "ASVK" } else { "ASK" },
                ask.subject_cn().unwrap_or_default(),
                r.product
            )),
            Err(e) => Outcome::fail(format!("the ASK is not signed by AMD's {} ARK: {e}", r.product)),
        },
        (Some(_), many) => Outcome::fail(format!(
            "{} intermediate certificates; expected one ASK",
            many.len()
        )),
    }
}

/// `vcek_chain`: ARK self-signed, ARK signs ASK, ASK signs the VCEK/VLEK, which is a P-384 key.
fn vcek_chain(cx: &Context<'_>) -> Outcome {
    let (vek, ark, ask) = match (cx.vek, cx.ark, cx.ask) {
        (None, _, _) => {
            return Outcome::fail(
                "no VCEK supplied (pass --vcek, or let the verifier fetch it from AMD's KDS)",
            );
        }
        (Some(vek), Some(ark), Some(ask)) => (vek, ark, ask),
        (Some(_), _, _) => return Outcome::fail("no ARK/ASK to check the VCEK against"),
    };
    let v = cx.verifier;
    let chained = v
        .signed_by(ark, ark)
        .map_err(|e| format!("ARK is not self-signed: {e}"))
        .and_then(|()| {
            v.signed_by(ask, ark)
                .map_err(|e| format!("ARK does not sign ASK: {e}"))
        })
        .and_then(|()| {
            v.signed_by(vek, ask)
                .map_err(|e| format!("ASK does not sign the VCEK: {e}"))
        })
        .and_then(|()| vek.p384_key().map_err(|e| e.to_string()));
    match chained {
        Ok(_) => Outcome::pass(format!(
            "{:?} → {:?} → {:?}",
            ark.subject_cn().unwrap_or_default(),
            ask.subject_cn().unwrap_or_default(),
            vek.subject_cn().unwrap_or_default()
        )),
        Err(e) => Outcome::fail(e),
    }
}

/// `report_signature`: the VCEK/VLEK signs bytes `0..0x2A0`. Checked with the VCEK's key even when the chain
/// fails, so that a verdict tells the two apart.
fn report_signature(cx: &Context<'_>) -> Outcome {
    let key: Option<VerifyingKey> = cx.vek.and_then(|c| c.p384_key().ok());
    match key.map(|k| verify_report_signature(cx.report, &k)) {
        None => Outcome::fail("no usable VCEK public key"),
        Some(Ok(())) => Outcome::pass("ECDSA P-384 signature over bytes 0x000..0x2A0 verifies"),
        Some(Err(e)) => Outcome::fail(e.to_string()),
    }
}

/// `vcek_tcb`: `reported_tcb` is the TCB the VCEK was issued for, and the VCEK `hwID` is `chip_id`.
fn vcek_tcb(cx: &Context<'_>) -> Outcome {
    let report = cx.report;
    let (vek, p) = match (cx.vek, cx.product) {
        (None, _) => return Outcome::fail("no VCEK supplied"),
        (_, None) => return Outcome::fail("product unknown, so the TCB layout is unknown"),
        (Some(vek), Some(p)) => (vek, p),
    };
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
    let vcek_signed = report.signing_key() == 0;
    if vcek_signed {
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
    Outcome::unless(&problems, || {
        format!(
            "reported_tcb [{}] matches the VCEK{}",
            tcb_str(&reported),
            if vcek_signed {
                " and its hwID matches chip_id"
            } else {
                ""
            }
        )
    })
}

/// `min_tcb`: `reported_tcb` is at least the policy's minimum, component by component.
fn min_tcb(cx: &Context<'_>) -> Outcome {
    let (min, p) = match (cx.policy.policy.min_tcb, cx.product) {
        (None, _) => return Outcome::not_configured("no [min_tcb] in the policy"),
        (Some(_), None) => return Outcome::fail("product unknown, so the TCB layout is unknown"),
        (Some(min), Some(p)) => (min, p),
    };
    let t = Tcb::decode(cx.report.reported_tcb, p);
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
        Outcome::pass(format!("reported_tcb [{}] meets the minimum", tcb_str(&t)))
    } else {
        Outcome::fail(format!("reported_tcb below minimum: {}", low.join(", ")))
    }
}

/// `guest_svn`: `guest_svn` is at least the policy's minimum.
fn guest_svn(cx: &Context<'_>) -> Outcome {
    let have = cx.report.guest_svn;
    match cx.policy.policy.min_guest_svn {
        None => Outcome::not_configured("no min_guest_svn in the policy"),
        Some(min) if have >= min => Outcome::pass(format!("guest_svn {have} >= {min}")),
        Some(min) => Outcome::fail(format!("guest_svn {have} < {min}")),
    }
}

/// `debug`: guest policy bit 19 (debug) is off.
fn debug(cx: &Context<'_>) -> Outcome {
    if cx.report.policy_debug_allowed() {
        Outcome::fail("the guest policy allows debugging (bit 19 set): the host can read guest memory")
    } else {
        Outcome::pass("debugging disallowed by the guest policy")
    }
}

/// `migration_agent`: guest policy bit 18 (migration agent) is off.
fn migration_agent(cx: &Context<'_>) -> Outcome {
    if cx.report.policy_migrate_ma_allowed() {
        Outcome::fail("the guest policy allows a migration agent (bit 18 set)")
    } else {
        Outcome::pass("no migration agent allowed by the guest policy")
    }
}

/// `smt`: SMT as the policy says.
fn smt(cx: &Context<'_>) -> Outcome {
    let report = cx.report;
    match cx.policy.policy.smt {
        SmtRule::Allowed => Outcome::pass(format!(
            "SMT allowed by the verifier policy (platform SMT {})",
            if report.platform_smt_enabled() {
                "on"
            } else {
                "off"
            }
        )),
        SmtRule::Forbidden => {
            let mut why = Vec::new();
            if report.platform_smt_enabled() {
                why.push("the platform reports SMT enabled");
            }
            if report.policy_smt_allowed() {
                why.push("the guest policy allows SMT (bit 16 set)");
            }
            if why.is_empty() {
                Outcome::pass("SMT off on the platform and forbidden by the guest policy")
            } else {
                Outcome::fail(format!("SMT is forbidden but {}", why.join(" and ")))
            }
        }
    }
}

/// `vmpl`: the report was requested at the policy's VMPL (default 0).
fn vmpl(cx: &Context<'_>) -> Outcome {
    let (have, want) = (cx.report.vmpl, cx.policy.policy.vmpl);
    if have == want {
        Outcome::pass(format!("requested at VMPL {have}"))
    } else {
        Outcome::fail(format!(
            "requested at VMPL {have}, the policy requires VMPL {want}"
        ))
    }
}

/// `measurement`: the launch measurement is in the allow-list.
fn measurement(cx: &Context<'_>) -> Outcome {
    let allowed = &cx.policy.measurements;
    let m = hex::encode(cx.report.measurement);
    if allowed.is_empty() {
        Outcome::not_configured(format!("no allow-list in the policy (measurement {m})"))
    } else if allowed.contains(&cx.report.measurement) {
        Outcome::pass(format!("{m} is in the allow-list"))
    } else {
        Outcome::fail(format!("{m} is not in the allow-list"))
    }
}

/// `host_data`: equals the policy's, when it sets one.
fn host_data(cx: &Context<'_>) -> Outcome {
    let have = cx.report.host_data;
    match cx.policy.host_data {
        None => Outcome::not_configured("not in the policy"),
        Some(want) if want == have => Outcome::pass("matches"),
        Some(want) => Outcome::fail(format!(
            "{} is not the expected {}",
            hex::encode(have),
            hex::encode(want)
        )),
    }
}

/// A key digest against an allow-list (empty: not configured).
fn digest_allowed(list: &[[u8; 48]], have: &[u8; 48]) -> Outcome {
    if list.is_empty() {
        Outcome::not_configured("not in the policy")
    } else if list.contains(have) {
        Outcome::pass(format!("{} is allowed", hex::encode(have)))
    } else {
        Outcome::fail(format!("{} is not in the allow-list", hex::encode(have)))
    }
}

/// `id_key_digest`: in the policy's allow-list, when it has one.
fn id_key_digest(cx: &Context<'_>) -> Outcome {
    digest_allowed(&cx.policy.id_key_digests, &cx.report.id_key_digest)
}

/// `author_key_digest`: in the policy's allow-list, when it has one; such a policy needs `AUTHOR_KEY_EN`.
fn author_key_digest(cx: &Context<'_>) -> Outcome {
    let list = &cx.policy.author_key_digests;
    if !list.is_empty() && !cx.report.author_key_en() {
        return Outcome::fail("the policy requires an author key but AUTHOR_KEY_EN is 0");
    }
    digest_allowed(list, &cx.report.author_key_digest)
}

/// `report_data`: the report binds the expected 64 bytes (node key, configuration, nonce).
fn report_data(cx: &Context<'_>) -> Outcome {
    let have = cx.report.report_data;
    match cx.expected_report_data {
        None => Outcome::not_configured("no expected report_data (nonce binding) given"),
        Some(want) if want == have => Outcome::pass("report_data equals the expected binding"),
        Some(want) => Outcome::fail(format!(
            "report_data {} is not the expected {} (wrong nonce, key or configuration)",
            hex::encode(have),
            hex::encode(want)
        )),
    }
}
