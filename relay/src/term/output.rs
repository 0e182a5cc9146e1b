//! Reading a term's output from a byte offset, for both transports (`http.rs` streams it
//! as a body, `ws.rs` as binary messages).

use std::time::Duration;

use agentbox_protocol::ErrorCode;
use axum::http::StatusCode;

use super::log::Read;
use super::viewer::ViewerGuard;
use crate::http::{internal, ApiError};

/// Most output bytes in one body chunk or WebSocket message.
pub const CHUNK: usize = 64 << 10;

/// `?offset=N` of the output and input routes.
#[derive(Debug, serde::Deserialize)]
pub struct OffsetQuery {
    /// The byte offset.
    #[serde(default)]
    pub offset: u64,
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
        _ => internal("unexpected read state"),
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
