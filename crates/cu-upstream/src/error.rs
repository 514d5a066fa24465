//! Upstream errors: what went wrong talking to an SU or a gateway, and how a node should answer it.

use thiserror::Error;

/// Why an upstream read failed. [`UpstreamError::status`] is the HTTP status a CU answers its client
/// with: the upstream could not be reached (503, retry later), answered badly (502), does not know the
/// item (404), or served a schedule that must not be evaluated (422).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum UpstreamError {
    /// No answer within the timeout after every retry, or the connection failed.
    #[error("{what}: {url} is unreachable: {reason}")]
    Unreachable {
        /// What was being read (e.g. "SU page").
        what: String,
        /// The URL asked.
        url: String,
        /// The transport error of the last try.
        reason: String,
    },
    /// The upstream answered an error status (other than 404) after every retry.
    #[error("{what}: {url} answered HTTP {status}: {body}")]
    Status {
        /// What was being read.
        what: String,
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body.
        body: String,
    },
    /// The upstream does not have it (404, or an empty GraphQL answer).
    #[error("{0}")]
    NotFound(String),
    /// The answer could not be parsed or broke the protocol (wrong process, missing tags, too large).
    #[error("{what}: {url} answered something malformed: {reason}")]
    Malformed {
        /// What was being read.
        what: String,
        /// The URL asked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The schedule is broken: a hash chain that does not follow, a gap in the nonces. Nothing at or past
    /// the break is evaluated.
    #[error("{0}")]
    Schedule(String),
    /// The configuration cannot work (a URL that is not http(s)).
    #[error("upstream configuration: {0}")]
    Config(String),
}

impl UpstreamError {
    /// The HTTP status a CU answers for this failure.
    pub fn status(&self) -> u16 {
        match self {
            UpstreamError::Unreachable { .. } => 503,
            UpstreamError::Status { .. } | UpstreamError::Malformed { .. } => 502,
            UpstreamError::NotFound(_) => 404,
            UpstreamError::Schedule(_) => 422,
            UpstreamError::Config(_) => 500,
        }
    }

    pub(crate) fn malformed(what: &str, url: &str, reason: impl std::fmt::Display) -> UpstreamError {
        UpstreamError::Malformed {
            what: what.to_owned(),
            url: url.to_owned(),
            reason: reason.to_string(),
        }
    }
}
