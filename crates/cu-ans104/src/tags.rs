//! ANS-104 tags: an Avro `array<record{name: bytes, value: bytes}>`.
//!
//! Longs are zigzag varints; an array is a sequence of blocks, each a count followed by that many items, ended
//! by a zero count. A negative count `-n` means `n` items preceded by the block's byte size (skipped).
//! Decoding is bounded: at most [`MAX_TAGS`] tags, names ≤ [`MAX_TAG_NAME`]
//! bytes, values ≤ [`MAX_TAG_VALUE`] bytes, every length checked against the input, and
//! the encoding must use up the tag bytes exactly.
//!
//! Names and values are decoded as UTF-8 the way Node's `Buffer.toString()` does in arbundles: invalid
//! sequences become U+FFFD. The signature covers the raw tag bytes, so this never affects verification.

use crate::{Ans104Error, MAX_TAG_NAME, MAX_TAG_VALUE, MAX_TAGS};

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn read_long(&mut self) -> Result<i64, Ans104Error> {
        let mut acc: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(Ans104Error::BadTagEncoding("varint runs past the tag bytes"))?;
            self.pos += 1;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(Ans104Error::BadTagEncoding("varint overflows 64 bits"));
            }
            acc |= bits << (7 * i);
            if b & 0x80 == 0 {
                // Zigzag decode.
                return Ok(((acc >> 1) as i64) ^ -((acc & 1) as i64));
            }
        }
        Err(Ans104Error::BadTagEncoding("varint longer than 10 bytes"))
    }

    fn read_bytes(&mut self, max: usize, too_long: fn(u64) -> Ans104Error) -> Result<&[u8], Ans104Error> {
        let len = self.read_long()?;
        let len = u64::try_from(len).map_err(|_| Ans104Error::BadTagEncoding("negative string length"))?;
        if len > max as u64 {
            return Err(too_long(len));
        }
        let len = len as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or(Ans104Error::BadTagEncoding("string runs past the tag bytes"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Decode Avro-encoded tags. `declared` is the tag count from the data item header; it must match.
pub fn decode_tags(bytes: &[u8], declared: u64) -> Result<Vec<(String, String)>, Ans104Error> {
    decode_tags_checked(bytes, declared).map(|(tags, _)| tags)
}

/// Decoded tags, and the index of the first one that is not valid UTF-8.
pub type CheckedTags = (Vec<(String, String)>, Option<usize>);

/// [`decode_tags`], and the index of the first tag whose name or value is not valid UTF-8 (decoded lossily,
/// as arbundles' `Buffer.toString()` does).
pub fn decode_tags_checked(bytes: &[u8], declared: u64) -> Result<CheckedTags, Ans104Error> {
    let mut first_invalid = None;
    if declared > MAX_TAGS as u64 {
        return Err(Ans104Error::TooManyTags(declared));
    }
    if bytes.is_empty() {
        return if declared == 0 {
            Ok((Vec::new(), None))
        } else {
            Err(Ans104Error::TagCountMismatch { declared, decoded: 0 })
        };
    }
    let mut r = Reader { buf: bytes, pos: 0 };
    let mut tags = Vec::with_capacity(declared as usize);
    loop {
        let count = r.read_long()?;
        if count == 0 {
            break;
        }
        let n = count.unsigned_abs();
        if tags.len() as u64 + n > MAX_TAGS as u64 {
            return Err(Ans104Error::TooManyTags(tags.len() as u64 + n));
        }
        if count < 0 {
            // Block with a byte size: skip the size (it must be a valid, non-negative long).
            if r.read_long()? < 0 {
                return Err(Ans104Error::BadTagEncoding("negative block size"));
            }
        }
        for _ in 0..n {
            let name = r.read_bytes(MAX_TAG_NAME, Ans104Error::TagNameTooLong)?;
            let name_ok = std::str::from_utf8(name).is_ok();
            let name = String::from_utf8_lossy(name).into_owned();
            let value = r.read_bytes(MAX_TAG_VALUE, Ans104Error::TagValueTooLong)?;
            if first_invalid.is_none() && (!name_ok || std::str::from_utf8(value).is_err()) {
                first_invalid = Some(tags.len());
            }
            let value = String::from_utf8_lossy(value).into_owned();
            tags.push((name, value));
        }
    }
    if r.pos != bytes.len() {
        return Err(Ans104Error::BadTagEncoding("trailing bytes after the tag array"));
    }
    if tags.len() as u64 != declared {
        return Err(Ans104Error::TagCountMismatch {
            declared,
            decoded: tags.len() as u64,
        });
    }
    Ok((tags, first_invalid))
}

fn write_long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Encode tags as arbundles does: empty input → no bytes; otherwise one block with all tags and a zero
/// terminator. Enforces the same limits as [`decode_tags`].
pub fn encode_tags<S: AsRef<str>>(tags: &[(S, S)]) -> Result<Vec<u8>, Ans104Error> {
    if tags.is_empty() {
        return Ok(Vec::new());
    }
    if tags.len() > MAX_TAGS {
        return Err(Ans104Error::TooManyTags(tags.len() as u64));
    }
    let mut out = Vec::new();
    write_long(&mut out, tags.len() as i64);
    for (name, value) in tags {
        let (name, value) = (name.as_ref().as_bytes(), value.as_ref().as_bytes());
        if name.len() > MAX_TAG_NAME {
            return Err(Ans104Error::TagNameTooLong(name.len() as u64));
        }
        if value.len() > MAX_TAG_VALUE {
            return Err(Ans104Error::TagValueTooLong(value.len() as u64));
        }
        write_long(&mut out, name.len() as i64);
        out.extend_from_slice(name);
        write_long(&mut out, value.len() as i64);
        out.extend_from_slice(value);
    }
    write_long(&mut out, 0);
    if out.len() > crate::MAX_TAG_BYTES {
        return Err(Ans104Error::TagBytesTooLong(out.len() as u64));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, value: &str) -> (String, String) {
        (name.to_string(), value.to_string())
    }

    #[test]
    fn round_trip() {
        let tags = vec![t("Action", "Eval"), t("", ""), t("Ünï", "🚀".repeat(40).as_str())];
        let enc = encode_tags(&tags).unwrap();
        assert_eq!(decode_tags(&enc, 3).unwrap(), tags);
    }

    #[test]
    fn known_encoding() {
        // count 1 (zigzag 2), "a" (len 1 → 2), "bc" (len 2 → 4), terminator 0.
        let enc = encode_tags(&[("a", "bc")]).unwrap();
        assert_eq!(enc, vec![2, 2, b'a', 4, b'b', b'c', 0]);
        // A 64-byte value has zigzag length 128 → two varint bytes 0x80 0x01.
        let v = "v".repeat(64);
        let enc = encode_tags(&[("n", v.as_str())]).unwrap();
        assert_eq!(&enc[..5], &[2, 2, b'n', 0x80, 0x01]);
    }

    #[test]
    fn negative_block_count_with_size() {
        // Block count -1 (zigzag 1), byte size 5 (zigzag 10), then one tag, then terminator.
        let bytes = [1, 10, 2, b'a', 4, b'b', b'c', 0];
        assert_eq!(decode_tags(&bytes, 1).unwrap(), vec![t("a", "bc")]);
    }

    #[test]
    fn multiple_blocks() {
        let bytes = [2, 2, b'a', 2, b'b', 2, 2, b'c', 2, b'd', 0];
        assert_eq!(decode_tags(&bytes, 2).unwrap(), vec![t("a", "b"), t("c", "d")]);
    }

    #[test]
    fn count_mismatch() {
        let enc = encode_tags(&[("a", "b")]).unwrap();
        assert!(matches!(
            decode_tags(&enc, 2),
            Err(Ans104Error::TagCountMismatch {
                declared: 2,
                decoded: 1
            })
        ));
        assert!(matches!(
            decode_tags(&[], 1),
            Err(Ans104Error::TagCountMismatch { .. })
        ));
        // An encoded empty array with a zero count is fine (other encoders write it).
        assert!(decode_tags(&[0], 0).unwrap().is_empty());
    }

    #[test]
    fn malformed() {
        // Missing terminator.
        assert!(matches!(
            decode_tags(&[2, 2, b'a', 2, b'b'], 1),
            Err(Ans104Error::BadTagEncoding(_))
        ));
        // String longer than the input.
        assert!(matches!(
            decode_tags(&[2, 20, b'a', 0], 1),
            Err(Ans104Error::BadTagEncoding(_))
        ));
        // Negative string length (zigzag 1 = -1).
        assert!(matches!(
            decode_tags(&[2, 1, 0], 1),
            Err(Ans104Error::BadTagEncoding(_))
        ));
        // Trailing bytes after the terminator.
        assert!(matches!(
            decode_tags(&[2, 2, b'a', 2, b'b', 0, 0], 1),
            Err(Ans104Error::BadTagEncoding(_))
        ));
        // Varint that never ends / overflows.
        assert!(matches!(
            decode_tags(&[0xff; 11], 1),
            Err(Ans104Error::BadTagEncoding(_))
        ));
        assert!(matches!(
            decode_tags(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], 1),
            Err(Ans104Error::BadTagEncoding(_))
        ));
    }

    #[test]
    fn limits() {
        // A forged huge count is refused before any allocation.
        let mut bytes = Vec::new();
        write_long(&mut bytes, i64::MAX);
        assert!(matches!(decode_tags(&bytes, 1), Err(Ans104Error::TooManyTags(_))));
        assert!(matches!(
            decode_tags(&bytes, u64::MAX),
            Err(Ans104Error::TooManyTags(_))
        ));
        let mut bytes = Vec::new();
        write_long(&mut bytes, i64::MIN);
        assert!(matches!(decode_tags(&bytes, 1), Err(Ans104Error::TooManyTags(_))));
        // Name / value length limits, checked before reading.
        let mut bytes = vec![2];
        write_long(&mut bytes, 1025);
        assert!(matches!(
            decode_tags(&bytes, 1),
            Err(Ans104Error::TagNameTooLong(1025))
        ));
        let mut bytes = vec![2, 2, b'a'];
        write_long(&mut bytes, 3073);
        assert!(matches!(
            decode_tags(&bytes, 1),
            Err(Ans104Error::TagValueTooLong(3073))
        ));
        let long = "n".repeat(1025);
        assert!(encode_tags(&[(long.as_str(), "v")]).is_err());
        let many: Vec<(String, String)> = (0..129).map(|i| t(&i.to_string(), "")).collect();
        assert!(matches!(encode_tags(&many), Err(Ans104Error::TooManyTags(129))));
        // 128 tags at the maximum sizes overflow arbundles' 4096-byte tag buffer.
        let big: Vec<(String, String)> = (0..2).map(|_| t(&"n".repeat(1024), &"v".repeat(3072))).collect();
        assert!(matches!(encode_tags(&big), Err(Ans104Error::TagBytesTooLong(_))));
    }

    #[test]
    fn invalid_utf8_is_replaced_like_node() {
        let bytes = [2, 2, 0xff, 2, b'v', 0];
        assert_eq!(decode_tags(&bytes, 1).unwrap(), vec![t("\u{fffd}", "v")]);
        assert_eq!(decode_tags_checked(&bytes, 1).unwrap().1, Some(0));
        let fine = encode_tags(&[t("a", "b"), t("ü", "€")]).unwrap();
        assert_eq!(decode_tags_checked(&fine, 2).unwrap().1, None);
    }
}
