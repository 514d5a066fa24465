//! Arweave's deep hash (SHA-384), as arbundles computes it for data items.
//!
//! * a blob `b`: `SHA384(SHA384("blob" ‖ decimal(len b)) ‖ SHA384(b))`
//! * a list `[c₁ … cₙ]`: `acc₀ = SHA384("list" ‖ decimal(n))`, `accᵢ = SHA384(accᵢ₋₁ ‖ deep_hash(cᵢ))`

use sha2::{Digest, Sha384};

/// A deep-hash input: a byte string or a list of inputs.
#[derive(Debug, Clone, Copy)]
pub enum DeepHashChunk<'a> {
    /// A byte string.
    Blob(&'a [u8]),
    /// A list of chunks.
    List(&'a [DeepHashChunk<'a>]),
}

/// The 48-byte deep hash of `chunk`.
pub fn deep_hash(chunk: &DeepHashChunk<'_>) -> [u8; 48] {
    match chunk {
        DeepHashChunk::Blob(bytes) => deep_hash_blob(bytes),
        DeepHashChunk::List(items) => {
            let mut acc = sha384_tagged(b"list", items.len());
            for item in items.iter() {
                let mut h = Sha384::new();
                h.update(acc);
                h.update(deep_hash(item));
                acc = h.finalize().into();
            }
            acc
        }
    }
}

/// The deep hash of a single blob.
pub fn deep_hash_blob(bytes: &[u8]) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(sha384_tagged(b"blob", bytes.len()));
    h.update(Sha384::digest(bytes));
    h.finalize().into()
}

/// The deep hash of a list of blobs (what a data item signs).
pub fn deep_hash_blobs(blobs: &[&[u8]]) -> [u8; 48] {
    let mut acc = sha384_tagged(b"list", blobs.len());
    for blob in blobs {
        let mut h = Sha384::new();
        h.update(acc);
        h.update(deep_hash_blob(blob));
        acc = h.finalize().into();
    }
    acc
}

fn sha384_tagged(tag: &[u8], len: usize) -> [u8; 48] {
    let mut h = Sha384::new();
    h.update(tag);
    h.update(len.to_string().as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_of_blobs_equals_generic_list() {
        let a: &[u8] = b"dataitem";
        let b: &[u8] = b"";
        let c: &[u8] = &[0u8; 1000];
        let generic = deep_hash(&DeepHashChunk::List(&[
            DeepHashChunk::Blob(a),
            DeepHashChunk::Blob(b),
            DeepHashChunk::Blob(c),
        ]));
        assert_eq!(generic, deep_hash_blobs(&[a, b, c]));
    }

    #[test]
    fn blob_matches_definition() {
        // SHA384(SHA384("blob3") || SHA384("abc")), written out independently.
        let mut outer = Sha384::new();
        outer.update(Sha384::digest(b"blob3"));
        outer.update(Sha384::digest(b"abc"));
        let want: [u8; 48] = outer.finalize().into();
        assert_eq!(deep_hash_blob(b"abc"), want);
        // Lengths are decimal, not binary: a 10-byte blob is tagged "blob10".
        let mut outer = Sha384::new();
        outer.update(Sha384::digest(b"blob10"));
        outer.update(Sha384::digest([7u8; 10]));
        let want: [u8; 48] = outer.finalize().into();
        assert_eq!(deep_hash_blob(&[7u8; 10]), want);
    }

    #[test]
    fn nested_lists_differ_from_flat() {
        let x: &[u8] = b"x";
        let flat = deep_hash(&DeepHashChunk::List(&[DeepHashChunk::Blob(x)]));
        let nested = deep_hash(&DeepHashChunk::List(&[DeepHashChunk::List(&[
            DeepHashChunk::Blob(x),
        ])]));
        assert_ne!(flat, nested);
        assert_ne!(flat, deep_hash_blob(x));
    }
}
