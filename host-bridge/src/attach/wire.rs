//! The two transports of a term, seen from the host: a WebSocket, or an HTTP output stream
//! with input and resize as requests. Both deliver [`Event`]s into one channel and take
//! input numbered by offset, so the attach loop does not care which one it has.

use std::collections::VecDeque;
use std::time::Duration;

use agentbox_protocol::error::ErrorBody;
use agentbox_protocol::files::OFFSET_HEADER;
use agentbox_protocol::term::{
    encode_input, valid_session_name, TermControl, TermEvent, TermId, TermInfo, TermOpen, TermSize,
};
use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::transfer::capped::{
    read_error_body, read_json_capped, CappedError, ERROR_CAP, SMALL_CAP,
};
use crate::transfer::client::Relay;

/// Input kept for a resend after a WebSocket reconnect.
const RESEND_KEEP: usize = 1 << 20;

/// What the relay said, or why it could not be reached.
#[derive(Debug)]
pub enum ApiFailure {
    /// The term is not there any more (`404`) or the offset fell out (`410`): open anew.
    Gone(String),
    /// Any other refusal, with the relay's message.
    Refused(StatusCode, String),
    /// The network: try again.
    Network(String),
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gone(m) | Self::Network(m) => f.write_str(m),
            Self::Refused(s, m) => f.write_str(&crate::transfer::refusal::refusal(*s, m)),
        }
    }
}

/// Whether `response` is the relay's success (not a preview proxy's login page).
fn succeeded(relay: &Relay, response: &reqwest::Response) -> bool {
    response.status().is_success() && !relay.preview_refused(response.status(), response.headers())
}

async fn failure(relay: &Relay, response: reqwest::Response) -> ApiFailure {
    let status = response.status();
    let login = relay.preview_refused(status, response.headers());
    let bytes = read_error_body(response, ERROR_CAP).await;
    let relay_error = serde_json::from_slice::<ErrorBody>(&bytes).ok();
    if login || (status == StatusCode::UNAUTHORIZED && relay_error.is_none() && relay.has_preview())
    {
        // The preview proxy's token rotated (the sandbox started again) and it answers with
        // a redirect to its login page (or a 401): renew it, and the caller's retry goes
        // through.
        return match relay.renew_preview().await {
            Ok(()) => ApiFailure::Network("the preview token was renewed".into()),
            Err(e) => ApiFailure::Refused(
                status,
                format!("the preview proxy refused the token: {e:#}"),
            ),
        };
    }
    let message = relay_error.map_or_else(
        || String::from_utf8_lossy(&bytes).into_owned(),
        |b| b.error.message,
    );
    // The box wrote this: no escape sequences reach the user's terminal through it.
    let message = crate::text::clean_text(&message, 500).replace('\n', " ");
    if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
        ApiFailure::Gone(message)
    } else {
        ApiFailure::Refused(status, message)
    }
}

fn network(e: &reqwest::Error) -> ApiFailure {
    ApiFailure::Network(crate::tls::explain(e))
}

/// `POST /v1/terms`.
pub async fn open(relay: &Relay, open: &TermOpen) -> Result<TermInfo, ApiFailure> {
    let response = relay
        .request(Method::POST, "/v1/terms")
        .json(open)
        .send()
        .await
        .map_err(|e| network(&e))?;
    if !succeeded(relay, &response) {
        let f = failure(relay, response).await;
        // A 404 here is "no such session", not a vanished term.
        return Err(match f {
            ApiFailure::Gone(m) => ApiFailure::Refused(StatusCode::NOT_FOUND, m),
            other => other,
        });
    }
    read_info(response).await
}

/// A [`TermInfo`] from the relay, read under its cap: its id parses as a [`TermId`] (the
/// host builds URLs from it) and its session is a plain session name (the host prints
/// it), or the answer is refused, not retried (the box chose it).
async fn read_info(response: reqwest::Response) -> Result<TermInfo, ApiFailure> {
    let status = response.status();
    let info: TermInfo = match read_json_capped(response, SMALL_CAP).await {
        Ok(info) => info,
        Err(CappedError::Network(e)) => return Err(network(&e)),
        Err(e) => {
            return Err(ApiFailure::Refused(
                status,
                format!("the box answered a term the host cannot use: {e}"),
            ))
        }
    };
    if !valid_session_name(&info.session) {
        return Err(ApiFailure::Refused(
            status,
            format!(
                "the box answered a term of session `{}`, which is not a session name",
                crate::text::shown(&crate::text::capped(&info.session, 64))
            ),
        ));
    }
    Ok(info)
}

/// `GET /v1/terms/{id}`.
pub async fn info(relay: &Relay, id: &TermId) -> Result<TermInfo, ApiFailure> {
    let response = relay
        .request(Method::GET, &format!("/v1/terms/{id}"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| network(&e))?;
    if !succeeded(relay, &response) {
        return Err(failure(relay, response).await);
    }
    read_info(response).await
}

/// `DELETE /v1/terms/{id}` (best effort: the relay forgets idle terms by itself).
pub async fn close(relay: &Relay, id: &TermId) {
    let _ = relay
        .request(Method::DELETE, &format!("/v1/terms/{id}"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
}

/// What a transport reports.
#[derive(Debug)]
pub enum Event {
    /// Output bytes, following on from the last.
    Output(Vec<u8>),
    /// The term ended once everything before `produced` was delivered.
    Ended(agentbox_protocol::term::TermEnd),
    /// The HTTP stream closed cleanly (idle or ended): ask the relay where the term is.
    StreamClosed,
    /// The connection broke.
    Broken(String),
    /// The term is gone: open anew.
    Gone(String),
}

/// Which transport to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// WebSocket, falling back to HTTP streaming when the path refuses the upgrade.
    Auto,
    /// WebSocket only.
    Ws,
    /// HTTP streaming only.
    Http,
}

/// A live connection to a term.
pub enum Link {
    /// A WebSocket: the writer half, and the input kept for a resend.
    Ws {
        /// Sends messages to the relay.
        sink: mpsc::UnboundedSender<Message>,
    },
    /// HTTP: input and resize go as requests from a task that keeps their order.
    Http {
        /// Queued input and resizes.
        sink: mpsc::UnboundedSender<HttpOut>,
    },
}

/// What the HTTP sender task sends.
#[derive(Debug)]
pub enum HttpOut {
    /// Input bytes at an offset.
    Input(u64, Vec<u8>),
    /// A new size.
    Resize(TermSize),
}

/// Why a WebSocket could not be opened.
pub enum WsRefused {
    /// The path answered the upgrade with this status (a proxy that refuses WebSocket).
    Status(StatusCode),
    /// The term is gone.
    Gone(String),
    /// The network.
    Network(String),
}

/// What one WebSocket handshake came to.
enum Handshake {
    /// The socket, upgraded.
    Open(Box<WsStream>),
    /// The preview proxy's answer to a missing or stale token: its login redirect (`307`)
    /// or a `401`.
    Stale(StatusCode),
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One WebSocket handshake to `url` with the relay's tokens as they are now.
async fn handshake(relay: &Relay, url: &str) -> Result<Handshake, WsRefused> {
    let mut request = url
        .into_client_request()
        .map_err(|e| WsRefused::Network(e.to_string()))?;
    for (name, value) in relay.auth_headers() {
        let value = value
            .parse()
            .map_err(|_| WsRefused::Network(format!("the {name} token is not a valid header")))?;
        request.headers_mut().insert(name, value);
    }
    let host = request.uri().host().unwrap_or("the relay").to_string();
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(crate::tls::ws_connector()),
    );
    match tokio::time::timeout(Duration::from_secs(15), connecting).await {
        Err(_) => Err(WsRefused::Network("timed out opening the WebSocket".into())),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            if relay.preview_refused(status, response.headers())
                || (status == StatusCode::UNAUTHORIZED && relay.has_preview())
            {
                return Ok(Handshake::Stale(status));
            }
            Err(
                if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
                    WsRefused::Gone(format!("the relay answered {status}"))
                } else if status.is_server_error() {
                    // A box stopped or starting behind the proxy (Daytona's `502`), an edge's
                    // timeout: try again, it is not a refusal of WebSocket.
                    WsRefused::Network(format!("the path to the box answered {status}"))
                } else {
                    WsRefused::Status(status)
                },
            )
        }
        Ok(Err(e)) => Err(WsRefused::Network(
            crate::tls::untrusted(&e, &host).unwrap_or_else(|| e.to_string()),
        )),
        Ok(Ok((socket, _))) => Ok(Handshake::Open(Box::new(socket))),
    }
}

/// Opens a WebSocket to term `id` at output `offset`; events go to `events`. Input from
/// where the relay's hello says it is on is resent from `unacked`; that offset is returned
/// with the link.
pub async fn connect_ws(
    relay: &Relay,
    id: &TermId,
    offset: u64,
    events: mpsc::UnboundedSender<Event>,
    unacked: &Unacked,
) -> Result<(Link, u64), WsRefused> {
    let url = relay
        .url(&format!("/v1/terms/{id}/ws?offset={offset}"))
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let mut renewed = false;
    let socket = loop {
        match handshake(relay, &url).await? {
            Handshake::Open(socket) => break *socket,
            Handshake::Stale(_) if !renewed => {
                // Most likely the preview token rotated (the sandbox started again): renew
                // it and try once more with the new one.
                relay.renew_preview().await.map_err(|e| {
                    WsRefused::Network(format!("cannot renew the preview token: {e:#}"))
                })?;
                renewed = true;
            }
            // Refused with a fresh token too: the path refuses WebSocket (Daytona's
            // private previews answer an upgrade with their login redirect).
            Handshake::Stale(status) => return Err(WsRefused::Status(status)),
        }
    };
    let (mut write, mut read) = socket.split();
    // The hello says which input the relay has: resend the rest before anything new.
    let hello = tokio::time::timeout(Duration::from_secs(15), read.next()).await;
    let input_offset = match hello {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<TermEvent>(&t) {
            Ok(TermEvent::Hello { input_offset, .. }) => input_offset,
            _ => return Err(WsRefused::Network(format!("unexpected first message {t}"))),
        },
        _ => return Err(WsRefused::Network("the relay sent no hello".into())),
    };
    let (sink, mut outgoing) = mpsc::unbounded_channel::<Message>();
    if let Some(bytes) = unacked.from(input_offset) {
        if !bytes.is_empty() {
            let _ = sink.send(Message::Binary(encode_input(input_offset, &bytes).into()));
        }
    } else {
        return Err(WsRefused::Gone(
            "input the relay did not take is no longer held".into(),
        ));
    }
    tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if write.send(message).await.is_err() {
                break;
            }
        }
        let _ = write.close().await;
    });
    tokio::spawn(async move {
        loop {
            let event = match read.next().await {
                Some(Ok(Message::Binary(b))) => Event::Output(b.to_vec()),
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<TermEvent>(&t) {
                    Ok(TermEvent::Ended { reason, .. }) => Event::Ended(reason),
                    _ => continue,
                },
                Some(Ok(Message::Close(frame))) => {
                    let why = frame.map_or_else(String::new, |f| f.reason.to_string());
                    Event::Broken(format!("the relay closed the connection: {why}"))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => Event::Broken(e.to_string()),
                None => Event::Broken("the connection closed".into()),
            };
            let last = !matches!(event, Event::Output(_));
            if events.send(event).is_err() || last {
                break;
            }
        }
    });
    Ok((Link::Ws { sink }, input_offset))
}

/// Starts an HTTP output stream of term `id` from `offset`; events go to `events`.
pub fn stream_http(relay: &Relay, id: &TermId, offset: u64, events: mpsc::UnboundedSender<Event>) {
    let (r, term, ev) = (relay.clone(), id.to_string(), events);
    tokio::spawn(async move {
        let path = format!("/v1/terms/{term}/output?offset={offset}");
        let response = match r.request(Method::GET, &path).send().await {
            Ok(resp) if succeeded(&r, &resp) => resp,
            Ok(resp) => {
                let event = match failure(&r, resp).await {
                    ApiFailure::Gone(m) => Event::Gone(m),
                    other => Event::Broken(other.to_string()),
                };
                let _ = ev.send(event);
                return;
            }
            Err(e) => {
                let _ = ev.send(Event::Broken(e.to_string()));
                return;
            }
        };
        let mut body = response.bytes_stream();
        loop {
            let event = match body.next().await {
                Some(Ok(chunk)) => Event::Output(chunk.to_vec()),
                Some(Err(e)) => Event::Broken(e.to_string()),
                None => Event::StreamClosed,
            };
            let last = !matches!(event, Event::Output(_));
            if ev.send(event).is_err() || last {
                return;
            }
        }
    });
}

/// Starts the HTTP sender of term `id`: input (resent until taken: the relay skips what it
/// already has) and resizes, in order, for the term's whole life — a reconnect of the
/// output stream does not reorder input. Failures go to `events`.
pub fn http_sender(relay: &Relay, id: &TermId, events: mpsc::UnboundedSender<Event>) -> Link {
    let (sink, mut outgoing) = mpsc::unbounded_channel::<HttpOut>();
    let (r, term) = (relay.clone(), id.clone());
    tokio::spawn(async move {
        while let Some(first) = outgoing.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = outgoing.try_recv() {
                batch.push(more);
            }
            for item in merge_input(batch) {
                if !send_http(&r, &term, item, &events).await {
                    return;
                }
            }
        }
    });
    Link::Http { sink }
}

/// Joins consecutive input pieces into one request.
fn merge_input(batch: Vec<HttpOut>) -> Vec<HttpOut> {
    let mut merged: Vec<HttpOut> = Vec::new();
    for item in batch {
        match (merged.last_mut(), item) {
            (Some(HttpOut::Input(at, bytes)), HttpOut::Input(next, more))
                if *at + bytes.len() as u64 == next =>
            {
                bytes.extend_from_slice(&more);
            }
            (_, item) => merged.push(item),
        }
    }
    merged
}

/// Sends one input or resize, retrying the network; false when the term is gone.
async fn send_http(
    relay: &Relay,
    id: &TermId,
    item: HttpOut,
    events: &mpsc::UnboundedSender<Event>,
) -> bool {
    let mut delay = Duration::from_millis(50);
    // Long enough for a sandbox to be started again behind the proxy.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    while std::time::Instant::now() < deadline {
        let request = match &item {
            HttpOut::Input(at, bytes) => relay
                .request(Method::POST, &format!("/v1/terms/{id}/input?offset={at}"))
                .body(bytes.clone()),
            HttpOut::Resize(size) => relay
                .request(Method::POST, &format!("/v1/terms/{id}/resize"))
                .json(size),
        };
        match request.timeout(Duration::from_secs(10)).send().await {
            Ok(r) if succeeded(relay, &r) => return true,
            Ok(r) if r.status() == StatusCode::CONFLICT => {
                // Input ahead of what the relay took: some was lost in a cut the relay
                // never saw. Nothing to do but say so; the screen shows what was typed.
                let expected = r
                    .headers()
                    .get(OFFSET_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_string();
                tracing::warn!(%expected, "the box expected input at another offset");
                return true;
            }
            Ok(r) => match failure(relay, r).await {
                // A renewed preview token, or a proxy or box in trouble: send it again.
                ApiFailure::Network(_) => tokio::time::sleep(delay).await,
                ApiFailure::Refused(status, _) if status.is_server_error() => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                ApiFailure::Gone(m) => {
                    let _ = events.send(Event::Gone(m));
                    return false;
                }
                other @ ApiFailure::Refused(..) => {
                    let _ = events.send(Event::Broken(other.to_string()));
                    return false;
                }
            },
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
    let _ = events.send(Event::Broken("cannot send input to the box".into()));
    false
}

/// Input sent over the WebSocket and maybe not yet taken: the last `RESEND_KEEP` bytes.
#[derive(Debug, Default)]
pub struct Unacked {
    bytes: VecDeque<u8>,
    /// Offset of `bytes[0]`.
    start: u64,
}

impl Unacked {
    /// Notes bytes sent at the end.
    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend(bytes);
        let over = self.bytes.len().saturating_sub(RESEND_KEEP);
        self.bytes.drain(..over);
        self.start += over as u64;
    }

    /// The next input offset.
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// The bytes from `offset` on; `None` when they are no longer held.
    pub fn from(&self, offset: u64) -> Option<Vec<u8>> {
        if offset < self.start || offset > self.end() {
            return None;
        }
        Some(
            self.bytes
                .range((offset - self.start) as usize..)
                .copied()
                .collect(),
        )
    }

    /// Starts over at offset 0 (a new term).
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

impl Link {
    /// Sends input bytes that start at `offset`.
    pub fn input(&self, offset: u64, bytes: &[u8]) {
        match self {
            Self::Ws { sink } => {
                let _ = sink.send(Message::Binary(encode_input(offset, bytes).into()));
            }
            Self::Http { sink } => {
                let _ = sink.send(HttpOut::Input(offset, bytes.to_vec()));
            }
        }
    }

    /// Sends a new size.
    pub fn resize(&self, size: TermSize) {
        match self {
            Self::Ws { sink } => {
                let text = serde_json::to_string(&TermControl::Resize(size)).unwrap_or_default();
                let _ = sink.send(Message::Text(text.into()));
            }
            Self::Http { sink } => {
                let _ = sink.send(HttpOut::Resize(size));
            }
        }
    }
}
