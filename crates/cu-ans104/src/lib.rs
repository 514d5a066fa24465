//! ANS-104 data items and Arweave wallets for ao-cu.
//!
//! This is the messenger ingress of `ao-cu serve`: clients (`@permaweb/aoconnect`) POST signed ANS-104 data
//! items, and the node must parse them, verify them and read their fields; the node also signs its own items
//! (results, checkpoints) with an Arweave wallet.
//!
//! * [`DataItem`]: strict, bounded parsing of the binary layout ([`item`]), the accessors the HTTP layer needs
//!   (`id`, `owner`, `owner_address`, `target`, `anchor`, `tags`, `data`, `raw`), and [`DataItem::verify`].
//! * [`deep_hash`]: Arweave's SHA-384 deep hash, over
//!   `["dataitem", "1", type, owner, target, anchor, tag bytes, data]` for a data item.
//! * [`sig`]: signature types 1 (Arweave RSA-PSS, salt length recovered as Node/OpenSSL do), 2 (ed25519) and
//!   3 (Ethereum secp256k1, EIP-191), owner addresses (base64url SHA-256, or EIP-55 for Ethereum).
//! * [`tags`]: the Avro tag encoding, with the ANS-104 limits ([`MAX_TAGS`], [`MAX_TAG_NAME`],
//!   [`MAX_TAG_VALUE`]) and arbundles' [`MAX_TAG_BYTES`].
//! * [`Wallet`]: Arweave JWK (RSA 4096): generate, load/save JWK JSON, address, sign data items.
//! * [`EthereumSigner`]: signs data items as arbundles' `EthereumSigner` does (tests, tooling).
//!
//! RSA signing and verification run on AWS-LC ([`awslc`], constant time, about 4× faster signing and 10×
//! faster verification than the pure-Rust `rsa` crate, which still parses, validates and generates keys);
//! `k256`, `ed25519-dalek`, `sha2` and `sha3` do the rest. No OpenSSL.

pub mod awslc;
pub mod deep_hash;
pub mod error;
pub mod item;
pub mod sig;
pub mod tags;
pub mod wallet;

#[cfg(test)]
mod pss_reference;
#[cfg(test)]
mod tests;

pub use error::Ans104Error;
pub use item::{DataItem, EthereumSigner, create_signed};
pub use sig::SignatureType;
pub use wallet::Wallet;

/// Most tags a data item may carry (ANS-104).
pub const MAX_TAGS: usize = 128;
/// Longest tag name in bytes (ANS-104).
pub const MAX_TAG_NAME: usize = 1024;
/// Longest tag value in bytes (ANS-104).
pub const MAX_TAG_VALUE: usize = 3072;
/// Longest encoded tag section in bytes (arbundles' `MAX_TAG_BYTES`; its verifier refuses longer).
pub const MAX_TAG_BYTES: usize = 4096;
