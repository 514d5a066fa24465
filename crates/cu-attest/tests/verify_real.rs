//! The real AMD Milan report verifies offline against the pinned roots; tampering, a wrong-product chain and
//! each policy violation are rejected, each by its own named check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers may fail loudly

mod common;

use common::*;
use cu_attest::policy::{CompiledPolicy, MinTcb, Policy, SmtRule};
use cu_attest::report::{Product, Tcb};
use cu_attest::verify::{Inputs, Status, Verdict, Verifier, verify_report_signature};
use cu_attest::{SnpReport, certs::Cert};

fn verify(
    report: &SnpReport,
    vek: Option<&Cert>,
    chain: &[Cert],
    policy: Option<&CompiledPolicy>,
    rd: Option<[u8; 64]>,
) -> Verdict {
    let verifier = Verifier::new().unwrap();
    verifier.verify(&Inputs {
        report,
        vek,
        chain,
        policy,
        expected_report_data: rd,
    })
}

fn status(v: &Verdict, name: &str) -> Status {
    v.check(name)
        .unwrap_or_else(|| panic!("no check {name} in {}", v.to_json()))
        .status
}

fn detail(v: &Verdict, name: &str) -> String {
    v.check(name).unwrap().detail.clone()
}

/// A policy the real report satisfies completely.
fn full_policy() -> CompiledPolicy {
    let r = milan_report();
    Policy {
        products: vec![Product::Milan],
        vmpl: 0,
        smt: SmtRule::Allowed,
        measurements: vec![hex::encode(r.measurement)],
        min_tcb: Some(MinTcb {
            bootloader: 3,
            tee: 0,
            snp: 8,
            microcode: 115,
            fmc: 0,
        }),
        min_guest_svn: Some(0),
        host_data: Some(hex::encode(r.host_data)),
        id_key_digests: vec![],
        author_key_digests: vec![],
    }
    .compile()
    .unwrap()
}

#[test]
fn parser_agrees_with_sev_and_round_trips() {
    use sev::parser::ByteParser;
    let bytes = milan_report_bytes();
    let ours = SnpReport::from_bytes(&bytes).unwrap();
    assert_eq!(ours.to_bytes().as_slice(), bytes.as_slice());
    let theirs = sev::firmware::guest::AttestationReport::from_bytes(&bytes).unwrap();
    assert_eq!(ours.version, theirs.version);
    assert_eq!(ours.vmpl, theirs.vmpl);
    assert_eq!(ours.measurement, theirs.measurement);
    assert_eq!(ours.report_data, theirs.report_data);
    assert_eq!(ours.chip_id, theirs.chip_id);
    assert_eq!(ours.host_data, theirs.host_data);
    assert_eq!(ours.policy, u64::from(theirs.policy));
    let t = Tcb::decode(ours.reported_tcb, Product::Milan);
    assert_eq!(
        (t.bootloader, t.tee, t.snp, t.microcode),
        (
            theirs.reported_tcb.bootloader,
            theirs.reported_tcb.tee,
            theirs.reported_tcb.snp,
            theirs.reported_tcb.microcode
        )
    );
    // Hex input (with whitespace) parses to the same report.
    let hex_text = format!("{}\n", hex::encode(&bytes));
    assert_eq!(SnpReport::from_raw_or_hex(hex_text.as_bytes()).unwrap(), ours);
    assert!(SnpReport::from_raw_or_hex(b"not a report").is_err());
    assert!(SnpReport::from_bytes(&bytes[..1000]).is_err());
}

#[test]
fn real_milan_report_verifies_offline_against_pinned_roots() {
    let r = milan_report();
    let vcek = milan_vcek();
    // With AMD's chain as KDS serves it, and with no chain (built-in roots): both pass.
    for chain in [milan_chain(), vec![]] {
        let v = verify(&r, Some(&vcek), &chain, None, None);
        assert!(v.ok, "{}", v.to_json());
        assert_eq!(v.product, Some(Product::Milan));
        for name in [
            "report_format",
            "product",
            "ark_pinned",
            "ask_pinned",
            "vcek_chain",
            "report_signature",
            "vcek_tcb",
            "debug",
            "migration_agent",
            "smt",
            "vmpl",
        ] {
            assert_eq!(status(&v, name), Status::Pass, "{name}: {}", v.to_json());
        }
        // Without a policy, these say so.
        for name in [
            "measurement",
            "min_tcb",
            "report_data",
            "host_data",
            "id_key_digest",
        ] {
            assert_eq!(status(&v, name), Status::NotConfigured, "{name}");
        }
    }
    // With a full policy and the expected report_data, every check passes.
    let v = verify(
        &r,
        Some(&vcek),
        &milan_chain(),
        Some(&full_policy()),
        Some(r.report_data),
    );
    assert!(v.ok, "{}", v.to_json());
    for name in ["measurement", "min_tcb", "report_data", "host_data", "guest_svn"] {
        assert_eq!(status(&v, name), Status::Pass, "{name}");
    }
}

#[test]
fn flipping_any_bit_of_the_signed_part_is_rejected() {
    let bytes = milan_report_bytes();
    let key = milan_vcek().p384_key().unwrap();
    let mut rejected = 0;
    for byte in 0..0x2A0 {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[byte] ^= 1 << bit;
            // A flip may make the report unparsable (version field): that is a rejection too.
            let Ok(r) = SnpReport::from_bytes(&b) else {
                rejected += 1;
                continue;
            };
            assert!(
                verify_report_signature(&r, &key).is_err(),
                "flip of byte {byte:#x} bit {bit} accepted"
            );
            rejected += 1;
        }
    }
    assert_eq!(rejected, 0x2A0 * 8);
    // And through the full verifier, a sample of flips across the fields fails the signature check only.
    let verifier = Verifier::new().unwrap();
    let vcek = milan_vcek();
    for byte in [0x50, 0x90, 0xC0, 0x1F8, 0x29F] {
        let mut b = bytes.clone();
        b[byte] ^= 0x01;
        let r = SnpReport::from_bytes(&b).unwrap();
        let v = verifier.verify(&Inputs {
            report: &r,
            vek: Some(&vcek),
            chain: &[],
            policy: None,
            expected_report_data: None,
        });
        assert!(!v.ok);
        assert_eq!(
            v.failed(),
            vec!["report_signature"],
            "byte {byte:#x}: {}",
            v.to_json()
        );
    }
    // The signature field itself: a flipped R is rejected as well.
    let mut b = bytes.clone();
    b[0x2A0] ^= 1;
    assert!(verify_report_signature(&SnpReport::from_bytes(&b).unwrap(), &key).is_err());
}

#[test]
fn wrong_product_chain_is_rejected() {
    let r = milan_report();
    let v = verify(&r, Some(&milan_vcek()), &turin_chain(), None, None);
    assert!(!v.ok);
    assert_eq!(status(&v, "product"), Status::Fail, "{}", v.to_json());
    assert!(
        detail(&v, "product").contains("disagrees"),
        "{}",
        detail(&v, "product")
    );
    assert_eq!(status(&v, "ark_pinned"), Status::Fail);
    assert!(
        detail(&v, "ark_pinned").contains("Turin"),
        "{}",
        detail(&v, "ark_pinned")
    );
    assert_eq!(status(&v, "vcek_chain"), Status::Fail);
}

#[test]
fn turin_roots_are_detected_and_pinned_too() {
    // The Turin VCEK chains to AMD's Turin roots; it did not sign the Milan report.
    let v = verify(&milan_report(), Some(&turin_vcek()), &turin_chain(), None, None);
    assert_eq!(v.product, Some(Product::Turin));
    for name in ["ark_pinned", "ask_pinned", "vcek_chain"] {
        assert_eq!(status(&v, name), Status::Pass, "{name}: {}", v.to_json());
    }
    assert_eq!(status(&v, "report_signature"), Status::Fail);
    assert_eq!(status(&v, "vcek_tcb"), Status::Fail);
    // A Turin ASK is not signed by AMD's Milan ARK.
    let turin_ask = turin_chain().into_iter().find(|c| !c.is_self_issued()).unwrap();
    let milan_ark = milan_chain().into_iter().find(|c| c.is_self_issued()).unwrap();
    assert!(turin_ask.verify_signed_by(&milan_ark).is_err());
}

#[test]
fn no_vcek_fails_the_chain_and_signature_checks() {
    let v = verify(&milan_report(), None, &[], None, None);
    assert!(!v.ok);
    // A version-2 report alone does not name its product.
    assert_eq!(status(&v, "product"), Status::Fail);
    assert_eq!(status(&v, "vcek_chain"), Status::Fail);
    assert_eq!(status(&v, "report_signature"), Status::Fail);
}

/// Changes one field of the parsed report and checks that the named check fails with its own reason (and
/// that the signature, now broken, fails too).
fn tampered(
    change: impl FnOnce(&mut SnpReport),
    policy: Option<&CompiledPolicy>,
    rd: Option<[u8; 64]>,
    check: &str,
    reason: &str,
) {
    let mut r = milan_report();
    change(&mut r);
    let v = verify(&r, Some(&milan_vcek()), &milan_chain(), policy, rd);
    assert!(!v.ok);
    assert_eq!(status(&v, check), Status::Fail, "{check}: {}", v.to_json());
    assert!(
        detail(&v, check).contains(reason),
        "{check}: {:?} lacks {reason:?}",
        detail(&v, check)
    );
    assert_eq!(status(&v, "report_signature"), Status::Fail);
    // The chain itself is still fine: the failure is attributed where it belongs.
    assert_eq!(status(&v, "vcek_chain"), Status::Pass);
}

#[test]
fn debug_bit_fails_the_debug_check() {
    tampered(|r| r.policy |= 1 << 19, None, None, "debug", "bit 19");
}

#[test]
fn migration_agent_bit_fails_its_check() {
    tampered(|r| r.policy |= 1 << 18, None, None, "migration_agent", "bit 18");
}

#[test]
fn vmpl_other_than_policy_fails_the_vmpl_check() {
    tampered(|r| r.vmpl = 1, None, None, "vmpl", "VMPL 1");
    // A policy may ask for another VMPL; then VMPL 0 fails.
    let p = Policy {
        vmpl: 2,
        ..Policy::default()
    }
    .compile()
    .unwrap();
    let v = verify(&milan_report(), Some(&milan_vcek()), &[], Some(&p), None);
    assert_eq!(status(&v, "vmpl"), Status::Fail);
    assert_eq!(status(&v, "report_signature"), Status::Pass);
}

#[test]
fn measurement_outside_the_allow_list_fails() {
    let p = full_policy();
    tampered(
        |r| r.measurement[0] ^= 0xFF,
        Some(&p),
        None,
        "measurement",
        "not in the allow-list",
    );
}

#[test]
fn low_tcb_fails_the_minimum_tcb_check() {
    let p = full_policy();
    // reported_tcb lowered to SNP SPL 7 (policy wants 8): min_tcb fails, and it no longer matches the VCEK.
    tampered(
        |r| {
            r.reported_tcb = Tcb {
                bootloader: 3,
                tee: 0,
                snp: 7,
                microcode: 115,
                fmc: None,
            }
            .encode(Product::Milan)
        },
        Some(&p),
        None,
        "min_tcb",
        "snp 7 < 8",
    );
    // The untouched report against a higher minimum fails min_tcb while its signature still verifies.
    let high = Policy {
        min_tcb: Some(MinTcb {
            microcode: 200,
            ..MinTcb::default()
        }),
        ..Policy::default()
    }
    .compile()
    .unwrap();
    let v = verify(&milan_report(), Some(&milan_vcek()), &[], Some(&high), None);
    assert_eq!(v.failed(), vec!["min_tcb"], "{}", v.to_json());
}

#[test]
fn reported_tcb_must_match_the_vcek() {
    tampered(
        |r| {
            r.reported_tcb = Tcb {
                bootloader: 3,
                tee: 0,
                snp: 9,
                microcode: 115,
                fmc: None,
            }
            .encode(Product::Milan)
        },
        None,
        None,
        "vcek_tcb",
        "issued for TCB",
    );
    tampered(|r| r.chip_id[5] ^= 1, None, None, "vcek_tcb", "hwID");
}

#[test]
fn wrong_nonce_fails_the_binding_check() {
    let r = milan_report();
    let expected = r.report_data;
    tampered(
        |r| r.report_data[63] ^= 1,
        None,
        Some(expected),
        "report_data",
        "not the expected",
    );
    // The real report with another expected value fails only the binding.
    let mut other = expected;
    other[0] ^= 1;
    let v = verify(&r, Some(&milan_vcek()), &[], None, Some(other));
    assert_eq!(v.failed(), vec!["report_data"]);
}

#[test]
fn smt_forbidden_fails_on_an_smt_platform() {
    let p = Policy {
        smt: SmtRule::Forbidden,
        ..Policy::default()
    }
    .compile()
    .unwrap();
    let v = verify(&milan_report(), Some(&milan_vcek()), &[], Some(&p), None);
    assert_eq!(v.failed(), vec!["smt"], "{}", v.to_json());
    assert!(detail(&v, "smt").contains("platform reports SMT enabled"));
}

#[test]
fn host_data_and_product_restrictions_apply() {
    let p = Policy {
        host_data: Some("11".repeat(32)),
        products: vec![Product::Genoa],
        ..Policy::default()
    }
    .compile()
    .unwrap();
    let v = verify(&milan_report(), Some(&milan_vcek()), &[], Some(&p), None);
    let mut failed = v.failed();
    failed.sort();
    assert_eq!(failed, vec!["host_data", "product"], "{}", v.to_json());
}

#[test]
fn unsigned_or_masked_reports_fail_the_format_check() {
    tampered(|r| r.key_info = 7 << 2, None, None, "report_format", "unsigned");
    tampered(
        |r| r.sig_algo = 2,
        None,
        None,
        "report_format",
        "signature algorithm 2",
    );
}

#[test]
fn certificates_parse_exactly_and_bundles_may_include_the_vcek() {
    let vcek = milan_vcek();
    assert_eq!(
        Cert::from_pem(vcek.to_pem().unwrap().as_bytes()).unwrap().der(),
        vcek.der()
    );
    let chain = milan_chain();
    assert_eq!(chain.len(), 2);
    assert!(
        chain[1].is_self_issued() && !chain[0].is_self_issued(),
        "KDS order is ASK then ARK"
    );
    assert_eq!(chain[0].subject_cn().as_deref(), Some("SEV-Milan"));
    assert_eq!(vcek.vek_info().product_name.as_deref(), Some("Milan-B0"));
    // A PEM block of another kind is refused.
    let key_block = b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    assert!(Cert::from_pem(key_block).is_err());
    // A bundle holding VCEK, ASK and ARK verifies like the separate files.
    let mut bundle = vec![vcek.clone()];
    bundle.extend(chain);
    let v = verify(&milan_report(), Some(&vcek), &bundle, None, None);
    assert!(v.ok, "{}", v.to_json());
}
