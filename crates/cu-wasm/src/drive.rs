//! WeaveDrive: Arweave data a process reads as files (`/data/<id>`, `/block/<height>`, `/tx/<id>`),
//! exactly as the aos extension `@permaweb/weavedrive` 0.0.18 serves them to the reference loader.
//!
//! The host side is split in two. This module holds everything that decides what a module observes:
//! which reads are admissible (the extension's `checkAdmissible`), and how a read moves the file
//! position, fills the 32 KiB read-ahead cache and answers bytes (the extension's `read`, including the
//! JavaScript arithmetic it does on a position that a seek to the end turned into a string). What the
//! bytes are comes from a [`DriveSource`] the embedder provides (the node's store, a gateway with a
//! content-addressed cache): the source only answers facts about content-addressed data, so two CUs
//! with the same data compute the same results.
//!
//! When a read cannot be answered, nothing is guessed. A source that cannot reach its data
//! ([`DriveError`]), an item that is not admissible or not found ("HALT: FILE NOT FOUND" in the
//! extension), an unsupported `Availability-Type` or `Library` mode all *halt* the evaluation
//! ([`crate::WasmError::Halted`]): the message gets no result and the process stays at the message
//! before, as the reference CU's worker stops on the extension's unhandled rejection. Only the module's
//! own mistakes (a bad descriptor) become the message's `Error`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The extension's read-ahead cache size (`CACHE_SZ`).
pub const CACHE_BYTES: u64 = 32 * 1024;

/// Why a source could not answer: the data may exist but cannot be had now (gateway unreachable, a
/// timeout, a 5xx). The evaluation halts and is retried later; nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DriveError(pub String);

/// One attestation query of the extension's `checkAdmissible`: is there a transaction signed by one of
/// `owners`, in a block at or below `max_height`, with every tag of `tags`?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationQuery {
    /// The attestors: the process's `Scheduler` tag, then its `Attestor` tags.
    pub owners: Vec<String>,
    /// `Block-Height` of the message being evaluated, as JavaScript renders it in the query text
    /// (`undefined` when the message has none).
    pub max_height: String,
    /// `Type`, then `Message` or `ID`, then `Data-Protocol`, as the extension's query lists them.
    pub tags: Vec<(String, String)>,
}

impl AttestationQuery {
    /// The GraphQL text the extension sends for this query, byte for byte (values escaped, which the
    /// extension does not do: identical for every id, address and height).
    pub fn graphql(&self) -> String {
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let owners = self
            .owners
            .iter()
            .map(|o| format!("\"{}\"", esc(o)))
            .collect::<Vec<_>>()
            .join(", ");
        let tags = self
            .tags
            .iter()
            .map(|(n, v)| format!("{{ name: \"{}\", values: [\"{}\"] }}", esc(n), esc(v)))
            .collect::<Vec<_>>()
            .join("\n              ");
        format!(
            "query {{\n          transactions(\n            owners: [{owners}],\n            block: {{min: 0, max: {}}},\n            tags: [\n              {tags}\n            ]\n          ) \n          {{\n            edges {{\n              node {{\n                tags {{\n                  name\n                  value\n                }}\n              }}\n            }}\n          }}\n        }}",
            self.max_height
        )
    }
}

/// Where WeaveDrive data comes from. Implementations block the evaluating thread while they fetch;
/// every answer must depend only on content-addressed data (an id's bytes never change).
pub trait DriveSource: Send + Sync {
    /// The size of the data of transaction or data item `id`, or `None` when the source has no such
    /// data (the extension's `HEAD /raw/<id>` failing).
    fn data_size(&self, id: &str) -> Result<Option<u64>, DriveError>;

    /// `len` bytes of `id`'s data from `offset` (fewer at the end).
    fn read(&self, id: &str, offset: u64, len: u64) -> Result<Vec<u8>, DriveError>;

    /// All of `id`'s data in one read, `None` when the source has no such data: what a model load
    /// (`crate::models`) takes. Sources that cache pieces for WeaveDrive's many small reads override it
    /// so that a whole large item does not stay in that cache.
    fn read_whole(&self, id: &str) -> Result<Option<Vec<u8>>, DriveError> {
        match self.data_size(id)? {
            Some(size) => self.read(id, 0, size).map(Some),
            None => Ok(None),
        }
    }

    /// Whether an attestation answering `query` exists.
    fn attested(&self, query: &AttestationQuery) -> Result<bool, DriveError>;

    /// The text of block `height`'s header (`GET /block/height/<height>`), `None` when there is none.
    fn block(&self, height: &str) -> Result<Option<Vec<u8>>, DriveError>;

    /// The Arweave transaction header of `id` (`GET /tx/<id>`, JSON), `None` when there is none.
    fn tx(&self, id: &str) -> Result<Option<serde_json::Value>, DriveError>;
}

/// WeaveDrive as one process sees it: the node's source and the tags admissibility reads.
#[derive(Clone)]
pub struct Drive {
    /// Where the data comes from.
    pub source: Arc<dyn DriveSource>,
    /// The process's spawn tags (`Scheduler`, `Attestor`, `Extension`, `Availability-Type`, `On-Boot`).
    pub spawn_tags: Vec<(String, String)>,
    /// The module's tags (`Extension`, `Availability-Type`).
    pub module_tags: Vec<(String, String)>,
}

impl std::fmt::Debug for Drive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drive")
            .field("spawn_tags", &self.spawn_tags)
            .field("module_tags", &self.module_tags)
            .finish_non_exhaustive()
    }
}

/// Whether a module gets WeaveDrive at all (the reference's `Module.WeaveDrive`): its `Extension` tag
/// names it, or its format is `wasm64-unknown-emscripten-draft_2024_02_15`, to which the reference CU
/// always adds it.
pub fn enabled_for(format: cu_types::ModuleFormat, module_tags: &[(String, String)]) -> bool {
    format == cu_types::ModuleFormat::Wasm64
        || module_tags
            .iter()
            .any(|(n, v)| n == "Extension" && v == "WeaveDrive")
}

fn values<'a>(tags: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    tags.iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn last<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    values(tags, name).pop()
}

impl Drive {
    /// The extension's `checkAdmissible(id)` at `block_height` (the message's `Block-Height` as
    /// JavaScript renders it). `Ok(false)`: not admissible (the extension answers HALT); `Err`: the
    /// evaluation halts with that reason.
    pub fn admissible(&self, id: &str, block_height: &str) -> Result<bool, String> {
        if last(&self.spawn_tags, "On-Boot") == Some(id) {
            return Ok(true);
        }
        let extension = |tags: &[(String, String)]| values(tags, "Extension").contains(&"WeaveDrive");
        if !extension(&self.module_tags) && !extension(&self.spawn_tags) {
            return Ok(false);
        }
        let module_mode = last(&self.module_tags, "Availability-Type").unwrap_or("Assignments");
        let mode = last(&self.spawn_tags, "Availability-Type").unwrap_or(module_mode);
        if !["Assignments", "Individual", "Library"].contains(&mode) {
            return Err(format!("Unsupported WeaveDrive mode: {mode}"));
        }
        let owners: Vec<String> = last(&self.spawn_tags, "Scheduler")
            .into_iter()
            .chain(values(&self.spawn_tags, "Attestor"))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let query = |kind: &str, key: &str, protocol: &str| AttestationQuery {
            owners: owners.clone(),
            max_height: block_height.to_string(),
            tags: vec![
                ("Type".into(), kind.into()),
                (key.into(), id.into()),
                ("Data-Protocol".into(), protocol.into()),
            ],
        };
        let ask = |q: AttestationQuery| self.source.attested(&q).map_err(|e| e.0);
        if ask(query("Attestation", "Message", "ao"))? {
            return Ok(true);
        }
        if mode == "Individual" && ask(query("Available", "ID", "WeaveDrive"))? {
            return Ok(true);
        }
        if mode == "Library" {
            return Err("This WeaveDrive implementation does not support Library attestations yet!".into());
        }
        Ok(false)
    }
}

/// A file position as the extension's JavaScript holds it: a number, or, once a seek relative to the
/// end added the node's `usedBytes` (the `Content-Length` header, a string), a string that later
/// additions concatenate to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JsPos {
    /// A number (always a non-negative integer here).
    Num(u64),
    /// A string of decimal digits.
    Str(String),
}

impl Default for JsPos {
    fn default() -> Self {
        JsPos::Num(0)
    }
}

impl JsPos {
    /// `this + n` in JavaScript.
    pub fn plus(&self, n: u64) -> JsPos {
        match self {
            JsPos::Num(p) => JsPos::Num(p.saturating_add(n)),
            JsPos::Str(s) => JsPos::Str(format!("{s}{n}")),
        }
    }

    /// JavaScript's `String(this)`.
    pub fn render(&self) -> String {
        match self {
            JsPos::Num(p) => p.to_string(),
            JsPos::Str(s) => s.clone(),
        }
    }

    /// JavaScript's `Number(this)`, as a float.
    pub fn number(&self) -> f64 {
        match self {
            JsPos::Num(p) => *p as f64,
            JsPos::Str(s) => s.parse::<f64>().unwrap_or(f64::NAN),
        }
    }

    /// The value `fd_seek` stores for this position (`BigInt(position)` in wasm64, `position >>> 0`
    /// and its high word in wasm32): the integer, modulo 2^64.
    pub fn offset(&self) -> u64 {
        match self {
            JsPos::Num(p) => *p,
            JsPos::Str(s) => s.bytes().filter(u8::is_ascii_digit).fold(0u64, |acc, d| {
                acc.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
            }),
        }
    }

    /// MEMFS `llseek(offset, whence)` on a WeaveDrive data file of `size` bytes: the new position, or
    /// `EINVAL` (28) when it is negative or `whence` is unknown.
    pub fn seek(&self, offset: i64, whence: i64, size: u64) -> Result<JsPos, i64> {
        let new = match whence {
            0 => num(i128::from(offset))?,
            1 => match self {
                JsPos::Num(p) => num(i128::from(offset) + i128::from(*p))?,
                JsPos::Str(s) => JsPos::Str(format!("{offset}{s}")),
            },
            // `position += stream.node.usedBytes`: the extension's getter returns the header string.
            2 => JsPos::Str(format!("{offset}{size}")),
            _ => return Err(28),
        };
        if new.number() < 0.0 {
            return Err(28);
        }
        Ok(new)
    }
}

fn num(v: i128) -> Result<JsPos, i64> {
    u64::try_from(v).map(JsPos::Num).map_err(|_| 28)
}

/// What a gateway answers to `Range: bytes=<start>-<end>` on data of `total` bytes, by RFC 9110 (as
/// ao-cu's gateway serves it): an invalid range (`start > end`) is ignored and the whole data is sent;
/// a range starting at or past the end is not satisfiable (416, no data); otherwise the bytes from
/// `start` through `end` (clipped to the data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The whole data (200).
    Whole,
    /// Bytes `start..=end` (206).
    Part(u64, u64),
    /// Nothing (416).
    Nothing,
}

/// [`Served`] for a range whose start is the text `start` (digits) and whose end is `end`.
pub fn served(start: &str, end: f64, total: u64) -> Served {
    let first = start.parse::<f64>().unwrap_or(f64::NAN);
    if first.is_nan() || end.is_nan() || first > end {
        return Served::Whole;
    }
    if first >= total as f64 {
        return Served::Nothing;
    }
    let first = first as u64;
    let last = (end as u64).min(total.saturating_sub(1));
    Served::Part(first, last)
}

/// The read-ahead cache of a data file (`node.cache`): `len` bytes of the data from `offset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRange {
    /// Offset in the data of the first cached byte.
    pub offset: u64,
    /// Cached bytes.
    pub len: u64,
}

/// One `weavedrive_read(fd, dst, len)` planned on a data file: what to copy where, and the state after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan {
    /// Copies into the destination, in order: (offset in the destination, offset in the data, length).
    pub copies: Vec<(u64, u64, u64)>,
    /// The value `read` returns.
    pub returned: u64,
    /// The stream's position after.
    pub position: JsPos,
    /// The stream's `lastReadPosition` after.
    pub last_read: JsPos,
    /// The node's cache after.
    pub cache: CacheRange,
}

/// The extension's `read` on a data file of `total` bytes, as one planned step (the response to the
/// ranged fetch is taken as one chunk; the reference's position after a read that follows a seek to the
/// end depends on how the network chunks the response, the one place where it is not deterministic).
pub fn plan_read(
    total: u64,
    position: &JsPos,
    last_read: Option<&JsPos>,
    cache: CacheRange,
    len: u64,
) -> ReadPlan {
    let mut copies = Vec::new();
    let mut to_read = len;
    // readFromCache: a position that moved since the last read (a seek) invalidates the cache.
    let (from_cache, mut cache) = if last_read != Some(position) {
        (0, CacheRange::default())
    } else {
        let k = to_read.min(cache.len);
        if k > 0 {
            copies.push((0, cache.offset, k));
        }
        (
            k,
            CacheRange {
                offset: cache.offset + k,
                len: cache.len - k,
            },
        )
    };
    let mut position = position.plus(from_cache);
    let mut bytes_read = from_cache;
    to_read -= from_cache;
    if to_read == 0 {
        return ReadPlan {
            copies,
            returned: bytes_read,
            last_read: position.clone(),
            position,
            cache,
        };
    }
    let chunk = to_read.max(CACHE_BYTES);
    let to = (total as f64).min(position.plus(chunk).number());
    let (body_offset, body_len) = match served(&position.render(), to, total) {
        Served::Whole => (0, total),
        Served::Part(a, b) => (a, b - a + 1),
        Served::Nothing => (0, 0),
    };
    let written = body_len.min(to_read);
    if written > 0 {
        copies.push((bytes_read, body_offset, written));
        bytes_read += written;
        position = position.plus(written);
        to_read -= written;
    }
    cache = if to_read == 0 {
        CacheRange {
            offset: body_offset + written,
            len: (body_len - written).min(CACHE_BYTES),
        }
    } else {
        CacheRange::default()
    };
    ReadPlan {
        copies,
        returned: bytes_read,
        last_read: position.clone(),
        position,
        cache,
    }
}

/// The `/tx/<id>` file's text: the gateway's header with `ownerAddress` (SHA-256 of the owner key,
/// base64url) added, serialized as `JSON.stringify` does.
pub fn tx_file(mut header: serde_json::Value) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let owner = header
        .get("owner")
        .and_then(serde_json::Value::as_str)
        .ok_or("the transaction header has no owner")?;
    let key = b64
        .decode(owner.trim_end_matches('='))
        .map_err(|e| format!("the transaction header's owner is not base64url: {e}"))?;
    let address = b64.encode(sha2::Sha256::digest(key));
    header
        .as_object_mut()
        .ok_or("the transaction header is not a JSON object")?
        .insert("ownerAddress".into(), serde_json::Value::String(address));
    serde_json::to_vec(&header).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aos_get_data_pattern_reads_the_whole_file_from_its_start() {
        // `file:read(file:seek('end'))`: seek end, then tell (seek cur 0), then one read of that size.
        let total = 100_000;
        let p = JsPos::default().seek(0, 2, total).unwrap();
        assert_eq!(p, JsPos::Str("0100000".into()));
        let p = p.seek(0, 1, total).unwrap();
        assert_eq!(p, JsPos::Str("00100000".into()));
        assert_eq!(p.offset(), total);
        let plan = plan_read(total, &p, None, CacheRange::default(), total);
        // The range `bytes=001000000-100000` is invalid, so the gateway sends everything.
        assert_eq!(plan.copies, vec![(0, 0, total)]);
        assert_eq!(plan.returned, total);
        assert_eq!(plan.position, JsPos::Str("001000000100000".into()));
        assert_eq!(
            plan.cache,
            CacheRange {
                offset: total,
                len: 0
            }
        );
    }

    #[test]
    fn sequential_numeric_reads_use_ranges_and_the_cache() {
        let total = 100_000;
        let start = JsPos::default();
        let first = plan_read(total, &start, None, CacheRange::default(), 100);
        // bytes=0-32768 is served (32,769 bytes): 100 copied, 32,669 cached.
        assert_eq!(first.copies, vec![(0, 0, 100)]);
        assert_eq!(first.position, JsPos::Num(100));
        assert_eq!(
            first.cache,
            CacheRange {
                offset: 100,
                len: 32_669
            }
        );
        let second = plan_read(total, &first.position, Some(&first.last_read), first.cache, 200);
        assert_eq!(second.copies, vec![(0, 100, 200)]);
        assert_eq!(second.position, JsPos::Num(300));
        assert_eq!(
            second.cache,
            CacheRange {
                offset: 300,
                len: 32_469
            }
        );
        // Past the cache: the rest of the cache, then a ranged fetch from where it ends.
        let third = plan_read(
            total,
            &second.position,
            Some(&second.last_read),
            second.cache,
            40_000,
        );
        assert_eq!(third.copies, vec![(0, 300, 32_469), (32_469, 32_769, 7_531)]);
        assert_eq!(third.position, JsPos::Num(40_300));
    }

    #[test]
    fn a_seek_invalidates_the_cache_and_reads_past_the_end_are_empty() {
        let total = 1000;
        let p = JsPos::default().seek(990, 0, total).unwrap();
        let plan = plan_read(
            total,
            &p,
            Some(&JsPos::Num(5)),
            CacheRange { offset: 5, len: 10 },
            50,
        );
        assert_eq!(plan.copies, vec![(0, 990, 10)]);
        assert_eq!(plan.returned, 10);
        assert_eq!(plan.cache, CacheRange::default());
        let end = JsPos::Num(1000);
        let none = plan_read(total, &end, None, CacheRange::default(), 10);
        assert!(none.copies.is_empty());
        assert_eq!(none.returned, 0);
        assert_eq!(JsPos::Num(3).seek(-4, 1, total), Err(28));
        // `-4 + "1000"` is the string "-41000": negative, refused; `4 + "1000"` is "41000".
        assert_eq!(JsPos::Num(3).seek(-4, 2, total), Err(28));
        assert_eq!(JsPos::Num(3).seek(4, 2, total), Ok(JsPos::Str("41000".into())));
    }

    #[test]
    fn admissibility_follows_the_extension() {
        struct Fixed(bool);
        impl DriveSource for Fixed {
            fn data_size(&self, _: &str) -> Result<Option<u64>, DriveError> {
                Ok(None)
            }
            fn read(&self, _: &str, _: u64, _: u64) -> Result<Vec<u8>, DriveError> {
                Ok(Vec::new())
            }
            fn attested(&self, q: &AttestationQuery) -> Result<bool, DriveError> {
                Ok(self.0 && q.tags[0].1 == "Attestation" && q.owners == ["SU", "A1"])
            }
            fn block(&self, _: &str) -> Result<Option<Vec<u8>>, DriveError> {
                Ok(None)
            }
            fn tx(&self, _: &str) -> Result<Option<serde_json::Value>, DriveError> {
                Ok(None)
            }
        }
        let t = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let drive = |attested, spawn: &[(&str, &str)], module: &[(&str, &str)]| Drive {
            source: Arc::new(Fixed(attested)),
            spawn_tags: t(spawn),
            module_tags: t(module),
        };
        let spawn = [
            ("Scheduler", "SU"),
            ("Attestor", "A1"),
            ("Extension", "WeaveDrive"),
        ];
        assert_eq!(drive(true, &spawn, &[]).admissible("X", "10"), Ok(true));
        assert_eq!(drive(false, &spawn, &[]).admissible("X", "10"), Ok(false));
        // Without the extension tag on the process or the module, nothing is admissible.
        let plain = [("Scheduler", "SU"), ("Attestor", "A1")];
        assert_eq!(drive(true, &plain, &[]).admissible("X", "10"), Ok(false));
        assert_eq!(
            drive(true, &plain, &[("Extension", "WeaveDrive")]).admissible("X", "10"),
            Ok(true)
        );
        // The On-Boot item is always admissible.
        assert_eq!(
            drive(false, &[("On-Boot", "X")], &[]).admissible("X", "10"),
            Ok(true)
        );
        let library = [("Extension", "WeaveDrive"), ("Availability-Type", "Library")];
        assert!(drive(false, &library, &[]).admissible("X", "10").is_err());
        let odd = [("Extension", "WeaveDrive"), ("Availability-Type", "Sometimes")];
        assert_eq!(
            drive(true, &odd, &[]).admissible("X", "10"),
            Err("Unsupported WeaveDrive mode: Sometimes".into())
        );
    }

    #[test]
    fn the_attestation_query_is_the_extensions_text() {
        let q = AttestationQuery {
            owners: vec!["SU".into()],
            max_height: "1000".into(),
            tags: vec![
                ("Type".into(), "Attestation".into()),
                ("Message".into(), "X".into()),
                ("Data-Protocol".into(), "ao".into()),
            ],
        };
        let text = q.graphql();
        assert!(text.contains("owners: [\"SU\"],"), "{text}");
        assert!(text.contains("block: {min: 0, max: 1000},"), "{text}");
        assert!(text.contains("{ name: \"Message\", values: [\"X\"] }"), "{text}");
    }
}
