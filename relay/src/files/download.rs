//! Downloads: `POST /v1/downloads` names a box path; its bytes are served by range and
//! hashed in parallel, so the host can verify without a second pass on either side.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use agentbox_protocol::files::{
    DownloadDigest, DownloadInfo, DownloadRequest, TransferId, TransferKind,
};
use agentbox_protocol::part_file::{hash_file, read_stream};
use agentbox_protocol::transfer::{append_entry, HashingWriter};
use agentbox_protocol::ErrorCode;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::watch;

use super::paths::{box_path, checked_id};
use crate::http::{internal, ApiError};

/// The digest of a download: pending, known, or why it cannot be trusted.
type Digest = Option<Result<String, String>>;

struct Entry {
    /// What is served: the file itself, or a tar snapshot in the staging directory.
    path: PathBuf,
    size: u64,
    /// For a file served in place: its modification time, checked on every read.
    mtime: Option<SystemTime>,
    /// A snapshot to delete with the entry.
    snapshot: bool,
    digest: watch::Receiver<Digest>,
}

/// The downloads of this relay run.
pub struct Downloads {
    dir: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
    /// The box workspace: a relative path is under it.
    workspace: PathBuf,
}

impl Downloads {
    /// Downloads staged in `dir` (which must exist), of paths relative to `workspace`.
    pub fn new(dir: PathBuf, workspace: PathBuf) -> Self {
        Self {
            dir,
            entries: Mutex::new(HashMap::new()),
            workspace,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What `GET` needs of an entry: the path, size, mtime and digest channel.
    fn get(
        &self,
        id: &str,
    ) -> Result<(PathBuf, u64, Option<SystemTime>, watch::Receiver<Digest>), ApiError> {
        self.lock()
            .get(id)
            .map(|e| (e.path.clone(), e.size, e.mtime, e.digest.clone()))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::NotFound,
                    format!("no download {id} (the relay may have restarted: start it again)"),
                )
            })
    }
}

/// Whether the file is still what the download started with.
fn unchanged(path: &Path, size: u64, mtime: Option<SystemTime>) -> bool {
    let Some(mtime) = mtime else { return true };
    std::fs::metadata(path).is_ok_and(|m| m.len() == size && m.modified().ok() == Some(mtime))
}

fn changed(path: &Path) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::Conflict,
        format!(
            "{} changed while it was being downloaded; try again",
            path.display()
        ),
    )
}

/// `POST /v1/downloads`.
pub async fn start(
    State(downloads): State<Arc<Downloads>>,
    Json(req): Json<DownloadRequest>,
) -> Result<Json<DownloadInfo>, ApiError> {
    use std::os::unix::fs::PermissionsExt;
    let (path, _) = box_path(&downloads.workspace, &req.path);
    let meta = std::fs::symlink_metadata(&path).map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("{}: {e}", path.display()),
        )
    })?;
    // `.` or `dir/..` have no name of their own: use the directory's real name.
    let name = match path.file_name() {
        Some(n) if !path.ends_with("..") => n.to_os_string(),
        _ => std::fs::canonicalize(&path)
            .ok()
            .and_then(|p| p.file_name().map(std::ffi::OsStr::to_os_string))
            .unwrap_or_else(|| "root".into()),
    };
    let name_str = name.to_str().ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "the name of a downloaded path must be UTF-8 (names inside a directory need not be)",
        )
    })?;
    let id = TransferId::random().map_err(internal)?;
    let (tx, rx) = watch::channel::<Digest>(None);
    let mode = meta.permissions().mode() & 0o7777;
    let (kind, entry) = match req.files {
        None if meta.is_file() => {
            // Served in place, hashed while the bytes travel.
            let (mtime, size, hashed) = (meta.modified().ok(), meta.len(), path.clone());
            tokio::spawn(async move {
                let digest = match hash_file(&hashed).await {
                    Ok((d, n)) if n == size && unchanged(&hashed, size, mtime) => Ok(d),
                    Ok(_) => Err(changed(&hashed).1.message),
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send(Some(digest));
            });
            let entry = Entry {
                path,
                size,
                mtime,
                snapshot: false,
                digest: rx,
            };
            (TransferKind::File, entry)
        }
        files => {
            // A tar snapshot: the listed files under `path` by their relative names, or
            // `path` itself (whole) under its name.
            let members: Vec<(PathBuf, PathBuf, bool)> = match files {
                Some(files) => {
                    if !meta.is_dir() {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            ErrorCode::BadRequest,
                            format!("{} is not a directory", path.display()),
                        ));
                    }
                    if let Some(bad) = files
                        .iter()
                        .find(|f| !agentbox_protocol::sync::is_sync_path(f))
                    {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            ErrorCode::BadRequest,
                            format!("`{bad}` is not a relative path inside the directory"),
                        ));
                    }
                    files
                        .iter()
                        .map(|f| (path.join(f), PathBuf::from(f), false))
                        .collect()
                }
                None => vec![(path.clone(), PathBuf::from(&name), true)],
            };
            let snapshot = downloads.dir.join(format!("down-{id}.tar"));
            let (digest, size) = pack_snapshot(snapshot.clone(), members)
                .await
                .map_err(|e| {
                    let _ = std::fs::remove_file(&snapshot);
                    let status = if e.kind() == std::io::ErrorKind::NotFound {
                        StatusCode::NOT_FOUND
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    };
                    ApiError::new(
                        status,
                        ErrorCode::NotFound,
                        format!("cannot pack {}: {e}", path.display()),
                    )
                })?;
            let _ = tx.send(Some(Ok(digest)));
            let entry = Entry {
                path: snapshot,
                size,
                mtime: None,
                snapshot: true,
                digest: rx,
            };
            (TransferKind::Tar, entry)
        }
    };
    let size = entry.size;
    downloads.lock().insert(id.to_string(), entry);
    Ok(Json(DownloadInfo {
        id,
        kind,
        size,
        name: name_str.to_string(),
        mode,
    }))
}

/// Writes a tar of `members` (source, name in the tar, whole tree or not) to `out` on a
/// blocking thread, hashing it on the way; returns its digest and size.
async fn pack_snapshot(
    out: PathBuf,
    members: Vec<(PathBuf, PathBuf, bool)>,
) -> std::io::Result<(String, u64)> {
    tokio::task::spawn_blocking(move || {
        let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&out)?);
        let mut builder = tar::Builder::new(HashingWriter::new(file));
        builder.follow_symlinks(false);
        for (src, name, whole) in &members {
            if *whole {
                append_entry(&mut builder, src, name)?;
            } else {
                agentbox_protocol::transfer::append_path(&mut builder, src, name)?;
            }
        }
        let (digest, size, mut inner) = builder.into_inner()?.finish();
        std::io::Write::flush(&mut inner)?;
        Ok((digest, size))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// The start of `Range: bytes=N-` (the only form the host sends).
fn range_start(headers: &HeaderMap, size: u64) -> Result<u64, ApiError> {
    let Some(range) = headers.get(header::RANGE) else {
        return Ok(0);
    };
    range
        .to_str()
        .ok()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|&n| n <= size)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::BadRequest,
                format!("only `Range: bytes=N-` with N ≤ {size} is served"),
            )
        })
}

/// `GET /v1/downloads/{id}`, optionally from an offset.
pub async fn fetch(
    State(downloads): State<Arc<Downloads>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    checked_id(&id)?;
    let (path, size, mtime, _) = downloads.get(&id)?;
    let from = range_start(&headers, size)?;
    if !unchanged(&path, size, mtime) {
        return Err(changed(&path));
    }
    let body = Body::from_stream(read_stream(&path, from, size - from));
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, (size - from).to_string()),
        ],
        body,
    )
        .into_response();
    if headers.contains_key(header::RANGE) {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = format!("bytes {from}-{}/{size}", size.saturating_sub(1)).parse() {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// `GET /v1/downloads/{id}/digest`: waits for the hash.
pub async fn digest(
    State(downloads): State<Arc<Downloads>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<DownloadDigest>, ApiError> {
    checked_id(&id)?;
    let (path, size, mtime, mut rx) = downloads.get(&id)?;
    let digest = rx
        .wait_for(Option::is_some)
        .await
        .map_err(internal)?
        .clone()
        .unwrap_or_else(|| Err("no digest".into()));
    match digest {
        Ok(blake3) if unchanged(&path, size, mtime) => Ok(Json(DownloadDigest { blake3, size })),
        Ok(_) => Err(changed(&path)),
        Err(message) => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            message,
        )),
    }
}

/// `DELETE /v1/downloads/{id}`.
pub async fn finish(
    State(downloads): State<Arc<Downloads>>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    checked_id(&id)?;
    let entry = downloads.lock().remove(&id);
    match entry {
        Some(e) => {
            if e.snapshot {
                let _ = std::fs::remove_file(&e.path);
            }
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no download {id}"),
        )),
    }
}
