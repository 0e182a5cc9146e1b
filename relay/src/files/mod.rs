//! The file-transfer API of the bridge (see `agentbox_protocol::files` for the wire):
//! resumable uploads that land only once their blake3 matches, and downloads served by
//! range with a digest computed while the bytes travel.
//!
//! Staging lives in `$AGENTBOX_STATE_DIR/transfers/`: `up-<id>.part` survives a relay
//! restart (the host resumes at its length and the hash is recomputed from disk);
//! `down-<id>.tar` snapshots are per relay run and removed at start.

mod download;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use download::Downloads;
pub use upload::{claim_verified, Claimed, Uploads};

use crate::bridge::AppState;

/// The transfer routes (mounted behind the token check).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/v1/uploads/{id}",
            get(upload::status).put(upload::put).delete(upload::abort),
        )
        .route("/v1/uploads/{id}/land", post(upload::land))
        .route("/v1/downloads", post(download::start))
        .route(
            "/v1/downloads/{id}",
            get(download::fetch).delete(download::finish),
        )
        .route("/v1/downloads/{id}/digest", get(download::digest))
}

/// Refuses anything but a transfer id (it becomes part of a staging file name).
fn checked_id(id: &str) -> Result<(), crate::bridge::ApiError> {
    if agentbox_protocol::files::is_transfer_id(id) {
        Ok(())
    } else {
        Err(crate::bridge::ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            agentbox_protocol::ErrorCode::BadRequest,
            "a transfer id is 16 to 64 lowercase hex digits",
        ))
    }
}

/// A box path from the host: relative to the workspace unless absolute. Returns the path
/// and whether it was written with a trailing `/`.
pub fn box_path(workspace: &Path, raw: &str) -> (PathBuf, bool) {
    let slash = raw.ends_with('/');
    let p = Path::new(raw);
    let path = if p.is_absolute() {
        p.to_path_buf()
    } else {
        workspace.join(p)
    };
    (path, slash)
}

/// Prepares the staging directory: creates it and removes download snapshots and upload
/// parts untouched for a day.
pub fn prepare_staging(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let day = std::time::Duration::from_secs(86_400);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > day));
        if name.starts_with("down-") || (name.starts_with("up-") && stale) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(())
}
