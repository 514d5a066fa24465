//! `ao-cu attest verify`: the arguments and the function the binary wires as that subcommand.

use std::path::PathBuf;
use std::time::Duration;

use crate::certs::Cert;
use crate::kds::{AMD_KDS_URL, CertCache, KdsFetcher};
use crate::policy::Policy;
use crate::report::{Product, SnpReport, Tcb};
use crate::verify::{Inputs, Verdict, Verifier};

/// Arguments of `ao-cu attest verify`.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct VerifyArgs {
    /// The attestation report: 1184 raw bytes or hex.
    #[arg(long, value_name = "R")]
    pub report: PathBuf,
    /// The VCEK (or VLEK) certificate, DER or PEM. Without it the VCEK is fetched from AMD's KDS for the
    /// report's chip and reported_tcb (unless --offline).
    #[arg(long, value_name = "V.der")]
    pub vcek: Option<PathBuf>,
    /// The ASK and ARK (PEM bundle, as KDS serves cert_chain). Without it AMD's built-in roots are used.
    #[arg(long, value_name = "C.pem")]
    pub chain: Option<PathBuf>,
    /// A policy (TOML). Without it the measurement, minimum-TCB and binding checks are "not configured".
    #[arg(long, value_name = "P.toml")]
    pub policy: Option<PathBuf>,
    /// The expected report_data: 64 bytes as 128 hex characters.
    #[arg(long = "report-data", value_name = "HEX")]
    pub report_data: Option<String>,
    /// Never fetch a missing VCEK.
    #[arg(long)]
    pub offline: bool,
    /// Base URL of the key distribution service for a missing VCEK.
    #[arg(long, value_name = "URL", default_value = AMD_KDS_URL)]
    pub kds_url: String,
    /// Directory caching fetched certificates.
    #[arg(long, value_name = "DIR")]
    pub cert_cache: Option<PathBuf>,
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {what} {}: {e}", path.display()))
}

/// Runs the verifier. Returns the exit code (0 when every configured check passes, 1 otherwise) and the
/// verdict JSON for stdout.
pub fn run_verify(args: &VerifyArgs) -> (i32, String) {
    let verdict = match verify_args(args) {
        Ok(v) => v,
        Err(e) => Verdict::input_error(e),
    };
    (if verdict.ok { 0 } else { 1 }, verdict.to_json())
}

fn verify_args(args: &VerifyArgs) -> Result<Verdict, String> {
    let report = SnpReport::from_raw_or_hex(&read(&args.report, "report")?).map_err(|e| e.to_string())?;
    let chain = match &args.chain {
        Some(p) => Cert::load_all(&read(p, "chain")?).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let policy = match &args.policy {
        Some(p) => {
            let text =
                String::from_utf8(read(p, "policy")?).map_err(|_| "policy is not UTF-8".to_string())?;
            Some(
                Policy::from_toml(&text)
                    .and_then(Policy::compile)
                    .map_err(|e| e.to_string())?,
            )
        }
        None => None,
    };
    let expected_report_data = match &args.report_data {
        Some(h) => Some(
            crate::policy::hex_n::<64>("--report-data", h)
                .map_err(|e| format!("{e}; report_data is 64 bytes (128 hex characters)"))?,
        ),
        None => None,
    };
    let verifier = Verifier::new().map_err(|e| e.to_string())?;
    let mut fetch_note = None;
    let vek = match &args.vcek {
        Some(p) => {
            let certs = Cert::load_all(&read(p, "VCEK")?).map_err(|e| e.to_string())?;
            match certs.as_slice() {
                [one] => Some(one.clone()),
                _ => return Err("--vcek must hold exactly one certificate".into()),
            }
        }
        None if args.offline => None,
        None => match fetch_vcek(args, &report, &chain) {
            Ok(c) => Some(c),
            Err(e) => {
                fetch_note = Some(e);
                None
            }
        },
    };
    let mut verdict = verifier.verify(&Inputs {
        report: &report,
        vek: vek.as_ref(),
        chain: &chain,
        policy: policy.as_ref(),
        expected_report_data,
    });
    if let Some(note) = fetch_note
        && let Some(c) = verdict.checks.iter_mut().find(|c| c.name == "vcek_chain")
    {
        c.detail = format!("{}; fetching it failed: {note}", c.detail);
    }
    Ok(verdict)
}

/// Finds the product for a KDS lookup: report CPUID (v3+), else the chain's names.
fn fetch_vcek(args: &VerifyArgs, report: &SnpReport, chain: &[Cert]) -> Result<Cert, String> {
    let product = if report.has_cpuid() {
        Product::from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id).map_err(|e| e.to_string())?
    } else {
        chain.iter().find_map(Cert::product_from_names)
    };
    let product = product.ok_or(
        "cannot tell which product's KDS to ask (version-2 report, no --chain): pass --vcek or --chain",
    )?;
    let cache = match &args.cert_cache {
        Some(d) => CertCache::in_dir(d),
        None => CertCache::memory(),
    };
    let kds = KdsFetcher::new(args.kds_url.clone(), cache, Duration::from_secs(20));
    let tcb = Tcb::decode(report.reported_tcb, product);
    let der = kds
        .vcek(product, &report.chip_id, &tcb)
        .map_err(|e| e.to_string())?;
    Cert::from_der(&der).map_err(|e| e.to_string())
}
