//! The on-disk AOT cache: Cranelift output serialized as `.cwasm`, keyed by the module's SHA-256, the
//! load-time transform and the engine's compatibility hash.
//!
//! Layout of an artefact: `AOCUCWSM` magic, format version (u32 LE), engine digest (u64 LE), module
//! SHA-256 (32 bytes), BLAKE3 of the payload (32 bytes), payload length (u64 LE), payload. Every field is
//! checked before the payload is handed to wasmtime, because deserializing a corrupt artefact is unsafe:
//! a stale, foreign or damaged file is reported and rebuilt, never loaded. Writes are atomic (temporary
//! file, fsync, rename).

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use crate::error::WasmError;

const MAGIC: &[u8; 8] = b"AOCUCWSM";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 32 + 32 + 8;

/// A directory of compiled artefacts.
#[derive(Debug, Clone)]
pub struct AotCache {
    dir: PathBuf,
}

/// What identifies an artefact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey {
    /// SHA-256 of the module bytes as given.
    pub module_sha256: [u8; 32],
    /// Digest of the engine's compatibility hash (see [`crate::engine::Engines::compatibility`]).
    pub engine: u64,
    /// Which load-time transform was applied (format-dependent metering).
    pub transform: &'static str,
}

impl CacheKey {
    fn file_name(&self) -> String {
        format!(
            "{}-{}-{:016x}.cwasm",
            hex::encode(self.module_sha256),
            self.transform,
            self.engine
        )
    }
}

/// Why a cached artefact was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// No artefact for this key.
    Absent,
    /// The file exists but fails a check (named), so it is rebuilt.
    Invalid(&'static str),
}

impl AotCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AotCache { dir: dir.into() }
    }

    /// The artefact path of a key.
    pub fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// Reads and checks the artefact of `key`, returning its payload.
    pub fn load(&self, key: &CacheKey) -> Result<Vec<u8>, Miss> {
        let bytes = match fs::read(self.path(key)) {
            Ok(b) => b,
            Err(_) => return Err(Miss::Absent),
        };
        verify(&bytes, key).map(|payload| payload.to_vec())
    }

    /// Stores `payload` for `key` atomically.
    pub fn store(&self, key: &CacheKey, payload: &[u8]) -> Result<PathBuf, WasmError> {
        let io = |e: std::io::Error| WasmError::Cache(format!("{}: {e}", self.dir.display()));
        fs::create_dir_all(&self.dir).map_err(io)?;
        let path = self.path(key);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(&header(key, payload)).map_err(io)?;
        file.write_all(payload).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        Ok(path)
    }
}

fn header(key: &CacheKey, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&key.engine.to_le_bytes());
    h.extend_from_slice(&key.module_sha256);
    h.extend_from_slice(blake3::hash(payload).as_bytes());
    h.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    h
}

fn verify<'a>(bytes: &'a [u8], key: &CacheKey) -> Result<&'a [u8], Miss> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(Miss::Invalid("not an ao-cu artefact"));
    }
    let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
    let u64_at = |o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&bytes[o..o + 8]);
        u64::from_le_bytes(a)
    };
    if u32_at(8) != VERSION {
        return Err(Miss::Invalid("artefact format version differs"));
    }
    if u64_at(12) != key.engine {
        return Err(Miss::Invalid(
            "compiled by another engine version or configuration",
        ));
    }
    if bytes[20..52] != key.module_sha256 {
        return Err(Miss::Invalid("compiled from another module"));
    }
    let payload = &bytes[HEADER..];
    if u64_at(84) != payload.len() as u64 {
        return Err(Miss::Invalid("truncated"));
    }
    if blake3::hash(payload).as_bytes() != &bytes[52..84] {
        return Err(Miss::Invalid("payload hash mismatch (corrupt)"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            module_sha256: [7; 32],
            engine: 42,
            transform: "plain",
        }
    }

    #[test]
    fn round_trip_and_every_mismatch_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AotCache::new(dir.path());
        assert_eq!(cache.load(&key()), Err(Miss::Absent));
        let path = cache.store(&key(), b"payload bytes").unwrap();
        assert_eq!(cache.load(&key()).unwrap(), b"payload bytes");

        let other_engine = CacheKey { engine: 43, ..key() };
        std::fs::copy(&path, cache.path(&other_engine)).unwrap();
        assert!(matches!(cache.load(&other_engine), Err(Miss::Invalid(_))));

        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            cache.load(&key()),
            Err(Miss::Invalid("payload hash mismatch (corrupt)"))
        );

        std::fs::write(&path, &bytes[..HEADER + 3]).unwrap();
        assert_eq!(cache.load(&key()), Err(Miss::Invalid("truncated")));
        std::fs::write(&path, b"garbage").unwrap();
        assert_eq!(cache.load(&key()), Err(Miss::Invalid("not an ao-cu artefact")));
    }
}
