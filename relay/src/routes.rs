//! The bridge API on `AGENTBOX_BRIDGE_PORT`, put together: `GET /healthz` (no token; it
//! reveals liveness and version only) and, behind the bridge-token check
//! ([`crate::http::require_token`]), every route family under `/v1/`:
//!
//! - `/v1/bridge/*` (poll, progress, result), `/v1/blobs/*`, `/v1/seed/*`, `/v1/sync/*`
//!   and `/v1/workspace/*` are in [`crate::bridge`];
//! - `/v1/uploads/*` and `/v1/downloads/*` are in [`crate::files`];
//! - `/v1/terms/*` are in [`crate::term`] and `/v1/logs` in [`crate::share::logs`]: these
//!   also take a share token with their scope (`attach:read`, `logs`), see [`crate::share`];
//! - `/v1/shares*` (the owner's share management) are in [`crate::share`];
//! - `/v1/exec*` (one-off commands) are in [`crate::exec`];
//! - `/v1/tunnel*` (TCP to a port of the box's loopback) are in [`crate::tunnel`];
//! - `/v1/stats` (the box's CPU, memory, disk, heaviest processes) is in [`crate::stats`].
//!
//! Each family serves from its own state; this is the only module that knows them all.

use std::sync::Arc;

use agentbox_protocol::bridge::Health;
use agentbox_protocol::PROTOCOL_VERSION;
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};

use crate::bridge::BridgeState;
use crate::files::{Downloads, Uploads};
use crate::http::require_token;
use crate::share::guard;
use crate::term::Terms;
use crate::token::Token;
use agentbox_protocol::share::Scope;

/// What the bridge API serves from: the token, and each route family's state.
pub struct ApiState {
    /// The bridge token every `/v1/` request must present.
    pub token: Token,
    /// The bridge routes' state (the request journal, blobs, the workspace).
    pub bridge: Arc<BridgeState>,
    /// Uploads in progress (`/v1/uploads`).
    pub uploads: Arc<Uploads>,
    /// Downloads of this run (`/v1/downloads`).
    pub downloads: Arc<Downloads>,
    /// Terminal viewers (`/v1/terms`).
    pub terms: Arc<Terms>,
    /// The share tokens minted for teammates (`/v1/shares`).
    pub shares: Arc<crate::share::Shares>,
}

/// The router: `/healthz`, and every family's routes behind the token check.
pub fn router(state: ApiState) -> Router {
    let access = crate::share::Access {
        token: state.token.clone(),
        shares: state.shares.clone(),
    };
    let workspace = state.bridge.workspace.clone();
    let v1 = Router::new()
        .merge(crate::share::routes(state.shares))
        .merge(crate::exec::routes(state.bridge.workspace.clone()))
        .merge(crate::stats::routes(state.bridge.workspace.clone()))
        .merge(crate::bridge::routes(state.bridge))
        .merge(crate::files::routes(state.uploads, state.downloads))
        .merge(crate::tunnel::routes())
        .route_layer(middleware::from_fn_with_state(
            Arc::new(state.token),
            require_token,
        ));
    let scoped = Router::new()
        .merge(guard(
            crate::term::routes(state.terms),
            &access,
            Scope::AttachRead,
        ))
        .merge(guard(
            crate::share::logs_routes(workspace),
            &access,
            Scope::Logs,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(v1)
        .merge(scoped)
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        program: "agentbox-relay".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
    })
}
