//! RSA-4096 through AWS-LC: the signing and verification hot path of every Arweave-signed data item.
//!
//! The SU signs one assignment per scheduled message, in series per process (each assignment's hash chain
//! names the previous one), and the MU verifies every posted item: with the pure-Rust `rsa` crate these were
//! 10–23 ms and about 1 ms per item. AWS-LC's constant-time RSA (Montgomery arithmetic in assembly, AVX-512
//! IFMA where the CPU has it) signs in about 2.5–3.7 ms and verifies in about 0.1 ms on the same machine
//! (`cargo bench -p cu-bench --bench rsa`).
//!
//! * [`Signer`]: an `aws_lc_rs` RSA key pair built from the wallet's key, signing RSA-PSS-SHA-256 with a
//!   32-byte salt (`RSA_PSS_SHA256`: salt length = hash length).
//! * [`verify_pss_sha256_any_salt`]: RSA-PSS-SHA-256 verification with the salt length *recovered* from the
//!   signature (`RSA_PSS_SALTLEN_AUTO`), which `aws_lc_rs`'s safe API does not offer (it fixes the salt to
//!   the hash length), so this calls AWS-LC's `RSA_verify_pss_mgf1` through `aws-lc-sys`. aoconnect signs
//!   with Node's default, the maximum salt (478 bytes for a 4096-bit key); browser wallets with 32.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PSS_SHA256;
use rsa::RsaPrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;

use crate::Ans104Error;

/// An RSA key pair held by AWS-LC, for signing.
pub struct Signer {
    pair: KeyPair,
    rng: SystemRandom,
}

impl Signer {
    /// The AWS-LC key pair of `key` (through its PKCS#1 DER encoding; AWS-LC checks the key again).
    pub fn new(key: &RsaPrivateKey) -> Result<Self, Ans104Error> {
        let der = key
            .to_pkcs1_der()
            .map_err(|e| Ans104Error::Crypto(format!("PKCS#1 encoding: {e}")))?;
        let pair = KeyPair::from_der(der.as_bytes())
            .map_err(|e| Ans104Error::Crypto(format!("AWS-LC refused the key: {e}")))?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// RSA-PSS-SHA-256 (MGF1-SHA-256, salt 32) signature of `message` (hashed here).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Ans104Error> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PSS_SHA256, &self.rng, message, &mut signature)
            .map_err(|_| Ans104Error::Crypto("AWS-LC RSA-PSS signing failed".into()))?;
        Ok(signature)
    }
}

/// An owned AWS-LC `RSA` public key, freed on drop.
struct PublicKey(*mut aws_lc_sys::RSA);

impl PublicKey {
    /// The public key (`modulus`, e = 65537); `None` when AWS-LC refuses it.
    fn new(modulus: &[u8]) -> Option<Self> {
        const E: [u8; 3] = [0x01, 0x00, 0x01];
        // SAFETY: every pointer passed is either valid for the length given or checked for null before use;
        // RSA_set0_key takes ownership of n and e only when it returns 1, so they are freed here otherwise.
        unsafe {
            let rsa = aws_lc_sys::RSA_new();
            if rsa.is_null() {
                return None;
            }
            let key = Self(rsa);
            let n = aws_lc_sys::BN_bin2bn(modulus.as_ptr(), modulus.len(), std::ptr::null_mut());
            let e = aws_lc_sys::BN_bin2bn(E.as_ptr(), E.len(), std::ptr::null_mut());
            if n.is_null() || e.is_null() || aws_lc_sys::RSA_set0_key(key.0, n, e, std::ptr::null_mut()) != 1
            {
                aws_lc_sys::BN_free(n);
                aws_lc_sys::BN_free(e);
                return None;
            }
            Some(key)
        }
    }
}

impl Drop for PublicKey {
    fn drop(&mut self) {
        // SAFETY: self.0 came from RSA_new and is freed exactly once.
        unsafe { aws_lc_sys::RSA_free(self.0) }
    }
}

/// Verify an RSA-PSS signature (SHA-256, MGF1-SHA-256, e = 65537, any salt length) of the message whose
/// SHA-256 is `digest`, by the key with big-endian `modulus`.
pub fn verify_pss_sha256_any_salt(
    modulus: &[u8],
    digest: &[u8; 32],
    signature: &[u8],
) -> Result<(), Ans104Error> {
    // RSA_PSS_SALTLEN_AUTO (openssl/rsa.h): on verification the salt length is recovered.
    const SALT_LEN_AUTO: std::os::raw::c_int = -2;
    if signature.len() != modulus.len() {
        return Err(Ans104Error::InvalidSignature);
    }
    let key = PublicKey::new(modulus).ok_or(Ans104Error::BadOwner("not an RSA modulus AWS-LC accepts"))?;
    // SAFETY: key.0 is a valid RSA; digest and signature are valid for the lengths passed; the EVP_MD
    // pointers are AWS-LC's static SHA-256 descriptors.
    let ok = unsafe {
        let sha256 = aws_lc_sys::EVP_sha256();
        let ok = aws_lc_sys::RSA_verify_pss_mgf1(
            key.0,
            digest.as_ptr(),
            digest.len(),
            sha256,
            sha256,
            SALT_LEN_AUTO,
            signature.as_ptr(),
            signature.len(),
        );
        if ok != 1 {
            // A refused signature leaves its reason on this thread's error queue: drop it, it is reported
            // as InvalidSignature.
            aws_lc_sys::ERR_clear_error();
        }
        ok
    };
    if ok == 1 {
        Ok(())
    } else {
        Err(Ans104Error::InvalidSignature)
    }
}
