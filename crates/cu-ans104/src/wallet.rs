//! Arweave wallets: RSA-4096 JWK keys, addresses, and data item signing.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::rand_core::OsRng;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BigUint, RsaPrivateKey};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::Ans104Error;
use crate::awslc::Signer;
use crate::item::create_signed;
use crate::sig::SignatureType;

/// The PSS salt length this wallet signs with. 32 (= the hash length) is what arweave-js's WebCrypto driver,
/// browser wallets and HyperBEAM use; verifiers (arbundles, Arweave nodes) recover the salt length, so
/// aoconnect's maximum-salt signatures and these both verify. (AWS-LC's `RSA_PSS_SHA256` signs with it.)
pub const SIGN_SALT_LEN: usize = 32;

/// An Arweave wallet (RSA 4096, e = 65537): the key (JWK fields, validation) and its AWS-LC signer.
#[derive(Clone)]
pub struct Wallet {
    key: RsaPrivateKey,
    signer: Arc<Signer>,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

fn b64(n: &BigUint) -> String {
    URL_SAFE_NO_PAD.encode(n.to_bytes_be())
}

fn field(jwk: &serde_json::Value, name: &'static str) -> Result<Option<BigUint>, Ans104Error> {
    match jwk.get(name) {
        None => Ok(None),
        Some(serde_json::Value::String(s)) => {
            let bytes =
                URL_SAFE_NO_PAD
                    .decode(s.trim_end_matches('='))
                    .map_err(|e| Ans104Error::JwkField {
                        field: name,
                        reason: format!("not base64url: {e}"),
                    })?;
            Ok(Some(BigUint::from_bytes_be(&bytes)))
        }
        Some(_) => Err(Ans104Error::JwkField {
            field: name,
            reason: "not a string".into(),
        }),
    }
}

fn required(jwk: &serde_json::Value, name: &'static str) -> Result<BigUint, Ans104Error> {
    field(jwk, name)?.ok_or(Ans104Error::JwkField {
        field: name,
        reason: "missing".into(),
    })
}

impl Wallet {
    /// Generate a new random wallet (RSA 4096 from the OS RNG; takes seconds).
    pub fn generate() -> Result<Self, Ans104Error> {
        let key = RsaPrivateKey::new_with_exp(&mut OsRng, 4096, &BigUint::from(65537u32))?;
        Self::from_key(key)
    }

    fn from_key(mut key: RsaPrivateKey) -> Result<Self, Ans104Error> {
        let bits = key.n().bits();
        if bits != 4096 || key.e() != &BigUint::from(65537u32) {
            return Err(Ans104Error::KeySize { bits });
        }
        key.validate()?;
        key.precompute()?;
        let signer = Arc::new(Signer::new(&key)?);
        Ok(Self { key, signer })
    }

    /// Load a JWK (`kty` RSA with `n`, `e`, `d`, `p`, `q`; `dp`, `dq`, `qi` checked when present).
    pub fn from_jwk_json(json: &str) -> Result<Self, Ans104Error> {
        let jwk: serde_json::Value = serde_json::from_str(json)?;
        if jwk.get("kty").and_then(|v| v.as_str()) != Some("RSA") {
            return Err(Ans104Error::JwkField {
                field: "kty",
                reason: "must be \"RSA\"".into(),
            });
        }
        let n = required(&jwk, "n")?;
        let e = required(&jwk, "e")?;
        let d = required(&jwk, "d")?;
        let p = required(&jwk, "p")?;
        let q = required(&jwk, "q")?;
        if &p * &q != n {
            return Err(Ans104Error::JwkField {
                field: "n",
                reason: "is not p·q".into(),
            });
        }
        let key = RsaPrivateKey::from_components(n, e, d, vec![p, q])?;
        let wallet = Self::from_key(key)?;
        let computed = wallet.crt();
        for (name, want) in [("dp", &computed.0), ("dq", &computed.1), ("qi", &computed.2)] {
            if let Some(got) = field(&jwk, name)?
                && &got != want
            {
                return Err(Ans104Error::JwkField {
                    field: name,
                    reason: "inconsistent with d, p, q".into(),
                });
            }
        }
        Ok(wallet)
    }

    /// (dp, dq, qi) computed from d, p, q.
    fn crt(&self) -> (BigUint, BigUint, BigUint) {
        let one = BigUint::from(1u32);
        let primes = self.key.primes();
        let (p, q) = (&primes[0], &primes[1]);
        let d = self.key.d();
        let dp = d % (p - &one);
        let dq = d % (q - &one);
        // qi = q^(p-2) mod p (p is prime).
        let qi = q.modpow(&(p - BigUint::from(2u32)), p);
        (dp, dq, qi)
    }

    /// The JWK JSON (fields kty, n, e, d, p, q, dp, dq, qi; base64url without padding).
    pub fn to_jwk_json(&self) -> String {
        let (dp, dq, qi) = self.crt();
        let primes = self.key.primes();
        serde_json::json!({
            "kty": "RSA",
            "n": b64(self.key.n()),
            "e": b64(self.key.e()),
            "d": b64(self.key.d()),
            "p": b64(&primes[0]),
            "q": b64(&primes[1]),
            "dp": b64(&dp),
            "dq": b64(&dq),
            "qi": b64(&qi),
        })
        .to_string()
    }

    /// The 512-byte modulus (the owner of items this wallet signs).
    pub fn owner(&self) -> Vec<u8> {
        let mut n = self.key.n().to_bytes_be();
        // 4096-bit modulus: exactly 512 bytes (checked in from_key), no padding needed.
        n.truncate(512);
        n
    }

    /// The owner, base64url (the JWK `n`).
    pub fn owner_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.owner())
    }

    /// The address: base64url(SHA-256(modulus)).
    pub fn address(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.owner()))
    }

    /// RSA-PSS-SHA-256 signature (salt [`SIGN_SALT_LEN`]) of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Ans104Error> {
        self.signer.sign(message)
    }

    /// Build and sign a data item (signature type 1). `target`: base64url of 32 bytes; `anchor`: exactly
    /// 32 bytes (e.g. a 32-character string's bytes). Returns the item's bytes.
    pub fn sign_data_item<S: AsRef<str>>(
        &self,
        data: &[u8],
        tags: &[(S, S)],
        target: Option<&str>,
        anchor: Option<&[u8]>,
    ) -> Result<Vec<u8>, Ans104Error> {
        create_signed(
            SignatureType::Arweave,
            &self.owner(),
            data,
            tags,
            target,
            anchor,
            |m| self.sign(m),
        )
    }
}
