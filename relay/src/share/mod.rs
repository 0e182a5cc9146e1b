//! Sharing the box with a teammate: share tokens with scopes and an expiry.
//!
//! - [`store`]: [`Shares`], the minted shares (hashed, in `run/shares.json`), revocation,
//!   expiry, and the cancellation that ends what a share opened.
//! - [`access`]: [`Caller`] and [`require_scope`], the check of the routes a share may
//!   open (terminal viewing with `attach:read`, `/v1/logs` with `logs`); every other route
//!   stays behind [`crate::http::require_token`], the bridge token alone.
//! - [`logs`]: `POST /v1/logs`, the units' logs with a command line the relay builds.
//!
//! The routes here, `GET|POST /v1/shares` and `DELETE /v1/shares/{id}`, are the owner's:
//! [`crate::routes`] puts them behind the bridge token.

pub mod access;
pub mod logs;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use agentbox_protocol::share::{Scope, ShareGrant, ShareId, ShareInfo, ShareMint};
use agentbox_protocol::ErrorCode;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{middleware, Json, Router};

pub use access::{require_scope, Access, Caller};
pub use store::{Grant, Shares};

use crate::http::{internal, ApiError};

/// The owner's share management (the bridge-token check is the caller's).
pub fn routes(shares: Arc<Shares>) -> Router {
    Router::new()
        .route("/v1/shares", get(list).post(mint))
        .route("/v1/shares/{id}", delete(revoke))
        .with_state(shares)
}

/// `POST /v1/logs`, for the owner and shares with scope `logs` (the check is [`guard`]'s).
pub fn logs_routes(workspace: PathBuf) -> Router {
    Router::new()
        .route("/v1/logs", post(logs::logs))
        .with_state(logs::LogsState::new(crate::exec::Execs::new(workspace)))
}

/// `router` behind [`require_scope`]: the bridge token, or a share token with `scope`.
pub fn guard(router: Router, access: &Access, scope: Scope) -> Router {
    router.route_layer(middleware::from_fn_with_state(
        (access.clone(), scope),
        require_scope,
    ))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
}

/// `POST /v1/shares`.
async fn mint(
    State(shares): State<Arc<Shares>>,
    body: Bytes,
) -> Result<(StatusCode, Json<ShareGrant>), ApiError> {
    let mint: ShareMint =
        serde_json::from_slice(&body).map_err(|e| bad(format!("bad share request: {e}")))?;
    let grant = shares.mint(&mint).map_err(|e| match e {
        store::ShareStoreError::Bad(m) => bad(m),
        e @ store::ShareStoreError::Io(_) => internal(e),
    })?;
    let scopes: Vec<&str> = grant.info.scopes.iter().map(|s| s.as_str()).collect();
    tracing::info!(share = %grant.info.id, scopes = %scopes.join(","), expires_at_ms = grant.info.expires_at_ms, "share minted");
    Ok((StatusCode::CREATED, Json(grant)))
}

/// `GET /v1/shares`.
async fn list(State(shares): State<Arc<Shares>>) -> Json<Vec<ShareInfo>> {
    Json(shares.list())
}

/// `DELETE /v1/shares/{id}`.
async fn revoke(
    State(shares): State<Arc<Shares>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = ShareId::parse(&id).map_err(|e| bad(e.to_string()))?;
    if shares.revoke(&id).map_err(internal)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no live share `{id}` (see `agentbox share --list`)"),
        ))
    }
}
