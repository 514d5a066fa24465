//! The SU hash chain and the local block height.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::error::SchedError;

/// Milliseconds per local block: the node's block height is `timestamp / BLOCK_MS`.
pub const BLOCK_MS: u64 = 120_000;

/// The local block height at `timestamp_ms`.
pub fn block_height(timestamp_ms: u64) -> u64 {
    timestamp_ms / BLOCK_MS
}

/// The timestamp (ms) at which local block `height` starts.
pub fn block_timestamp(height: u64) -> u64 {
    height.saturating_mul(BLOCK_MS)
}

fn decode32(s: &str) -> Result<[u8; 32], SchedError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| SchedError::HashChain(format!("{s:?} is not base64url: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| SchedError::HashChain(format!("Length mismatch 32 - {s}")))
}

/// The SU's `gen_hash_chain`: `base64url(sha256([prev_assignment_id bytes] || previous_or_seed bytes))`,
/// both inputs base64url of 32 bytes. For nonce 0 the seed is the process id and there is no previous
/// assignment; afterwards it is the previous hash chain and the previous assignment's id.
pub fn hash_chain(previous_or_seed: &str, previous_assignment: Option<&str>) -> Result<String, SchedError> {
    let prev = decode32(previous_or_seed)?;
    let mut h = Sha256::new();
    if let Some(id) = previous_assignment {
        h.update(decode32(id)?);
    }
    h.update(prev);
    Ok(URL_SAFE_NO_PAD.encode(h.finalize()))
}
