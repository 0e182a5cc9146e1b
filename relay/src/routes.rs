//! The bridge API on `AGENTBOX_BRIDGE_PORT`, put together: `GET /healthz` (no token; it
//! reveals liveness and version only) and, behind the bridge-token check
//! ([`crate::http::require_token`]), every route family under `/v1/`:
//!
//! - `/v1/bridge/*` (poll, progress, result), `/v1/blobs/*`, `/v1/seed/*`, `/v1/sync/*`
//!   and `/v1/workspace/*` are in [`crate::bridge`];
//! - `/v1/uploads/*` and `/v1/downloads/*` are in [`crate::files`];
//! - `/v1/terms/*` are in [`crate::term`];
//! - `/v1/exec*` (one-off commands) are in [`crate::exec`];
//! - `/v1/tunnel*` (TCP to a port of the box's loopback) are in [`crate::tunnel`].
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
use crate::term::Terms;
use crate::token::Token;

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
}

/// The router: `/healthz`, and every family's routes behind the token check.
pub fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .merge(crate::exec::routes(state.bridge.workspace.clone()))
        .merge(crate::bridge::routes(state.bridge))
        .merge(crate::files::routes(state.uploads, state.downloads))
        .merge(crate::term::routes(state.terms))
        .merge(crate::tunnel::routes())
        .route_layer(middleware::from_fn_with_state(
            Arc::new(state.token),
            require_token,
        ));
    Router::new().route("/healthz", get(healthz)).merge(v1)
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        program: "agentbox-relay".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        protocol_version: PROTOCOL_VERSION,
    })
}
