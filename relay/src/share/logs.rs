//! `POST /v1/logs` (scope `logs`): the units' logs, `agentbox-ctl logs --json` run by the
//! relay with a command line it builds from a [`LogsQuery`], answered as the exec API
//! answers (exec frames). A teammate's stream ends when their share is revoked or expires.

use agentbox_protocol::exec::ExecRequest;
use agentbox_protocol::share::LogsQuery;
use agentbox_protocol::ErrorCode;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt as _;

use std::sync::Arc;

use super::access::Caller;
use crate::exec::Execs;
use crate::http::ApiError;

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
    State(execs): State<Arc<Execs>>,
    Extension(caller): Extension<Caller>,
    Json(query): Json<LogsQuery>,
) -> Result<Response, ApiError> {
    query
        .validate()
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m))?;
    let request = ExecRequest::new(argv(&query));
    let response = crate::exec::start(State(execs), Json(request)).await;
    let Some(grant) = caller.grant() else {
        return Ok(response);
    };
    // Dropping the body ends the command (the exec API ends a command whose caller left).
    let ended = grant.ended.clone().cancelled_owned();
    let (parts, body) = response.into_parts();
    let stream = body.into_data_stream().take_until(ended);
    Ok(Response::from_parts(parts, Body::from_stream(stream)).into_response())
}
