//! Request bodies under a deadline and a node-wide memory budget.
//!
//! Handlers buffer whole bodies (a data item is verified as a whole), so without a bound a few slow
//! uploads near the body limit hold gigabytes: 20 stalled 60 MB uploads held 1.36 GB. Every body is read
//! through [`GuardedBody`]:
//! - its bytes are reserved from the [`UploadBudget`] shared by all requests (the declared
//!   `Content-Length` up front, so a request that cannot fit is refused before anything is read; chunked
//!   bodies frame by frame), and released when the request's answer is made;
//! - it must arrive whole within the body deadline (a half-sent body is cut off, not waited for).
//!
//! A body that fails either way makes the request a 503 (budget, with `Retry-After`) or a 408 (deadline),
//! whatever the handler answered after its read failed.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::error::error_response;

/// Bytes of request bodies the node holds at once, over all requests.
#[derive(Debug)]
pub struct UploadBudget {
    limit: u64,
    used: AtomicU64,
}

impl UploadBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        UploadBudget {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn try_reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

const FINE: u8 = 0;
const OVER_BUDGET: u8 = 1;
const TIMED_OUT: u8 = 2;

/// One request's share of the budget; released on drop.
pub(crate) struct Reservation {
    budget: Arc<UploadBudget>,
    held: AtomicU64,
    declared: u64,
    received: AtomicU64,
    failure: AtomicU8,
}

impl Reservation {
    /// Reserves the declared length (0 for a chunked body); `None` when the budget cannot hold it.
    pub(crate) fn new(budget: Arc<UploadBudget>, declared: u64) -> Option<Arc<Self>> {
        if !budget.try_reserve(declared) {
            return None;
        }
        Some(Arc::new(Reservation {
            budget,
            held: AtomicU64::new(declared),
            declared,
            received: AtomicU64::new(0),
            failure: AtomicU8::new(FINE),
        }))
    }

    /// Accounts `n` more received bytes; false when they do not fit the budget.
    fn receive(&self, n: u64) -> bool {
        let received = self.received.fetch_add(n, Ordering::AcqRel) + n;
        let beyond_declared = received.saturating_sub(self.declared.max(self.held.load(Ordering::Acquire)));
        if beyond_declared == 0 {
            return true;
        }
        if self.budget.try_reserve(beyond_declared) {
            self.held.fetch_add(beyond_declared, Ordering::AcqRel);
            true
        } else {
            false
        }
    }

    /// The answer that replaces the handler's when the body failed, if it did.
    pub(crate) fn failure_response(&self) -> Option<Response> {
        match self.failure.load(Ordering::Acquire) {
            OVER_BUDGET => Some(busy_response()),
            TIMED_OUT => Some(error_response(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive within the node's body deadline",
            )),
            _ => None,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.held.load(Ordering::Acquire));
    }
}

/// 503 with `Retry-After`: the node holds as many uploads as its budget allows.
pub(crate) fn busy_response() -> Response {
    let mut r = error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "the node is receiving as many request bodies as its upload budget allows; retry shortly",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// A request body read under a [`Reservation`] and a deadline.
pub(crate) struct GuardedBody {
    inner: Body,
    reservation: Arc<Reservation>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl GuardedBody {
    pub(crate) fn new(inner: Body, reservation: Arc<Reservation>, timeout: Duration) -> Self {
        GuardedBody {
            inner,
            reservation,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    fn fail(&self, why: u8, message: &'static str) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.reservation.failure.store(why, Ordering::Release);
        Poll::Ready(Some(Err(axum::Error::new(message))))
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return self.fail(TIMED_OUT, "request body deadline passed");
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !self.reservation.receive(data.len() as u64)
                {
                    return self.fail(OVER_BUDGET, "upload budget exhausted");
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reservations_hold_and_release_budget() {
        let budget = Arc::new(UploadBudget::new(100));
        let a = Reservation::new(budget.clone(), 60).unwrap();
        assert!(Reservation::new(budget.clone(), 50).is_none());
        let b = Reservation::new(budget.clone(), 40).unwrap();
        assert_eq!(budget.used(), 100);
        // Bytes within the declared length take nothing more.
        assert!(a.receive(60));
        assert_eq!(budget.used(), 100);
        drop(a);
        drop(b);
        assert_eq!(budget.used(), 0);
        // A chunked body grows its reservation frame by frame, up to the budget.
        let c = Reservation::new(budget.clone(), 0).unwrap();
        assert!(c.receive(70));
        assert!(c.receive(30));
        assert!(!c.receive(1));
        assert_eq!(budget.used(), 100);
        drop(c);
        assert_eq!(budget.used(), 0);
    }
}
