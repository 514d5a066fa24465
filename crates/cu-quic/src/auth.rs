//! Which peers a node talks to (`docs/quic.md` §2): a peer is the ed25519 key its TLS certificate
//! carries (the handshake proves it holds the key). It is admitted when the key is on the operator's
//! allow-list, or, when an evidence policy is configured, once its SEV-SNP evidence for a fresh nonce
//! verifies under that policy and binds that same key. Everything else is refused with a reason that
//! reaches the log and the metrics.

use std::collections::HashSet;
use std::sync::Arc;

use cu_attest::{CompiledPolicy, Evidence, Verifier};

/// Why a peer was refused: a metric label and a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer refused ({reason}): {detail}")]
pub struct Refusal {
    /// Stable label: `not_ed25519`, `not_allowed`, `no_evidence`, `bad_evidence`, `key_mismatch`.
    pub reason: &'static str,
    /// What exactly.
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(reason: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            detail: detail.into(),
        }
    }
}

/// Keys admitted without evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowList {
    /// No key: only attested peers (or none, without an evidence policy).
    #[default]
    Nobody,
    /// These keys.
    Keys(HashSet<[u8; 32]>),
    /// Any key (`--quic-allow any`): for a public SU whose schedule anyone may read over HTTP anyway.
    Anyone,
}

impl AllowList {
    /// Parses `any` or a comma-separated list of keyids (unpadded base64url of the 32-byte key, as
    /// `GET /` publishes `node_key.keyid`) or 64-digit hex keys.
    pub fn parse(text: &str) -> Result<AllowList, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(AllowList::Nobody);
        }
        if text == "any" {
            return Ok(AllowList::Anyone);
        }
        let mut keys = HashSet::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            keys.insert(parse_key(item)?);
        }
        Ok(AllowList::Keys(keys))
    }

    fn admits(&self, key: &[u8; 32]) -> bool {
        match self {
            AllowList::Nobody => false,
            AllowList::Keys(k) => k.contains(key),
            AllowList::Anyone => true,
        }
    }
}

/// A keyid (base64url) or hex public key.
pub fn parse_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| format!("key {text:?}: {e}"))?
    } else {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|e| format!("keyid {text:?} is not base64url: {e}"))?
    };
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| format!("key {text:?} is {} bytes, not 32", bytes.len()))
}

/// Verifying SEV-SNP evidence of peers.
pub struct EvidencePolicy {
    verifier: Verifier,
    policy: Option<CompiledPolicy>,
}

impl std::fmt::Debug for EvidencePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidencePolicy")
            .field("policy", &self.policy.is_some())
            .finish_non_exhaustive()
    }
}

impl EvidencePolicy {
    /// Evidence checked with AMD's pinned roots and `policy` (the verifier's default policy when
    /// `None`).
    pub fn new(verifier: Verifier, policy: Option<CompiledPolicy>) -> EvidencePolicy {
        EvidencePolicy { verifier, policy }
    }
}

/// Whom a node admits.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    /// Keys admitted as they are.
    pub allow: AllowList,
    /// Peers admitted on evidence.
    pub evidence: Option<Arc<EvidencePolicy>>,
}

/// What the handshake decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// On the allow-list.
    Allowed,
    /// Not on the list: its evidence must be asked for and verified before any request is served.
    NeedsEvidence,
}

impl PeerPolicy {
    /// Decides on a key at the handshake.
    pub fn admit(&self, key: &[u8; 32]) -> Result<Admission, Refusal> {
        if self.allow.admits(key) {
            return Ok(Admission::Allowed);
        }
        if self.evidence.is_some() {
            return Ok(Admission::NeedsEvidence);
        }
        Err(Refusal::new(
            "not_allowed",
            format!(
                "key {} is not on the allow-list and no evidence policy is configured",
                cu_attest::key::keyid_for(key)
            ),
        ))
    }

    /// Checks a peer's evidence (JSON) for `nonce` and that it binds the peer's TLS key.
    pub fn check_evidence(&self, key: &[u8; 32], json: &[u8], nonce: &[u8]) -> Result<(), Refusal> {
        let Some(ev) = &self.evidence else {
            return Err(Refusal::new("not_allowed", "no evidence policy is configured"));
        };
        let evidence: Evidence = serde_json::from_slice(json)
            .map_err(|e| Refusal::new("bad_evidence", format!("the evidence is not evidence JSON: {e}")))?;
        if !evidence.public_key.eq_ignore_ascii_case(&hex::encode(key)) {
            return Err(Refusal::new(
                "key_mismatch",
                format!(
                    "the evidence is for key {}, the TLS certificate carries {}",
                    evidence.public_key,
                    hex::encode(key)
                ),
            ));
        }
        let verdict = cu_attest::verify_evidence(&ev.verifier, &evidence, ev.policy.as_ref(), nonce);
        if verdict.ok {
            return Ok(());
        }
        let failed: Vec<String> = verdict
            .checks
            .iter()
            .filter(|c| c.status == cu_attest::Status::Fail)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        Err(Refusal::new(
            "bad_evidence",
            format!("the evidence does not verify: {}", failed.join("; ")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_parse_keyids_hex_and_any() -> Result<(), String> {
        let key = cu_attest::NodeKey::from_seed([7; 32]);
        let pk = key.public_key();
        assert_eq!(AllowList::parse("any")?, AllowList::Anyone);
        assert_eq!(AllowList::parse("")?, AllowList::Nobody);
        let by_id = AllowList::parse(&key.keyid())?;
        let by_hex = AllowList::parse(&format!(" {} ,", hex::encode(pk)))?;
        assert!(by_id.admits(&pk) && by_hex.admits(&pk));
        assert!(!by_id.admits(&[0; 32]));
        assert!(AllowList::parse("abc").is_err());
        Ok(())
    }

    #[test]
    fn without_a_list_entry_or_a_policy_a_peer_is_refused() {
        let policy = PeerPolicy::default();
        let refusal = policy.admit(&[1; 32]).err();
        assert_eq!(refusal.map(|r| r.reason), Some("not_allowed"));
    }
}
