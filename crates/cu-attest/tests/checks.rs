//! Each check of the verifier alone, on the real AMD Milan sample: a pass and a fail (and "not configured"
//! where a policy or caller must configure it), through [`cu_attest::verify::checks`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use common::*;
use cu_attest::SnpReport;
use cu_attest::certs::Cert;
use cu_attest::policy::{CompiledPolicy, MinTcb, Policy, SmtRule};
use cu_attest::report::Product;
use cu_attest::verify::{CHECKS, Context, Inputs, Outcome, Status, Verifier, checks};

/// The inputs of one check: the real report, VCEK and chain unless a test changes them.
struct Case {
    report: SnpReport,
    vek: Option<Cert>,
    chain: Vec<Cert>,
    policy: Option<CompiledPolicy>,
    expected_report_data: Option<[u8; 64]>,
}

fn real() -> Case {
    Case {
        report: milan_report(),
        vek: Some(milan_vcek()),
        chain: milan_chain(),
        policy: None,
        expected_report_data: None,
    }
}

impl Case {
    fn report(mut self, change: impl FnOnce(&mut SnpReport)) -> Case {
        change(&mut self.report);
        self
    }

    /// The default policy with one change.
    fn policy(mut self, set: impl FnOnce(&mut Policy)) -> Case {
        let mut p = Policy::default();
        set(&mut p);
        self.policy = Some(p.compile().unwrap());
        self
    }

    /// Runs only the check `name`.
    fn run(&self, name: &str) -> Outcome {
        let verifier = Verifier::new().unwrap();
        let inputs = Inputs {
            report: &self.report,
            vek: self.vek.as_ref(),
            chain: &self.chain,
            policy: self.policy.as_ref(),
            expected_report_data: self.expected_report_data,
        };
        let cx = Context::new(&verifier, &inputs);
        checks::step(name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .run(&cx)
    }
}

/// Runs the check `name` alone and asserts its status and a part of its detail.
#[track_caller]
fn decides(case: &Case, name: &str, status: Status, detail: &str) {
    let o = case.run(name);
    assert_eq!(o.status, status, "{name}: {o:?}");
    assert!(
        o.detail.contains(detail),
        "{name}: {:?} lacks {detail:?}",
        o.detail
    );
}

#[track_caller]
fn passes(case: &Case, name: &str, detail: &str) {
    decides(case, name, Status::Pass, detail);
}

#[track_caller]
fn fails(case: &Case, name: &str, detail: &str) {
    decides(case, name, Status::Fail, detail);
}

#[track_caller]
fn not_configured(case: &Case, name: &str) {
    decides(case, name, Status::NotConfigured, "");
}

#[test]
fn the_list_is_the_documented_order_and_verify_runs_it() {
    // docs/attestation.md §3 lists the checks in order: "Checks, in order: `report_format`, ... (and, for
    // evidence, ...".
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/attestation.md")).unwrap();
    let listed = doc
        .split_once("Checks, in order:")
        .and_then(|(_, rest)| rest.split_once("(and, for evidence"))
        .unwrap()
        .0;
    let documented: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
    let names: Vec<&str> = CHECKS.iter().map(|s| s.name).collect();
    assert_eq!(names, documented);
    // The verdict is the list run in order, each check alone on the same context.
    let case = real().report(|r| r.policy |= 1 << 19);
    let verifier = Verifier::new().unwrap();
    let inputs = Inputs {
        report: &case.report,
        vek: case.vek.as_ref(),
        chain: &case.chain,
        policy: None,
        expected_report_data: None,
    };
    let verdict = verifier.verify(&inputs);
    let cx = Context::new(&verifier, &inputs);
    assert_eq!(cx.product(), Some(Product::Milan));
    assert_eq!(verdict.checks.len(), CHECKS.len());
    for (entry, step) in verdict.checks.iter().zip(CHECKS) {
        let alone = step.run(&cx);
        assert_eq!(
            (entry.name.as_str(), entry.status, &entry.detail),
            (step.name, alone.status, &alone.detail)
        );
    }
    assert!(!verdict.ok);
    assert!(checks::step("no_such_check").is_none());
}

#[test]
fn report_format() {
    passes(&real(), "report_format", "signed by the VCEK");
    fails(
        &real().report(|r| r.key_info = 7 << 2),
        "report_format",
        "unsigned",
    );
    fails(
        &real().report(|r| r.key_info |= 2),
        "report_format",
        "MASK_CHIP_KEY",
    );
}

#[test]
fn product() {
    passes(&real(), "product", "Milan (VCEK productName: Milan");
    let mut turin = real();
    turin.chain = turin_chain();
    fails(&turin, "product", "evidence disagrees");
    let genoa_only = real().policy(|p| p.products = vec![Product::Genoa]);
    fails(&genoa_only, "product", "Milan is not an accepted product");
}

#[test]
fn ark_pinned() {
    passes(
        &real(),
        "ark_pinned",
        "byte-identical to the built-in certificate",
    );
    let mut built_in = real();
    built_in.chain.clear();
    passes(&built_in, "ark_pinned", "using AMD's built-in Milan ARK");
    let mut turin = real();
    turin.chain = turin_chain();
    fails(&turin, "ark_pinned", "it is AMD's Turin root");
}

#[test]
fn ask_pinned() {
    passes(
        &real(),
        "ask_pinned",
        "\"SEV-Milan\" is signed by AMD's Milan ARK",
    );
    let own = own_milan_chain(&milan_report().chip_id, [3, 0, 8, 115]);
    let mut forged = real();
    forged.chain = vec![own.ask, own.ark];
    fails(&forged, "ask_pinned", "not signed by AMD's Milan ARK");
    let mut vlek = real().report(|r| r.key_info = 1 << 2);
    vlek.chain.clear();
    fails(&vlek, "ask_pinned", "VLEK-signed");
}

#[test]
fn vcek_chain() {
    passes(
        &real(),
        "vcek_chain",
        "\"ARK-Milan\" → \"SEV-Milan\" → \"SEV-VCEK\"",
    );
    let mut none = real();
    none.vek = None;
    fails(&none, "vcek_chain", "no VCEK supplied");
    let mut forged = real();
    forged.vek = Some(own_milan_chain(&milan_report().chip_id, [3, 0, 8, 115]).vcek);
    fails(&forged, "vcek_chain", "ASK does not sign the VCEK");
}

#[test]
fn report_signature() {
    passes(&real(), "report_signature", "verifies");
    fails(
        &real().report(|r| r.measurement[0] ^= 1),
        "report_signature",
        "does not sign this report",
    );
    let mut none = real();
    none.vek = None;
    fails(&none, "report_signature", "no usable VCEK public key");
}

#[test]
fn vcek_tcb() {
    passes(&real(), "vcek_tcb", "hwID matches chip_id");
    fails(&real().report(|r| r.chip_id[5] ^= 1), "vcek_tcb", "hwID");
    fails(
        &real().report(|r| r.reported_tcb ^= 1 << 48),
        "vcek_tcb",
        "issued for TCB",
    );
}

#[test]
fn min_tcb() {
    not_configured(&real(), "min_tcb");
    let min = |microcode| {
        real().policy(|p| {
            p.min_tcb = Some(MinTcb {
                snp: 8,
                microcode,
                ..MinTcb::default()
            })
        })
    };
    passes(&min(115), "min_tcb", "meets the minimum");
    fails(&min(200), "min_tcb", "microcode 115 < 200");
}

#[test]
fn guest_svn() {
    not_configured(&real(), "guest_svn");
    let svn = milan_report().guest_svn;
    let min = |m| real().policy(|p| p.min_guest_svn = Some(m));
    passes(&min(svn), "guest_svn", ">=");
    fails(
        &min(svn + 1),
        "guest_svn",
        &format!("guest_svn {svn} < {}", svn + 1),
    );
}

#[test]
fn debug() {
    passes(&real(), "debug", "disallowed");
    fails(&real().report(|r| r.policy |= 1 << 19), "debug", "bit 19");
}

#[test]
fn migration_agent() {
    passes(&real(), "migration_agent", "no migration agent");
    fails(
        &real().report(|r| r.policy |= 1 << 18),
        "migration_agent",
        "bit 18",
    );
}

#[test]
fn smt() {
    passes(
        &real(),
        "smt",
        "SMT allowed by the verifier policy (platform SMT on)",
    );
    let forbidden = || real().policy(|p| p.smt = SmtRule::Forbidden);
    fails(&forbidden(), "smt", "the platform reports SMT enabled");
    let off = forbidden().report(|r| {
        r.platform_info &= !1;
        r.policy &= !(1 << 16);
    });
    passes(&off, "smt", "SMT off on the platform");
}

#[test]
fn vmpl() {
    passes(&real(), "vmpl", "requested at VMPL 0");
    fails(
        &real().report(|r| r.vmpl = 1),
        "vmpl",
        "the policy requires VMPL 0",
    );
}

/// A check of a 48-byte report field against a policy allow-list: not configured without a list, passes with
/// the report's value listed, fails with only another value listed.
#[track_caller]
fn allow_list(name: &str, set: fn(&mut Policy, Vec<String>), have: [u8; 48], listed: &str) {
    not_configured(&real(), name);
    let allow = |v: [u8; 48]| real().policy(|p| set(p, vec![hex::encode(v)]));
    passes(&allow(have), name, listed);
    fails(&allow([0x22; 48]), name, "is not in the allow-list");
}

#[test]
fn measurement() {
    let have = milan_report().measurement;
    allow_list(
        "measurement",
        |p, l| p.measurements = l,
        have,
        "is in the allow-list",
    );
}

#[test]
fn host_data() {
    not_configured(&real(), "host_data");
    let expect = |h: [u8; 32]| real().policy(|p| p.host_data = Some(hex::encode(h)));
    passes(&expect(milan_report().host_data), "host_data", "matches");
    fails(&expect([0x11; 32]), "host_data", "is not the expected 1111");
}

#[test]
fn id_key_digest() {
    let have = milan_report().id_key_digest;
    allow_list("id_key_digest", |p, l| p.id_key_digests = l, have, "is allowed");
}

#[test]
fn author_key_digest() {
    not_configured(&real(), "author_key_digest");
    let allow = |d: [u8; 48]| real().policy(|p| p.author_key_digests = vec![hex::encode(d)]);
    let digest = milan_report().author_key_digest;
    // The sample has no author key (AUTHOR_KEY_EN 0): a policy that wants one fails it.
    fails(&allow(digest), "author_key_digest", "AUTHOR_KEY_EN is 0");
    let enabled = |d| allow(d).report(|r| r.key_info |= 1);
    passes(&enabled(digest), "author_key_digest", "is allowed");
    fails(
        &enabled([0x33; 48]),
        "author_key_digest",
        "is not in the allow-list",
    );
}

#[test]
fn report_data() {
    not_configured(&real(), "report_data");
    let mut bound = real();
    bound.expected_report_data = Some(milan_report().report_data);
    passes(&bound, "report_data", "equals the expected binding");
    bound.expected_report_data = Some([7; 64]);
    fails(&bound, "report_data", "wrong nonce, key or configuration");
}
