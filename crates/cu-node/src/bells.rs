//! Schedule bells: a process's bell rings whenever slots are appended to its log (scheduled here, or
//! read from its SU), so a pushed schedule (the QUIC subscription's publisher) wakes at once instead of
//! polling the store.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// One bell per process that someone listens to.
#[derive(Debug, Default)]
pub(crate) struct ScheduleBells {
    bells: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl ScheduleBells {
    /// A receiver whose value changes when `pid` gets new slots.
    pub(crate) fn listen(&self, pid: &str) -> watch::Receiver<u64> {
        let mut bells = self.bells.lock().unwrap_or_else(|p| p.into_inner());
        if bells.len() > 4096 {
            bells.retain(|_, b| b.receiver_count() > 0);
        }
        bells
            .entry(pid.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Rings `pid`'s bell, if anyone listens.
    pub(crate) fn ring(&self, pid: &str) {
        let bells = self.bells.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = bells.get(pid) {
            b.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_sees_a_ring_and_others_do_not() {
        let bells = ScheduleBells::default();
        let mut a = bells.listen("a");
        let mut b = bells.listen("b");
        bells.ring("a");
        bells.ring("nobody");
        assert!(a.has_changed().unwrap_or(false));
        assert!(!b.has_changed().unwrap_or(true));
        a.borrow_and_update();
        assert!(!a.has_changed().unwrap_or(true));
        b.borrow_and_update();
    }
}
