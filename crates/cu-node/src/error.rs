//! Node errors and their HTTP status codes.

use thiserror::Error;

/// Why a node operation failed; [`NodeError::status`] is the HTTP status the reference CU answers.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// Malformed input, a bad signature, an unknown target or module (400).
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not do this to that process (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such process or message (404).
    #[error("{0}")]
    NotFound(String),
    /// Too large: the item, or a process's memory/compute limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Cannot be evaluated: unsupported module format, bad tags (422).
    #[error("{0}")]
    Unprocessable(String),
    /// Queues are full; retry later (503).
    #[error("{0}")]
    Busy(String),
    /// The dry-run queue is full (429).
    #[error("{0}")]
    RateLimited(String),
    /// An upstream SU or gateway answered badly (502).
    #[error("{0}")]
    BadGateway(String),
    /// An upstream SU or gateway could not be reached (503).
    #[error("{0}")]
    Unavailable(String),
    /// The process moved to another node of the cluster while this node served the request; nothing was
    /// written, so the request can be sent again, to the new owner (503).
    #[error("{0}")]
    Moved(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl NodeError {
    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            NodeError::BadRequest(_) => 400,
            NodeError::Forbidden(_) => 403,
            NodeError::NotFound(_) => 404,
            NodeError::TooLarge(_) => 413,
            NodeError::Unprocessable(_) => 422,
            NodeError::RateLimited(_) => 429,
            NodeError::Busy(_) | NodeError::Unavailable(_) | NodeError::Moved(_) => 503,
            NodeError::BadGateway(_) => 502,
            NodeError::Internal(_) => 500,
        }
    }
}

impl From<cu_store::StoreError> for NodeError {
    fn from(e: cu_store::StoreError) -> Self {
        match e {
            // The process moved to another node (a cluster): the client retries, and lands at the owner.
            cu_store::StoreError::NotOwner { .. } => NodeError::Moved(e.to_string()),
            _ => NodeError::Internal(e.to_string()),
        }
    }
}

impl From<cu_scheduler::SchedError> for NodeError {
    fn from(e: cu_scheduler::SchedError) -> Self {
        use cu_scheduler::SchedError as S;
        match e {
            S::UnknownProcess(p) => NodeError::NotFound(format!("process {p} not found")),
            S::Cron(m) | S::Invalid(m) => NodeError::BadRequest(m),
            S::Store(e) => e.into(),
            other => NodeError::Internal(other.to_string()),
        }
    }
}

impl From<cu_engine::EngineError> for NodeError {
    fn from(e: cu_engine::EngineError) -> Self {
        use cu_engine::EngineError as E;
        match e {
            E::UnknownProcess(p) => NodeError::NotFound(format!("process {p} not found")),
            E::UnknownModule(m) => NodeError::NotFound(format!("module {m} not found")),
            E::Module { .. } => NodeError::Unprocessable(e.to_string()),
            E::Limits { .. } => NodeError::TooLarge(e.to_string()),
            E::Busy(_) => NodeError::Busy(e.to_string()),
            // WeaveDrive data the process reads cannot be had now: retried on the next request.
            E::Halted { .. } => NodeError::Unavailable(e.to_string()),
            E::Moved(_) => NodeError::Moved(e.to_string()),
            E::DryRunBusy => NodeError::RateLimited("Dry-Run enqueue limit exceeded".into()),
            // The same dry-run would run as long again: not worth a retry (422, not 503).
            E::DryRunTimeout(_) | E::DryRunCancelled => NodeError::Unprocessable(e.to_string()),
            other => NodeError::Internal(other.to_string()),
        }
    }
}
