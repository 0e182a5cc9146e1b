//! The WebProxy's own answers: a small HTML page, or JSON for `Accept: application/json`.

use agentbox_protocol::ctl::{UnitState, UnitStatus};
use agentbox_protocol::proxy::ProxyError;
use agentbox_protocol::{ErrorCode, ErrorReply};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use super::shared::{Body, Shared};

/// A full body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Who asked for a page: the format they want, and whether they showed the bridge token
/// (`X-Agentbox-Token`). The WebProxy can be public (a Daytona preview of port 8080), and
/// a service's log lines carry what its command printed — database URLs, tokens — so
/// only the box's owner gets them.
#[derive(Debug, Clone, Copy)]
pub struct Viewer {
    /// `Accept: application/json`.
    pub json: bool,
    /// The request carried the bridge token.
    pub owner: bool,
}

/// What went wrong, for whom.
pub struct Problem {
    /// 502 or 503.
    pub status: StatusCode,
    /// Error class for JSON.
    pub code: ErrorCode,
    /// One sentence.
    pub message: String,
    /// The service, if one was chosen.
    pub service: Option<String>,
    /// Its state.
    pub state: Option<UnitState>,
    /// Its last log lines (empty unless the viewer is the owner).
    pub log_tail: Vec<String>,
    /// Log lines exist but were kept from a viewer without the token.
    pub logs_withheld: bool,
}

/// Renders a problem as JSON or HTML.
pub fn render(problem: &Problem, wants_json: bool) -> Response<Body> {
    let (content_type, body) = if wants_json {
        let body = ProxyError {
            error: ErrorReply::new(problem.code, problem.message.clone()),
            service: problem.service.clone(),
            state: problem.state,
            log_tail: problem.log_tail.clone(),
        };
        (
            "application/json",
            serde_json::to_vec(&body).unwrap_or_default(),
        )
    } else {
        let state = problem
            .state
            .map_or(String::new(), |s| format!("<p>state: <b>{s}</b></p>"));
        let logs = if problem.logs_withheld {
            "<p>Its log lines are shown to the box's owner only: <code>agentbox exec BOX -- agentbox-ctl logs NAME</code>, or send the bridge token as <code>X-Agentbox-Token</code>.</p>".to_string()
        } else if problem.log_tail.is_empty() {
            String::new()
        } else {
            format!(
                "<p>last log lines:</p><pre>{}</pre>",
                escape(&problem.log_tail.join("\n"))
            )
        };
        let title = problem
            .service
            .as_deref()
            .map_or_else(|| "agentbox".to_string(), escape);
        let html = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title} — {code}</title>\
             <style>body{{font-family:system-ui,sans-serif;margin:3em;max-width:50em}}pre{{background:#f4f4f4;padding:1em;overflow:auto}}</style>\
             </head><body><h1>{title}</h1><p>{msg}</p>{state}{logs}<p><small>agentbox WebProxy · <a href=\"/_agentbox/services\">services</a></small></p></body></html>\n",
            code = problem.status.as_u16(),
            msg = escape(&problem.message),
        );
        ("text/html; charset=utf-8", html.into_bytes())
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = problem.status;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if problem.status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
    }
    response
}

/// The page for `unit` (with its last log lines, for the owner) or for no service at all.
pub(super) async fn problem(
    shared: &Shared,
    status: StatusCode,
    code: ErrorCode,
    message: String,
    unit: Option<&UnitStatus>,
    viewer: Viewer,
) -> Response<Body> {
    let log_tail = match unit {
        Some(u) if viewer.owner => {
            crate::ctl_link::log_tail(&shared.config.run_dir, &u.name, 10).await
        }
        _ => Vec::new(),
    };
    render(
        &Problem {
            status,
            code,
            message,
            service: unit.map(|u| u.name.clone()),
            state: unit.map(|u| u.state),
            log_tail,
            logs_withheld: unit.is_some() && !viewer.owner,
        },
        viewer.json,
    )
}

/// The unit will not answer without someone starting it again.
pub(super) fn is_down(u: &UnitStatus) -> bool {
    matches!(u.state, UnitState::Failed | UnitState::Stopped)
        || (u.state == UnitState::Exited && u.next_restart_at_ms.is_none())
        || (u.state == UnitState::Pending && !u.autostart)
}

/// The sentence for a service that is down (or gone from the supervisor's list).
pub(super) fn not_running(name: &str, unit: Option<&UnitStatus>) -> String {
    let state = unit.map_or("gone".to_string(), |u| u.state.to_string());
    format!("service `{name}` is not running ({state}): see `agentbox-ctl logs {name}`")
}

/// The 502 page for a service that took the connection but gave no (whole) answer.
pub(super) async fn did_not_answer(
    shared: &Shared,
    name: &str,
    port: u16,
    error: &str,
    viewer: Viewer,
) -> Response<Body> {
    let unit = shared
        .units
        .borrow()
        .units
        .iter()
        .find(|u| u.name == name)
        .cloned();
    // The service may have died between the readiness check and the connection: then its
    // state is the truth worth telling, not the refused connection.
    let message = match &unit {
        Some(u) if is_down(u) => not_running(name, Some(u)),
        _ => format!("service `{name}` did not answer on port {port}: {error}"),
    };
    problem(
        shared,
        StatusCode::BAD_GATEWAY,
        ErrorCode::Internal,
        message,
        unit.as_ref(),
        viewer,
    )
    .await
}
