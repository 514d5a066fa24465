//! The SU hash chain, checked link by link: slot n's `Hash-Chain` must be
//! `base64url(sha256(assignment id of slot n-1 ‖ Hash-Chain of slot n-1))` (`cu_scheduler::hash_chain`,
//! the SU's `gen_hash_chain`). As the reference CU does, the chain is checked only for processes from
//! block height [`CHAIN_FROM_HEIGHT`] on, and a first slot with no known predecessor only needs a
//! `Hash-Chain` to be present.

use crate::error::UpstreamError;
use crate::wire::Scheduled;

/// The reference CU checks hash chains of processes scheduled at or after this block height.
pub const CHAIN_FROM_HEIGHT: u64 = 1_440_000;

/// What the next slot's `Hash-Chain` follows from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// The assignment id of the previous slot.
    pub assignment_id: String,
    /// Its `Hash-Chain`.
    pub hash_chain: String,
}

impl ChainLink {
    /// The link a slot leaves for the next one (`None` when the SU does not chain it).
    pub fn of(s: &Scheduled) -> Option<ChainLink> {
        Some(ChainLink {
            assignment_id: s.assignment_id.clone(),
            hash_chain: s.hash_chain.clone()?,
        })
    }
}

/// Checks `next` against the link before it. A missing `Hash-Chain`, or one that does not follow, is
/// [`UpstreamError::Schedule`] (`HashChain invalid on message <id>`, the reference's words).
pub fn check_link(prev: Option<&ChainLink>, next: &Scheduled) -> Result<(), UpstreamError> {
    let invalid = |why: &str| {
        UpstreamError::Schedule(format!(
            "HashChain invalid on message {} (slot {} of process {}): {why}",
            next.message_id(),
            next.nonce,
            next.process_id
        ))
    };
    let Some(chain) = next.hash_chain.as_deref() else {
        return Err(invalid("the assignment has no Hash-Chain"));
    };
    let Some(prev) = prev else {
        return Ok(());
    };
    let expected = cu_scheduler::hash_chain(&prev.hash_chain, Some(&prev.assignment_id))
        .map_err(|e| invalid(&e.to_string()))?;
    if expected != chain {
        return Err(invalid("it does not follow from the previous slot"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(nonce: u64, id: &str, chain: Option<String>) -> Scheduled {
        Scheduled {
            cursor: nonce.to_string(),
            process_id: "p".into(),
            epoch: 0,
            nonce,
            timestamp: nonce,
            block_height: 1,
            hash_chain: chain,
            assignment_id: id.into(),
            message: None,
            assigned: Some(format!("m{nonce}")),
            exclude: Vec::new(),
        }
    }

    #[test]
    fn a_chain_that_follows_passes_and_a_broken_one_is_refused() {
        let id0 = "A".repeat(43);
        let id1 = format!("{}A", "B".repeat(42));
        let seed = format!("{}A", "C".repeat(42));
        let c0 = cu_scheduler::hash_chain(&seed, None).unwrap();
        let s0 = slot(0, &id0, Some(c0.clone()));
        check_link(None, &s0).unwrap();
        let c1 = cu_scheduler::hash_chain(&c0, Some(&id0)).unwrap();
        let s1 = slot(1, &id1, Some(c1.clone()));
        check_link(ChainLink::of(&s0).as_ref(), &s1).unwrap();
        // Slot 1's chain where slot 2's belongs: refused, naming the message.
        let s2 = slot(2, &id1, Some(c1));
        let e = check_link(ChainLink::of(&s1).as_ref(), &s2).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(
            e.to_string().starts_with("HashChain invalid on message m2"),
            "{e}"
        );
        // No Hash-Chain at all: refused.
        assert!(check_link(None, &slot(3, &id1, None)).is_err());
    }
}
