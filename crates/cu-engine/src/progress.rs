//! Which results of a process are durable, and who is waiting for which.
//!
//! Results are committed by the store's writer thread in log order; its callbacks raise the process's
//! watermark and answer every waiter at or below it. A waiter that registers after its result was
//! committed is answered at once (the check and the registration happen under one lock).

use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::error::EngineError;

/// Answers a caller waiting for a log position: `Ok(pos)` once its result is durable.
pub type Waiter = oneshot::Sender<Result<u64, EngineError>>;

/// The durable watermark of one process and its waiters.
#[derive(Default)]
pub struct Progress {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    committed: u64,
    waiters: Vec<(u64, Waiter)>,
}

impl Progress {
    /// A process whose results up to `committed` are durable.
    pub fn new(committed: u64) -> Self {
        Progress {
            inner: Mutex::new(Inner {
                committed,
                waiters: Vec::new(),
            }),
        }
    }

    /// The highest log position whose result is durable.
    pub fn committed(&self) -> u64 {
        self.inner.lock().map_or(0, |i| i.committed)
    }

    /// Answers `waiter` when the result at `pos` is durable (at once if it already is).
    pub fn wait(&self, pos: u64, waiter: Waiter) {
        let Ok(mut inner) = self.inner.lock() else {
            let _ = waiter.send(Err(EngineError::Stopped));
            return;
        };
        if inner.committed >= pos {
            drop(inner);
            let _ = waiter.send(Ok(pos));
        } else {
            inner.waiters.push((pos, waiter));
        }
    }

    /// The store committed the result at `pos` (or failed to).
    pub fn committed_to(&self, pos: u64, outcome: Result<(), EngineError>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if outcome.is_ok() {
            inner.committed = inner.committed.max(pos);
        }
        let ready: Vec<(u64, Waiter)>;
        (ready, inner.waiters) = std::mem::take(&mut inner.waiters)
            .into_iter()
            .partition(|(p, _)| *p <= pos);
        drop(inner);
        for (p, waiter) in ready {
            let _ = waiter.send(outcome.clone().map(|()| p));
        }
    }

    /// Fails every waiter (the process could not be evaluated).
    pub fn fail_all(&self, error: &EngineError) {
        let waiters = match self.inner.lock() {
            Ok(mut inner) => std::mem::take(&mut inner.waiters),
            Err(_) => return,
        };
        for (_, waiter) in waiters {
            let _ = waiter.send(Err(error.clone()));
        }
    }

    /// Fails the waiters beyond `last` (positions that are not in the log).
    pub fn fail_beyond(&self, last: u64, error: &EngineError) {
        let beyond = match self.inner.lock() {
            Ok(mut inner) => {
                let (beyond, keep) = std::mem::take(&mut inner.waiters)
                    .into_iter()
                    .partition(|(p, _)| *p > last);
                inner.waiters = keep;
                beyond
            }
            Err(_) => return,
        };
        for (_, waiter) in beyond {
            let _ = waiter.send(Err(error.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_answered_in_order_of_commit() {
        let p = Progress::new(2);
        let (a, mut ra) = oneshot::channel();
        p.wait(1, a);
        assert_eq!(ra.try_recv().unwrap(), Ok(1), "already durable");
        let (b, mut rb) = oneshot::channel();
        let (c, mut rc) = oneshot::channel();
        p.wait(4, b);
        p.wait(6, c);
        p.committed_to(5, Ok(()));
        assert_eq!(rb.try_recv().unwrap(), Ok(4));
        assert!(rc.try_recv().is_err(), "6 is not durable yet");
        p.committed_to(3, Ok(()));
        assert_eq!(p.committed(), 5, "the watermark never goes back");
        p.fail_beyond(5, &EngineError::Stopped);
        assert_eq!(rc.try_recv().unwrap(), Err(EngineError::Stopped));
    }
}
