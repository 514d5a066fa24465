//! The only code that talks to the SEV-SNP firmware: `/dev/sev-guest` through `sev`'s guest API, at VMPL 0.
//!
//! Kept deliberately small because no machine here can run it. Outside an SNP guest every call returns
//! [`AttestError::NoTee`]; nothing is ever made up.

use std::path::Path;

use crate::AttestError;

/// The SEV-SNP guest device.
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// The VMPL ao-cu requests reports at: the most privileged level, so the report speaks for the whole guest.
pub const REPORT_VMPL: u32 = 0;

/// The kind of a certificate returned with an extended report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    /// AMD root key.
    Ark,
    /// AMD signing key.
    Ask,
    /// Versioned chip endorsement key.
    Vcek,
    /// Versioned loaded endorsement key.
    Vlek,
}

/// A raw report as the firmware returned it, with any certificates the host supplied.
#[derive(Clone, Debug)]
pub struct GuestReport {
    /// The 1184-byte report.
    pub report: Vec<u8>,
    /// DER certificates from the extended report (may be empty).
    pub certs: Vec<(CertKind, Vec<u8>)>,
}

/// Whether this machine looks like an SEV-SNP guest.
pub fn tee_present() -> bool {
    Path::new(SEV_GUEST_DEVICE).exists()
}

/// Fails with [`AttestError::NoTee`] unless `/dev/sev-guest` exists.
pub fn require_tee() -> Result<(), AttestError> {
    if tee_present() {
        Ok(())
    } else {
        Err(AttestError::NoTee(format!(
            "{SEV_GUEST_DEVICE} is not present: this node is not running in an AMD SEV-SNP guest"
        )))
    }
}

/// Requests a report binding `report_data` at VMPL 0, preferring the extended report (with the host's
/// certificates) and falling back to a plain report.
#[cfg(target_os = "linux")]
pub fn request_report(report_data: [u8; 64]) -> Result<GuestReport, AttestError> {
    use sev::firmware::guest::Firmware;
    use sev::firmware::host::CertType;

    require_tee()?;
    let mut fw =
        Firmware::open().map_err(|e| AttestError::Guest(format!("opening {SEV_GUEST_DEVICE}: {e}")))?;
    match fw.get_ext_report(None, Some(report_data), Some(REPORT_VMPL)) {
        Ok((report, table)) => {
            let certs = table
                .unwrap_or_default()
                .into_iter()
                .filter_map(|entry| {
                    let kind = match entry.cert_type {
                        CertType::ARK => CertKind::Ark,
                        CertType::ASK => CertKind::Ask,
                        CertType::VCEK => CertKind::Vcek,
                        CertType::VLEK => CertKind::Vlek,
                        _ => return None,
                    };
                    Some((kind, entry.data))
                })
                .collect();
            Ok(GuestReport { report, certs })
        }
        Err(ext_err) => {
            let report = fw
                .get_report(None, Some(report_data), Some(REPORT_VMPL))
                .map_err(|e| {
                    AttestError::Guest(format!(
                        "SNP_GET_EXT_REPORT failed ({ext_err}) and SNP_GET_REPORT failed ({e})"
                    ))
                })?;
            Ok(GuestReport {
                report,
                certs: Vec::new(),
            })
        }
    }
}

/// Requests a report: not available off Linux.
#[cfg(not(target_os = "linux"))]
pub fn request_report(_report_data: [u8; 64]) -> Result<GuestReport, AttestError> {
    Err(AttestError::NoTee(
        "SEV-SNP guests are only supported on Linux".into(),
    ))
}

/// The product of the CPU this guest runs on (from CPUID), for fetching the VCEK of a version-2 report.
pub fn host_product() -> Option<crate::report::Product> {
    match sev::Generation::identify_host_generation() {
        Ok(sev::Generation::Milan) => Some(crate::report::Product::Milan),
        Ok(sev::Generation::Genoa) => Some(crate::report::Product::Genoa),
        Ok(sev::Generation::Turin) => Some(crate::report::Product::Turin),
        _ => None,
    }
}
