//! One browser connection's requests, forwarded to the box's upstream.
//!
//! - The route comes from the connection's SNI; every request's Host (or `:authority`)
//!   must name the same route, else 421 (one connection never reaches another box).
//! - The upstream is looked up at the connection's first request ([`Resolver`], at each
//!   connection, so a restarted box is found where it is now) and kept for the connection.
//! - Hop-by-hop headers go; the Host becomes what the upstream routes by, the original
//!   is sent as `X-Forwarded-Host`, with `X-Forwarded-Proto: https` and `-For`.
//! - Daytona: the preview token goes in its header; a 401/403 from the preview proxy to a
//!   request without a body renews the link (its token changes when the box starts again)
//!   and tries once more.
//! - `Upgrade` requests (WebSockets) over HTTP/1.1 are spliced after the upstream's 101.
//!   HTTP/2 from the browser is answered over HTTP/1.1 upstream.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::pages::page;
pub use super::pages::Body;

/// The proxy's own answer instead of the upstream's (boxed: it is large).
type Refusal = Box<Response<Body>>;

/// A [`page`] as a [`Refusal`].
#[allow(clippy::unnecessary_box_returns)] // it is the error of results, kept small
fn refuse(status: u16, message: &str) -> Refusal {
    Box::new(page(status, message))
}
use super::routing::{parse_host, Resolver, Route, Upstream};

/// The upstream client: plain HTTP to WebProxies on loopback, HTTPS to preview URLs
/// (the host's one TLS configuration, [`crate::tls::client_config`]).
pub type Client = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Body>;

/// The headers that describe one hop, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// A client for [`Client`]'s upstreams.
pub fn client() -> Client {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    // hyper-rustls offers the ALPN of the protocols enabled below (HTTP/1.1) itself.
    let mut tls = (*crate::tls::client_config()).clone();
    tls.alpn_protocols.clear();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https)
}

/// One browser connection: its route (from SNI) and where it leads.
pub struct Conn {
    route: Route,
    peer: SocketAddr,
    resolver: Arc<Resolver>,
    client: Client,
    upstream: tokio::sync::Mutex<Option<Upstream>>,
}

impl Conn {
    /// A connection from `peer` for `route`.
    pub fn new(route: Route, peer: SocketAddr, resolver: Arc<Resolver>, client: Client) -> Self {
        Self {
            route,
            peer,
            resolver,
            client,
            upstream: tokio::sync::Mutex::default(),
        }
    }

    /// The upstream, looked up at the first request (or again when `renew`).
    async fn upstream(&self, renew: bool) -> Result<Upstream, Refusal> {
        let mut held = self.upstream.lock().await;
        if let (Some(u), false) = (held.as_ref(), renew) {
            return Ok(u.clone());
        }
        if renew {
            self.resolver.forget(&self.route.box_name);
        }
        let (resolver, route) = (self.resolver.clone(), self.route.clone());
        let found = tokio::task::spawn_blocking(move || resolver.resolve(&route))
            .await
            .map_err(|e| refuse(500, &format!("the proxy's lookup failed: {e}")))?
            .map_err(|e| refuse(e.status(), &e.to_string()))?;
        *held = Some(found.clone());
        Ok(found)
    }

    /// Answers one request (never an error: failures are pages).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let head = req.method() == hyper::Method::HEAD;
        let response = self.answer(req).await.unwrap_or_else(|page| *page);
        if head {
            // No body to a HEAD (hyper's HTTP/2 resets a stream that has one).
            let (parts, _) = response.into_parts();
            return Ok(Response::from_parts(
                parts,
                Empty::new().map_err(|never| match never {}).boxed(),
            ));
        }
        Ok(response)
    }

    async fn answer(&self, mut req: Request<Incoming>) -> Result<Response<Body>, Refusal> {
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| {
                req.uri()
                    .authority()
                    .map(hyper::http::uri::Authority::as_str)
            })
            .unwrap_or_default()
            .to_string();
        match parse_host(&host) {
            Ok(r) if r == self.route => {}
            Ok(_) => {
                return Err(refuse(
                    421,
                    &format!(
                        "this connection is for {}; open https://{host}/ in a new connection",
                        self.route.host()
                    ),
                ))
            }
            Err(e) => return Err(refuse(e.status(), &e.to_string())),
        }
        let upgrade = req.version() == Version::HTTP_11 && req.headers().contains_key(UPGRADE);
        let bodiless = req.headers().get(hyper::header::CONTENT_LENGTH).is_none()
            && req
                .headers()
                .get(hyper::header::TRANSFER_ENCODING)
                .is_none();
        let downstream = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut upstream = self.upstream(false).await?;
        let mut body = Some(body.boxed());
        let mut renewed = false;
        let mut response = loop {
            let outgoing = self.outgoing(&parts, &host, &upstream, upgrade, &mut body)?;
            let response = self.client.request(outgoing).await.map_err(|e| {
                refuse(
                    502,
                    &format!(
                        "box `{}` did not answer: {} (is it running? `agentbox start {}`)",
                        self.route.box_name,
                        error_chain(&e),
                        self.route.box_name
                    ),
                )
            });
            let response = match response {
                Ok(r) => r,
                Err(page) => {
                    // The box moved (a restart): look it up again for the next request.
                    *self.upstream.lock().await = None;
                    return Err(page);
                }
            };
            let refused = matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            );
            if refused && !renewed && bodiless && matches!(upstream, Upstream::Preview { .. }) {
                renewed = true;
                upstream = self.upstream(true).await?;
                body = Some(Empty::new().map_err(|never| match never {}).boxed());
                continue;
            }
            break response;
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(downstream) = downstream {
                let up = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    let (Ok(down), Ok(up)) = (downstream.await, up.await) else {
                        return;
                    };
                    let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                });
                let (parts, _) = response.into_parts();
                return Ok(Response::from_parts(
                    parts,
                    Empty::new().map_err(|never| match never {}).boxed(),
                ));
            }
        }
        strip_hop_by_hop(response.headers_mut(), false);
        Ok(response.map(BodyExt::boxed))
    }

    /// The request to send upstream (its body taken from `body`).
    fn outgoing(
        &self,
        parts: &hyper::http::request::Parts,
        host: &str,
        upstream: &Upstream,
        upgrade: bool,
        body: &mut Option<Body>,
    ) -> Result<Request<Body>, Refusal> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let (base, upstream_host, token) = match upstream {
            Upstream::Web { base, host } => (base.as_str(), host.clone(), None),
            Upstream::Preview { base, token } => {
                let authority = base
                    .split_once("://")
                    .map_or(base.as_str(), |(_, rest)| rest)
                    .to_string();
                (base.as_str(), authority, Some(token.as_str()))
            }
        };
        let uri: Uri = format!("{base}{path}")
            .parse()
            .map_err(|e| refuse(400, &format!("cannot forward {path}: {e}")))?;
        let mut req = Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .version(Version::HTTP_11)
            .body(
                body.take()
                    .unwrap_or_else(|| Empty::new().map_err(|never| match never {}).boxed()),
            )
            .map_err(|e| refuse(400, &format!("cannot forward {path}: {e}")))?;
        let headers = req.headers_mut();
        headers.clone_from(&parts.headers);
        strip_hop_by_hop(headers, upgrade);
        let value = |v: &str| HeaderValue::from_str(v).map_err(|e| refuse(400, &e.to_string()));
        headers.insert(HOST, value(&upstream_host)?);
        headers.insert(HeaderName::from_static("x-forwarded-host"), value(host)?);
        headers.insert(
            HeaderName::from_static("x-forwarded-proto"),
            HeaderValue::from_static("https"),
        );
        headers.insert(
            HeaderName::from_static("x-forwarded-for"),
            value(&self.peer.ip().to_string())?,
        );
        if let Some(token) = token {
            headers.insert(
                HeaderName::from_static(crate::daytona::PREVIEW_TOKEN_HEADER),
                value(token)?,
            );
        }
        Ok(req)
    }
}

/// Removes the hop-by-hop headers (and those `Connection` names); with `upgrade`, the
/// `Upgrade` header stays and `Connection: upgrade` is set.
fn strip_hop_by_hop(headers: &mut hyper::HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| n != UPGRADE)
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(UPGRADE);
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
