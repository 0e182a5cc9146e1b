//! The fake's preview proxy: `/_preview/{port}-{sandboxId}/…` (standard links, the token in
//! `x-daytona-preview-token`) and `/_preview/{port}-{signedToken}/…` (signed links, which
//! expire), as Daytona's proxy authenticates them (`apps/proxy/pkg/proxy/auth.go` of
//! Daytona v0.190): an `Authorization: Bearer` token first, tried as a Daytona API key
//! (the fake's key passes, and is removed); then the preview token header (removed before
//! the request goes on); then a signed token. When nothing passes, the answer is Daytona's:
//! a `307` redirect to its sign-in page ([`LOGIN_PATH`], an HTML page), not a `401` — a
//! missing token, a stale one (tokens change on every start), an expired signed link.
//!
//! Stricter than Daytona in one thing: a bearer token that is not a Daytona credential is
//! removed before the request goes on (Daytona hands it on after sending it to its own API
//! to check), so a client that puts its own token there fails here instead of leaking it.
//!
//! A WebSocket upgrade gets the `307` to a login page that Daytona's
//! private previews answer, unless knob `passWebSockets` is on: then the upgrade goes
//! through to the sandbox and the two connections are piped (as a proxy that passes
//! WebSockets does). Knob `gatewayTimeoutMs`: a request whose answer has not begun by then
//! gets `504`, like Daytona's edge.
//!
//! Where a sandbox's port goes is a test control, not Daytona's API:
//! `POST /_fake/upstream {"sandbox": ID, "port": P, "target": "127.0.0.1:Q"}`.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use serde_json::Value;

use crate::{lock, Shared};

const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "host",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "te",
    "x-daytona-preview-token",
];

/// Where a refused preview request is sent to sign in (Daytona's is its OIDC provider's
/// authorize page).
pub const LOGIN_PATH: &str = "/_auth/authorize";

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, message.to_string()).into_response()
}

/// Daytona's answer to a preview request without valid credentials: `307` to the sign-in
/// page, which would come back to `target` (the state Daytona's redirect carries).
fn to_login(fake: &Shared, target: &str, why: &str) -> Response {
    let mut r = refuse(StatusCode::TEMPORARY_REDIRECT, "");
    let location = format!(
        "{}{LOGIN_PATH}?client_id=daytona-proxy&response_type=code&state={target}",
        fake.origin()
    );
    if let Ok(location) = location.parse() {
        r.headers_mut().insert("location", location);
    }
    if let Ok(why) = why.parse() {
        r.headers_mut().insert("x-fake-auth-failure", why);
    }
    r
}

/// `GET /_auth/authorize`: the sign-in page a refused preview request is redirected to (a
/// `200` HTML page, as an OIDC provider's is: a client that follows redirects gets this
/// instead of its answer).
pub async fn login_page() -> Response {
    (
        [("content-type", "text/html; charset=utf-8")],
        "<!doctype html><html><head><title>Sign in - Daytona</title></head>\
         <body><form method=\"post\"><input name=\"email\"><input type=\"password\" \
         name=\"password\"><button>Continue</button></form></body></html>",
    )
        .into_response()
}

/// `POST /_fake/upstream`.
pub async fn set_upstream(State(fake): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    let (Some(sandbox), Some(port), Some(target)) = (
        body["sandbox"].as_str(),
        body["port"].as_u64().and_then(|p| u16::try_from(p).ok()),
        body["target"].as_str(),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    lock(&fake.upstreams).insert((sandbox.to_string(), port), target.to_string());
    StatusCode::NO_CONTENT
}

/// Which sandbox and port a request is for, once its credentials pass, in Daytona's order:
/// a bearer token (a Daytona API key: removed from `headers` once it passes; any other
/// bearer token is removed too, see the module doc), the preview token header, a signed
/// token. `Err` is the redirect to the sign-in page.
fn authenticate(
    fake: &Shared,
    target: &str,
    headers: &mut HeaderMap,
) -> Result<(String, u16), Box<Response>> {
    let (port, who) = target
        .split_once('-')
        .and_then(|(p, w)| Some((p.parse::<u16>().ok()?, w)))
        .ok_or_else(|| Box::new(refuse(StatusCode::BAD_REQUEST, "invalid host format")))?;
    let standard = lock(&fake.tokens).get(who).cloned();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    headers.remove("authorization");
    if bearer.as_deref() == Some(fake.key.as_str()) && standard.is_some() {
        return Ok((who.to_string(), port));
    }
    let presented = headers
        .remove("x-daytona-preview-token")
        .and_then(|v| v.to_str().ok().map(str::to_string));
    if let (Some(t), Some(expected)) = (&presented, &standard) {
        if t == expected {
            return Ok((who.to_string(), port));
        }
    }
    if let Some((sandbox, signed_port, expires)) = lock(&fake.signed).get(who).cloned() {
        if signed_port == port && Instant::now() <= expires {
            return Ok((sandbox, port));
        }
        return Err(Box::new(to_login(
            fake,
            target,
            "the signed URL has expired or is for another port",
        )));
    }
    let why = match (presented, bearer) {
        (Some(_), _) => "invalid preview token",
        (None, Some(_)) => "the bearer token is not a Daytona credential",
        (None, None) => "no credentials",
    };
    Err(Box::new(to_login(fake, target, why)))
}

/// Everything under `/_preview/{target}/…`.
pub async fn proxy(
    State(fake): State<Shared>,
    Path((target, rest)): Path<(String, String)>,
    mut request: Request,
) -> Response {
    let (sandbox, port) = match authenticate(&fake, &target, request.headers_mut()) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    // Daytona's proxy counts a request as activity (what keeps a sandbox from its
    // auto-stop) for as long as it is open, unless it says not to.
    let skip_activity = request
        .headers()
        .get("x-daytona-skip-last-activity-update")
        .is_some_and(|v| v.as_bytes() == b"true");
    let active = (!skip_activity).then(|| crate::activity::open(&fake, &sandbox));
    let started = lock(&fake.sandboxes)
        .get(&sandbox)
        .is_some_and(|s| s["state"] == "started");
    if !started {
        return refuse(StatusCode::BAD_GATEWAY, "sandbox is not started");
    }
    let websocket = request
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if websocket && !lock(&fake.faults).pass_websockets {
        let mut r = refuse(StatusCode::TEMPORARY_REDIRECT, "");
        if let Ok(location) = "https://auth.fake/login".parse() {
            r.headers_mut().insert("location", location);
        }
        return r;
    }
    let mapped = lock(&fake.upstreams).get(&(sandbox.clone(), port)).cloned();
    let upstream = mapped.or_else(|| {
        lock(&fake.container_ips)
            .get(&sandbox)
            .map(|ip| format!("{ip}:{port}"))
    });
    let Some(upstream) = upstream else {
        return refuse(StatusCode::BAD_GATEWAY, "nothing listens on that port");
    };
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    if websocket {
        return tunnel(request, &upstream, &format!("/{rest}{query}"), active).await;
    }
    let url = format!("http://{upstream}/{rest}{query}");
    let mut forward = fake.http.request(request.method().clone(), url);
    for (name, value) in request.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            forward = forward.header(name, value);
        }
    }
    let body = request.into_body().into_data_stream();
    forward = forward.body(reqwest::Body::wrap_stream(body));
    let limit = lock(&fake.faults).gateway_timeout_ms;
    let answer = match limit {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), forward.send()).await {
            Ok(r) => r,
            Err(_) => return refuse(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
        },
        None => forward.send().await,
    };
    let upstream_response = match answer {
        Ok(r) => r,
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, &format!("upstream: {e}")),
    };
    let mut response = Response::builder().status(upstream_response.status().as_u16());
    for (name, value) in upstream_response.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            response = response.header(name.as_str(), value.as_bytes());
        }
    }
    let stream = upstream_response.bytes_stream().map(move |chunk| {
        // Open (and active) until the answer's body has gone.
        let _open = &active;
        chunk.map_err(std::io::Error::other)
    });
    response
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "bad upstream answer"))
}

/// A WebSocket upgrade passed to `upstream` as `path`: the request head is sent on (less
/// the preview token), the upstream's `101` comes back, and once the client's connection
/// is upgraded the two are piped until either ends.
async fn tunnel(
    mut request: Request,
    upstream: &str,
    path: &str,
    active: Option<crate::activity::Open>,
) -> Response {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let on_upgrade = hyper::upgrade::on(&mut request);
    let Ok(mut tcp) = tokio::net::TcpStream::connect(upstream).await else {
        return refuse(StatusCode::BAD_GATEWAY, "nothing listens on that port");
    };
    let mut head = format!(
        "{} {path} HTTP/1.1\r\nhost: {upstream}\r\n",
        request.method()
    )
    .into_bytes();
    for (name, value) in request.headers() {
        if name.as_str() != "host" && name.as_str() != "x-daytona-preview-token" {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
    }
    head.extend_from_slice(b"\r\n");
    if tcp.write_all(&head).await.is_err() {
        return refuse(StatusCode::BAD_GATEWAY, "upstream closed");
    }
    // The answer's head, and whatever came after it (the first frames, already).
    let mut answer = Vec::new();
    let end = loop {
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let mut chunk = [0u8; 4096];
        match tcp.read(&mut chunk).await {
            Ok(n) if n > 0 && answer.len() < 64 * 1024 => answer.extend_from_slice(&chunk[..n]),
            _ => return refuse(StatusCode::BAD_GATEWAY, "upstream sent no answer"),
        }
    };
    let text = String::from_utf8_lossy(&answer[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::builder().status(status);
    for line in lines.filter(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(':') {
            response = response.header(name.trim(), value.trim());
        }
    }
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return response
            .body(Body::empty())
            .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "bad upstream answer"));
    }
    let early = answer.split_off(end);
    tokio::spawn(async move {
        // Active for as long as the tunnel is open.
        let _open = active;
        if let Ok(upgraded) = on_upgrade.await {
            let mut client = hyper_util::rt::TokioIo::new(upgraded);
            if client.write_all(&early).await.is_ok() {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut tcp).await;
            }
        }
    });
    response
        .body(Body::empty())
        .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "bad upstream answer"))
}
