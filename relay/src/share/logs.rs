//! `POST /v1/logs` (scope `logs`): the units' logs, `agentbox-ctl logs --json` run by the
//! relay with a command line it builds from a [`LogsQuery`], answered as the exec API
//! answers (exec frames). A teammate's stream ends when their share is revoked or expires,
//! and a share has at most [`MAX_LOGS_PER_SHARE`] streams open at once (each is a process
//! in the box).

use agentbox_protocol::exec::ExecRequest;
use agentbox_protocol::share::LogsQuery;
use agentbox_protocol::ErrorCode;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt as _;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentbox_protocol::share::ShareId;

use super::access::Caller;
use crate::exec::Execs;
use crate::http::ApiError;

/// How many `/v1/logs` streams one share may have open at once.
pub const MAX_LOGS_PER_SHARE: usize = 4;

/// What `/v1/logs` serves from: the exec API, and the streams each share has open.
pub struct LogsState {
    execs: Arc<Execs>,
    open: Arc<Mutex<HashMap<ShareId, usize>>>,
}

impl LogsState {
    /// The state of `/v1/logs` over `execs`.
    pub fn new(execs: Arc<Execs>) -> Arc<Self> {
        Arc::new(Self {
            execs,
            open: Arc::default(),
        })
    }

    /// One more stream of share `id`, if it has fewer than [`MAX_LOGS_PER_SHARE`]; the
    /// count goes down when the returned guard is dropped (the stream's body with it).
    fn take(&self, id: &ShareId) -> Option<OpenStream> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(id.clone()).or_insert(0);
        if *n >= MAX_LOGS_PER_SHARE {
            return None;
        }
        *n += 1;
        Some(OpenStream {
            open: self.open.clone(),
            id: id.clone(),
        })
    }
}

/// One open stream of a share, counted until dropped.
struct OpenStream {
    open: Arc<Mutex<HashMap<ShareId, usize>>>,
    id: ShareId,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.id);
            }
        }
    }
}

/// The `agentbox-ctl` the relay runs: the one beside its own binary, else from PATH.
fn ctl_program() -> String {
    std::env::current_exe()
        .ok()
        .map(|p| p.with_file_name("agentbox-ctl"))
        .filter(|p| p.is_file())
        .map_or_else(|| "agentbox-ctl".into(), |p| p.display().to_string())
}

/// The command line of `query`.
pub fn argv(query: &LogsQuery) -> Vec<String> {
    let mut argv = vec![
        ctl_program(),
        "logs".into(),
        "--json".into(),
        "-n".into(),
        query.tail.to_string(),
    ];
    if query.follow {
        argv.push("-f".into());
    }
    if let Some(since) = query.since_ms {
        argv.push("--since-ms".into());
        argv.push(since.to_string());
    }
    if let Some(unit) = &query.unit {
        argv.push("--".into());
        argv.push(unit.clone());
    }
    argv
}

/// `POST /v1/logs`.
pub async fn logs(
    State(state): State<Arc<LogsState>>,
    Extension(caller): Extension<Caller>,
    Json(query): Json<LogsQuery>,
) -> Result<Response, ApiError> {
    query
        .validate()
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m))?;
    let slot = match caller.grant() {
        Some(grant) => Some(state.take(&grant.id).ok_or_else(|| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::BadRequest,
                format!("a share reads at most {MAX_LOGS_PER_SHARE} logs at once: end one first"),
            )
        })?),
        None => None,
    };
    let request = ExecRequest::new(argv(&query));
    let response = crate::exec::start(State(state.execs.clone()), Json(request)).await;
    let Some(grant) = caller.grant() else {
        return Ok(response);
    };
    // Dropping the body ends the command (the exec API ends a command whose caller left),
    // and gives the share's slot back.
    let ended = grant.ended.clone().cancelled_owned();
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().take_until(ended).map(move |chunk| {
        let _held = &slot;
        chunk
    });
    Ok(Response::from_parts(parts, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_has_at_most_four_log_streams_and_gets_one_back_when_one_ends() {
        let state = LogsState::new(Execs::new(std::env::temp_dir()));
        let (a, b) = (
            ShareId::parse("sh-aaaaaaaaaaaaaaaa").expect("id"),
            ShareId::parse("sh-bbbbbbbbbbbbbbbb").expect("id"),
        );
        let mut held: Vec<OpenStream> = (0..MAX_LOGS_PER_SHARE)
            .map(|_| state.take(&a).expect("a slot"))
            .collect();
        assert!(state.take(&a).is_none(), "a fifth stream of one share");
        // Another share is not held back by this one.
        let other = state.take(&b).expect("another share's slot");
        held.pop();
        assert!(
            state.take(&a).is_some(),
            "the ended stream's slot came back"
        );
        drop((held, other));
        assert!(
            state.open.lock().expect("lock").is_empty(),
            "nothing left counted"
        );
    }
}
