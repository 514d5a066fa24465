//! The crate's error type.

/// Everything that can go wrong parsing, building, signing or verifying a data item, or loading a wallet.
#[derive(Debug, thiserror::Error)]
pub enum Ans104Error {
    /// The input ends before a field that the layout (or a length read from it) says is there.
    #[error("data item truncated: {field} needs {needed} bytes at offset {offset}, only {available} left")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Byte offset of the field in the item.
        offset: usize,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the input.
        available: usize,
    },
    /// The signature type is not one this crate verifies (1 Arweave, 2 ed25519, 3 Ethereum).
    #[error("unsupported signature type {0}")]
    UnsupportedSignatureType(u16),
    /// A target/anchor presence byte is neither 0 nor 1.
    #[error("{field} presence byte is {value}, expected 0 or 1")]
    BadPresenceFlag {
        /// `target` or `anchor`.
        field: &'static str,
        /// The byte found.
        value: u8,
    },
    /// More tags than ANS-104 allows (128).
    #[error("{0} tags, at most {max} allowed", max = crate::MAX_TAGS)]
    TooManyTags(u64),
    /// The encoded tags are longer than arbundles accepts (4096 bytes).
    #[error("{0} tag bytes, at most {max} allowed", max = crate::MAX_TAG_BYTES)]
    TagBytesTooLong(u64),
    /// The tag count in the header differs from the number of tags encoded.
    #[error("header says {declared} tags, the tag bytes hold {decoded}")]
    TagCountMismatch {
        /// Count from the header.
        declared: u64,
        /// Tags actually decoded.
        decoded: u64,
    },
    /// A tag name is longer than 1024 bytes.
    #[error("tag name of {0} bytes, at most {max} allowed", max = crate::MAX_TAG_NAME)]
    TagNameTooLong(u64),
    /// A tag value is longer than 3072 bytes.
    #[error("tag value of {0} bytes, at most {max} allowed", max = crate::MAX_TAG_VALUE)]
    TagValueTooLong(u64),
    /// The Avro tag encoding is malformed (bad varint, negative length, trailing bytes, ...).
    #[error("malformed tag encoding: {0}")]
    BadTagEncoding(&'static str),
    /// A target given for signing is not 32 bytes of base64url.
    #[error("target must be 32 bytes of base64url: {0}")]
    BadTarget(String),
    /// An anchor given for signing is not exactly 32 bytes.
    #[error("anchor must be exactly 32 bytes, got {0}")]
    BadAnchor(usize),
    /// The owner is not a usable public key for its signature type.
    #[error("invalid owner public key: {0}")]
    BadOwner(&'static str),
    /// The signature does not verify against the owner over the item's deep hash.
    #[error("signature does not verify")]
    InvalidSignature,
    /// A signer produced a signature of the wrong length for its type.
    #[error("signer returned {got} signature bytes, type needs {expected}")]
    BadSignatureLength {
        /// Length the signature type requires.
        expected: usize,
        /// Length returned.
        got: usize,
    },
    /// The JWK is not valid JSON or not an object.
    #[error("JWK is not valid JSON: {0}")]
    JwkJson(#[from] serde_json::Error),
    /// A JWK field is missing, not base64url, or inconsistent.
    #[error("JWK field `{field}`: {reason}")]
    JwkField {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The RSA key is not a 4096-bit Arweave key.
    #[error("Arweave keys are 4096-bit RSA with e = 65537; this key has a {bits}-bit modulus")]
    KeySize {
        /// The modulus size found.
        bits: usize,
    },
    /// An RSA operation (key validation, generation, signing) failed.
    #[error("RSA: {0}")]
    Rsa(#[from] rsa::Error),
    /// AWS-LC refused a key or an operation.
    #[error("crypto: {0}")]
    Crypto(String),
    /// A secp256k1 key or signing operation failed.
    #[error("secp256k1: {0}")]
    Secp256k1(String),
}
