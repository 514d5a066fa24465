//! ao-cu's own process snapshot: everything needed to resume a process on a fresh instance.
//!
//! A snapshot holds the linear memory (its length is the memory size), the value of every exported
//! mutable global (the stack pointer among them; see [`crate::prepare`]) and the glue state (fake clock,
//! random sequence, `tempRet0`, time-zone flag, file system).
//!
//! File encoding (`--state-out`/`--state-in`), all integers little-endian:
//! `AOCUSNAP` magic, version (u32 = 1), header length (u32), the header as JSON
//! (`{"format", "module_sha256", "memory_len", "memory_blake3", "globals": [[name, value]], "glue"}`),
//! then the memory compressed with zstd. The memory's BLAKE3 is checked on decode.

use cu_types::ModuleFormat;
use serde::{Deserialize, Serialize};

use crate::error::WasmError;
use crate::state::GlueState;

const MAGIC: &[u8; 8] = b"AOCUSNAP";
const VERSION: u32 = 1;

/// The value of a global, by its wasm type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GlobalValue {
    /// An `i32`.
    I32(i32),
    /// An `i64`.
    I64(i64),
    /// An `f32`, as bits.
    F32(u32),
    /// An `f64`, as bits.
    F64(u64),
}

/// A process state at a message boundary.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The module format.
    pub format: ModuleFormat,
    /// SHA-256 of the module the state belongs to.
    pub module_sha256: [u8; 32],
    /// Linear memory.
    pub memory: Vec<u8>,
    /// Exported mutable globals.
    pub globals: Vec<(String, GlobalValue)>,
    /// Glue state.
    pub glue: GlueState,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: ModuleFormat,
    module_sha256: String,
    memory_len: u64,
    memory_blake3: String,
    globals: Vec<(String, GlobalValue)>,
    glue: GlueState,
}

impl Snapshot {
    /// BLAKE3 of the memory, hex.
    pub fn memory_hash(&self) -> String {
        blake3::hash(&self.memory).to_hex().to_string()
    }

    /// Encodes the snapshot (zstd level 3 for memory).
    pub fn encode(&self) -> Result<Vec<u8>, WasmError> {
        let header = Header {
            format: self.format,
            module_sha256: hex::encode(self.module_sha256),
            memory_len: self.memory.len() as u64,
            memory_blake3: self.memory_hash(),
            globals: self.globals.clone(),
            glue: self.glue.clone(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| WasmError::Snapshot(e.to_string()))?;
        let memory = zstd::bulk::compress(&self.memory, 3).map_err(|e| WasmError::Snapshot(e.to_string()))?;
        let mut out = Vec::with_capacity(16 + json.len() + memory.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&memory);
        Ok(out)
    }

    /// Decodes and checks a snapshot.
    pub fn decode(bytes: &[u8]) -> Result<Snapshot, WasmError> {
        let bad = |why: &str| WasmError::Snapshot(why.to_string());
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not an ao-cu snapshot"));
        }
        let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if version != VERSION {
            return Err(bad("unsupported snapshot version"));
        }
        let len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let json = bytes.get(16..16 + len).ok_or_else(|| bad("truncated header"))?;
        let header: Header = serde_json::from_slice(json).map_err(|e| bad(&format!("header: {e}")))?;
        let memory = decompress_exact(&bytes[16 + len..], header.memory_len)
            .map_err(|e| bad(&format!("memory: {e}")))?;
        if blake3::hash(&memory).to_hex().as_str() != header.memory_blake3 {
            return Err(bad("memory hash mismatch (corrupt)"));
        }
        let mut module_sha256 = [0u8; 32];
        hex::decode_to_slice(&header.module_sha256, &mut module_sha256).map_err(|_| bad("module hash"))?;
        Ok(Snapshot {
            format: header.format,
            module_sha256,
            memory,
            globals: header.globals,
            glue: header.glue,
        })
    }
}

/// Decompresses a zstd stream that must hold exactly `len` bytes (a length read from the file being
/// decoded). The buffer grows with the bytes the stream really yields: `len` itself is never reserved up
/// front beyond a bound set by the input's size, so a header that claims terabytes costs nothing (zstd's
/// bulk API reserved `len` at once: a capacity overflow, or an abort when the allocation failed).
pub fn decompress_exact(src: &[u8], len: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    // Most process memory compresses less than 64:1; a larger ratio only costs the buffer regrowing.
    let hint = (src.len() as u64)
        .saturating_mul(64)
        .saturating_add(1 << 20)
        .min(len);
    let mut out = Vec::new();
    out.try_reserve_exact(usize::try_from(hint).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut decoder = zstd::stream::read::Decoder::with_buffer(src).map_err(|e| e.to_string())?;
    (&mut decoder)
        .take(len)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if (out.len() as u64) < len {
        return Err(format!("{} bytes, {len} expected", out.len()));
    }
    let mut more = [0u8; 1];
    if decoder.read(&mut more).map_err(|e| e.to_string())? != 0 {
        return Err(format!("more than the {len} bytes expected"));
    }
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_corruption() {
        let snap = Snapshot {
            format: ModuleFormat::Emscripten2,
            module_sha256: [3; 32],
            memory: (0..200_000u32).map(|i| (i % 251) as u8).collect(),
            globals: vec![("__cu_global_0".into(), GlobalValue::I32(5_242_880))],
            glue: GlueState::new(ModuleFormat::Emscripten2),
        };
        let bytes = snap.encode().unwrap();
        assert!(bytes.len() < snap.memory.len() / 4, "memory is compressed");
        assert_eq!(Snapshot::decode(&bytes).unwrap(), snap);
        let mut broken = bytes.clone();
        let last = broken.len() - 2;
        broken[last] ^= 0xff;
        assert!(Snapshot::decode(&broken).is_err());
        assert!(Snapshot::decode(b"AOCUSNAP").is_err());
    }

    fn with_memory_len(bytes: &[u8], memory_len: &str) -> Vec<u8> {
        let len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[16..16 + len]).unwrap();
        header["memory_len"] = serde_json::from_str(memory_len).unwrap();
        let json = serde_json::to_vec(&header).unwrap();
        let mut out = bytes[..12].to_vec();
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&bytes[16 + len..]);
        out
    }

    /// Regression (found by the snapshot fuzz target): the header's `memory_len` was reserved before a
    /// byte was decompressed, so a snapshot claiming 2^63 bytes aborted the process (a failed allocation),
    /// and any claim cost that much memory whatever the stream held.
    #[test]
    fn a_memory_length_is_not_reserved_before_it_is_decompressed() {
        let snap = Snapshot {
            format: ModuleFormat::Emscripten2,
            module_sha256: [3; 32],
            memory: vec![7; 65536],
            globals: Vec::new(),
            glue: GlueState::new(ModuleFormat::Emscripten2),
        };
        let bytes = snap.encode().unwrap();
        for claim in [
            "9223372036854775807",
            "18446744073709551615",
            "1099511627776",
            "65537",
            "65535",
        ] {
            let err = Snapshot::decode(&with_memory_len(&bytes, claim))
                .unwrap_err()
                .to_string();
            assert!(err.contains("memory:"), "{claim}: {err}");
        }
        assert_eq!(Snapshot::decode(&with_memory_len(&bytes, "65536")).unwrap(), snap);
        assert_eq!(
            decompress_exact(&zstd::bulk::compress(&[], 3).unwrap(), 0).unwrap(),
            b""
        );
    }
}
