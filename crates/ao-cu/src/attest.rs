//! `ao-cu attest verify`: the command line over `cu_attest`'s verifier.
//!
//! Reads the report (raw or hex), the VCEK, the chain and the policy named by the flags, fetches a missing
//! VCEK from AMD's key distribution service (unless `--offline`), runs [`Verifier::verify`] and prints the
//! verdict as JSON on stdout. Exit code 0 when no check failed, 1 otherwise; input that cannot be read at
//! all is a verdict with one failed `input` check (also exit 1). The procedure is `docs/attestation.md` §3.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use cu_attest::certs::Cert;
use cu_attest::kds::{AMD_KDS_URL, CertCache, KdsFetcher};
use cu_attest::policy::{Policy, hex_n};
use cu_attest::{Inputs, Product, SnpReport, Tcb, Verdict, Verifier};

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

/// Runs `ao-cu attest verify`: prints the verdict, exits 0 when no check failed and 1 otherwise.
pub fn run(args: &VerifyArgs) -> ExitCode {
    let verdict = verdict(args).unwrap_or_else(|e| Verdict::input_error(format!("{e:#}")));
    println!("{}", verdict.to_json());
    if verdict.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Reads the inputs and verifies them; an error is input that could not be read.
fn verdict(args: &VerifyArgs) -> Result<Verdict> {
    let report = SnpReport::from_raw_or_hex(&read(&args.report, "report")?)?;
    let chain = match &args.chain {
        Some(p) => Cert::load_all(&read(p, "chain")?)?,
        None => Vec::new(),
    };
    let policy = match &args.policy {
        Some(p) => {
            let text = String::from_utf8(read(p, "policy")?).map_err(|_| anyhow!("policy is not UTF-8"))?;
            Some(Policy::from_toml(&text).and_then(Policy::compile)?)
        }
        None => None,
    };
    let expected_report_data = match &args.report_data {
        Some(h) => Some(
            hex_n::<64>("--report-data", h)
                .map_err(|e| anyhow!("{e}; report_data is 64 bytes (128 hex characters)"))?,
        ),
        None => None,
    };
    let verifier = Verifier::new()?;
    let mut fetch_note = None;
    let vek = match &args.vcek {
        Some(p) => match Cert::load_all(&read(p, "VCEK")?)?.as_slice() {
            [one] => Some(one.clone()),
            _ => bail!("--vcek must hold exactly one certificate"),
        },
        None if args.offline => None,
        None => match fetch_vcek(args, &report, &chain) {
            Ok(c) => Some(c),
            Err(e) => {
                fetch_note = Some(format!("{e:#}"));
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

/// Fetches the VCEK for the report's chip and `reported_tcb`. The product for the lookup is the report
/// CPUID's (version 3+), else the one the chain's names give.
fn fetch_vcek(args: &VerifyArgs, report: &SnpReport, chain: &[Cert]) -> Result<Cert> {
    let product = if report.has_cpuid() {
        Product::from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id)?
    } else {
        chain.iter().find_map(Cert::product_from_names)
    };
    let Some(product) = product else {
        bail!(
            "cannot tell which product's KDS to ask (version-2 report, no --chain): pass --vcek or --chain"
        );
    };
    let cache = match &args.cert_cache {
        Some(d) => CertCache::in_dir(d),
        None => CertCache::memory(),
    };
    let kds = KdsFetcher::new(args.kds_url.clone(), cache, Duration::from_secs(20));
    let tcb = Tcb::decode(report.reported_tcb, product);
    let der = kds.vcek(product, &report.chip_id, &tcb)?;
    Ok(Cert::from_der(&der)?)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cmd {
        #[command(flatten)]
        verify: VerifyArgs,
    }

    #[test]
    fn clap_parses_the_documented_command_line() {
        let cmd = Cmd::try_parse_from([
            "verify",
            "--report",
            "R",
            "--vcek",
            "V.der",
            "--chain",
            "C.pem",
            "--policy",
            "P.toml",
            "--report-data",
            "00",
        ])
        .unwrap();
        assert_eq!(cmd.verify.report, PathBuf::from("R"));
        assert_eq!(cmd.verify.vcek, Some(PathBuf::from("V.der")));
        assert_eq!(cmd.verify.report_data.as_deref(), Some("00"));
        assert!(!cmd.verify.offline);
        assert_eq!(cmd.verify.kds_url, AMD_KDS_URL);
        assert!(Cmd::try_parse_from(["verify"]).is_err(), "--report is required");
    }
}
