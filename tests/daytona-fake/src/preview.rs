//! The fake's preview proxy: `/_preview/{port}-{sandboxId}/…` (standard links, the token in
//! `x-daytona-preview-token`) and `/_preview/{port}-{signedToken}/…` (signed links, which
//! expire), as Daytona's proxy authenticates them (`apps/proxy/pkg/proxy/auth.go` of
//! Daytona v0.190): an `Authorization: Bearer` token first, tried as a Daytona API key
//! (the fake's key passes, and is removed); then the preview token in the header (removed
//! before the request goes on) or in query parameter `DAYTONA_SANDBOX_AUTH_KEY` (removed
//! when it passes); then the sign-in cookie a signed link set (`daytona-sandbox-auth-…`,
//! an hour; it passes even once the link itself expired, as Daytona's does); then a signed
//! token. A token's verdict is cached as Daytona's proxy caches it: a valid one 2 minutes
//! (a token that rotated at a start still passes until its verdict expires), an invalid
//! one 5 s (`DAYTONA_FAKE_PREVIEW_CACHE_MS` sets the first, for tests). When nothing
//! passes, the answer is Daytona's: a `307` redirect to its sign-in page ([`LOGIN_PATH`],
//! an HTML page), not a `401` — a missing token, a stale one (tokens change on every
//! start), an expired signed link.
//!
//! Stricter than Daytona in one thing: a bearer token that is not a Daytona credential is
//! removed before the request goes on (Daytona hands it on after sending it to its own API
//! to check), so a client that puts its own token there fails here instead of leaking it.
//!
//! A WebSocket upgrade that passes goes through to the sandbox, on standard, token and
//! signed links alike, as Daytona's proxy carries them (its SDK opens the toolbox's
//! WebSockets through it, the token in [`TOKEN_QUERY`]): the two connections are piped
//! until either ends or the sandbox is stopped. Knob `passWebSockets: false` turns them
//! away with a `307` to a login page instead (a proxy on the way that does not carry
//! them). Knob `gatewayTimeoutMs`: a request whose answer has not begun by then gets
//! `504`, like Daytona's edge.
//!
//! A request body is streamed on as it comes, as Daytona's proxy (Go's `ReverseProxy`)
//! does: the head of an HTTP/2 request (curl's, a browser's: the body in a frame of its
//! own) may reach the sandbox before its body, and a sandbox that answers then must still
//! let the body come (the relay reads a refused request's small body before refusing it).
//!
//! Where a sandbox's port goes is a test control, not Daytona's API:
//! `POST /_fake/upstream {"sandbox": ID, "port": P, "target": "127.0.0.1:Q"}`.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
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

/// The query parameter that carries a preview token (Daytona's
/// `SANDBOX_AUTH_KEY_QUERY_PARAM`).
pub const TOKEN_QUERY: &str = "DAYTONA_SANDBOX_AUTH_KEY";
/// The cookie a signed link sets, `{COOKIE_PREFIX}{signed token}` (Daytona's
/// `SANDBOX_AUTH_COOKIE_NAME`).
pub const COOKIE_PREFIX: &str = "daytona-sandbox-auth-";
/// How long that cookie lasts (Daytona's `SANDBOX_AUTH_COOKIE_MAX_AGE_SECONDS`).
const COOKIE_SECS: u64 = 3600;

/// What Daytona's proxy caches of its token checks (`validateAndCache`): per sandbox and
/// token, the verdict and until when it holds — a valid token for 2 minutes (so a token
/// that rotated at a start still passes until then), an invalid one for 5 s. Also the
/// sign-in cookies handed out: value → sandbox and expiry. One fake per process.
#[derive(Default)]
struct Cache {
    verdicts: HashMap<(String, String), (bool, Instant)>,
    cookies: HashMap<String, (String, Instant)>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// How long a valid token's verdict is cached: `DAYTONA_FAKE_PREVIEW_CACHE_MS`, default
/// Daytona's 120 000; an invalid one's: Daytona's 5 s, or as long as a valid one's if that
/// is shorter.
fn cache_ttls() -> (Duration, Duration) {
    let valid = std::env::var("DAYTONA_FAKE_PREVIEW_CACHE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(120), Duration::from_millis);
    (valid, valid.min(Duration::from_secs(5)))
}

/// Whether `token` is sandbox `sandbox`'s preview token, as Daytona's proxy answers it:
/// from its cache while the verdict there holds, else from the sandbox's current token
/// (and then cached).
fn token_valid(fake: &Shared, sandbox: &str, token: &str) -> bool {
    let key = (sandbox.to_string(), token.to_string());
    let now = Instant::now();
    if let Some((verdict, until)) = lock(cache()).verdicts.get(&key) {
        if now < *until {
            return *verdict;
        }
    }
    let verdict = lock(&fake.tokens).get(sandbox).is_some_and(|t| t == token);
    let (valid_ttl, invalid_ttl) = cache_ttls();
    let ttl = if verdict { valid_ttl } else { invalid_ttl };
    lock(cache()).verdicts.insert(key, (verdict, now + ttl));
    verdict
}

/// A sign-in cookie for a signed link's `who`, good for [`COOKIE_SECS`]: its
/// `Set-Cookie` value.
fn sign_in_cookie(fake: &Shared, who: &str, sandbox: &str) -> String {
    let value = crate::new_token(fake);
    lock(cache()).cookies.insert(
        value.clone(),
        (
            sandbox.to_string(),
            Instant::now() + Duration::from_secs(COOKIE_SECS),
        ),
    );
    let secure = if fake.origin().starts_with("https:") {
        "; Secure"
    } else {
        ""
    };
    format!("{COOKIE_PREFIX}{who}={value}; Max-Age={COOKIE_SECS}; Path=/; HttpOnly{secure}")
}

/// The sandbox of a sign-in cookie for `who` among `headers`' cookies, if one holds.
fn cookie_sandbox(headers: &HeaderMap, who: &str) -> Option<String> {
    let name = format!("{COOKIE_PREFIX}{who}");
    let now = Instant::now();
    headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .find_map(|(_, value)| {
            lock(cache())
                .cookies
                .get(value)
                .filter(|(_, until)| now < *until)
                .map(|(sandbox, _)| sandbox.clone())
        })
}

/// Per sandbox, how many times it was stopped: a tunnel through the proxy ends at the
/// next stop ([`stopped`]).
fn stop_counts() -> &'static Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>> {
    static STOPS: OnceLock<Mutex<HashMap<String, tokio::sync::watch::Sender<u64>>>> =
        OnceLock::new();
    STOPS.get_or_init(Mutex::default)
}

/// What changes when sandbox `sandbox` is next stopped.
fn stops(sandbox: &str) -> tokio::sync::watch::Receiver<u64> {
    lock(stop_counts())
        .entry(sandbox.to_string())
        .or_insert_with(|| tokio::sync::watch::channel(0).0)
        .subscribe()
}

/// Sandbox `sandbox` is being stopped: the WebSocket connections through the proxy to it
/// end (its processes, and so their sockets, go).
pub fn stopped(sandbox: &str) {
    if let Some(count) = lock(stop_counts()).get(sandbox) {
        count.send_modify(|n| *n += 1);
    }
}

/// Takes parameter `name` out of query `query`; returns its value.
fn take_param(query: &mut String, name: &str) -> Option<String> {
    let mut found = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            if n == name && found.is_none() {
                found = Some(v.to_string());
                return false;
            }
            !pair.is_empty()
        })
        .collect();
    let kept = kept.join("&");
    *query = kept;
    found
}

/// Who a request is, once its credentials pass: the sandbox, the port, and the
/// `Set-Cookie` a signed link answers with.
struct Passed {
    sandbox: String,
    port: u16,
    set_cookie: Option<String>,
}

/// Which sandbox and port a request is for, once its credentials pass, in Daytona's order
/// (`Authenticate` in `apps/proxy/pkg/proxy/auth.go`): a bearer token (a Daytona API key:
/// removed from `headers` once it passes; any other bearer token is removed too, see the
/// module doc); the preview token header (always removed); the preview token as query
/// parameter [`TOKEN_QUERY`] (removed from `query` when it passes); a sign-in cookie a
/// signed link set; a signed token (which sets that cookie). Token checks go through
/// Daytona's cache ([`token_valid`]). `Err` is the redirect to the sign-in page.
fn authenticate(
    fake: &Shared,
    target: &str,
    headers: &mut HeaderMap,
    query: &mut String,
) -> Result<Passed, Box<Response>> {
    let (port, who) = target
        .split_once('-')
        .and_then(|(p, w)| Some((p.parse::<u16>().ok()?, w)))
        .ok_or_else(|| Box::new(refuse(StatusCode::BAD_REQUEST, "invalid host format")))?;
    let passed = |sandbox: &str| Passed {
        sandbox: sandbox.to_string(),
        port,
        set_cookie: None,
    };
    let known = lock(&fake.tokens).contains_key(who);
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    headers.remove("authorization");
    if bearer.as_deref() == Some(fake.key.as_str()) && known {
        return Ok(passed(who));
    }
    let presented = headers
        .remove("x-daytona-preview-token")
        .and_then(|v| v.to_str().ok().map(str::to_string));
    if let Some(t) = &presented {
        if known && token_valid(fake, who, t) {
            return Ok(passed(who));
        }
    }
    let mut in_query = take_param(query, TOKEN_QUERY);
    if let Some(t) = &in_query {
        if known && token_valid(fake, who, t) {
            return Ok(passed(who));
        }
    }
    if let Some(t) = in_query.take() {
        // Not valid: Daytona leaves it in the query.
        *query = if query.is_empty() {
            format!("{TOKEN_QUERY}={t}")
        } else {
            format!("{query}&{TOKEN_QUERY}={t}")
        };
    }
    if let Some(sandbox) = cookie_sandbox(headers, who) {
        return Ok(passed(&sandbox));
    }
    if let Some((sandbox, signed_port, expires)) = lock(&fake.signed).get(who).cloned() {
        if signed_port == port && Instant::now() <= expires {
            return Ok(Passed {
                set_cookie: Some(sign_in_cookie(fake, who, &sandbox)),
                ..passed(&sandbox)
            });
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
        (None, None) if query.contains(TOKEN_QUERY) => "invalid preview token",
        (None, None) => "no credentials",
    };
    Err(Box::new(to_login(fake, target, why)))
}

/// `/_preview/{target}/`: the root of a preview URL (Daytona's URLs have no path of
/// their own, so `/` of a service is this).
pub async fn proxy_root(
    state: State<Shared>,
    Path(target): Path<String>,
    request: Request,
) -> Response {
    proxy(state, Path((target, String::new())), request).await
}

/// Everything under `/_preview/{target}/…`.
pub async fn proxy(
    State(fake): State<Shared>,
    Path((target, rest)): Path<(String, String)>,
    mut request: Request,
) -> Response {
    let mut query = request.uri().query().unwrap_or_default().to_string();
    let Passed {
        sandbox,
        port,
        set_cookie,
    } = match authenticate(&fake, &target, request.headers_mut(), &mut query) {
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
    if websocket && lock(&fake.faults).refuse_websockets {
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
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    if websocket {
        return tunnel(
            request,
            &sandbox,
            &upstream,
            &format!("/{rest}{query}"),
            active,
        )
        .await;
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
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, &upstream_error(&e)),
    };
    let mut response = Response::builder().status(upstream_response.status().as_u16());
    if let Some(cookie) = &set_cookie {
        response = response.header("set-cookie", cookie.as_str());
    }
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

/// `upstream: ` and the error with its causes (reqwest's own text names none of them).
fn upstream_error(e: &reqwest::Error) -> String {
    use std::fmt::Write;
    let mut text = format!("upstream: {e}");
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let _ = write!(text, ": {c}");
        cause = c.source();
    }
    text
}

/// A WebSocket upgrade passed to `upstream` as `path`: the request head is sent on (less
/// the preview token), the upstream's `101` comes back, and once the client's connection
/// is upgraded the two are piped until either ends.
async fn tunnel(
    mut request: Request,
    sandbox: &str,
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
    let mut stopped = stops(sandbox);
    tokio::spawn(async move {
        // Active for as long as the tunnel is open.
        let _open = active;
        if let Ok(upgraded) = on_upgrade.await {
            let mut client = hyper_util::rt::TokioIo::new(upgraded);
            if client.write_all(&early).await.is_ok() {
                // A stop of the sandbox ends its connections, as Daytona's does.
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut tcp) => {}
                    _ = stopped.changed() => {}
                }
            }
        }
    });
    response
        .body(Body::empty())
        .unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "bad upstream answer"))
}
