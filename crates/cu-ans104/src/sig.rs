//! Signature types: lengths, verification and owner addresses.
//!
//! * **1 Arweave**: RSA-PSS with SHA-256 and MGF1-SHA-256 over the deep hash, e = 65537, owner = the 512-byte
//!   modulus. The salt length is *recovered* from the signature (OpenSSL's `RSA_PSS_SALTLEN_AUTO`, which is
//!   what arbundles' verifier uses through Node's `crypto.verify`): aoconnect's `createDataItemSigner` signs
//!   with Node's default, the maximum salt (478 bytes for a 4096-bit key), browser wallets and arweave-js's
//!   WebCrypto driver with 32. Both, and any other length, verify.
//! * **2 ed25519**: the signature is over the 48-byte deep hash itself; owner = the 32-byte public key.
//! * **3 Ethereum**: secp256k1 ECDSA over `keccak256("\x19Ethereum Signed Message:\n48" ‖ deep_hash)`
//!   (EIP-191 `personal_sign`, what ethers' `signMessage` does in arbundles' `EthereumSigner` and
//!   `InjectedEthereumSigner`); owner = the 65-byte uncompressed public key, signature = r ‖ s ‖ v. As in
//!   arbundles (libsecp256k1 `ecdsaVerify`), `v` is ignored and high-S signatures are refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use sha3::Keccak256;

use crate::Ans104Error;

/// The signature types this crate handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureType {
    /// 1: Arweave RSA-PSS (4096-bit).
    Arweave,
    /// 2: ed25519.
    Ed25519,
    /// 3: Ethereum secp256k1 (EIP-191).
    Ethereum,
}

impl SignatureType {
    /// The type from its wire number.
    pub fn from_u16(v: u16) -> Result<Self, Ans104Error> {
        match v {
            1 => Ok(Self::Arweave),
            2 => Ok(Self::Ed25519),
            3 => Ok(Self::Ethereum),
            other => Err(Ans104Error::UnsupportedSignatureType(other)),
        }
    }

    /// The wire number.
    pub fn as_u16(self) -> u16 {
        match self {
            Self::Arweave => 1,
            Self::Ed25519 => 2,
            Self::Ethereum => 3,
        }
    }

    /// Signature length in bytes.
    pub fn signature_len(self) -> usize {
        match self {
            Self::Arweave => 512,
            Self::Ed25519 => 64,
            Self::Ethereum => 65,
        }
    }

    /// Owner (public key) length in bytes.
    pub fn owner_len(self) -> usize {
        match self {
            Self::Arweave => 512,
            Self::Ed25519 => 32,
            Self::Ethereum => 65,
        }
    }
}

/// Verify `signature` by `owner` over the deep hash `message`.
pub fn verify(ty: SignatureType, owner: &[u8], message: &[u8], signature: &[u8]) -> Result<(), Ans104Error> {
    match ty {
        SignatureType::Arweave => verify_rsa_pss_sha256(owner, message, signature),
        SignatureType::Ed25519 => {
            let key: &[u8; 32] = owner
                .try_into()
                .map_err(|_| Ans104Error::BadOwner("ed25519 key must be 32 bytes"))?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(key)
                .map_err(|_| Ans104Error::BadOwner("not an ed25519 point"))?;
            let sig =
                ed25519_dalek::Signature::from_slice(signature).map_err(|_| Ans104Error::InvalidSignature)?;
            key.verify_strict(message, &sig)
                .map_err(|_| Ans104Error::InvalidSignature)
        }
        SignatureType::Ethereum => verify_ethereum(owner, message, signature),
    }
}

/// `keccak256("\x19Ethereum Signed Message:\n" ‖ decimal(len) ‖ message)` (EIP-191 version 0x45).
pub fn eip191_hash(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n");
    h.update(message.len().to_string().as_bytes());
    h.update(message);
    h.finalize().into()
}

fn verify_ethereum(owner: &[u8], message: &[u8], signature: &[u8]) -> Result<(), Ans104Error> {
    use k256::ecdsa::signature::hazmat::PrehashVerifier;
    if owner.len() != 65 || owner[0] != 0x04 {
        return Err(Ans104Error::BadOwner(
            "Ethereum owner must be a 65-byte uncompressed secp256k1 key",
        ));
    }
    let key = k256::ecdsa::VerifyingKey::from_sec1_bytes(owner)
        .map_err(|_| Ans104Error::BadOwner("not a secp256k1 point"))?;
    let rs = signature.get(..64).ok_or(Ans104Error::InvalidSignature)?;
    let sig = k256::ecdsa::Signature::from_slice(rs).map_err(|_| Ans104Error::InvalidSignature)?;
    // k256 refuses high-S signatures here, as libsecp256k1's ecdsaVerify does.
    key.verify_prehash(&eip191_hash(message), &sig)
        .map_err(|_| Ans104Error::InvalidSignature)
}

/// RSA-PSS (SHA-256, MGF1-SHA-256, e = 65537) verification with the salt length recovered from the
/// encoded message (RFC 8017 §9.1.2 with sLen taken from the position of the 0x01 separator, OpenSSL's
/// `RSA_PSS_SALTLEN_AUTO`), through AWS-LC ([`crate::awslc`]). Moduli under 1024 bits are refused.
pub fn verify_rsa_pss_sha256(modulus: &[u8], message: &[u8], signature: &[u8]) -> Result<(), Ans104Error> {
    let leading_zero_bits = modulus
        .iter()
        .position(|&b| b != 0)
        .map_or(modulus.len() * 8, |i| i * 8 + modulus[i].leading_zeros() as usize);
    if modulus.len() * 8 - leading_zero_bits < 1024 {
        return Err(Ans104Error::BadOwner("RSA modulus too small"));
    }
    let digest: [u8; 32] = Sha256::digest(message).into();
    crate::awslc::verify_pss_sha256_any_salt(modulus, &digest, signature)
}

/// The address of an owner key, as the ao CU and SU derive it: Ethereum (65-byte key) → EIP-55 `0x…` of the
/// last 20 bytes of `keccak256(key[1..])`; otherwise base64url(SHA-256(key)) (the Arweave address for an RSA
/// modulus; the same rule the ao SU applies to ed25519 keys).
pub fn owner_address(ty: SignatureType, owner: &[u8]) -> String {
    match ty {
        SignatureType::Ethereum if owner.len() == 65 => ethereum_address(owner),
        _ => URL_SAFE_NO_PAD.encode(Sha256::digest(owner)),
    }
}

/// EIP-55 checksummed address of a 65-byte uncompressed secp256k1 key.
pub fn ethereum_address(uncompressed: &[u8]) -> String {
    let body = uncompressed.get(1..).unwrap_or_default();
    let hash = Keccak256::digest(body);
    let lower: String = hash[12..].iter().map(|b| format!("{b:02x}")).collect();
    let check = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (check[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_known_vector() {
        // The well-known test key 0x4c0883a6…: its address is 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23.
        let sk = k256::ecdsa::SigningKey::from_slice(&hex_decode(
            "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318",
        ))
        .unwrap();
        let pk = sk.verifying_key().to_encoded_point(false);
        assert_eq!(
            ethereum_address(pk.as_bytes()),
            "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
        );
    }

    #[test]
    fn eip191_prefix() {
        let mut h = Keccak256::new();
        h.update(b"\x19Ethereum Signed Message:\n5hello");
        let want: [u8; 32] = h.finalize().into();
        assert_eq!(eip191_hash(b"hello"), want);
    }

    #[test]
    fn signature_type_numbers() {
        for ty in [
            SignatureType::Arweave,
            SignatureType::Ed25519,
            SignatureType::Ethereum,
        ] {
            assert_eq!(SignatureType::from_u16(ty.as_u16()).unwrap(), ty);
        }
        assert!(matches!(
            SignatureType::from_u16(4),
            Err(Ans104Error::UnsupportedSignatureType(4))
        ));
    }

    fn hex_decode(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
