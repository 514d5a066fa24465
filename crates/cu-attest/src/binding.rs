//! What the 64-byte `report_data` of an ao-cu attestation report commits to.
//!
//! ```text
//! report_data = SHA-512( "ao-cu/attest/v1"   15 bytes, ASCII
//!                     || 0x00                 1 byte separator
//!                     || node public key      32 bytes, raw ed25519
//!                     || config digest        32 bytes, SHA-256 of the canonical configuration JSON
//!                     || len(nonce)           1 byte, 1..=64
//!                     || nonce )              len(nonce) bytes, chosen by the verifier
//! ```
//!
//! The canonical configuration JSON is RFC 8785 (JCS) restricted to integers: object members sorted by the
//! UTF-16 code units of their names, no insignificant whitespace, strings escaped as `serde_json` (= JCS) does,
//! and no floating-point numbers (rejected, so there is no number-formatting ambiguity).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256, Sha512};

use crate::AttestError;

/// Domain separation string at the start of the `report_data` preimage.
pub const DOMAIN: &[u8] = b"ao-cu/attest/v1";
/// Longest nonce a verifier may send (bytes).
pub const MAX_NONCE_LEN: usize = 64;

/// The node configuration an attestation binds: engine version, enabled module formats and limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Engine name and version, e.g. `ao-cu 0.1.0 (wasmtime 48.0.8)`.
    pub engine: String,
    /// Enabled module formats, sorted and deduplicated.
    pub formats: Vec<String>,
    /// Named numeric limits (memory, compute, sizes), in the units their names say.
    pub limits: BTreeMap<String, u64>,
}

impl NodeConfig {
    /// Builds a configuration; `formats` is sorted and deduplicated so that order never matters.
    pub fn new(
        engine: impl Into<String>,
        formats: impl IntoIterator<Item = impl Into<String>>,
        limits: impl IntoIterator<Item = (String, u64)>,
    ) -> NodeConfig {
        let mut formats: Vec<String> = formats.into_iter().map(Into::into).collect();
        formats.sort();
        formats.dedup();
        NodeConfig {
            engine: engine.into(),
            formats,
            limits: limits.into_iter().collect(),
        }
    }

    /// The configuration as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::json!({
            "engine": self.engine,
            "formats": self.formats,
            "limits": self.limits,
        })
    }

    /// The canonical JSON text.
    pub fn canonical_json(&self) -> Result<String, AttestError> {
        canonical_json(&self.to_value())
    }

    /// SHA-256 of the canonical JSON.
    pub fn digest(&self) -> Result<[u8; 32], AttestError> {
        config_digest(&self.to_value())
    }
}

/// SHA-256 of the canonical JSON of any configuration value.
pub fn config_digest(config: &Value) -> Result<[u8; 32], AttestError> {
    Ok(Sha256::digest(canonical_json(config)?.as_bytes()).into())
}

/// Serializes `value` canonically (see the module documentation).
pub fn canonical_json(value: &Value) -> Result<String, AttestError> {
    let mut out = String::new();
    write_canonical(value, &mut out)?;
    Ok(out)
}

fn write_canonical(value: &Value, out: &mut String) -> Result<(), AttestError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                return Err(AttestError::Config(format!(
                    "non-integer number {n} is not allowed in canonical configuration"
                )));
            }
        }
        Value::String(s) => out.push_str(&json_string(s)?),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(k)?);
                out.push(':');
                write_canonical(v, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn json_string(s: &str) -> Result<String, AttestError> {
    serde_json::to_string(s).map_err(|e| AttestError::Config(e.to_string()))
}

/// Computes the 64-byte `report_data` for a node key, configuration digest and verifier nonce.
pub fn report_data(
    public_key: &[u8; 32],
    config_digest: &[u8; 32],
    nonce: &[u8],
) -> Result<[u8; 64], AttestError> {
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(AttestError::Nonce(format!(
            "nonce must be 1..={MAX_NONCE_LEN} bytes, got {}",
            nonce.len()
        )));
    }
    let mut h = Sha512::new();
    h.update(DOMAIN);
    h.update([0u8]);
    h.update(public_key);
    h.update(config_digest);
    // The length check above keeps this in range.
    h.update([nonce.len() as u8]);
    h.update(nonce);
    Ok(h.finalize().into())
}

/// Decodes a nonce given as hex (as in `?nonce=HEX`).
pub fn parse_nonce_hex(hex_text: &str) -> Result<Vec<u8>, AttestError> {
    let nonce =
        hex::decode(hex_text.trim()).map_err(|e| AttestError::Nonce(format!("nonce is not hex: {e}")))?;
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(AttestError::Nonce(format!(
            "nonce must be 1..={MAX_NONCE_LEN} bytes, got {}",
            nonce.len()
        )));
    }
    Ok(nonce)
}
