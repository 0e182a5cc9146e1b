//! Where a transfer's bytes live and go: the transfer id check (an id becomes part of a
//! staging file name), the staging directory's cleanup at start, and box paths as the
//! host names them.

use std::path::{Path, PathBuf};

use crate::http::ApiError;

/// Refuses anything but a transfer id (it becomes part of a staging file name).
pub(super) fn checked_id(id: &str) -> Result<(), ApiError> {
    if agentbox_protocol::files::is_transfer_id(id) {
        Ok(())
    } else {
        Err(ApiError::new(
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
