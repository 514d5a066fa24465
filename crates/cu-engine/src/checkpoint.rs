//! Incremental checkpoints: the memory is cut into [`CHUNK`]-byte chunks, each remembered by a 128-bit
//! digest taken at the last checkpoint. A checkpoint writes only the chunks whose digest changed (a
//! *delta*, pointing at its parent), or every non-zero chunk (a *base*). Restore reads a base and the
//! deltas after it, in order, and reassembles the memory.
//!
//! Change detection uses XXH3-128 seeded with a secret drawn once per node (seven times faster than
//! BLAKE3 on 4 KiB chunks: 8 ms against 60 ms for 110 MB here); the seed never reaches a module. It is not
//! trusted on its own: every checkpoint records the BLAKE3 of the whole memory, and a chain that
//! reassembles to another hash (a missed change, a logic error) is rejected at restore, which then falls
//! back to the checkpoint before it and replays the log.
//!
//! File encoding, integers little-endian: `AOCUCKPT`, version (u32 = 1), header length (u32), the header
//! as JSON ([`Header`]), the header's BLAKE3 (32 bytes), then the zstd-compressed payload: the listed chunks' bytes, concatenated in
//! order. The store checks each file's length and BLAKE3 against its index row (a torn or altered file),
//! and the header carries the BLAKE3 of the whole memory after the checkpoint, checked after the chain is
//! reassembled (a chain that reassembles to the wrong memory).

use std::sync::OnceLock;

use cu_types::ModuleFormat;
use cu_wasm::snapshot::GlobalValue;
use cu_wasm::state::GlueState;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// Bytes per chunk: the unit of change tracking. 4 KiB, the host page size: Lua's heap writes are
/// scattered, so smaller chunks keep deltas close to the bytes that really changed.
pub const CHUNK: usize = 4096;
const MAGIC: &[u8; 8] = b"AOCUCKPT";
const VERSION: u32 = 1;
const ZSTD_LEVEL: i32 = 1;

/// A chunk's digest.
type Digest = u128;

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without OS randomness the digests stay correct, only predictable.
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    })
}

fn digest(chunk: &[u8]) -> Digest {
    xxhash_rust::xxh3::xxh3_128_with_seed(chunk, seed())
}

/// The digests of a memory's chunks as of the last checkpoint.
#[derive(Debug, Clone, Default)]
pub struct ChunkTable {
    digests: Vec<Digest>,
}

impl ChunkTable {
    /// The digests of every chunk of `memory`.
    pub fn of(memory: &[u8]) -> ChunkTable {
        ChunkTable {
            digests: memory.chunks(CHUNK).map(digest).collect(),
        }
    }

    /// Indices of the chunks of `memory` that differ from this table (chunks beyond the table's end are
    /// all changed), updating the table to `memory`.
    pub fn diff_and_update(&mut self, memory: &[u8]) -> Vec<u32> {
        let mut changed = Vec::new();
        // Memory only grows, zero-filled, and restore zero-fills it too: a new chunk starts as the
        // digest of zeros, so only new chunks that are no longer zero are written.
        self.digests
            .resize(memory.len().div_ceil(CHUNK), digest(&[0u8; CHUNK]));
        for (i, (chunk, known)) in memory.chunks(CHUNK).zip(self.digests.iter_mut()).enumerate() {
            let d = digest(chunk);
            if d != *known {
                *known = d;
                changed.push(i as u32);
            }
        }
        changed
    }
}

/// What a checkpoint file says about itself and the process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Header {
    /// The module format.
    pub format: ModuleFormat,
    /// SHA-256 of the module, hex.
    pub module_sha256: String,
    /// The log position of the last message included.
    pub pos: u64,
    /// Memory size after this checkpoint.
    pub memory_len: u64,
    /// BLAKE3 of the whole memory after this checkpoint, hex.
    pub memory_blake3: String,
    /// `None` for a base; the parent checkpoint's sequence number for a delta.
    pub parent: Option<u64>,
    /// The chunks in the payload, as `[first, count]` runs of chunk indices.
    pub runs: Vec<[u32; 2]>,
    /// Uncompressed payload length.
    pub payload_len: u64,
    /// Exported mutable globals.
    pub globals: Vec<(String, GlobalValue)>,
    /// Glue state.
    pub glue: GlueState,
}

/// The process state a checkpoint records, apart from memory.
pub struct CheckpointState<'a> {
    /// The module format.
    pub format: ModuleFormat,
    /// SHA-256 of the module.
    pub module_sha256: [u8; 32],
    /// Log position of the last message included.
    pub pos: u64,
    /// Globals.
    pub globals: Vec<(String, GlobalValue)>,
    /// Glue state.
    pub glue: GlueState,
    /// The live memory (borrowed: only the chunks written are copied).
    pub memory: &'a [u8],
}

fn runs_of(indices: &[u32]) -> Vec<[u32; 2]> {
    let mut runs: Vec<[u32; 2]> = Vec::new();
    for &i in indices {
        match runs.last_mut() {
            Some(run) if run[0] + run[1] == i => run[1] += 1,
            _ => runs.push([i, 1]),
        }
    }
    runs
}

/// Encodes a checkpoint holding the chunks `indices` of `state.memory`.
pub fn encode(
    state: &CheckpointState<'_>,
    parent: Option<u64>,
    indices: &[u32],
) -> Result<Vec<u8>, EngineError> {
    let memory = state.memory;
    let mut payload = Vec::with_capacity(indices.len() * CHUNK);
    for &i in indices {
        let start = i as usize * CHUNK;
        let end = (start + CHUNK).min(memory.len());
        payload.extend_from_slice(memory.get(start..end).unwrap_or_default());
    }
    let header = Header {
        format: state.format,
        module_sha256: hex::encode(state.module_sha256),
        pos: state.pos,
        memory_len: memory.len() as u64,
        memory_blake3: blake3::hash(memory).to_hex().to_string(),
        parent,
        runs: runs_of(indices),
        payload_len: payload.len() as u64,
        globals: state.globals.clone(),
        glue: state.glue.clone(),
    };
    let json = serde_json::to_vec(&header).map_err(|e| EngineError::Checkpoint(e.to_string()))?;
    let compressed =
        zstd::bulk::compress(&payload, ZSTD_LEVEL).map_err(|e| EngineError::Checkpoint(e.to_string()))?;
    let mut out = Vec::with_capacity(16 + json.len() + compressed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(blake3::hash(&json).as_bytes());
    out.extend_from_slice(&compressed);
    Ok(out)
}

/// The indices of the chunks of `memory` that are not all zero (what a base must hold: a fresh
/// memory is zero-filled).
pub fn nonzero_chunks(memory: &[u8]) -> Vec<u32> {
    memory
        .chunks(CHUNK)
        .enumerate()
        .filter(|(_, c)| c.iter().any(|b| *b != 0))
        .map(|(i, _)| i as u32)
        .collect()
}

/// A decoded checkpoint file.
#[derive(Debug)]
pub struct Decoded {
    /// Its header.
    pub header: Header,
    /// Its uncompressed, checked payload.
    pub payload: Vec<u8>,
}

/// Decodes and checks a checkpoint file.
pub fn decode(bytes: &[u8]) -> Result<Decoded, EngineError> {
    let bad = |why: String| EngineError::Checkpoint(why);
    let (header, compressed) = decode_header(bytes)?;
    // The payload grows with what the stream yields: `payload_len` is not reserved up front.
    let payload = cu_wasm::snapshot::decompress_exact(compressed, header.payload_len)
        .map_err(|e| bad(format!("checkpoint payload: {e}")))?;
    Ok(Decoded { header, payload })
}

/// Decodes a checkpoint file straight into `memory` (a base onto zeroed memory, or a delta onto its
/// parent's memory; `memory` has the size of the newest checkpoint of the chain): the payload is
/// decompressed run by run into place, with no intermediate buffer. [`decode`] + [`apply`] in one pass.
/// On an error `memory` holds part of the payload; the caller discards it.
pub fn decode_into(memory: &mut [u8], bytes: &[u8]) -> Result<Header, EngineError> {
    decode_into_from(memory, &mut &bytes[..], bytes.len() as u64)
}

/// [`decode_into`] reading the file from `input` (`file_len` bytes in all), so that the file needs no
/// buffer of its own either. Reads the header and the compressed payload, nothing after it.
pub fn decode_into_from(
    memory: &mut [u8],
    input: &mut dyn std::io::BufRead,
    file_len: u64,
) -> Result<Header, EngineError> {
    use std::io::Read as _;
    let bad = |why: String| EngineError::Checkpoint(why);
    let truncated = |_| bad("truncated checkpoint header".into());
    let mut head = [0u8; 16];
    input
        .read_exact(&mut head)
        .map_err(|_| bad("not an ao-cu checkpoint".into()))?;
    let json_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as u64;
    // The header is read into memory: no more of it than the file holds.
    if &head[..8] == MAGIC && json_len.saturating_add(16 + 32) > file_len {
        return Err(bad("truncated checkpoint header".into()));
    }
    let mut bytes = head.to_vec();
    if &head[..8] == MAGIC {
        let mut rest = vec![0u8; json_len as usize + 32];
        input.read_exact(&mut rest).map_err(truncated)?;
        bytes.extend_from_slice(&rest);
    }
    let (header, _) = decode_header(&bytes)?;
    let spans = spans(&header, memory.len())?;
    let total: u64 = spans.iter().map(|(a, b)| (b - a) as u64).sum();
    if total != header.payload_len {
        return Err(bad("payload length disagrees with its runs".into()));
    }
    let mut decoder = zstd::stream::read::Decoder::with_buffer(input)
        .map_err(|e| bad(format!("checkpoint payload: {e}")))?;
    for (start, end) in spans {
        decoder
            .read_exact(&mut memory[start..end])
            .map_err(|e| bad(format!("checkpoint payload shorter than its runs: {e}")))?;
    }
    let mut more = [0u8; 1];
    if decoder
        .read(&mut more)
        .map_err(|e| bad(format!("checkpoint payload: {e}")))?
        != 0
    {
        return Err(bad("payload longer than its runs".into()));
    }
    Ok(header)
}

/// The memory ranges a checkpoint's runs cover, checked against a memory of `memory_len` bytes.
fn spans(h: &Header, memory_len: usize) -> Result<Vec<(usize, usize)>, EngineError> {
    let len =
        usize::try_from(h.memory_len).map_err(|_| EngineError::Checkpoint("memory too large".into()))?;
    if len > memory_len {
        return Err(EngineError::Checkpoint(
            "a checkpoint is larger than the newest one of its chain".into(),
        ));
    }
    h.runs
        .iter()
        .map(|&[first, count]| {
            let start = (first as usize).saturating_mul(CHUNK);
            let end = (first as usize)
                .saturating_add(count as usize)
                .saturating_mul(CHUNK)
                .min(len);
            if end < start {
                return Err(EngineError::Checkpoint("chunk run beyond memory".into()));
            }
            Ok((start, end))
        })
        .collect()
}

/// The checked header of a checkpoint file and its compressed payload.
fn decode_header(bytes: &[u8]) -> Result<(Header, &[u8]), EngineError> {
    let bad = |why: String| EngineError::Checkpoint(why);
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad("not an ao-cu checkpoint".into()));
    }
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if word(8) != VERSION {
        return Err(bad(format!("unsupported checkpoint version {}", word(8))));
    }
    let len = word(12) as usize;
    let json = bytes
        .get(16..16 + len)
        .ok_or_else(|| bad("truncated checkpoint header".into()))?;
    let sum = bytes
        .get(16 + len..16 + len + 32)
        .ok_or_else(|| bad("truncated checkpoint header".into()))?;
    if blake3::hash(json).as_bytes() != sum {
        return Err(bad("checkpoint header hash mismatch (corrupt)".into()));
    }
    let header: Header = serde_json::from_slice(json).map_err(|e| bad(format!("checkpoint header: {e}")))?;
    let count: u64 = header.runs.iter().map(|r| u64::from(r[1])).sum();
    if header.payload_len > count.saturating_mul(CHUNK as u64) || header.payload_len > header.memory_len {
        return Err(bad("checkpoint payload larger than its chunks".into()));
    }
    Ok((header, &bytes[16 + len + 32..]))
}

/// Applies a decoded checkpoint (a base onto zeroed memory, or a delta onto its parent's memory) to
/// `memory`, which has the size of the newest checkpoint of the chain (memory only grows, zero-filled).
pub fn apply(memory: &mut [u8], checkpoint: &Decoded) -> Result<(), EngineError> {
    let h = &checkpoint.header;
    let len =
        usize::try_from(h.memory_len).map_err(|_| EngineError::Checkpoint("memory too large".into()))?;
    if len > memory.len() {
        return Err(EngineError::Checkpoint(
            "a checkpoint is larger than the newest one of its chain".into(),
        ));
    }
    let mut at = 0usize;
    for &[first, count] in &h.runs {
        let start = first as usize * CHUNK;
        let end = ((first as usize + count as usize) * CHUNK).min(len);
        let n = end
            .checked_sub(start)
            .ok_or_else(|| EngineError::Checkpoint("chunk run beyond memory".into()))?;
        let src = checkpoint
            .payload
            .get(at..at + n)
            .ok_or_else(|| EngineError::Checkpoint("payload shorter than its runs".into()))?;
        memory[start..end].copy_from_slice(src);
        at += n;
    }
    if at != checkpoint.payload.len() {
        return Err(EngineError::Checkpoint("payload longer than its runs".into()));
    }
    Ok(())
}

/// Checks reassembled memory against the newest checkpoint's header.
pub fn verify(memory: &[u8], header: &Header) -> Result<(), EngineError> {
    if memory.len() as u64 != header.memory_len
        || blake3::hash(memory).to_hex().as_str() != header.memory_blake3
    {
        return Err(EngineError::Checkpoint(
            "the chain reassembles to a memory with another hash".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(memory: &[u8], pos: u64) -> CheckpointState<'_> {
        CheckpointState {
            format: ModuleFormat::Emscripten4,
            module_sha256: [7; 32],
            pos,
            globals: vec![("__cu_global_0".into(), GlobalValue::I32(1234))],
            glue: GlueState::new(ModuleFormat::Emscripten4),
            memory,
        }
    }

    #[test]
    fn deltas_reassemble_to_the_full_memory_and_hold_only_changes() {
        let mut memory = vec![0u8; 64 * 65536];
        memory[100..5000].fill(9);
        let mut table = ChunkTable::default();
        table.diff_and_update(&memory);
        let base = encode(&state(&memory, 1), None, &nonzero_chunks(&memory)).unwrap();
        // Change 1 MiB spread over the memory, then grow it.
        for i in 0..256 {
            memory[i * 16384 + 7] = (i % 255) as u8 + 1;
        }
        memory.resize(80 * 65536, 0);
        let last = memory.len() - 1;
        memory[last] = 1;
        let changed = table.diff_and_update(&memory);
        assert_eq!(
            changed.len(),
            256 + 1,
            "256 touched chunks and the last one (the new zero chunks are not)"
        );
        let delta = encode(&state(&memory, 2), Some(1), &changed).unwrap();
        let decoded = decode(&delta).unwrap();
        assert_eq!(decoded.payload.len(), 257 * CHUNK);
        let mut rebuilt = vec![0u8; memory.len()];
        apply(&mut rebuilt, &decode(&base).unwrap()).unwrap();
        apply(&mut rebuilt, &decoded).unwrap();
        assert_eq!(rebuilt, memory);
        verify(&rebuilt, &decoded.header).unwrap();
        // Straight into memory, without the payload buffer: the same bytes.
        let mut direct = vec![0u8; memory.len()];
        decode_into(&mut direct, &base).unwrap();
        let header = decode_into(&mut direct, &delta).unwrap();
        assert_eq!(direct, memory);
        verify(&direct, &header).unwrap();
        assert_eq!(
            decoded.header.memory_blake3,
            blake3::hash(&memory).to_hex().to_string()
        );
        assert!(table.diff_and_update(&memory).is_empty());
    }

    #[test]
    fn corruption_is_detected() {
        let memory: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
        let bytes = encode(&state(&memory, 3), None, &nonzero_chunks(&memory)).unwrap();
        let restore = |bytes: &[u8]| -> Result<(), EngineError> {
            let decoded = decode(bytes)?;
            let mut rebuilt = vec![0u8; memory.len()];
            apply(&mut rebuilt, &decoded)?;
            verify(&rebuilt, &decoded.header)
        };
        let restore_into = |bytes: &[u8]| -> Result<(), EngineError> {
            let mut rebuilt = vec![0u8; memory.len()];
            let header = decode_into(&mut rebuilt, bytes)?;
            verify(&rebuilt, &header)
        };
        assert!(restore(&bytes).is_ok());
        assert!(restore_into(&bytes).is_ok());
        for at in [3, 20, bytes.len() / 2, bytes.len() - 5] {
            let mut broken = bytes.clone();
            broken[at] ^= 0x55;
            assert!(restore(&broken).is_err(), "flip at {at}");
            assert!(restore_into(&broken).is_err(), "flip at {at}, into memory");
        }
        assert!(restore(&bytes[..bytes.len() - 9]).is_err());
        assert!(restore_into(&bytes[..bytes.len() - 9]).is_err());
        // A memory smaller than the checkpoint's is refused, not overrun.
        let mut small = vec![0u8; memory.len() / 2];
        assert!(decode_into(&mut small, &bytes).is_err());
        assert!(decode(b"AOCUCKPT").is_err());
    }

    /// Regression (found reviewing `decode` after the snapshot fuzz target's finding, the same pattern): a
    /// header claiming a huge `payload_len` (with runs and `memory_len` to match) was reserved before
    /// anything was decompressed, which aborted the process.
    #[test]
    fn a_payload_length_is_not_reserved_before_it_is_decompressed() {
        let memory = vec![5u8; 2 * CHUNK];
        let bytes = encode(&state(&memory, 1), None, &nonzero_chunks(&memory)).unwrap();
        let len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        let mut header: Header = serde_json::from_slice(&bytes[16..16 + len]).unwrap();
        header.runs = vec![[0, u32::MAX]; 4096];
        header.payload_len = 1 << 62;
        header.memory_len = 1 << 62;
        let json = serde_json::to_vec(&header).unwrap();
        let mut forged = bytes[..12].to_vec();
        forged.extend_from_slice(&(json.len() as u32).to_le_bytes());
        forged.extend_from_slice(&json);
        forged.extend_from_slice(blake3::hash(&json).as_bytes());
        forged.extend_from_slice(&bytes[16 + len + 32..]);
        let err = decode(&forged).unwrap_err().to_string();
        assert!(err.contains("checkpoint payload"), "{err}");
    }

    #[test]
    fn runs_merge_adjacent_chunks() {
        assert_eq!(runs_of(&[1, 2, 3, 7, 9, 10]), vec![[1, 3], [7, 1], [9, 2]]);
        assert!(runs_of(&[]).is_empty());
    }
}
