//! The error answer: a status and `{"error": "<message>"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cu_attest::AttestError;
use cu_node::NodeError;

/// An error answered over HTTP as `{"error": "<message>"}` with its status.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// An error from the node; the status is [`NodeError::status`].
    #[error(transparent)]
    Node(#[from] NodeError),
    /// A request this layer rejects before the node sees it (bad query, malformed JSON, too large, rate
    /// limited, unknown route).
    #[error("{message}")]
    Request {
        /// HTTP status.
        status: StatusCode,
        /// What was wrong.
        message: String,
    },
    /// An attestation or signing error: 503 `no TEE` outside an SNP guest, 400 for a bad nonce, 502 when
    /// the key distribution service failed, 500 otherwise ([`AttestError::http_response`]).
    #[error(transparent)]
    Attest(#[from] AttestError),
}

impl HttpError {
    /// A request error with this status.
    pub fn request(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError::Request {
            status,
            message: message.into(),
        }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::request(StatusCode::BAD_REQUEST, message)
    }

    /// The status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::Node(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            HttpError::Request { status, .. } => *status,
            HttpError::Attest(e) => {
                StatusCode::from_u16(e.http_response().0).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = self.status();
        // "no TEE" is the expected answer of the evidence route on ordinary machines, not a failure.
        if status.is_server_error() && !matches!(self, HttpError::Attest(AttestError::NoTee(_))) {
            tracing::warn!(%status, error = %self, "request failed");
        }
        let moved = matches!(self, HttpError::Node(NodeError::Moved(_)));
        let mut response = error_response(status, &self.to_string());
        if moved {
            response
                .headers_mut()
                .insert(crate::cluster::MOVED, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

/// `{"error": message}` with `status`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
