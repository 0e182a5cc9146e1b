//! Uploads: `PUT /v1/uploads/{id}` appends at an offset, `POST …/land` verifies and lands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentbox_protocol::files::{
    LandRequest, Landed, TransferKind, UploadStatus, OFFSET_HEADER, SIZE_HEADER,
};
use agentbox_protocol::land::{self, Cleanup};
use agentbox_protocol::part_file::{spawn_writer, PartFile};
use agentbox_protocol::transfer::{is_blake3_hex, unpack};
use agentbox_protocol::ErrorCode;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;

use super::paths::{box_path, checked_id};
use crate::http::{internal, ApiError};

/// One upload the relay knows about in this run.
#[derive(Default)]
struct Entry {
    /// The announced total size.
    size: u64,
    /// A `PUT` or a landing is using the part file.
    busy: bool,
    /// The hash of the part file so far, when this run saw all of it.
    hashed: Option<blake3::Hasher>,
}

/// The uploads in progress, where they land, and the cap on one.
pub struct Uploads {
    dir: PathBuf,
    entries: Mutex<HashMap<String, Entry>>,
    /// The box workspace: a relative landing path is under it.
    workspace: PathBuf,
    /// The cap on one upload.
    max_upload_bytes: u64,
}

impl Uploads {
    /// Uploads staged in `dir` (which must exist), landing relative to `workspace`, at
    /// most `max_upload_bytes` each.
    pub fn new(dir: PathBuf, workspace: PathBuf, max_upload_bytes: u64) -> Self {
        Self {
            dir,
            entries: Mutex::new(HashMap::new()),
            workspace,
            max_upload_bytes,
        }
    }

    fn part(&self, id: &str) -> PathBuf {
        self.dir.join(format!("up-{id}.part"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `id` free again, keeping the hash if the caller has one.
    fn release(&self, id: &str, hashed: Option<blake3::Hasher>) {
        if let Some(e) = self.lock().get_mut(id) {
            e.busy = false;
            e.hashed = hashed;
        }
    }
}

/// `413` naming the cap.
fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!("the upload exceeds the {max}-byte limit (AGENTBOX_MAX_UPLOAD_BYTES in the box)"),
    )
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64, ApiError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("the {name} header (a byte count) is required"),
            )
        })
}

/// `409` carrying the offset the box really has.
fn wrong_offset(have: u64, message: String) -> Response {
    let mut response =
        ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message).into_response();
    response
        .headers_mut()
        .insert(OFFSET_HEADER, axum::http::HeaderValue::from(have));
    response
}

/// `GET /v1/uploads/{id}`.
pub async fn status(
    State(uploads): State<Arc<Uploads>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<UploadStatus>, ApiError> {
    checked_id(&id)?;
    let busy = uploads.lock().get(&id).is_some_and(|e| e.busy);
    let part = uploads.part(&id);
    if !busy && !part.exists() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no upload {id}"),
        ));
    }
    Ok(Json(UploadStatus {
        offset: file_len(&part),
        busy,
    }))
}

/// `PUT /v1/uploads/{id}` with the offset and total size headers.
pub async fn put(
    State(uploads): State<Arc<Uploads>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    checked_id(&id)?;
    let offset = header_u64(&headers, OFFSET_HEADER)?;
    let size = header_u64(&headers, SIZE_HEADER)?;
    if size > uploads.max_upload_bytes {
        return Err(too_large(uploads.max_upload_bytes));
    }
    let part_path = uploads.part(&id);
    let hashed = {
        let mut entries = uploads.lock();
        let entry = entries.entry(id.clone()).or_default();
        if entry.busy {
            return Ok(wrong_offset(
                file_len(&part_path),
                format!("upload {id} is still being written; ask again shortly"),
            ));
        }
        let have = file_len(&part_path);
        if have != offset {
            return Ok(wrong_offset(
                have,
                format!("upload {id} is at byte {have}, not {offset}"),
            ));
        }
        if offset > 0 && entry.size != 0 && entry.size != size {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!(
                    "upload {id} was announced with {} bytes, not {size}",
                    entry.size
                ),
            ));
        }
        entry.size = size;
        entry.busy = true;
        entry.hashed.take()
    };
    let opened = {
        let path = part_path.clone();
        tokio::task::spawn_blocking(move || PartFile::open(&path, offset, hashed)).await
    };
    let part = match opened {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            uploads.release(&id, None);
            return Err(internal(format!("cannot open the staging file: {e}")));
        }
        Err(e) => {
            uploads.release(&id, None);
            return Err(internal(e));
        }
    };
    let (tx, writer) = spawn_writer(part);
    // Whatever happens to this handler from here, the writer thread hands the hash back
    // and frees the upload when it is done.
    let release = {
        let (uploads, id) = (Arc::clone(&uploads), id.clone());
        tokio::spawn(async move {
            match writer.await {
                Ok(Ok((hasher, _))) => uploads.release(&id, Some(hasher)),
                _ => uploads.release(&id, None),
            }
        })
    };
    let room = size - offset.min(size);
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                received += chunk.len() as u64;
                if received > room {
                    failure = Some(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::BadRequest,
                        format!("the upload goes past its announced size of {size} bytes"),
                    ));
                    break;
                }
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                tracing::info!(%id, error = %e, "upload cut; it can resume");
                break;
            }
        }
    }
    drop(tx);
    let _ = release.await;
    if let Some(f) = failure {
        return Err(f);
    }
    let offset = file_len(&part_path);
    Ok(Json(UploadStatus {
        offset,
        busy: false,
    })
    .into_response())
}

/// `DELETE /v1/uploads/{id}`.
pub async fn abort(
    State(uploads): State<Arc<Uploads>>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    checked_id(&id)?;
    let mut entries = uploads.lock();
    if entries.get(&id).is_some_and(|e| e.busy) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("upload {id} is being written"),
        ));
    }
    entries.remove(&id);
    let _ = std::fs::remove_file(uploads.part(&id));
    Ok(StatusCode::NO_CONTENT)
}

/// A complete, verified upload, held for its caller: nobody else can write or claim it,
/// and its part file and record go away when this drops.
pub struct Claimed {
    /// The verified bytes.
    pub part: PathBuf,
    uploads: Arc<Uploads>,
    id: String,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.part);
        self.uploads.lock().remove(&self.id);
    }
}

/// Claims upload `id`, which must be complete at `size` bytes, and checks that its blake3
/// is `blake3`. A mismatch removes it: the bytes cannot be trusted for anything.
pub async fn claim_verified(
    uploads: &Arc<Uploads>,
    id: &str,
    blake3: &str,
    size: u64,
) -> Result<Claimed, ApiError> {
    checked_id(id)?;
    if !is_blake3_hex(blake3) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "blake3 must be 64 lowercase hex digits",
        ));
    }
    let uploads = Arc::clone(uploads);
    let part = uploads.part(id);
    let hashed = {
        let mut entries = uploads.lock();
        let entry = entries.entry(id.to_string()).or_default();
        if entry.busy {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("upload {id} is still being written"),
            ));
        }
        let have = file_len(&part);
        if !part.exists() || have != size {
            entries.remove(id);
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("upload {id} is incomplete: {have} of {size} bytes"),
            ));
        }
        entry.busy = true;
        entry.hashed.take()
    };
    let claimed = Claimed {
        part: part.clone(),
        uploads,
        id: id.to_string(),
    };
    let digest = match hashed {
        Some(h) if h.count() == size => h.finalize().to_hex().to_string(),
        _ => {
            agentbox_protocol::part_file::hash_file(&part)
                .await
                .map_err(internal)?
                .0
        }
    };
    if digest != blake3 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadRequest,
            format!(
                "the upload is corrupt (blake3 {digest}, expected {blake3}); nothing was written"
            ),
        ));
    }
    Ok(claimed)
}

/// `POST /v1/uploads/{id}/land`: the digest must match before anything is written.
pub async fn land(
    State(uploads): State<Arc<Uploads>>,
    UrlPath(id): UrlPath<String>,
    Json(req): Json<LandRequest>,
) -> Result<Json<Landed>, ApiError> {
    let claimed = claim_verified(&uploads, &id, &req.blake3, req.size).await?;
    let workspace = uploads.workspace.clone();
    let max = uploads.max_upload_bytes;
    let landed = tokio::task::spawn_blocking(move || {
        land_verified(&claimed.part, &id, &req, &workspace, max)
    })
    .await
    .map_err(internal)??;
    tracing::info!(paths = ?landed.paths, bytes = landed.bytes, "upload landed");
    Ok(Json(landed))
}

fn refused(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
}

/// Puts a verified part file in place.
fn land_verified(
    part: &Path,
    id: &str,
    req: &LandRequest,
    workspace: &Path,
    max: u64,
) -> Result<Landed, ApiError> {
    let (dest, slash) = box_path(workspace, &req.dest);
    match req.kind {
        TransferKind::File => {
            let name = req
                .name
                .as_deref()
                .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != "..")
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        ErrorCode::BadRequest,
                        "a file upload needs a plain file name",
                    )
                })?;
            let target = land::target_for(&dest, slash, std::ffi::OsStr::new(name), false)
                .map_err(refused)?;
            land::land_file(part, &target, req.mode.unwrap_or(0o644), id).map_err(refused)?;
            Ok(Landed {
                paths: vec![target.display().to_string()],
                files: 1,
                bytes: req.size,
            })
        }
        TransferKind::Tar => {
            let parent = if dest.is_dir() {
                dest.clone()
            } else {
                dest.parent().map(Path::to_path_buf).unwrap_or_default()
            };
            if !parent.is_dir() {
                return Err(refused(format!(
                    "{}: the parent directory does not exist: create it first",
                    dest.display()
                )));
            }
            let staged = Cleanup::create_dir(land::staging_next_to(&parent.join("x"), id))
                .map_err(internal)?;
            let file = std::fs::File::open(part).map_err(internal)?;
            let report =
                unpack(std::io::BufReader::new(file), staged.path(), max).map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        ErrorCode::BadRequest,
                        format!("archive refused, nothing was written: {e}"),
                    )
                })?;
            // `name: "."`: the source was written `DIR/.`, its contents are what is copied.
            let contents = req.name.as_deref() == Some(".");
            let targets =
                land::land_tree_of(staged.path(), &dest, slash, contents).map_err(refused)?;
            Ok(Landed {
                paths: targets.iter().map(|t| t.display().to_string()).collect(),
                files: report.files,
                bytes: report.bytes,
            })
        }
    }
}
