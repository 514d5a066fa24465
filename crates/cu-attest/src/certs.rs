//! X.509 certificates of the AMD chain (ARK → ASK/ASVK → VCEK/VLEK), AMD's pinned roots, signature checks and
//! the VCEK/VLEK TCB extensions.
//!
//! Certificates are parsed with `x509-cert` (the crate `sev` uses for `crypto_nossl`). Signatures are checked
//! over the TBS bytes exactly as received (never a re-encoding). Two algorithms are accepted: RSASSA-PSS (what
//! AMD uses for ARK, ASK and VCEK certificates; hash, MGF1 hash and salt length are read from the parameters
//! and must agree) and ECDSA P-384 with SHA-384. Trust never comes from a signature alone: the verifier
//! requires the ARK to be AMD's pinned root for the product.

use p384::ecdsa::signature::Verifier as _;
use sha2::{Sha256, Sha384, Sha512};
use x509_cert::der::asn1::{Ia5StringRef, ObjectIdentifier, PrintableStringRef, Utf8StringRef};
use x509_cert::der::{Decode, Encode, EncodePem, Header, Reader, SliceReader};
use x509_cert::name::Name;

use crate::AttestError;
use crate::report::{Product, Tcb};

const OID_CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
const OID_RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const OID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");

/// VCEK/VLEK extension OIDs (AMD "VCEK Certificate and KDS Interface Specification", 57230).
mod ext {
    use super::ObjectIdentifier;
    pub const PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
    pub const BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
    pub const TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
    pub const SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
    pub const UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
    pub const FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
    pub const HWID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");
    pub const CSP_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.5");
}

/// One parsed X.509 certificate with its original DER.
#[derive(Clone, Debug)]
pub struct Cert {
    der: Vec<u8>,
    x509: x509_cert::Certificate,
}

/// What a VCEK or VLEK certificate says about the chip and TCB it was issued for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VekInfo {
    /// `productName` (for example `Milan-B0`).
    pub product_name: Option<String>,
    /// Boot loader SPL.
    pub bl_spl: Option<u8>,
    /// TEE SPL.
    pub tee_spl: Option<u8>,
    /// SNP SPL.
    pub snp_spl: Option<u8>,
    /// Microcode SPL.
    pub ucode_spl: Option<u8>,
    /// FMC SPL (Turin).
    pub fmc_spl: Option<u8>,
    /// `hwID`: the chip ID (VCEK only; 64 bytes, 8 on Turin).
    pub hwid: Option<Vec<u8>>,
    /// `csp_id` (VLEK only).
    pub csp_id: Option<String>,
}

impl VekInfo {
    /// The TCB this certificate was issued for, when all of its SPLs are present.
    pub fn tcb(&self) -> Option<Tcb> {
        Some(Tcb {
            bootloader: self.bl_spl?,
            tee: self.tee_spl?,
            snp: self.snp_spl?,
            microcode: self.ucode_spl?,
            fmc: self.fmc_spl,
        })
    }
}

fn cert_err(what: &str, e: impl std::fmt::Display) -> AttestError {
    AttestError::Certificate(format!("{what}: {e}"))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn name_cn(name: &Name) -> Option<String> {
    for rdn in name.0.iter() {
        for atv in rdn.0.iter() {
            if atv.oid != OID_CN {
                continue;
            }
            if let Ok(s) = atv.value.decode_as::<Utf8StringRef<'_>>() {
                return Some(s.as_str().to_string());
            }
            if let Ok(s) = atv.value.decode_as::<PrintableStringRef<'_>>() {
                return Some(s.as_str().to_string());
            }
            if let Ok(s) = atv.value.decode_as::<Ia5StringRef<'_>>() {
                return Some(s.as_str().to_string());
            }
        }
    }
    None
}

impl Cert {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Cert, AttestError> {
        let x509 = x509_cert::Certificate::from_der(der).map_err(|e| cert_err("invalid DER", e))?;
        Ok(Cert {
            der: der.to_vec(),
            x509,
        })
    }

    /// Parses one PEM certificate (the DER inside is kept byte for byte).
    pub fn from_pem(pem: &[u8]) -> Result<Cert, AttestError> {
        let (label, der) = x509_cert::der::pem::decode_vec(pem).map_err(|e| cert_err("invalid PEM", e))?;
        if label != "CERTIFICATE" {
            return Err(AttestError::Certificate(format!(
                "PEM block {label:?} is not a CERTIFICATE"
            )));
        }
        Cert::from_der(&der)
    }

    /// Parses a PEM bundle (one or more certificates, other blocks rejected) or a single DER certificate.
    pub fn load_all(bytes: &[u8]) -> Result<Vec<Cert>, AttestError> {
        const BEGIN: &[u8] = b"-----BEGIN ";
        const END: &[u8] = b"-----END CERTIFICATE-----";
        let trimmed = bytes.trim_ascii_start();
        if !trimmed.starts_with(BEGIN) {
            return Ok(vec![Cert::from_der(bytes)?]);
        }
        let mut certs = Vec::new();
        let mut rest = trimmed;
        while let Some(start) = find(rest, BEGIN) {
            let block = &rest[start..];
            let end = find(block, END)
                .ok_or_else(|| AttestError::Certificate("unterminated PEM block".into()))?
                + END.len();
            certs.push(Cert::from_pem(&block[..end])?);
            rest = &block[end..];
        }
        if certs.is_empty() {
            return Err(AttestError::Certificate("PEM bundle holds no certificate".into()));
        }
        Ok(certs)
    }

    /// The DER bytes as received.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// PEM text of this certificate.
    pub fn to_pem(&self) -> Result<String, AttestError> {
        self.x509
            .to_pem(x509_cert::der::pem::LineEnding::LF)
            .map_err(|e| cert_err("PEM encoding", e))
    }

    /// The subject's common name.
    pub fn subject_cn(&self) -> Option<String> {
        name_cn(&self.x509.tbs_certificate.subject)
    }

    /// The issuer's common name.
    pub fn issuer_cn(&self) -> Option<String> {
        name_cn(&self.x509.tbs_certificate.issuer)
    }

    /// Subject equals issuer (a root candidate).
    pub fn is_self_issued(&self) -> bool {
        self.x509.tbs_certificate.subject == self.x509.tbs_certificate.issuer
    }

    /// DER of the SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Result<Vec<u8>, AttestError> {
        self.x509
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| cert_err("SPKI encoding", e))
    }

    /// The TBSCertificate bytes exactly as received.
    fn tbs_bytes(&self) -> Result<&[u8], AttestError> {
        let mut r = SliceReader::new(&self.der).map_err(|e| cert_err("DER", e))?;
        let _outer = Header::decode(&mut r).map_err(|e| cert_err("DER", e))?;
        r.tlv_bytes().map_err(|e| cert_err("DER", e))
    }

    /// The product a certificate names in its subject or issuer CN (`ARK-Milan`, `SEV-Milan`,
    /// `SEV-VLEK-Genoa`, ...), if any.
    pub fn product_from_names(&self) -> Option<Product> {
        let find = |cn: Option<String>| {
            let cn = cn?;
            Product::ALL.into_iter().find(|p| cn.ends_with(p.name()))
        };
        find(self.subject_cn()).or_else(|| find(self.issuer_cn()))
    }

    /// The P-384 public key of a VCEK/VLEK.
    pub fn p384_key(&self) -> Result<p384::ecdsa::VerifyingKey, AttestError> {
        let spki = &self.x509.tbs_certificate.subject_public_key_info;
        p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
            .map_err(|e| cert_err("not an ECDSA P-384 public key", e))
    }

    /// Checks that `issuer` signed this certificate (names chain and the signature verifies).
    pub fn verify_signed_by(&self, issuer: &Cert) -> Result<(), AttestError> {
        if self.x509.tbs_certificate.issuer != issuer.x509.tbs_certificate.subject {
            return Err(AttestError::Certificate(format!(
                "issuer {:?} is not the signer's subject {:?}",
                self.issuer_cn().unwrap_or_default(),
                issuer.subject_cn().unwrap_or_default()
            )));
        }
        if self.x509.signature_algorithm != self.x509.tbs_certificate.signature {
            return Err(AttestError::Certificate(
                "outer and inner signature algorithms differ".into(),
            ));
        }
        let tbs = self.tbs_bytes()?;
        let sig = self.x509.signature.raw_bytes();
        let alg = &self.x509.signature_algorithm;
        if alg.oid == OID_RSASSA_PSS {
            let params = alg
                .parameters
                .as_ref()
                .ok_or_else(|| AttestError::Certificate("RSASSA-PSS without parameters".into()))?
                .decode_as::<rsa::pkcs1::RsaPssParams<'_>>()
                .map_err(|e| cert_err("RSASSA-PSS parameters", e))?;
            let mgf_hash = params.mask_gen.parameters.map(|p| p.oid);
            if params.mask_gen.oid != OID_MGF1 || mgf_hash != Some(params.hash.oid) {
                return Err(AttestError::Certificate(
                    "RSASSA-PSS: MGF must be MGF1 with the signature hash".into(),
                ));
            }
            let spki = issuer.spki_der()?;
            let key = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki)
                .map_err(|e| cert_err("signer key is not RSA", e))?;
            let salt = usize::from(params.salt_len);
            let signature = rsa::pss::Signature::try_from(sig).map_err(|e| cert_err("RSA signature", e))?;
            let res = match params.hash.oid {
                o if o == OID_SHA384 && salt == 48 => {
                    rsa::pss::VerifyingKey::<Sha384>::new_with_salt_len(key, salt).verify(tbs, &signature)
                }
                o if o == OID_SHA256 && salt == 32 => {
                    rsa::pss::VerifyingKey::<Sha256>::new_with_salt_len(key, salt).verify(tbs, &signature)
                }
                o if o == OID_SHA512 && salt == 64 => {
                    rsa::pss::VerifyingKey::<Sha512>::new_with_salt_len(key, salt).verify(tbs, &signature)
                }
                o => {
                    return Err(AttestError::Certificate(format!(
                        "RSASSA-PSS with hash {o} and salt {salt} is not accepted"
                    )));
                }
            };
            res.map_err(|e| cert_err("RSASSA-PSS signature does not verify", e))
        } else if alg.oid == OID_ECDSA_SHA384 {
            let spki = &issuer.x509.tbs_certificate.subject_public_key_info;
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
                .map_err(|e| cert_err("signer key is not P-384", e))?;
            let signature =
                p384::ecdsa::DerSignature::try_from(sig).map_err(|e| cert_err("ECDSA signature", e))?;
            key.verify(tbs, &signature)
                .map_err(|e| cert_err("ECDSA P-384 signature does not verify", e))
        } else {
            Err(AttestError::Certificate(format!(
                "unsupported signature algorithm {}",
                alg.oid
            )))
        }
    }

    /// Reads the AMD VCEK/VLEK extensions.
    pub fn vek_info(&self) -> VekInfo {
        let mut info = VekInfo::default();
        let Some(exts) = &self.x509.tbs_certificate.extensions else {
            return info;
        };
        for e in exts {
            let v = e.extn_value.as_bytes();
            let int = || u8::from_der(v).ok();
            match e.extn_id {
                o if o == ext::PRODUCT_NAME => {
                    info.product_name = Ia5StringRef::from_der(v).map(|s| s.as_str().to_string()).ok()
                }
                o if o == ext::BL_SPL => info.bl_spl = int(),
                o if o == ext::TEE_SPL => info.tee_spl = int(),
                o if o == ext::SNP_SPL => info.snp_spl = int(),
                o if o == ext::UCODE_SPL => info.ucode_spl = int(),
                o if o == ext::FMC_SPL => info.fmc_spl = int(),
                o if o == ext::HWID => info.hwid = Some(v.to_vec()),
                o if o == ext::CSP_ID => {
                    info.csp_id = Ia5StringRef::from_der(v).map(|s| s.as_str().to_string()).ok()
                }
                _ => {}
            }
        }
        info
    }
}

/// AMD's root (ARK) and signing (ASK) certificates for a product, as shipped inside the `sev` crate.
pub struct PinnedRoots {
    /// The product.
    pub product: Product,
    /// AMD Root Key certificate.
    pub ark: Cert,
    /// AMD SEV Signing Key certificate.
    pub ask: Cert,
    /// DER of the ARK's SubjectPublicKeyInfo, the pinned value.
    pub ark_spki: Vec<u8>,
}

impl PinnedRoots {
    /// Loads the built-in roots of `product`.
    pub fn load(product: Product) -> Result<PinnedRoots, AttestError> {
        use sev::certs::snp::builtin::{genoa, milan, turin};
        let (ark, ask) = match product {
            Product::Milan => (milan::ARK, milan::ASK),
            Product::Genoa => (genoa::ARK, genoa::ASK),
            Product::Turin => (turin::ARK, turin::ASK),
        };
        let ark = Cert::from_pem(ark)?;
        let ask = Cert::from_pem(ask)?;
        let ark_spki = ark.spki_der()?;
        Ok(PinnedRoots {
            product,
            ark,
            ask,
            ark_spki,
        })
    }

    /// Loads the roots of every product.
    pub fn load_all() -> Result<Vec<PinnedRoots>, AttestError> {
        Product::ALL.into_iter().map(PinnedRoots::load).collect()
    }
}
