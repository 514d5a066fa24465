//! The verifier's policy file (TOML). See `attest/policy.example.toml` for a commented example.
//!
//! Absent settings mean: VMPL must be 0, debug and migration agent must be off (these two cannot be relaxed),
//! SMT is allowed, any product with pinned roots is accepted, and the measurement, minimum-TCB, guest-SVN,
//! `host_data` and ID/author-key checks are "not configured".

use serde::Deserialize;

use crate::AttestError;
use crate::report::Product;

/// Whether the platform may run the guest with SMT (simultaneous multithreading) enabled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtRule {
    /// SMT on or off are both accepted.
    #[default]
    Allowed,
    /// The platform must report SMT disabled and the guest policy must forbid SMT.
    Forbidden,
}

/// Minimum security patch levels, compared component by component with `reported_tcb`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinTcb {
    /// Minimum boot loader SPL.
    #[serde(default)]
    pub bootloader: u8,
    /// Minimum TEE SPL.
    #[serde(default)]
    pub tee: u8,
    /// Minimum SNP firmware SPL.
    #[serde(default)]
    pub snp: u8,
    /// Minimum microcode SPL.
    #[serde(default)]
    pub microcode: u8,
    /// Minimum FMC SPL (Turin only; ignored for other products).
    #[serde(default)]
    pub fmc: u8,
}

/// A verifier policy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Accepted products; empty means every product with pinned AMD roots.
    #[serde(default)]
    pub products: Vec<Product>,
    /// The VMPL the report must have been requested at.
    #[serde(default)]
    pub vmpl: u32,
    /// SMT rule.
    #[serde(default)]
    pub smt: SmtRule,
    /// Allow-list of launch measurements (96 hex characters each). Empty: not configured.
    #[serde(default)]
    pub measurements: Vec<String>,
    /// Minimum TCB. Absent: not configured.
    #[serde(default)]
    pub min_tcb: Option<MinTcb>,
    /// Minimum guest SVN. Absent: not configured.
    #[serde(default)]
    pub min_guest_svn: Option<u32>,
    /// Expected `host_data` (64 hex characters). Absent: not configured.
    #[serde(default)]
    pub host_data: Option<String>,
    /// Allow-list of ID key digests (96 hex characters each). Empty: not configured.
    #[serde(default)]
    pub id_key_digests: Vec<String>,
    /// Allow-list of author key digests (96 hex characters each). Empty: not configured.
    #[serde(default)]
    pub author_key_digests: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            products: Vec::new(),
            vmpl: 0,
            smt: SmtRule::Allowed,
            measurements: Vec::new(),
            min_tcb: None,
            min_guest_svn: None,
            host_data: None,
            id_key_digests: Vec::new(),
            author_key_digests: Vec::new(),
        }
    }
}

fn hex_list<const N: usize>(field: &str, list: &[String]) -> Result<Vec<[u8; N]>, AttestError> {
    list.iter().map(|h| hex_n::<N>(field, h)).collect()
}

/// Decodes exactly `N` bytes of hex (surrounding white space ignored), naming `field` in the error: how the
/// policy's values are read, and how a caller reads an expected `report_data` it was given as text.
pub fn hex_n<const N: usize>(field: &str, h: &str) -> Result<[u8; N], AttestError> {
    let bytes =
        hex::decode(h.trim()).map_err(|e| AttestError::Policy(format!("{field}: invalid hex {h:?}: {e}")))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        AttestError::Policy(format!(
            "{field}: expected {N} bytes ({} hex characters), got {}",
            2 * N,
            bytes.len()
        ))
    })
}

/// A policy with its hex values decoded, ready for the verifier.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CompiledPolicy {
    /// The source policy.
    pub policy: Policy,
    /// Decoded measurement allow-list.
    pub measurements: Vec<[u8; 48]>,
    /// Decoded `host_data`.
    pub host_data: Option<[u8; 32]>,
    /// Decoded ID key digests.
    pub id_key_digests: Vec<[u8; 48]>,
    /// Decoded author key digests.
    pub author_key_digests: Vec<[u8; 48]>,
}

impl Policy {
    /// Parses a TOML policy.
    pub fn from_toml(text: &str) -> Result<Policy, AttestError> {
        toml::from_str(text).map_err(|e| AttestError::Policy(e.to_string()))
    }

    /// Decodes and checks every hex value.
    pub fn compile(self) -> Result<CompiledPolicy, AttestError> {
        Ok(CompiledPolicy {
            measurements: hex_list::<48>("measurements", &self.measurements)?,
            host_data: self
                .host_data
                .as_deref()
                .map(|h| hex_n::<32>("host_data", h))
                .transpose()?,
            id_key_digests: hex_list::<48>("id_key_digests", &self.id_key_digests)?,
            author_key_digests: hex_list::<48>("author_key_digests", &self.author_key_digests)?,
            policy: self,
        })
    }
}
