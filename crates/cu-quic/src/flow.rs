//! The schedule subscription's rules, without I/O or clocks (`docs/quic.md` §4): credit-based flow
//! control, slot order, resumption, and stall detection on a caller-supplied time in milliseconds, so
//! the rules are tested with simulated time, loss of the connection and peers that stall.
//!
//! The subscriber grants a window of slots; the publisher sends at most that many before more credit
//! arrives and sends them in nonce order from the subscription's `from` with no gap. The subscriber
//! tops the window up as it consumes, so a fast pair never waits on credit and a slow subscriber
//! slows the publisher instead of buffering without bound. After a disconnect the subscriber resumes
//! from the first nonce it has not consumed.

/// A protocol violation or a stalled peer: the stream ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The publisher sent a slot beyond the window it was granted.
    #[error("slot {nonce} was sent without credit")]
    NoCredit {
        /// The slot's nonce.
        nonce: u64,
    },
    /// A slot out of order: a gap after the last one.
    #[error("slot {got} follows slot {expected_after}: the schedule has a gap")]
    Gap {
        /// The nonce that was expected next, minus one.
        expected_after: u64,
        /// The nonce received.
        got: u64,
    },
    /// Credit past the protocol's limit.
    #[error("credit of {0} slots exceeds the limit")]
    CreditOverflow(u64),
    /// The subscriber granted no credit for too long while slots wait.
    #[error("the subscriber gave no credit for {0} ms")]
    Stalled(u64),
}

/// What the subscriber does with a received slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    /// The next slot: consume it.
    Next,
    /// A slot already consumed (a publisher replaying after a resume): skip it.
    Duplicate,
}

/// The publishing side (the SU) of one subscription.
#[derive(Debug, Clone)]
pub struct Publisher {
    next: u64,
    credit: u64,
    stall_after_ms: u64,
    /// Since when slots wait with no credit.
    waiting_since: Option<u64>,
}

impl Publisher {
    /// A subscription from nonce `from` with `credit` initial slots; a subscriber that leaves slots
    /// waiting without credit for `stall_after_ms` is [`FlowError::Stalled`].
    pub fn new(from: u64, credit: u32, stall_after_ms: u64) -> Publisher {
        Publisher {
            next: from,
            credit: u64::from(credit),
            stall_after_ms,
            waiting_since: None,
        }
    }

    /// The next nonce to send.
    pub fn next_nonce(&self) -> u64 {
        self.next
    }

    /// How many slots may be sent now.
    pub fn window(&self) -> u64 {
        self.credit
    }

    /// Credit from the subscriber.
    pub fn grant(&mut self, slots: u32) -> Result<(), FlowError> {
        let credit = self.credit + u64::from(slots);
        if credit > u64::from(crate::frame::MAX_CREDIT) {
            return Err(FlowError::CreditOverflow(credit));
        }
        self.credit = credit;
        if credit > 0 {
            self.waiting_since = None;
        }
        Ok(())
    }

    /// Records that slot `nonce` was sent. Slots must be sent in order, within the window.
    pub fn sent(&mut self, nonce: u64) -> Result<(), FlowError> {
        if self.credit == 0 {
            return Err(FlowError::NoCredit { nonce });
        }
        if nonce != self.next {
            return Err(FlowError::Gap {
                expected_after: self.next.wrapping_sub(1),
                got: nonce,
            });
        }
        self.credit -= 1;
        self.next += 1;
        Ok(())
    }

    /// Called whenever the publisher looks at its subscription at `now_ms`, with whether slots are
    /// waiting to be sent. A subscriber that leaves them waiting without credit for longer than the
    /// stall limit ends the subscription.
    pub fn poll(&mut self, now_ms: u64, pending: bool) -> Result<(), FlowError> {
        if !pending || self.credit > 0 {
            self.waiting_since = None;
            return Ok(());
        }
        let since = *self.waiting_since.get_or_insert(now_ms);
        let waited = now_ms.saturating_sub(since);
        if waited >= self.stall_after_ms {
            return Err(FlowError::Stalled(waited));
        }
        Ok(())
    }

    /// When a stalled subscriber would be declared stalled (ms), if slots wait without credit.
    pub fn stall_deadline(&self) -> Option<u64> {
        self.waiting_since.map(|t| t + self.stall_after_ms)
    }
}

/// The subscribing side (the CU) of one subscription.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The next nonce to receive.
    expected: u64,
    /// The first nonce not yet consumed (stored).
    next: u64,
    window: u32,
    /// Slots granted and not yet received.
    outstanding: u64,
}

impl Subscriber {
    /// A subscriber that wants every slot from `from` and keeps up to `window` slots granted.
    pub fn new(from: u64, window: u32) -> Subscriber {
        let window = window.clamp(1, crate::frame::MAX_CREDIT);
        Subscriber {
            expected: from,
            next: from,
            window,
            outstanding: 0,
        }
    }

    /// The credit of the `Subscribe` frame (the whole window).
    pub fn open(&mut self) -> u32 {
        self.outstanding = u64::from(self.window);
        self.window
    }

    /// Checks a received slot against the order and the credit.
    pub fn on_slot(&mut self, nonce: u64) -> Result<Accept, FlowError> {
        if self.outstanding == 0 {
            return Err(FlowError::NoCredit { nonce });
        }
        self.outstanding -= 1;
        if nonce < self.expected {
            return Ok(Accept::Duplicate);
        }
        if nonce != self.expected {
            return Err(FlowError::Gap {
                expected_after: self.expected.wrapping_sub(1),
                got: nonce,
            });
        }
        self.expected += 1;
        Ok(Accept::Next)
    }

    /// Marks an accepted slot as consumed (stored): it will not be asked for again.
    pub fn consumed(&mut self, nonce: u64) {
        self.next = self.next.max(nonce + 1);
    }

    /// Credit to send now: once half the window is used, top it up again.
    pub fn credit_due(&mut self) -> Option<u32> {
        let window = u64::from(self.window);
        if self.outstanding * 2 > window {
            return None;
        }
        let more = window - self.outstanding;
        self.outstanding = window;
        u32::try_from(more).ok()
    }

    /// Where a new subscription resumes after this one ends: the first nonce not consumed.
    pub fn resume_from(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_pair_never_runs_out_of_credit() -> Result<(), FlowError> {
        let mut sub = Subscriber::new(0, 8);
        let mut publ = Publisher::new(0, sub.open(), 1000);
        for n in 0..100 {
            assert!(publ.window() > 0, "stalled at {n}");
            publ.sent(n)?;
            assert_eq!(sub.on_slot(n)?, Accept::Next);
            sub.consumed(n);
            if let Some(c) = sub.credit_due() {
                publ.grant(c)?;
            }
        }
        assert_eq!(sub.resume_from(), 100);
        Ok(())
    }

    #[test]
    fn a_publisher_past_its_credit_or_out_of_order_is_a_violation() -> Result<(), FlowError> {
        let mut sub = Subscriber::new(5, 2);
        let mut publ = Publisher::new(5, sub.open(), 1000);
        publ.sent(5)?;
        publ.sent(6)?;
        assert_eq!(publ.sent(7), Err(FlowError::NoCredit { nonce: 7 }));
        assert_eq!(sub.on_slot(5)?, Accept::Next);
        sub.consumed(5);
        assert_eq!(
            sub.on_slot(8),
            Err(FlowError::Gap {
                expected_after: 5,
                got: 8
            })
        );
        Ok(())
    }

    #[test]
    fn a_subscriber_that_stalls_is_dropped_after_the_limit_in_simulated_time() -> Result<(), FlowError> {
        let mut publ = Publisher::new(0, 1, 5_000);
        publ.sent(0)?;
        // Nothing waiting: no stall however long.
        publ.poll(0, false)?;
        publ.poll(60_000, false)?;
        // Slots wait from t = 60 s with no credit.
        publ.poll(60_000, true)?;
        publ.poll(64_999, true)?;
        assert_eq!(publ.stall_deadline(), Some(65_000));
        assert_eq!(publ.poll(65_000, true), Err(FlowError::Stalled(5_000)));
        // Credit in time resets the clock.
        let mut publ = Publisher::new(0, 0, 5_000);
        publ.poll(0, true)?;
        publ.grant(1)?;
        publ.poll(10_000, true)?;
        Ok(())
    }

    #[test]
    fn a_resumed_subscription_skips_what_was_consumed_and_misses_nothing() -> Result<(), FlowError> {
        let mut sub = Subscriber::new(0, 4);
        sub.open();
        for n in 0..3 {
            sub.on_slot(n)?;
            sub.consumed(n);
        }
        // The connection drops; the publisher may replay from an older point.
        let mut again = Subscriber::new(sub.resume_from(), 4);
        again.open();
        assert_eq!(again.resume_from(), 3);
        assert_eq!(again.on_slot(3)?, Accept::Next);
        again.consumed(3);
        assert_eq!(again.on_slot(2)?, Accept::Duplicate);
        Ok(())
    }

    #[test]
    fn a_batch_is_received_before_it_is_consumed() -> Result<(), FlowError> {
        let mut sub = Subscriber::new(10, 8);
        sub.open();
        for n in 10..14 {
            assert_eq!(sub.on_slot(n)?, Accept::Next);
        }
        // The batch failed to store: resume where consumption stopped, not where reception did.
        assert_eq!(sub.resume_from(), 10);
        sub.consumed(13);
        assert_eq!(sub.resume_from(), 14);
        Ok(())
    }

    #[test]
    fn credit_is_bounded() {
        let mut publ = Publisher::new(0, crate::frame::MAX_CREDIT, 1);
        assert!(matches!(publ.grant(1), Err(FlowError::CreditOverflow(_))));
    }
}
