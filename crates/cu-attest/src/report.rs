//! The SEV-SNP attestation report (`ATTESTATION_REPORT`, AMD SEV-SNP ABI specification, table 23).
//!
//! [`SnpReport`] keeps every field the verifier looks at as a plain public field, plus a private copy of the
//! raw 1184 bytes so that [`SnpReport::to_bytes`] reproduces reserved bytes exactly. The report signature is
//! always checked over `to_bytes()[..0x2A0]`, so a changed field (or a changed reserved byte) changes the signed
//! bytes and breaks the signature. This differs on purpose from `sev::firmware::guest::AttestationReport`, whose
//! encoder writes zeros for reserved bytes: verifying over a re-encoding would accept a report whose reserved
//! bytes were altered.

use serde::Serialize;
use serde_json::{Value, json};

use crate::AttestError;

/// Length of a raw attestation report.
pub const REPORT_LEN: usize = 1184;
/// Bytes `0..SIGNED_LEN` are covered by the report signature.
pub const SIGNED_LEN: usize = 0x2A0;
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384, the only algorithm defined.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// An AMD EPYC generation with SEV-SNP, each with its own AMD root key (ARK) and signing key (ASK).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub enum Product {
    /// Third generation EPYC (family 19h, models 00h-0Fh).
    Milan,
    /// Fourth generation EPYC (family 19h, models 10h-1Fh and A0h-AFh).
    Genoa,
    /// Fifth generation EPYC (family 1Ah, models 00h-11h).
    Turin,
}

impl Product {
    /// Every product this crate has pinned AMD roots for.
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD's key distribution service and certificates use ("Milan", "Genoa", "Turin").
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// Parses a product name; a stepping suffix such as `Milan-B0` (the VCEK `productName`) is accepted.
    pub fn from_name(name: &str) -> Option<Product> {
        let base = name.split('-').next().unwrap_or(name).trim();
        Product::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(base))
    }

    /// Identifies the product from CPUID family and model (report version 3 and later).
    ///
    /// `Ok(None)` when the family/model is SEV-SNP capable but has no pinned roots here (for example Venice).
    pub fn from_cpuid(family: u8, model: u8) -> Result<Option<Product>, AttestError> {
        match sev::Generation::identify_cpu(family, model) {
            Ok(sev::Generation::Milan) => Ok(Some(Product::Milan)),
            Ok(sev::Generation::Genoa) => Ok(Some(Product::Genoa)),
            Ok(sev::Generation::Turin) => Ok(Some(Product::Turin)),
            Ok(_) => Ok(None),
            Err(e) => Err(AttestError::Report(format!(
                "CPUID family {family:#x} model {model:#x}: {e}"
            ))),
        }
    }

    /// Whether the TCB_VERSION layout of this product has the Turin `FMC` field.
    pub fn has_fmc(self) -> bool {
        matches!(self, Product::Turin)
    }

    /// The length of the hardware ID AMD's KDS expects for this product (Turin uses the first 8 bytes).
    pub fn hwid_len(self) -> usize {
        if self.has_fmc() { 8 } else { 64 }
    }
}

impl std::fmt::Display for Product {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A decoded TCB_VERSION: the security patch levels (SPL) of each firmware component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tcb {
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// CPU microcode SPL.
    pub microcode: u8,
    /// Firmware mask ROM (FMC) SPL; Turin and later only.
    pub fmc: Option<u8>,
}

impl Tcb {
    /// Decodes a raw little-endian TCB_VERSION with the layout of `product`.
    ///
    /// Milan/Genoa: byte 0 boot loader, 1 TEE, 6 SNP, 7 microcode. Turin: 0 FMC, 1 boot loader, 2 TEE, 3 SNP,
    /// 7 microcode.
    pub fn decode(raw: u64, product: Product) -> Tcb {
        let b = raw.to_le_bytes();
        if product.has_fmc() {
            Tcb {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            }
        } else {
            Tcb {
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
                fmc: None,
            }
        }
    }

    /// Encodes this TCB with the layout of `product` (reserved bytes zero).
    pub fn encode(&self, product: Product) -> u64 {
        let mut b = [0u8; 8];
        if product.has_fmc() {
            b[0] = self.fmc.unwrap_or(0);
            b[1] = self.bootloader;
            b[2] = self.tee;
            b[3] = self.snp;
        } else {
            b[0] = self.bootloader;
            b[1] = self.tee;
            b[6] = self.snp;
        }
        b[7] = self.microcode;
        u64::from_le_bytes(b)
    }

    /// JSON form used in verdicts.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "bootloader": self.bootloader,
            "tee": self.tee,
            "snp": self.snp,
            "microcode": self.microcode,
        });
        if let (Some(fmc), Some(obj)) = (self.fmc, v.as_object_mut()) {
            obj.insert("fmc".into(), json!(fmc));
        }
        v
    }
}

/// A firmware version as reported (major.minor.build).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FwVersion {
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Build number.
    pub build: u8,
}

/// A parsed SEV-SNP attestation report. Offsets are those of the AMD ABI specification; see
/// `docs/attestation.md` for the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnpReport {
    /// 0x000 VERSION (2, 3 or 5 seen in the field).
    pub version: u32,
    /// 0x004 GUEST_SVN.
    pub guest_svn: u32,
    /// 0x008 POLICY, the guest policy given at launch.
    pub policy: u64,
    /// 0x010 FAMILY_ID from the ID block.
    pub family_id: [u8; 16],
    /// 0x020 IMAGE_ID from the ID block.
    pub image_id: [u8; 16],
    /// 0x030 VMPL the report was requested at.
    pub vmpl: u32,
    /// 0x034 SIGNATURE_ALGO.
    pub sig_algo: u32,
    /// 0x038 CURRENT_TCB (raw; decode with [`Tcb::decode`]).
    pub current_tcb: u64,
    /// 0x040 PLATFORM_INFO.
    pub platform_info: u64,
    /// 0x048 AUTHOR_KEY_EN (bit 0), MASK_CHIP_KEY (bit 1), SIGNING_KEY (bits 4:2).
    pub key_info: u32,
    /// 0x050 REPORT_DATA supplied by the guest.
    pub report_data: [u8; 64],
    /// 0x090 MEASUREMENT, the launch digest.
    pub measurement: [u8; 48],
    /// 0x0C0 HOST_DATA supplied by the hypervisor at launch.
    pub host_data: [u8; 32],
    /// 0x0E0 ID_KEY_DIGEST (SHA-384 of the ID block public key).
    pub id_key_digest: [u8; 48],
    /// 0x110 AUTHOR_KEY_DIGEST.
    pub author_key_digest: [u8; 48],
    /// 0x140 REPORT_ID.
    pub report_id: [u8; 32],
    /// 0x160 REPORT_ID_MA (migration agent).
    pub report_id_ma: [u8; 32],
    /// 0x180 REPORTED_TCB, the TCB the signing VCEK was derived for.
    pub reported_tcb: u64,
    /// 0x188 CPUID family (version 3+; 0 before).
    pub cpuid_fam_id: u8,
    /// 0x189 CPUID model (version 3+; 0 before).
    pub cpuid_mod_id: u8,
    /// 0x18A CPUID stepping (version 3+; 0 before).
    pub cpuid_step: u8,
    /// 0x1A0 CHIP_ID (zero when MaskChipId is set).
    pub chip_id: [u8; 64],
    /// 0x1E0 COMMITTED_TCB.
    pub committed_tcb: u64,
    /// 0x1E8 current firmware version.
    pub current_version: FwVersion,
    /// 0x1EC committed firmware version.
    pub committed_version: FwVersion,
    /// 0x1F0 LAUNCH_TCB.
    pub launch_tcb: u64,
    /// 0x1F8 LAUNCH_MIT_VECTOR (version 5+).
    pub launch_mit_vector: u64,
    /// 0x200 CURRENT_MIT_VECTOR (version 5+).
    pub current_mit_vector: u64,
    /// 0x2A0 signature R, little-endian, zero-extended to 72 bytes.
    pub signature_r: [u8; 72],
    /// 0x2E8 signature S, little-endian, zero-extended to 72 bytes.
    pub signature_s: [u8; 72],
    raw: Box<[u8; REPORT_LEN]>,
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[off..off + N]);
    out
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

impl SnpReport {
    /// Parses exactly [`REPORT_LEN`] raw bytes. Only the length and a version of at least 2 are required
    /// here; every other property is a verifier check.
    pub fn from_bytes(bytes: &[u8]) -> Result<SnpReport, AttestError> {
        if bytes.len() != REPORT_LEN {
            return Err(AttestError::Report(format!(
                "a report is {REPORT_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let b = bytes;
        let version = u32_at(b, 0x00);
        if version < 2 {
            return Err(AttestError::Report(format!(
                "report version {version} is not an SEV-SNP report (need 2 or later)"
            )));
        }
        let fw = |off: usize| FwVersion {
            build: b[off],
            minor: b[off + 1],
            major: b[off + 2],
        };
        let raw: Box<[u8; REPORT_LEN]> = Box::new(arr(b, 0));
        Ok(SnpReport {
            version,
            guest_svn: u32_at(b, 0x04),
            policy: u64_at(b, 0x08),
            family_id: arr(b, 0x10),
            image_id: arr(b, 0x20),
            vmpl: u32_at(b, 0x30),
            sig_algo: u32_at(b, 0x34),
            current_tcb: u64_at(b, 0x38),
            platform_info: u64_at(b, 0x40),
            key_info: u32_at(b, 0x48),
            report_data: arr(b, 0x50),
            measurement: arr(b, 0x90),
            host_data: arr(b, 0xC0),
            id_key_digest: arr(b, 0xE0),
            author_key_digest: arr(b, 0x110),
            report_id: arr(b, 0x140),
            report_id_ma: arr(b, 0x160),
            reported_tcb: u64_at(b, 0x180),
            cpuid_fam_id: b[0x188],
            cpuid_mod_id: b[0x189],
            cpuid_step: b[0x18A],
            chip_id: arr(b, 0x1A0),
            committed_tcb: u64_at(b, 0x1E0),
            current_version: fw(0x1E8),
            committed_version: fw(0x1EC),
            launch_tcb: u64_at(b, 0x1F0),
            launch_mit_vector: u64_at(b, 0x1F8),
            current_mit_vector: u64_at(b, 0x200),
            signature_r: arr(b, 0x2A0),
            signature_s: arr(b, 0x2E8),
            raw,
        })
    }

    /// Parses a report given as raw bytes or as hex text (whitespace ignored).
    pub fn from_raw_or_hex(input: &[u8]) -> Result<SnpReport, AttestError> {
        if input.len() == REPORT_LEN {
            return SnpReport::from_bytes(input);
        }
        let text: Vec<u8> = input
            .iter()
            .copied()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let text = text.strip_prefix(b"0x").unwrap_or(text.as_slice()).to_vec();
        match hex::decode(&text) {
            Ok(bytes) => SnpReport::from_bytes(&bytes),
            Err(_) => Err(AttestError::Report(format!(
                "report is neither {REPORT_LEN} raw bytes nor hex ({} bytes read)",
                input.len()
            ))),
        }
    }

    /// Serializes the report: the fields over the original bytes, so reserved bytes are kept as received.
    pub fn to_bytes(&self) -> [u8; REPORT_LEN] {
        let mut b = *self.raw;
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0x00, &self.version.to_le_bytes());
        put(0x04, &self.guest_svn.to_le_bytes());
        put(0x08, &self.policy.to_le_bytes());
        put(0x10, &self.family_id);
        put(0x20, &self.image_id);
        put(0x30, &self.vmpl.to_le_bytes());
        put(0x34, &self.sig_algo.to_le_bytes());
        put(0x38, &self.current_tcb.to_le_bytes());
        put(0x40, &self.platform_info.to_le_bytes());
        put(0x48, &self.key_info.to_le_bytes());
        put(0x50, &self.report_data);
        put(0x90, &self.measurement);
        put(0xC0, &self.host_data);
        put(0xE0, &self.id_key_digest);
        put(0x110, &self.author_key_digest);
        put(0x140, &self.report_id);
        put(0x160, &self.report_id_ma);
        put(0x180, &self.reported_tcb.to_le_bytes());
        put(0x188, &[self.cpuid_fam_id, self.cpuid_mod_id, self.cpuid_step]);
        put(0x1A0, &self.chip_id);
        put(0x1E0, &self.committed_tcb.to_le_bytes());
        let v = self.current_version;
        put(0x1E8, &[v.build, v.minor, v.major]);
        let v = self.committed_version;
        put(0x1EC, &[v.build, v.minor, v.major]);
        put(0x1F0, &self.launch_tcb.to_le_bytes());
        put(0x1F8, &self.launch_mit_vector.to_le_bytes());
        put(0x200, &self.current_mit_vector.to_le_bytes());
        put(0x2A0, &self.signature_r);
        put(0x2E8, &self.signature_s);
        b
    }

    /// Policy bit 16: the guest may run with SMT enabled on the host.
    pub fn policy_smt_allowed(&self) -> bool {
        self.policy & (1 << 16) != 0
    }

    /// Policy bit 18: association with a migration agent is allowed.
    pub fn policy_migrate_ma_allowed(&self) -> bool {
        self.policy & (1 << 18) != 0
    }

    /// Policy bit 19: debugging (host reads of guest memory) is allowed.
    pub fn policy_debug_allowed(&self) -> bool {
        self.policy & (1 << 19) != 0
    }

    /// Policy bit 20: the guest may only be activated on one socket.
    pub fn policy_single_socket(&self) -> bool {
        self.policy & (1 << 20) != 0
    }

    /// Platform info bit 0: SMT is enabled on the platform.
    pub fn platform_smt_enabled(&self) -> bool {
        self.platform_info & 1 != 0
    }

    /// Platform info bit 1: TSME is enabled on the platform.
    pub fn platform_tsme_enabled(&self) -> bool {
        self.platform_info & 2 != 0
    }

    /// Key info bit 0: AUTHOR_KEY_EN.
    pub fn author_key_en(&self) -> bool {
        self.key_info & 1 != 0
    }

    /// Key info bit 1: MASK_CHIP_KEY (firmware wrote zeros instead of a signature).
    pub fn mask_chip_key(&self) -> bool {
        self.key_info & 2 != 0
    }

    /// Key info bits 4:2: the key that signed the report (0 VCEK, 1 VLEK, 7 none).
    pub fn signing_key(&self) -> u32 {
        (self.key_info >> 2) & 0x7
    }

    /// Whether the CPUID fields are present (report version 3 and later).
    pub fn has_cpuid(&self) -> bool {
        self.version >= 3
    }

    /// A JSON summary of the fields a client cares about, hex-encoded.
    pub fn summary(&self, product: Option<Product>) -> Value {
        let mut v = json!({
            "version": self.version,
            "guest_svn": self.guest_svn,
            "policy": format!("{:#x}", self.policy),
            "vmpl": self.vmpl,
            "signing_key": match self.signing_key() { 0 => "vcek", 1 => "vlek", 7 => "none", _ => "reserved" },
            "platform_info": format!("{:#x}", self.platform_info),
            "measurement": hex::encode(self.measurement),
            "report_data": hex::encode(self.report_data),
            "host_data": hex::encode(self.host_data),
            "id_key_digest": hex::encode(self.id_key_digest),
            "author_key_digest": hex::encode(self.author_key_digest),
            "family_id": hex::encode(self.family_id),
            "image_id": hex::encode(self.image_id),
            "chip_id": hex::encode(self.chip_id),
            "reported_tcb_raw": format!("{:016x}", self.reported_tcb),
            "current_tcb_raw": format!("{:016x}", self.current_tcb),
            "committed_tcb_raw": format!("{:016x}", self.committed_tcb),
            "launch_tcb_raw": format!("{:016x}", self.launch_tcb),
        });
        if let (Some(p), Some(obj)) = (product, v.as_object_mut()) {
            obj.insert("reported_tcb".into(), Tcb::decode(self.reported_tcb, p).to_json());
            obj.insert("current_tcb".into(), Tcb::decode(self.current_tcb, p).to_json());
            obj.insert(
                "committed_tcb".into(),
                Tcb::decode(self.committed_tcb, p).to_json(),
            );
        }
        v
    }
}
