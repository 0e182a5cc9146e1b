//! The file-transfer API of the bridge (see `agentbox_protocol::files` for the wire):
//! resumable uploads that land only once their blake3 matches, and downloads served by
//! range with a digest computed while the bytes travel.
//!
//! - `upload.rs`: `/v1/uploads/{id}` (`GET` status, `PUT` bytes at an offset, `DELETE`)
//!   and `POST /v1/uploads/{id}/land`; [`Uploads`] is the registry of uploads in
//!   progress, which seeds and syncs ([`crate::bridge`]) claim through [`claim_verified`].
//! - `download.rs`: `POST /v1/downloads`, `GET`/`DELETE /v1/downloads/{id}`,
//!   `GET /v1/downloads/{id}/digest`; [`Downloads`] is their registry.
//! - `paths.rs`: the transfer id check, box paths, the staging directory.
//!
//! Staging lives in `$AGENTBOX_STATE_DIR/transfers/`: `up-<id>.part` survives a relay
//! restart (the host resumes at its length and the hash is recomputed from disk);
//! `down-<id>.tar` snapshots are per relay run and removed at start.

mod download;
mod paths;
mod upload;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use download::Downloads;
pub use paths::{box_path, prepare_staging};
pub use upload::{claim_verified, Claimed, Uploads};

/// The transfer routes (the token check is the caller's).
pub fn routes(uploads: Arc<Uploads>, downloads: Arc<Downloads>) -> Router {
    let uploads = Router::new()
        .route(
            "/v1/uploads/{id}",
            get(upload::status).put(upload::put).delete(upload::abort),
        )
        .route("/v1/uploads/{id}/land", post(upload::land))
        .with_state(uploads);
    let downloads = Router::new()
        .route("/v1/downloads", post(download::start))
        .route(
            "/v1/downloads/{id}",
            get(download::fetch).delete(download::finish),
        )
        .route("/v1/downloads/{id}/digest", get(download::digest))
        .with_state(downloads);
    uploads.merge(downloads)
}
