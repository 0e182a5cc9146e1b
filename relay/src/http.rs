//! The HTTP plumbing every route family of the bridge API shares: the error answer
//! ([`ApiError`], JSON `{"error":{"code","message"}}` with a matching status) and the
//! bridge-token check ([`require_token`]: `x-agentbox-token`, or `Authorization: Bearer`).
//!
//! It uses no route family: [`crate::bridge`], [`crate::files`] and [`crate::term`] use
//! it, and [`crate::routes`] puts them together behind the token check.

use std::sync::Arc;

use agentbox_protocol::error::ErrorBody;
use agentbox_protocol::{ErrorCode, ErrorReply};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::token::Token;

/// An error answer.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub ErrorReply);

impl ApiError {
    /// An error with its status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self(status, ErrorReply::new(code, message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

/// `500` with the error's text.
pub fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
        e.to_string(),
    )
}

/// The tokens a request presents: `x-agentbox-token` (what the host sends: Daytona's preview
/// proxy takes `Authorization: Bearer` for a Daytona API key, sends it to Daytona's API to
/// check, and passes it on) and `Authorization: Bearer` (local clients).
pub fn presented_tokens(headers: &axum::http::HeaderMap) -> Vec<&str> {
    let ours = headers
        .get(crate::proxy::TOKEN_HEADER)
        .and_then(|v| v.to_str().ok());
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    ours.into_iter().chain(bearer).collect()
}

/// The most of a refused request's body read before the refusal is sent.
const REFUSED_BODY_LIMIT: usize = 64 * 1024;

/// How long a refused request's body is waited for.
const REFUSED_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads what is still coming of a refused request's (small) body, so the refusal is not
/// sent, and the connection then closed, while the client is still sending: a client that
/// writes its body after the close gets a reset instead of the answer (curl 7.88 over
/// HTTP/2 ended with no status at all; hyper's client over HTTP/1.1 with a broken pipe).
/// Bounded in size and time; past either, the refusal goes as before.
async fn read_small_body(request: Request) {
    let body = axum::body::to_bytes(request.into_body(), REFUSED_BODY_LIMIT);
    let _ = tokio::time::timeout(REFUSED_BODY_WAIT, body).await;
}

/// Middleware: the request goes on only with the bridge token ([`presented_tokens`]);
/// a share token is answered `403` (it opens only the routes of its scopes, see
/// [`crate::share`]), anything else `401`.
pub async fn require_token(
    State(token): State<Arc<Token>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = presented_tokens(request.headers());
    if presented.iter().any(|t| token.matches(t)) {
        return next.run(request).await;
    }
    let share = presented
        .iter()
        .any(|t| t.starts_with(agentbox_protocol::share::TOKEN_PREFIX));
    read_small_body(request).await;
    if share {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "a share token opens only terminal viewing and logs; this route is the box owner's",
        )
        .into_response()
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing or wrong bridge token",
        )
        .into_response()
    }
}
