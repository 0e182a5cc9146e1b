//! The terminal API's plain HTTP routes: open, inspect, close, input, resize, and output
//! as a streamed body from a byte offset (the transport for paths that refuse WebSocket).

use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::files::OFFSET_HEADER;
use agentbox_protocol::term::{TermInfo, TermOpen, TermSize, STREAM_IDLE_MS};
use agentbox_protocol::ErrorCode;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::log::Read;
use super::viewer::{InputError, ViewerGuard};
use crate::bridge::{ApiError, AppState};

/// Most output bytes in one body chunk or WebSocket message.
pub const CHUNK: usize = 64 << 10;

/// The `/v1/terms` routes (the token check is the caller's).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/terms", post(open).get(list))
        .route("/v1/terms/{id}", get(info).delete(close))
        .route("/v1/terms/{id}/input", post(input))
        .route("/v1/terms/{id}/resize", post(resize))
        .route("/v1/terms/{id}/output", get(output))
        .route("/v1/terms/{id}/ws", get(super::ws::upgrade))
}

/// `?offset=N` of the output and input routes.
#[derive(Debug, serde::Deserialize)]
pub struct OffsetQuery {
    /// The byte offset.
    #[serde(default)]
    pub offset: u64,
}

async fn open(
    State(state): State<Arc<AppState>>,
    Json(open): Json<TermOpen>,
) -> Result<(StatusCode, Json<TermInfo>), ApiError> {
    let term = state.terms.open(open).await?;
    tracing::info!(term = %term.spec.id, session = %term.spec.session, read_only = term.spec.read_only, "term opened");
    Ok((StatusCode::CREATED, Json(term.info())))
}

async fn list(State(state): State<Arc<AppState>>) -> Json<Vec<TermInfo>> {
    Json(state.terms.list())
}

async fn info(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<TermInfo>, ApiError> {
    Ok(Json(state.terms.get(&id)?.info()))
}

async fn close(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.terms.close(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer to an input that does not follow on from what the term took.
pub fn input_error(e: &InputError) -> ApiError {
    match e {
        InputError::Gap { expected } => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("input must continue at offset {expected}"),
        ),
        InputError::Ended => ApiError::new(
            StatusCode::GONE,
            ErrorCode::NotFound,
            "the term has ended".to_string(),
        ),
    }
}

async fn input(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<OffsetQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let term = state.terms.get(&id)?;
    match term.input(q.offset, &body) {
        Ok(next) => {
            Ok(([(OFFSET_HEADER, next.to_string())], StatusCode::NO_CONTENT).into_response())
        }
        Err(e) => {
            let mut response = input_error(&e).into_response();
            if let InputError::Gap { expected } = e {
                if let Ok(v) = expected.to_string().parse() {
                    response.headers_mut().insert(OFFSET_HEADER, v);
                }
            }
            Ok(response)
        }
    }
}

async fn resize(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(size): Json<TermSize>,
) -> Result<StatusCode, ApiError> {
    let term = state.terms.get(&id)?;
    if !size.is_valid() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!(
                "terminal size {}x{} is out of range (1-1000 each)",
                size.cols, size.rows
            ),
        ));
    }
    term.resize(size).map_err(crate::bridge::internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The answer for an offset the term cannot serve.
pub fn offset_error(read: &Read) -> ApiError {
    match read {
        Read::Gone(held) => ApiError::new(
            StatusCode::GONE,
            ErrorCode::NotFound,
            format!("output before offset {held} is no longer held: attach again"),
        ),
        Read::Ahead(produced) => ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("offset is past the end of the output ({produced})"),
        ),
        _ => crate::bridge::internal("unexpected read state"),
    }
}

/// What a stream step found.
pub enum Step {
    /// Bytes to send.
    Bytes(Vec<u8>),
    /// The term ended after the last byte.
    Ended(agentbox_protocol::term::TermEnd),
    /// A newer connection took over, the offset fell out, or nothing came for `idle`.
    Stop,
}

/// Waits for the next output from `offset`, up to `idle` (forever when `None`).
pub async fn next_output(
    guard: &ViewerGuard,
    rx: &mut tokio::sync::watch::Receiver<u64>,
    offset: u64,
    idle: Option<Duration>,
) -> Step {
    let deadline = idle.map(|d| tokio::time::Instant::now() + d);
    loop {
        if guard.superseded() {
            return Step::Stop;
        }
        rx.borrow_and_update();
        match guard.term().log.read(offset, CHUNK) {
            Read::Bytes(b) => return Step::Bytes(b),
            Read::Ended(reason) => return Step::Ended(reason),
            Read::Gone(_) | Read::Ahead(_) => return Step::Stop,
            Read::Pending => {}
        }
        // Wake at least every second to notice a newer connection.
        let tick = tokio::time::Instant::now() + Duration::from_secs(1);
        let until = deadline.map_or(tick, |d| d.min(tick));
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return Step::Stop },
            () = tokio::time::sleep_until(until) => {
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    return Step::Stop;
                }
            }
        }
    }
}

async fn output(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(q): Query<OffsetQuery>,
) -> Result<Response, ApiError> {
    let term = state.terms.get(&id)?;
    term.log.check(q.offset).map_err(|r| offset_error(&r))?;
    let guard = term.connect();
    let rx = term.log.subscribe();
    let stop = state.stop.clone();
    let idle = Duration::from_millis(STREAM_IDLE_MS);
    let body =
        futures_util::stream::unfold((guard, rx, q.offset), move |(guard, mut rx, offset)| {
            let stop = stop.clone();
            async move {
                let step = tokio::select! {
                    () = stop.cancelled() => Step::Stop,
                    step = next_output(&guard, &mut rx, offset, Some(idle)) => step,
                };
                match step {
                    Step::Bytes(b) => {
                        let next = offset + b.len() as u64;
                        Some((Ok::<_, std::io::Error>(Bytes::from(b)), (guard, rx, next)))
                    }
                    // The viewer learns why from `GET /v1/terms/{id}`.
                    Step::Ended(_) | Step::Stop => None,
                }
            }
        });
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            // Proxies that buffer answers (nginx) pass this one through as it comes.
            (
                header::HeaderName::from_static("x-accel-buffering"),
                "no".to_string(),
            ),
            (
                header::HeaderName::from_static(OFFSET_HEADER),
                q.offset.to_string(),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
