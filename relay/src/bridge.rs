//! The bridge's own routes: what the host polls and posts, and what it does to the
//! workspace.
//!
//! - `GET /v1/bridge/poll` (a held long-poll leasing box → host requests),
//!   `POST /v1/bridge/progress`, `POST /v1/bridge/result`;
//! - `GET /v1/blobs/{blake3}`: blobs the box left for the host (git bundles);
//! - `POST /v1/seed/{upload id}`, `POST /v1/sync/{upload id}`: a verified upload checked
//!   out as the workspace, or applied to it;
//! - `POST /v1/workspace/digests`, `POST /v1/workspace/listing`: what the workspace holds.
//!
//! The token check and `/healthz` live in [`crate::routes`]; errors are [`ApiError`]s.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentbox_protocol::land::Cleanup;
use agentbox_protocol::transfer::{is_blake3_hex, unpack};
use agentbox_protocol::ErrorCode;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::files::Uploads;
use crate::http::{internal, ApiError};
use crate::seed;

/// What the bridge routes serve from.
pub struct BridgeState {
    /// The box workspace.
    pub workspace: PathBuf,
    /// The cap on one upload (a seed or sync archive unpacks within it).
    pub max_upload_bytes: u64,
    /// The box → host request journal.
    pub journal: Arc<crate::journal::Journal>,
    /// How long a lease lasts unless progress renews it.
    pub lease_ms: u64,
    /// Where `agentbox-ctl` leaves blobs (git bundles) for the host: `run/blobs/<blake3>`.
    pub blob_dir: PathBuf,
    /// Cancelled when the relay stops: held polls answer at once so shutdown is prompt.
    pub stop: tokio_util::sync::CancellationToken,
    /// Uploads in progress: seeds and syncs arrive through them.
    pub uploads: Arc<Uploads>,
    /// When the host last polled (shared with `relay.sock`, which tells waiting callers
    /// when nobody on the host is polling).
    pub host_seen: Arc<crate::host_seen::HostSeen>,
}

/// The longest a poll is held (below Daytona's ~25 s idle cut).
pub const MAX_POLL_WAIT_MS: u64 = 20_000;

/// The bridge routes (the token check is the caller's).
pub fn routes(state: Arc<BridgeState>) -> Router {
    Router::new()
        .route("/v1/seed/{id}", post(apply_seed))
        .route("/v1/sync/{id}", post(apply_sync))
        .route("/v1/workspace/digests", post(digests))
        .route("/v1/workspace/listing", post(listing))
        .route("/v1/bridge/poll", get(poll))
        .route("/v1/blobs/{digest}", get(get_blob))
        .route("/v1/bridge/progress", post(progress))
        .route("/v1/bridge/result", post(result))
        .with_state(state)
}

/// `GET /v1/bridge/poll` query.
#[derive(Debug, serde::Deserialize)]
pub struct PollQuery {
    /// How long to hold the poll when nothing is deliverable (capped at 20 s).
    wait_ms: Option<u64>,
    /// Most requests to lease at once.
    max: Option<usize>,
}

fn journal_error(e: &crate::journal::JournalError) -> ApiError {
    match e {
        crate::journal::JournalError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, e.to_string())
        }
        crate::journal::JournalError::UnknownLease { .. } => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::LeaseExpired, e.to_string())
        }
        crate::journal::JournalError::Db(_) => internal(e),
    }
}

/// Held long-poll: answers as soon as something is deliverable, or empty after `wait_ms`.
async fn poll(
    State(state): State<Arc<BridgeState>>,
    axum::extract::Query(q): axum::extract::Query<PollQuery>,
) -> Result<Json<agentbox_protocol::bridge::PollResponse>, ApiError> {
    let wait = std::time::Duration::from_millis(
        q.wait_ms.unwrap_or(MAX_POLL_WAIT_MS).min(MAX_POLL_WAIT_MS),
    );
    let max = q.max.unwrap_or(16).clamp(1, 256);
    let _held = state.host_seen.poll_began();
    let deadline = tokio::time::Instant::now() + wait;
    let mut changed = state.journal.subscribe_queue();
    loop {
        changed.borrow_and_update();
        let requests = state
            .journal
            .lease(max, state.lease_ms)
            .map_err(|e| journal_error(&e))?;
        if !requests.is_empty() {
            return Ok(Json(agentbox_protocol::bridge::PollResponse { requests }));
        }
        // Wake on a new request, or when a lease expires (re-delivery), or at the deadline.
        let mut until = deadline;
        if let Some(expiry) = state.journal.next_expiry().map_err(|e| journal_error(&e))? {
            let in_ms = expiry.saturating_sub(agentbox_protocol::now_millis());
            until = until
                .min(tokio::time::Instant::now() + std::time::Duration::from_millis(in_ms + 1));
        }
        let woke = tokio::select! {
            () = state.stop.cancelled() => false,
            r = tokio::time::timeout_at(until, changed.changed()) => r.is_ok(),
        };
        if state.stop.is_cancelled() || (!woke && tokio::time::Instant::now() >= deadline) {
            return Ok(Json(agentbox_protocol::bridge::PollResponse {
                requests: Vec::new(),
            }));
        }
    }
}

async fn progress(
    State(state): State<Arc<BridgeState>>,
    Json(p): Json<agentbox_protocol::bridge::ProgressPost>,
) -> Result<StatusCode, ApiError> {
    state
        .journal
        .progress(p.id.as_str(), &p.lease, &p.lines, state.lease_ms)
        .map_err(|e| journal_error(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn result(
    State(state): State<Arc<BridgeState>>,
    Json(r): Json<agentbox_protocol::bridge::ResultPost>,
) -> Result<Json<agentbox_protocol::bridge::ResultAck>, ApiError> {
    let recorded = state
        .journal
        .complete(r.id.as_str(), &r.lease, &r.outcome)
        .map_err(|e| journal_error(&e))?;
    Ok(Json(agentbox_protocol::bridge::ResultAck {
        id: r.id,
        recorded,
    }))
}

/// `GET /v1/blobs/{blake3}`: a blob the box left for the host, streamed. The host checks
/// the digest itself; the name is only ever a digest.
async fn get_blob(
    State(state): State<Arc<BridgeState>>,
    axum::extract::Path(digest): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    if !is_blake3_hex(&digest) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "a blob is named by its blake3 digest",
        ));
    }
    let file = tokio::fs::File::open(state.blob_dir.join(&digest))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("no blob {digest}"),
            )
        })?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// `POST /v1/seed/{upload id}`: a seed tar sent through the upload API, verified,
/// extracted with the hardened extractor, then checked out.
async fn apply_seed(
    State(state): State<Arc<BridgeState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(req): Json<agentbox_protocol::files::UseUpload>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if state.workspace.join(".git").exists() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            "the workspace is already seeded",
        ));
    }
    let claimed = crate::files::claim_verified(&state.uploads, &id, &req.blake3, req.size).await?;
    let staging = Cleanup::create_dir(state.workspace.join(format!(".agentbox-seed-{id}")))
        .map_err(internal)?;
    let workspace = state.workspace.clone();
    let max = state.max_upload_bytes;
    let staging_dir = staging.path().to_path_buf();
    let manifest = tokio::task::spawn_blocking(move || {
        apply_archive(&claimed.part, &staging_dir, &workspace, max)
    })
    .await
    .map_err(internal)??;
    tracing::info!(branch = %manifest.branch, bytes = req.size, "workspace seeded");
    Ok(Json(
        serde_json::json!({ "branch": manifest.branch, "head": manifest.head, "bytes": req.size }),
    ))
}

/// The most paths one digests request may name.
const MAX_DIGEST_PATHS: usize = 100_000;

/// `POST /v1/workspace/digests`: what the box has at the paths the host wants to sync.
async fn digests(
    State(state): State<Arc<BridgeState>>,
    Json(req): Json<agentbox_protocol::sync::DigestsRequest>,
) -> Result<Json<agentbox_protocol::sync::DigestsResponse>, ApiError> {
    use agentbox_protocol::sync::{entry_digest, is_sync_path};
    if req.paths.len() > MAX_DIGEST_PATHS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("at most {MAX_DIGEST_PATHS} paths at once"),
        ));
    }
    if let Some(bad) = req.paths.iter().find(|p| !is_sync_path(p)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("`{bad}` is not a workspace path"),
        ));
    }
    let workspace = state.workspace.clone();
    let digests = tokio::task::spawn_blocking(move || {
        req.paths
            .iter()
            .map(|p| entry_digest(&workspace.join(p)).ok().flatten())
            .collect()
    })
    .await
    .map_err(internal)?;
    Ok(Json(agentbox_protocol::sync::DigestsResponse { digests }))
}

/// `POST /v1/workspace/listing`: what `agentbox download` may bring back.
async fn listing(
    State(state): State<Arc<BridgeState>>,
    Json(req): Json<agentbox_protocol::sync::ListingRequest>,
) -> Result<Json<agentbox_protocol::sync::Listing>, ApiError> {
    let workspace = state.workspace.clone();
    tokio::task::spawn_blocking(move || crate::sync::listing(&workspace, req.with_env))
        .await
        .map_err(internal)?
        .map(Json)
        .map_err(|e| match e {
            crate::sync::SyncError::Git { .. } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("the workspace is not a git repository: {e}"),
            ),
            other => internal(other),
        })
}

/// `POST /v1/sync/{upload id}`: a verified sync archive, applied with the box winning
/// every conflict.
async fn apply_sync(
    State(state): State<Arc<BridgeState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Json(req): Json<agentbox_protocol::files::UseUpload>,
) -> Result<Json<agentbox_protocol::sync::SyncReport>, ApiError> {
    let claimed = crate::files::claim_verified(&state.uploads, &id, &req.blake3, req.size).await?;
    let staging = Cleanup::create_dir(state.workspace.join(format!(".agentbox-sync-{id}")))
        .map_err(internal)?;
    let workspace = state.workspace.clone();
    let max = state.max_upload_bytes;
    let staging_dir = staging.path().to_path_buf();
    let report = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&claimed.part).map_err(internal)?;
        unpack(std::io::BufReader::new(file), &staging_dir, max).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::BadRequest,
                format!("sync archive refused: {e}"),
            )
        })?;
        crate::sync::apply(&workspace, &staging_dir).map_err(|e| match e {
            crate::sync::SyncError::NotSeeded => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
            }
            crate::sync::SyncError::Malformed(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::BadRequest,
                e.to_string(),
            ),
            other => internal(other),
        })
    })
    .await
    .map_err(internal)??;
    tracing::info!(
        merged = report.merged,
        written = report.written.len(),
        "workspace synced"
    );
    Ok(Json(report))
}

fn apply_archive(
    archive: &Path,
    staging: &Path,
    workspace: &Path,
    max: u64,
) -> Result<agentbox_protocol::transfer::SeedManifest, ApiError> {
    let tree = staging.join("tree");
    std::fs::create_dir(&tree).map_err(internal)?;
    let file = std::fs::File::open(archive).map_err(internal)?;
    unpack(std::io::BufReader::new(file), &tree, max).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadRequest,
            format!("seed archive refused: {e}"),
        )
    })?;
    seed::apply(workspace, &tree).map_err(|e| match e {
        seed::SeedError::AlreadySeeded(_) => {
            ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, e.to_string())
        }
        seed::SeedError::Malformed(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::BadRequest,
            e.to_string(),
        ),
        other => internal(other),
    })
}
