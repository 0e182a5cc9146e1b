//! The error shape shared by every boundary.
//!
//! Over HTTP it is the body `{"error":{"code":"…","message":"…"}}` ([`ErrorBody`]); over the
//! Unix sockets it is an [`ErrorReply`] inside the response enum of that socket.

use serde::{Deserialize, Serialize};

/// A machine-readable error class. Programs branch on the code; people read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request was malformed or failed validation.
    BadRequest,
    /// Missing or wrong credentials.
    Unauthorized,
    /// Valid credentials, but the policy refuses the request.
    Forbidden,
    /// The named thing (unit, request, blob, session) does not exist.
    NotFound,
    /// The request conflicts with the current state (name in use, already running, …).
    Conflict,
    /// A lease was presented after it expired or was superseded.
    LeaseExpired,
    /// The body or frame exceeds a size cap.
    TooLarge,
    /// A deadline passed before the request could complete.
    Timeout,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// The request waits for `agentbox approve`.
    ApprovalRequired,
    /// Something failed on the answering side; the message says what.
    Internal,
}

/// An error as carried inside a socket response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ErrorReply {
    /// The error class.
    pub code: ErrorCode,
    /// A sentence for a person: what was wrong and, where possible, what to do.
    pub message: String,
}

impl ErrorReply {
    /// Builds an error reply.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ErrorReply {}

/// The JSON body of every HTTP error: `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorReply,
}
