//! The ANS-104 data item: binary layout, parsing, accessors, verification and assembly.
//!
//! ```text
//! signature type   u16 LE
//! signature        (length by type)
//! owner            (length by type)
//! target           u8 presence (0|1) [+ 32 bytes]
//! anchor           u8 presence (0|1) [+ 32 bytes]
//! number of tags   u64 LE
//! tag bytes length u64 LE
//! tags             Avro (see `tags`)
//! data             the rest
//! ```
//! The signature covers `deep_hash(["dataitem", "1", decimal(type), owner, target, anchor, tag bytes, data])`
//! where an absent target/anchor is the empty blob.

use std::ops::Range;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::deep_hash::deep_hash_blobs;
use crate::sig::{self, SignatureType};
use crate::tags::{decode_tags_checked, encode_tags};
use crate::{Ans104Error, MAX_TAG_BYTES};

/// A parsed (not yet verified) data item. Holds the raw bytes and the positions of each field.
#[derive(Debug, Clone)]
pub struct DataItem {
    raw: Vec<u8>,
    sig_type: SignatureType,
    signature: Range<usize>,
    owner: Range<usize>,
    target: Option<Range<usize>>,
    anchor: Option<Range<usize>>,
    tag_bytes: Range<usize>,
    tags: Vec<(String, String)>,
    non_utf8_tag: Option<usize>,
    data_start: usize,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, field: &'static str, len: u64) -> Result<Range<usize>, Ans104Error> {
        let available = self.buf.len() - self.pos;
        if len > available as u64 {
            return Err(Ans104Error::Truncated {
                field,
                offset: self.pos,
                needed: len,
                available,
            });
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(start..self.pos)
    }

    fn u64_le(&mut self, field: &'static str) -> Result<u64, Ans104Error> {
        let r = self.take(field, 8)?;
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.buf[r]);
        Ok(u64::from_le_bytes(b))
    }

    fn optional32(&mut self, field: &'static str) -> Result<Option<Range<usize>>, Ans104Error> {
        let flag = self.take(field, 1)?;
        match self.buf[flag.start] {
            0 => Ok(None),
            1 => Ok(Some(self.take(field, 32)?)),
            value => Err(Ans104Error::BadPresenceFlag { field, value }),
        }
    }
}

impl DataItem {
    /// Parse a data item (copies `bytes`). Every length is checked against the input before use; nothing is
    /// allocated from a length read from the input beyond the input itself. Does not verify the signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, Ans104Error> {
        Self::from_vec(bytes.to_vec())
    }

    /// [`parse`](Self::parse) taking ownership of the buffer.
    pub fn from_vec(raw: Vec<u8>) -> Result<Self, Ans104Error> {
        let mut c = Cursor { buf: &raw, pos: 0 };
        let ty = c.take("signature type", 2)?;
        let sig_type = SignatureType::from_u16(u16::from_le_bytes([raw[ty.start], raw[ty.start + 1]]))?;
        let signature = c.take("signature", sig_type.signature_len() as u64)?;
        let owner = c.take("owner", sig_type.owner_len() as u64)?;
        let target = c.optional32("target")?;
        let anchor = c.optional32("anchor")?;
        let tag_count = c.u64_le("number of tags")?;
        if tag_count > crate::MAX_TAGS as u64 {
            return Err(Ans104Error::TooManyTags(tag_count));
        }
        let tag_len = c.u64_le("tag bytes length")?;
        if tag_len > MAX_TAG_BYTES as u64 {
            return Err(Ans104Error::TagBytesTooLong(tag_len));
        }
        let tag_bytes = c.take("tags", tag_len)?;
        let (tags, non_utf8_tag) = decode_tags_checked(&raw[tag_bytes.clone()], tag_count)?;
        let data_start = c.pos;
        Ok(Self {
            sig_type,
            signature,
            owner,
            target,
            anchor,
            tag_bytes,
            tags,
            non_utf8_tag,
            data_start,
            raw,
        })
    }

    /// The deep hash the signature covers.
    pub fn signature_data(&self) -> [u8; 48] {
        let ty = self.sig_type.as_u16().to_string();
        deep_hash_blobs(&[
            b"dataitem",
            b"1",
            ty.as_bytes(),
            self.owner(),
            self.target_bytes().unwrap_or_default(),
            self.anchor_bytes().unwrap_or_default(),
            &self.raw[self.tag_bytes.clone()],
            self.data(),
        ])
    }

    /// Verify the signature against the owner key over [`signature_data`](Self::signature_data).
    pub fn verify(&self) -> Result<(), Ans104Error> {
        sig::verify(
            self.sig_type,
            self.owner(),
            &self.signature_data(),
            self.signature(),
        )
    }

    /// The id: base64url(SHA-256(signature)).
    pub fn id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.raw_id())
    }

    /// The id as 32 raw bytes.
    pub fn raw_id(&self) -> [u8; 32] {
        Sha256::digest(self.signature()).into()
    }

    /// The signature type.
    pub fn signature_type(&self) -> SignatureType {
        self.sig_type
    }

    /// The index of the first tag whose name or value is not valid UTF-8 ([`tags`](Self::tags) holds it
    /// decoded lossily, as arbundles does). An edge that stores items refuses them: the signature covers
    /// the raw bytes, which a lossy copy no longer matches.
    pub fn non_utf8_tag(&self) -> Option<usize> {
        self.non_utf8_tag
    }

    /// The raw signature.
    pub fn signature(&self) -> &[u8] {
        &self.raw[self.signature.clone()]
    }

    /// The signature, base64url.
    pub fn signature_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.signature())
    }

    /// The owner public key (RSA modulus, ed25519 key, or uncompressed secp256k1 point).
    pub fn owner(&self) -> &[u8] {
        &self.raw[self.owner.clone()]
    }

    /// The owner key, base64url (the `Owner` field ao messages carry).
    pub fn owner_b64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.owner())
    }

    /// The owner's address (see [`sig::owner_address`]).
    pub fn owner_address(&self) -> String {
        sig::owner_address(self.sig_type, self.owner())
    }

    /// The target's 32 bytes, if present.
    pub fn target_bytes(&self) -> Option<&[u8]> {
        self.target.clone().map(|r| &self.raw[r])
    }

    /// The target, base64url (43 characters), if present.
    pub fn target(&self) -> Option<String> {
        self.target_bytes().map(|b| URL_SAFE_NO_PAD.encode(b))
    }

    /// The anchor's 32 bytes, if present.
    pub fn anchor_bytes(&self) -> Option<&[u8]> {
        self.anchor.clone().map(|r| &self.raw[r])
    }

    /// The anchor as the string clients put in (aoconnect/arbundles write the UTF-8 bytes of a 32-byte
    /// string such as `"00000000000000000000000000000042"`). Invalid UTF-8 is replaced by U+FFFD, as Node's
    /// `Buffer.toString()` does; use [`anchor_bytes`](Self::anchor_bytes) for the exact bytes.
    pub fn anchor(&self) -> Option<String> {
        self.anchor_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    /// The anchor, base64url (what arbundles' `DataItem.anchor` getter returns), if present.
    pub fn anchor_b64url(&self) -> Option<String> {
        self.anchor_bytes().map(|b| URL_SAFE_NO_PAD.encode(b))
    }

    /// The tags in order, as (name, value).
    pub fn tags(&self) -> &[(String, String)] {
        &self.tags
    }

    /// The value of the first tag named `name` (exact, case-sensitive match).
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The Avro-encoded tag bytes as they appear in the item.
    pub fn raw_tags(&self) -> &[u8] {
        &self.raw[self.tag_bytes.clone()]
    }

    /// The data.
    pub fn data(&self) -> &[u8] {
        &self.raw[self.data_start..]
    }

    /// The whole item as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// Consume the item, returning its bytes.
    pub fn into_raw(self) -> Vec<u8> {
        self.raw
    }
}

/// Assemble and sign a data item.
///
/// `target` is base64url of 32 bytes (a process or wallet id); `anchor` must be exactly 32 bytes (clients use a
/// 32-character string). `sign` receives the deep hash and returns the signature. The result is checked by
/// parsing and verifying it before it is returned.
pub fn create_signed<S: AsRef<str>>(
    sig_type: SignatureType,
    owner: &[u8],
    data: &[u8],
    tags: &[(S, S)],
    target: Option<&str>,
    anchor: Option<&[u8]>,
    sign: impl FnOnce(&[u8; 48]) -> Result<Vec<u8>, Ans104Error>,
) -> Result<Vec<u8>, Ans104Error> {
    if owner.len() != sig_type.owner_len() {
        return Err(Ans104Error::BadOwner(
            "owner length does not match the signature type",
        ));
    }
    let target = target
        .map(|t| {
            URL_SAFE_NO_PAD
                .decode(t.trim_end_matches('='))
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| Ans104Error::BadTarget(t.to_string()))
        })
        .transpose()?;
    if let Some(a) = anchor
        && a.len() != 32
    {
        return Err(Ans104Error::BadAnchor(a.len()));
    }
    let tag_bytes = encode_tags(tags)?;
    let ty = sig_type.as_u16().to_string();
    let message = deep_hash_blobs(&[
        b"dataitem",
        b"1",
        ty.as_bytes(),
        owner,
        target.as_deref().unwrap_or_default(),
        anchor.unwrap_or_default(),
        &tag_bytes,
        data,
    ]);
    let signature = sign(&message)?;
    if signature.len() != sig_type.signature_len() {
        return Err(Ans104Error::BadSignatureLength {
            expected: sig_type.signature_len(),
            got: signature.len(),
        });
    }
    let mut out =
        Vec::with_capacity(2 + signature.len() + owner.len() + 66 + 16 + tag_bytes.len() + data.len());
    out.extend_from_slice(&sig_type.as_u16().to_le_bytes());
    out.extend_from_slice(&signature);
    out.extend_from_slice(owner);
    for field in [target.as_deref(), anchor] {
        match field {
            Some(b) => {
                out.push(1);
                out.extend_from_slice(b);
            }
            None => out.push(0),
        }
    }
    out.extend_from_slice(&(tags.len() as u64).to_le_bytes());
    out.extend_from_slice(&(tag_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&tag_bytes);
    out.extend_from_slice(data);
    DataItem::parse(&out)?.verify()?;
    Ok(out)
}

/// An Ethereum (secp256k1) signer for data items, the equivalent of arbundles' `EthereumSigner`.
pub struct EthereumSigner {
    key: k256::ecdsa::SigningKey,
}

impl EthereumSigner {
    /// From a 32-byte secret key.
    pub fn from_secret_bytes(secret: &[u8]) -> Result<Self, Ans104Error> {
        let key =
            k256::ecdsa::SigningKey::from_slice(secret).map_err(|e| Ans104Error::Secp256k1(e.to_string()))?;
        Ok(Self { key })
    }

    /// The 65-byte uncompressed public key (the data item owner).
    pub fn public_key(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    /// The EIP-55 address.
    pub fn address(&self) -> String {
        sig::ethereum_address(&self.public_key())
    }

    /// Sign `message` as ethers' `signMessage` does: r ‖ s ‖ v with v = 27 + recovery id, low S.
    pub fn sign_message(&self, message: &[u8]) -> Result<[u8; 65], Ans104Error> {
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(&sig::eip191_hash(message))
            .map_err(|e| Ans104Error::Secp256k1(e.to_string()))?;
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recid.to_byte();
        Ok(out)
    }

    /// Build and sign a data item (see [`create_signed`]).
    pub fn sign_data_item<S: AsRef<str>>(
        &self,
        data: &[u8],
        tags: &[(S, S)],
        target: Option<&str>,
        anchor: Option<&[u8]>,
    ) -> Result<Vec<u8>, Ans104Error> {
        create_signed(
            SignatureType::Ethereum,
            &self.public_key(),
            data,
            tags,
            target,
            anchor,
            |m| Ok(self.sign_message(m)?.to_vec()),
        )
    }
}
