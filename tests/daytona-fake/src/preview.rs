//! The fake's preview proxy: `/_preview/{port}-{sandboxId}/…` (standard links, the token in
//! `x-daytona-preview-token`) and `/_preview/{port}-{signedToken}/…` (signed links, which
//! expire), as Daytona's proxy authenticates them; the token header is removed before the
//! request goes on. A WebSocket upgrade gets the `307` to a login page that Daytona's
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

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, message.to_string()).into_response()
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

/// Which sandbox and port a request is for, once its credentials pass.
fn authenticate(
    fake: &Shared,
    target: &str,
    headers: &HeaderMap,
) -> Result<(String, u16), Box<Response>> {
    let unauthorized = |m: &str| Box::new(refuse(StatusCode::UNAUTHORIZED, m));
    let (port, who) = target
        .split_once('-')
        .and_then(|(p, w)| Some((p.parse::<u16>().ok()?, w)))
        .ok_or_else(|| Box::new(refuse(StatusCode::NOT_FOUND, "no such preview")))?;
    if let Some((sandbox, signed_port, expires)) = lock(&fake.signed).get(who).cloned() {
        if signed_port != port {
            return Err(unauthorized(
                "authentication failed: the signed URL is for another port",
            ));
        }
        if Instant::now() > expires {
            return Err(unauthorized(
                "authentication failed: the signed URL has expired",
            ));
        }
        return Ok((sandbox, port));
    }
    let expected = lock(&fake.tokens).get(who).cloned();
    let Some(expected) = expected else {
        return Err(Box::new(refuse(StatusCode::NOT_FOUND, "sandbox not found")));
    };
    match headers
        .get("x-daytona-preview-token")
        .and_then(|v| v.to_str().ok())
    {
        None => Err(unauthorized("missing authentication: no preview token")),
        Some(t) if t == expected => Ok((who.to_string(), port)),
        Some(_) => Err(unauthorized("authentication failed: invalid preview token")),
    }
}

/// Everything under `/_preview/{target}/…`.
pub async fn proxy(
    State(fake): State<Shared>,
    Path((target, rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    let (sandbox, port) = match authenticate(&fake, &target, request.headers()) {
        Ok(found) => found,
        Err(r) => return *r,
    };
    // Daytona's proxy counts a request as activity (what keeps a sandbox from its
    // auto-stop) unless it says not to.
    let skip_activity = request
        .headers()
        .get("x-daytona-skip-last-activity-update")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    if !skip_activity {
        if let Some(s) = lock(&fake.sandboxes).get_mut(&sandbox) {
            s["lastActivityAt"] = serde_json::json!(crate::now_ms());
        }
    }
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
        return tunnel(request, &upstream, &format!("/{rest}{query}")).await;
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
    let stream = upstream_response
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    response
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "bad upstream answer"))
}

/// A WebSocket upgrade passed to `upstream` as `path`: the request head is sent on (less
/// the preview token), the upstream's `101` comes back, and once the client's connection
/// is upgraded the two are piped until either ends.
async fn tunnel(mut request: Request, upstream: &str, path: &str) -> Response {
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
