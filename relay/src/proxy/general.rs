//! The general path: every connection the fast path hands over, served with hyper from
//! the first request that needs it — HTTP/2, upgrades, requests held while a service is
//! not ready, error pages, `/_agentbox/services`, and retries across a service restart.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::ctl::UnitStatus;
use agentbox_protocol::proxy::{ExposedService, ExposedServices};
use agentbox_protocol::ErrorCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::fast;
use super::pages::{did_not_answer, full, is_down, not_running, problem, Viewer};
use super::shared::{exposed, route, Body, Shared, HOP_BY_HOP, TOKEN_HEADER};
use crate::ctl_link::Units;

/// The service connection of one client connection. HTTP/1.1 clients send one request at
/// a time, so each client connection keeps its own keep-alive connection to the service:
/// no shared pool, no lock contention, and a refused connect hands the request back for a
/// retry instead of losing it.
#[derive(Default)]
struct Upstream {
    conn: Option<(u16, hyper::client::conn::http1::SendRequest<Body>)>,
}

/// Why a request could not be sent; `request` is handed back when nothing was sent.
struct SendFailure {
    request: Option<Request<Body>>,
    refused: bool,
    message: String,
}

impl Upstream {
    async fn connect(port: u16) -> std::io::Result<hyper::client::conn::http1::SendRequest<Body>> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake::<_, Body>(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        // `with_upgrades` also lets an `Upgrade` request take the connection over.
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "service connection ended");
            }
        });
        Ok(sender)
    }

    /// Sends on the kept connection, or a new one when it is gone or was closed by the
    /// service between two requests.
    async fn send(
        &mut self,
        port: u16,
        mut request: Request<Body>,
    ) -> Result<Response<Incoming>, SendFailure> {
        for _ in 0..2 {
            let kept = match self.conn.take() {
                Some((p, mut sender)) if p == port => {
                    sender.ready().await.is_ok().then_some(sender)
                }
                _ => None,
            };
            let mut sender = match kept {
                Some(sender) => sender,
                None => match Self::connect(port).await {
                    Ok(sender) => sender,
                    Err(e) => {
                        return Err(SendFailure {
                            request: Some(request),
                            refused: true,
                            message: e.to_string(),
                        })
                    }
                },
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.conn = Some((port, sender));
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the kept connection had died; try a fresh one.
                    Some(back) => request = back,
                    None => {
                        return Err(SendFailure {
                            request: None,
                            refused: false,
                            message: e.into_error().to_string(),
                        })
                    }
                },
            }
        }
        Err(SendFailure {
            request: Some(request),
            refused: true,
            message: "connection closed".into(),
        })
    }
}

/// Serves the rest of a connection the fast path handed over, with hyper: every kind of
/// request, held requests and error pages included.
pub(super) async fn serve_general(
    handoff: fast::Handoff,
    peer: SocketAddr,
    shared: Arc<Shared>,
    builder: &hyper_util::server::conn::auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let header_timeout = shared.config.header_timeout;
    let first_request = Arc::new(tokio::sync::Notify::new());
    let seen = first_request.clone();
    let upstream = Arc::new(tokio::sync::Mutex::new(Upstream::default()));
    let service = hyper::service::service_fn(move |req| {
        seen.notify_one();
        handle(req, shared.clone(), peer, upstream.clone())
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(fast::Rewind::new(handoff)), service)
        .into_owned();
    let conn = watcher.watch(conn);
    // A client that never completes its first request head here is cut off (hyper's own
    // header timeout covers the requests after it).
    let cutoff = async {
        if tokio::time::timeout(header_timeout, first_request.notified())
            .await
            .is_err()
        {
            tracing::debug!(%peer, "no request head in time; closing");
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = conn => if let Err(e) = result {
            tracing::debug!(error = %e, %peer, "connection ended with an error");
        },
        () = cutoff => {},
    }
}

fn wants_json(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

/// The Host the client asked for (Host header, or the HTTP/2 authority).
fn requested_host(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
}

fn services_json(units: &Units) -> Response<Body> {
    let list = ExposedServices {
        supervisor_reachable: units.reachable,
        services: exposed(units)
            .map(|u| ExposedService {
                name: u.name.clone(),
                port: u.expose.as_ref().map_or(0, |e| e.port),
                default: u.expose.as_ref().is_some_and(|e| e.default),
                state: u.state,
                ready: u.ready,
            })
            .collect(),
    };
    let mut response = Response::new(full(serde_json::to_vec(&list).unwrap_or_default()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Routes the request; while nothing matches, waits for the unit table to change: the whole
/// hold time while the supervisor is unreachable (it may be starting), a short grace when
/// it answered (a reload may be on its way to us).
async fn route_or_wait(shared: &Shared, host: Option<&str>) -> Option<String> {
    let mut rx = shared.units.clone();
    let start = tokio::time::Instant::now();
    loop {
        let units = rx.borrow_and_update().clone();
        if let Some(name) = route(&units, host) {
            return Some(name);
        }
        let patience = if units.reachable {
            NO_ROUTE_GRACE.min(shared.config.hold)
        } else {
            shared.config.hold
        };
        if tokio::time::timeout_at(start + patience, rx.changed())
            .await
            .is_err()
        {
            return None;
        }
    }
}

/// How long a request with no matching service waits for the unit table to change.
const NO_ROUTE_GRACE: Duration = Duration::from_secs(2);

/// A service that will not become ready without someone acting.
enum Wait {
    Ready(u16),
    Down(Option<UnitStatus>),
    TimedOut(Option<UnitStatus>),
}

/// Waits until `name` is ready (or down, or the hold time passes). The common case — it
/// is ready — costs one borrow of the table and no allocation.
async fn wait_ready(shared: &Shared, name: &str) -> Wait {
    let mut rx = shared.units.clone();
    let mut deadline = None;
    loop {
        {
            let units = rx.borrow_and_update();
            match units.units.iter().find(|u| u.name == name) {
                Some(u) if u.ready => {
                    if let Some(e) = &u.expose {
                        return Wait::Ready(e.port);
                    }
                }
                Some(u) if is_down(u) => return Wait::Down(Some(u.clone())),
                _ => {}
            }
        }
        let deadline =
            *deadline.get_or_insert_with(|| tokio::time::Instant::now() + shared.config.hold);
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            let unit = rx.borrow().units.iter().find(|u| u.name == name).cloned();
            return Wait::TimedOut(unit);
        }
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    upstream: Arc<tokio::sync::Mutex<Upstream>>,
) -> Result<Response<Body>, Infallible> {
    let owner = shared.config.token.as_ref().is_some_and(|token| {
        req.headers()
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| token.matches(v))
    });
    let viewer = Viewer {
        json: wants_json(&req),
        owner,
    };
    if req.uri().path() == "/_agentbox/services" {
        let units = shared.units.borrow().clone();
        return Ok(services_json(&units));
    }
    let host = requested_host(&req);
    let Some(name) = route_or_wait(&shared, host.as_deref()).await else {
        let units = shared.units.borrow().clone();
        let message = if units.reachable {
            "no service is exposed: add `expose: {port: N}` to a service in agentbox.yaml"
                .to_string()
        } else {
            "the box supervisor (agentbox-ctl daemon) is not reachable".to_string()
        };
        return Ok(problem(
            &shared,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotFound,
            message,
            None,
            viewer,
        )
        .await);
    };
    let port = match wait_ready(&shared, &name).await {
        Wait::Ready(port) => port,
        Wait::Down(unit) => {
            let message = not_running(&name, unit.as_ref());
            return Ok(problem(
                &shared,
                StatusCode::BAD_GATEWAY,
                ErrorCode::Internal,
                message,
                unit.as_ref(),
                viewer,
            )
            .await);
        }
        Wait::TimedOut(unit) => {
            let message = format!(
                "service `{name}` is still starting after {} s",
                shared.config.hold.as_secs()
            );
            return Ok(problem(
                &shared,
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Timeout,
                message,
                unit.as_ref(),
                viewer,
            )
            .await);
        }
    };
    let result = if is_upgrade(&req) {
        forward_upgrade(req, port, peer, host).await
    } else {
        forward_retrying(&shared, &upstream, req, &name, port, peer, host).await
    };
    match result {
        Ok(response) => Ok(response),
        Err(e) => Ok(did_not_answer(&shared, &name, port, &e, viewer).await),
    }
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.version() <= Version::HTTP_11 && req.headers().contains_key(header::UPGRADE)
}

/// Removes hop-by-hop headers (and those named in `Connection`), keeping `Upgrade` and
/// `Connection: upgrade` when `keep_upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().map(HeaderName::as_str).chain(HOP_BY_HOP) {
        if keep_upgrade && (name == "upgrade" || name == "connection") {
            continue;
        }
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// The request as the service gets it: same method, path, Host and headers, plus the
/// `X-Forwarded-*` trio, over HTTP/1.1.
fn upstream_parts(
    req: &mut Request<Incoming>,
    peer: SocketAddr,
    host: Option<&str>,
    keep_upgrade: bool,
) -> Result<(), String> {
    // Origin form (`/path?query`): the request goes out on a connection to the service.
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let uri: Uri = path.parse().map_err(|e| format!("bad path: {e}"))?;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    let headers = req.headers_mut();
    strip_hop_by_hop(headers, keep_upgrade);
    if let Some(h) = host {
        // HTTP/2 clients send the authority instead of a Host header: the service gets
        // the same Host either way.
        if !headers.contains_key(header::HOST) {
            if let Ok(v) = HeaderValue::from_str(h) {
                headers.insert(header::HOST, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(h) {
            headers.insert(HeaderName::from_static("x-forwarded-host"), v);
        }
    }
    let ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("http"),
        );
    }
    Ok(())
}

/// Forwards a request. A request without a body that finds the port closed (the table
/// said ready, but the service is restarting) waits for the service to be ready again
/// and is sent once more, within the hold time: the client never sees the restart.
async fn forward_retrying(
    shared: &Shared,
    upstream: &tokio::sync::Mutex<Upstream>,
    mut req: Request<Incoming>,
    name: &str,
    port: u16,
    peer: SocketAddr,
    host: Option<String>,
) -> Result<Response<Body>, String> {
    let multiplexed = req.version() == Version::HTTP_2;
    upstream_parts(&mut req, peer, host.as_deref(), false)?;
    if multiplexed {
        // HTTP/2 clients send concurrent requests: they share the pooled client.
        return send(shared, req.map(BodyExt::boxed), port).await;
    }
    let mut request = req.map(BodyExt::boxed);
    let deadline = tokio::time::Instant::now() + shared.config.hold;
    let mut upstream = upstream.lock().await;
    loop {
        match upstream.send(port, request).await {
            Ok(response) => return Ok(finish(response)),
            Err(SendFailure {
                request: Some(back),
                refused: true,
                ..
            }) if tokio::time::Instant::now() < deadline => {
                // Refused although the table said ready: the service is restarting. Wait
                // for the table to move (not ready, then ready again) and send again.
                request = back;
                let mut rx = shared.units.clone();
                let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
                match wait_ready(shared, name).await {
                    Wait::Ready(p) if p == port => {}
                    _ => return Err("connection refused".into()),
                }
            }
            Err(failure) => return Err(failure.message),
        }
    }
}

async fn send(
    shared: &Shared,
    mut req: Request<Body>,
    port: u16,
) -> Result<Response<Body>, String> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = format!("http://127.0.0.1:{port}{path}")
        .parse()
        .map_err(|e| format!("bad path: {e}"))?;
    let response = shared
        .client
        .request(req)
        .await
        .map_err(|e| connect_error(&e))?;
    Ok(finish(response))
}

fn finish(mut response: Response<Incoming>) -> Response<Body> {
    strip_hop_by_hop(response.headers_mut(), false);
    response.map(BodyExt::boxed)
}

fn connect_error(e: &hyper_util::client::legacy::Error) -> String {
    if e.is_connect() {
        "connection refused".to_string()
    } else {
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg = format!("{msg}: {s}");
            source = s.source();
        }
        msg
    }
}

/// Forwards an `Upgrade` request on its own connection; after a `101`, splices the two
/// upgraded streams together.
async fn forward_upgrade(
    mut req: Request<Incoming>,
    port: u16,
    peer: SocketAddr,
    host: Option<String>,
) -> Result<Response<Body>, String> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    upstream_parts(&mut req, peer, host.as_deref(), true)?;
    let mut sender = Upstream::connect(port).await.map_err(|e| e.to_string())?;
    let mut response = sender
        .send_request(req.map(BodyExt::boxed))
        .await
        .map_err(|e| e.to_string())?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let service_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, service_upgrade) {
                Ok((client, service)) => {
                    let mut client = TokioIo::new(client);
                    let mut service = TokioIo::new(service);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut service).await;
                }
                Err(e) => tracing::debug!(error = %e, "upgrade failed"),
            }
        });
    }
    Ok(response.map(BodyExt::boxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::HOST, HeaderValue::from_static("a.b"));
        let mut plain = h.clone();
        strip_hop_by_hop(&mut plain, false);
        assert_eq!(plain.len(), 1);
        assert!(plain.contains_key(header::HOST));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(
            h.get(header::CONNECTION).map(HeaderValue::as_bytes),
            Some(&b"upgrade"[..])
        );
        assert!(h.contains_key(header::UPGRADE) && !h.contains_key("x-secret"));
    }
}
