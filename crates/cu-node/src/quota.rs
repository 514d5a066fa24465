//! Per-wallet upload quota of the MU ingress: how many bytes of signed data items one owner (the item's
//! signer, known only after its signature verified) may post per fixed window. Without it one wallet can
//! fill the store with modules and messages. The clock is the node's (ms); nothing of it reaches a module.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::NodeError;

/// At most `bytes` of data items per owner in each window of `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadQuota {
    /// Bytes per window and owner.
    pub bytes: u64,
    /// Window length in ms.
    pub window_ms: u64,
}

/// Most owners tracked before windows that ended are swept (the table stays bounded by the owners active
/// in one window).
const SWEEP_AT: usize = 4_096;

/// The bytes each owner posted in its current window.
pub(crate) struct QuotaBook {
    quota: UploadQuota,
    used: Mutex<HashMap<String, (u64, u64)>>,
}

impl QuotaBook {
    pub(crate) fn new(quota: UploadQuota) -> Self {
        QuotaBook {
            quota,
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Charges `bytes` to `owner` at `now`; a 429 when its window has no room left (nothing is charged).
    pub(crate) fn charge(&self, owner: &str, bytes: u64, now: u64) -> Result<(), NodeError> {
        let window = self.quota.window_ms.max(1);
        let start = now - now % window;
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        if used.len() >= SWEEP_AT {
            used.retain(|_, (s, _)| *s == start);
        }
        let entry = used.entry(owner.to_owned()).or_insert((start, 0));
        if entry.0 != start {
            *entry = (start, 0);
        }
        match entry.1.checked_add(bytes).filter(|&t| t <= self.quota.bytes) {
            Some(total) => {
                entry.1 = total;
                Ok(())
            }
            None => Err(NodeError::RateLimited(format!(
                "upload quota exceeded for wallet {owner}: {} of {} bytes used in this {window} ms window, this item is {bytes} bytes",
                entry.1, self.quota.bytes
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn owners_are_charged_per_window() {
        let book = QuotaBook::new(UploadQuota {
            bytes: 100,
            window_ms: 1_000,
        });
        book.charge("a", 60, 5_000).unwrap();
        book.charge("a", 40, 5_999).unwrap();
        let err = book.charge("a", 1, 5_999).unwrap_err();
        assert!(
            matches!(&err, NodeError::RateLimited(m) if m.contains("wallet a")),
            "{err:?}"
        );
        // Another owner has its own share; the next window starts afresh.
        book.charge("b", 100, 5_500).unwrap();
        book.charge("a", 100, 6_000).unwrap();
        // An item larger than the whole quota is refused and charges nothing.
        assert!(book.charge("c", 101, 6_000).is_err());
        book.charge("c", 100, 6_000).unwrap();
    }
}
