//! The terminal API's plain HTTP routes: open, inspect, close, input, resize, and output
//! as a streamed body from a byte offset (the transport for paths that refuse WebSocket).

use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::files::OFFSET_HEADER;
use agentbox_protocol::share::Scope;
use agentbox_protocol::term::{TermInfo, TermOpen, TermSize, STREAM_IDLE_MS};
use agentbox_protocol::ErrorCode;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::output::{next_output, offset_error, OffsetQuery, Step};
use super::registry::Terms;
use super::viewer::InputError;
use crate::http::{internal, ApiError};
use crate::share::Caller;

/// `POST /v1/terms`: opens a viewer.
pub(super) async fn open(
    State(terms): State<Arc<Terms>>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<(StatusCode, Json<TermInfo>), ApiError> {
    // Parsed here, not by axum's `Json`, so a bad body (a session that is no session
    // name, …) is a 400 with the error envelope that says what is wrong.
    let open: TermOpen = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            format!("bad terminal request: {e}"),
        )
    })?;
    let term = terms.open(open, &caller).await?;
    tracing::info!(term = %term.spec.id, session = %term.spec.session, read_only = term.spec.read_only, "term opened");
    Ok((StatusCode::CREATED, Json(term.info())))
}

/// `GET /v1/terms`.
pub(super) async fn list(
    State(terms): State<Arc<Terms>>,
    Extension(caller): Extension<Caller>,
) -> Json<Vec<TermInfo>> {
    Json(terms.list(&caller))
}

/// `GET /v1/terms/{id}`.
pub(super) async fn info(
    State(terms): State<Arc<Terms>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TermInfo>, ApiError> {
    Ok(Json(terms.get_for(&id, &caller)?.info()))
}

/// `DELETE /v1/terms/{id}`: ends the term.
pub(super) async fn close(
    State(terms): State<Arc<Terms>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    terms.get_for(&id, &caller)?;
    terms.close(&id)?;
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

/// `POST /v1/terms/{id}/input?offset=N`: keys, numbered by byte offset.
pub(super) async fn input(
    State(terms): State<Arc<Terms>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<OffsetQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let term = terms.get_for(&id, &caller)?;
    if !caller.may(Scope::AttachWrite) {
        return Err(Caller::refused(Scope::AttachWrite, "typing"));
    }
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

/// `POST /v1/terms/{id}/resize`.
pub(super) async fn resize(
    State(terms): State<Arc<Terms>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(size): Json<TermSize>,
) -> Result<StatusCode, ApiError> {
    let term = terms.get_for(&id, &caller)?;
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
    term.resize(size).map_err(internal)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/terms/{id}/output?offset=N`: the output as a streamed body.
pub(super) async fn output(
    State(terms): State<Arc<Terms>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<OffsetQuery>,
) -> Result<Response, ApiError> {
    let term = terms.get_for(&id, &caller)?;
    term.log.check(q.offset).map_err(|r| offset_error(&r))?;
    let guard = term.connect();
    let rx = term.log.subscribe();
    let stop = terms.shutdown().clone();
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
