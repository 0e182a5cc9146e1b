//! The terminal API (`/v1/terms`): viewers of the box's tmux sessions for `agentbox
//! attach` and `agentbox shell`, over WebSocket or HTTP streaming (see
//! [`agentbox_protocol::term`] for the wire contract).
//!
//! - [`registry`]: [`Terms`], every term of this relay run: it opens terms (checking the
//!   session, or starting a shell session through the ctl daemon), and its reaper ends a
//!   term whose viewer has been gone longer than its keep window, then forgets it.
//! - [`viewer`]: a term — `tmux attach` in a PTY, its reader and writer threads.
//! - [`log`]: a term's output numbered by byte offset, bounded, with backpressure.
//! - [`output`]: reading that output from an offset, for both transports.
//! - [`http`]: `POST`/`GET /v1/terms`, `GET`/`DELETE /v1/terms/{id}`,
//!   `POST /v1/terms/{id}/input`, `POST /v1/terms/{id}/resize`,
//!   `GET /v1/terms/{id}/output` (output as a streamed body).
//! - [`ws`]: `GET /v1/terms/{id}/ws`, the same term over one WebSocket.

pub mod http;
pub mod log;
pub mod output;
pub mod registry;
pub mod viewer;
pub mod ws;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use registry::{Terms, MAX_TERMS};
pub use viewer::Term;

/// The `/v1/terms` routes (the token check is the caller's).
pub fn routes(terms: Arc<Terms>) -> Router {
    Router::new()
        .route("/v1/terms", post(http::open).get(http::list))
        .route("/v1/terms/{id}", get(http::info).delete(http::close))
        .route("/v1/terms/{id}/input", post(http::input))
        .route("/v1/terms/{id}/resize", post(http::resize))
        .route("/v1/terms/{id}/output", get(http::output))
        .route("/v1/terms/{id}/ws", get(ws::upgrade))
        .with_state(terms)
}
