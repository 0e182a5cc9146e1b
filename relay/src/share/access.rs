//! Who is calling a route that a share token may open: [`Caller`], put into the request by
//! [`require_scope`], which accepts the bridge token (the owner's host: everything) or a
//! live share token that has the route family's scope.

use std::sync::Arc;

use agentbox_protocol::share::Scope;
use agentbox_protocol::ErrorCode;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::store::{Grant, Shares};
use crate::http::{presented_tokens, ApiError};
use crate::token::Token;

/// Who sent a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The owner's host (the bridge token).
    Owner,
    /// A teammate, with a share token.
    Share(Arc<Grant>),
}

impl Caller {
    /// Whether this caller may do what `scope` allows (the owner may do everything).
    pub fn may(&self, scope: Scope) -> bool {
        match self {
            Self::Owner => true,
            Self::Share(g) => g.may(scope),
        }
    }

    /// The share's grant, for a teammate.
    pub fn grant(&self) -> Option<&Arc<Grant>> {
        match self {
            Self::Owner => None,
            Self::Share(g) => Some(g),
        }
    }

    /// `403` naming what the share lacks.
    pub fn refused(scope: Scope, what: &str) -> ApiError {
        ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("this share does not allow {what} (it lacks scope `{scope}`; ask the box's owner for a share with it)"),
        )
    }
}

/// What [`require_scope`] checks against.
#[derive(Clone)]
pub struct Access {
    /// The bridge token.
    pub token: Token,
    /// The live shares.
    pub shares: Arc<Shares>,
}

/// Middleware state: the tokens and the scope the routes need.
pub type ScopeState = (Access, Scope);

/// Middleware: the bridge token, or a live share token with the scope, goes on with its
/// [`Caller`] in the request's extensions; anything else is `401`, a share token without
/// the scope `403`.
pub async fn require_scope(
    State((access, scope)): State<ScopeState>,
    mut request: Request,
    next: Next,
) -> Response {
    let presented = presented_tokens(request.headers());
    let caller = if presented.iter().any(|t| access.token.matches(t)) {
        Some(Caller::Owner)
    } else {
        presented
            .iter()
            .find_map(|t| access.shares.check(t))
            .map(|g| Caller::Share(Arc::new(g)))
    };
    match caller {
        Some(c) if c.may(scope) => {
            request.extensions_mut().insert(c);
            next.run(request).await
        }
        Some(_) => Caller::refused(scope, "this").into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "missing, wrong, revoked or expired token",
        )
        .into_response(),
    }
}
