//! The fast path: plain HTTP/1.1 requests to a service that is ready, forwarded without
//! building `http` types, and large response bodies moved with `splice(2)` (socket → pipe
//! → socket, no copy through user space).
//!
//! A connection starts here. Each request head is parsed with `httparse`; when it is the
//! common case — HTTP/1.1, origin-form target, no `Upgrade`/`Expect`/`Transfer-Encoding`,
//! a body given by `Content-Length` (or none), and a route to a service that is ready now —
//! it is rewritten (hop-by-hop headers out, `X-Forwarded-*` in, Host untouched) and sent
//! on this connection's own keep-alive connection to the service; the response head is
//! rewritten the same way and its body passed through with its own framing (length,
//! chunked — followed so that the end of the message is known — or until close).
//!
//! Everything else is handed to the general path (hyper) together with the bytes read so
//! far, for the rest of the connection: HTTP/2, upgrades, held requests, error pages,
//! malformed or oversized heads (431/400 come from there), and a service connection that
//! failed before the request was sent (hyper retries and answers 502 itself).

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use nix::fcntl::{splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Shared;

/// The largest request or response head the fast path reads (hyper's limit too: a larger
/// request head gets its 431 there).
const MAX_HEAD: usize = 64 * 1024;
/// Headers per head the fast path parses; more goes to the general path.
const MAX_HEADERS: usize = 64;
/// Bodies at least this long (after what came with the head) are spliced.
const SPLICE_MIN: u64 = 64 * 1024;
/// How long a kept-alive client connection may sit idle between requests.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(120);
/// The pipe between the two sockets while splicing.
const PIPE_SIZE: usize = 1024 * 1024;

/// What the fast path leaves for the general path.
pub(super) struct Handoff {
    /// The client connection.
    pub stream: TcpStream,
    /// Bytes read from it and not yet answered (the start of the next request).
    pub buffered: BytesMut,
}

/// The service connection this client connection keeps.
struct Service {
    port: u16,
    stream: TcpStream,
    buf: BytesMut,
}

/// Serves `client` until it closes (`None`) or a request needs the general path.
pub(super) async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
    stop: &CancellationToken,
) -> Option<Handoff> {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut service: Option<Service> = None;
    let mut pipe: Option<Pipe> = None;
    let mut first = true;
    loop {
        // 1. A whole request head: the first within the header timeout of the accept, later
        //    ones within the header timeout of their first byte, after at most
        //    KEEP_ALIVE_IDLE of silence.
        let idle = if first {
            shared.config.header_timeout
        } else {
            KEEP_ALIVE_IDLE
        };
        let idle_deadline = tokio::time::Instant::now() + idle;
        let read = read_request((&mut client, peer), &mut buf, idle_deadline, stop, shared);
        let request = match read.await {
            ReadHead::Request(r) => r,
            ReadHead::Closed => return None,
            ReadHead::Other => {
                return Some(Handoff {
                    stream: client,
                    buffered: buf,
                })
            }
        };
        first = false;
        // 2. Where it goes: only a service that is ready now.
        let Some((name, port)) = ready_port(shared, request.host.as_deref()) else {
            return Some(Handoff {
                stream: client,
                buffered: buf,
            });
        };
        // 3. A live service connection, else a new one; failing that, the general path
        //    (it waits for a restarting service and answers 502 for a dead one).
        let reusable = service.take().filter(|s| s.port == port && s.is_open());
        let mut svc = match reusable {
            Some(s) => s,
            None => match Service::connect(port).await {
                Ok(s) => s,
                Err(_) => {
                    return Some(Handoff {
                        stream: client,
                        buffered: buf,
                    })
                }
            },
        };
        // 4. Send it and pass the response back.
        match exchange(&mut client, &mut buf, &mut svc, &request, &mut pipe).await {
            Exchange::Done { keep_service } => {
                if keep_service {
                    service = Some(svc);
                }
                if request.close {
                    let _ = client.shutdown().await;
                    return None;
                }
            }
            Exchange::NotSent => {
                // The service closed before answering and nothing reached the client:
                // the general path sends it again (or answers 502).
                return Some(Handoff {
                    stream: client,
                    buffered: buf,
                });
            }
            Exchange::Unanswered(error) => {
                // Nothing reached the client yet: it gets the 502 page, not a reset.
                write_problem(&mut client, shared, (&name, port), &error, request.json).await;
                return None;
            }
            Exchange::Broken => return None,
        }
    }
}

enum ReadHead {
    Request(RequestHead),
    Closed,
    Other,
}

async fn read_request(
    (client, peer): (&mut TcpStream, SocketAddr),
    buf: &mut BytesMut,
    idle_deadline: tokio::time::Instant,
    stop: &CancellationToken,
    shared: &Shared,
) -> ReadHead {
    let mut deadline = idle_deadline;
    let mut started = false;
    loop {
        if !buf.is_empty() {
            match RequestHead::parse(buf, peer) {
                Parsed::Complete(r) => return ReadHead::Request(r),
                Parsed::Other => return ReadHead::Other,
                Parsed::Partial if buf.len() >= MAX_HEAD => return ReadHead::Other,
                Parsed::Partial => {}
            }
            if !started {
                started = true;
                deadline = deadline.min(tokio::time::Instant::now() + shared.config.header_timeout);
            }
        }
        let read = async {
            tokio::time::timeout_at(deadline, client.read_buf(buf))
                .await
                .unwrap_or(Ok(0))
        };
        let n = tokio::select! {
            n = read => n,
            // Stopping: an idle connection ends now; one in the middle of a head too.
            // Past the deadline the read above reports the end of the connection.
            () = stop.cancelled() => return ReadHead::Closed,
        };
        match n {
            Ok(0) | Err(_) => return ReadHead::Closed,
            Ok(_) => {}
        }
    }
}

/// The port of the service `host` routes to, if that service is ready now.
fn ready_port(shared: &Shared, host: Option<&str>) -> Option<(String, u16)> {
    let units = shared.units.borrow();
    let name = super::route(&units, host)?;
    let unit = units.units.iter().find(|u| u.name == name)?;
    let port = unit.expose.as_ref().filter(|_| unit.ready)?.port;
    Some((name, port))
}

/// Answers 502 with the general path's page, then closes the connection.
async fn write_problem(
    client: &mut TcpStream,
    shared: &Shared,
    (name, port): (&str, u16),
    error: &str,
    json: bool,
) {
    let response = super::did_not_answer(shared, name, port, error, json).await;
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in &parts.headers {
        push_header(&mut out, k.as_str().as_bytes(), v.as_bytes());
    }
    push_header(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    push_header(&mut out, b"connection", b"close");
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    let _ = client.write_all(&out).await;
    let _ = client.shutdown().await;
}

enum Parsed<T> {
    Complete(T),
    Partial,
    Other,
}

/// What the fast path needs of a request head it accepted.
#[derive(Debug)]
struct RequestHead {
    /// Bytes of the head, CRLFCRLF included.
    head_len: usize,
    /// Bytes of the body (`Content-Length`).
    body_len: u64,
    /// The head as the service gets it.
    upstream: Vec<u8>,
    /// `HEAD`: the response has no body whatever its headers say.
    is_head: bool,
    /// A request that may be sent twice (GET, HEAD, OPTIONS).
    idempotent: bool,
    /// `Accept` names JSON (for an error page).
    json: bool,
    /// The client asked to close after this request.
    close: bool,
    /// The Host header.
    host: Option<String>,
}

impl RequestHead {
    /// Parses the head at the start of `buf`, and rewrites it when it is taken.
    fn parse(buf: &[u8], peer: SocketAddr) -> Parsed<Self> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let head_len = match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(_) => return Parsed::Other,
        };
        let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
            return Parsed::Other;
        };
        if method == "CONNECT" || !path.starts_with('/') || path == "/_agentbox/services" {
            return Parsed::Other;
        }
        let mut body_len = None;
        let mut host = None;
        let mut close = false;
        let mut json = false;
        for h in req.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("upgrade")
                || name.eq_ignore_ascii_case("expect")
                || name.eq_ignore_ascii_case("transfer-encoding")
            {
                return Parsed::Other;
            } else if name.eq_ignore_ascii_case("content-length") {
                let Some(n) = parse_length(h.value) else {
                    return Parsed::Other;
                };
                if body_len.replace(n).is_some_and(|prior| prior != n) {
                    return Parsed::Other;
                }
            } else if name.eq_ignore_ascii_case("host") {
                let Ok(v) = std::str::from_utf8(h.value) else {
                    return Parsed::Other;
                };
                if host.replace(v.to_owned()).is_some() {
                    return Parsed::Other;
                }
            } else if name.eq_ignore_ascii_case("connection") {
                close |= has_token(h.value, "close");
            } else if name.eq_ignore_ascii_case("accept") {
                json |= h
                    .value
                    .windows(b"application/json".len())
                    .any(|w| w == b"application/json");
            }
        }
        let mut upstream = Vec::with_capacity(head_len + 128);
        write_upstream_head(&req, host.as_deref(), peer, &mut upstream);
        Parsed::Complete(Self {
            head_len,
            body_len: body_len.unwrap_or(0),
            upstream,
            is_head: method == "HEAD",
            idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS"),
            json,
            close,
            host,
        })
    }
}

/// The head as the service gets it: same request line and headers, minus hop-by-hop
/// ones, plus `X-Forwarded-For/-Host/-Proto`.
fn write_upstream_head(
    req: &httparse::Request<'_, '_>,
    host: Option<&str>,
    peer: SocketAddr,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(req.method.unwrap_or("GET").as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.path.unwrap_or("/").as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let named = connection_tokens(req.headers);
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let mut has_proto = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("x-forwarded-for") {
            forwarded_for.push(h.value);
            continue;
        }
        if h.name.eq_ignore_ascii_case("x-forwarded-host") || is_hop_by_hop(h.name, &named) {
            continue;
        }
        has_proto |= h.name.eq_ignore_ascii_case("x-forwarded-proto");
        push_header(out, h.name.as_bytes(), h.value);
    }
    if let Some(host) = host {
        push_header(out, b"X-Forwarded-Host", host.as_bytes());
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for prior in forwarded_for {
        out.extend_from_slice(prior);
        out.extend_from_slice(b", ");
    }
    let _ = write!(out, "{}\r\n", peer.ip());
    if !has_proto {
        out.extend_from_slice(b"X-Forwarded-Proto: http\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What the fast path needs of a response head.
#[derive(Debug)]
struct ResponseHead {
    head_len: usize,
    status: u16,
    framing: Framing,
    /// The service keeps the connection open after this response.
    keep_alive: bool,
}

impl ResponseHead {
    /// Parses the head at the start of `buf` and writes its rewritten form to `out`.
    fn parse(buf: &[u8], is_head: bool, out: &mut Vec<u8>) -> Parsed<Self> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut res = httparse::Response::new(&mut headers);
        let head_len = match res.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Parsed::Partial,
            _ => return Parsed::Other,
        };
        let (Some(version), Some(status)) = (res.version, res.code) else {
            return Parsed::Other;
        };
        let named = connection_tokens(res.headers);
        // With Transfer-Encoding, a Content-Length is wrong and is not passed on (a client
        // that believed it would read the next response from the middle of this body).
        let has_coding = res
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
        let mut length = None;
        let mut chunked = None;
        let mut close = version == 0;
        let _ = write!(out, "HTTP/1.1 {status} ");
        out.extend_from_slice(res.reason.unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        for h in res.headers.iter() {
            if h.name.eq_ignore_ascii_case("connection") {
                if has_token(h.value, "close") {
                    close = true;
                } else if has_token(h.value, "keep-alive") {
                    close = false;
                }
                continue;
            }
            if h.name.eq_ignore_ascii_case("content-length") {
                if has_coding {
                    continue;
                }
                let Some(n) = parse_length(h.value) else {
                    return Parsed::Other;
                };
                if length.replace(n).is_some_and(|prior| prior != n) {
                    return Parsed::Other;
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                // The last coding decides; the header passes through with the body as is.
                chunked = Some(last_token_is(h.value, "chunked"));
            } else if is_hop_by_hop(h.name, &named) {
                continue;
            }
            push_header(out, h.name.as_bytes(), h.value);
        }
        let framing = if is_head || status < 200 || status == 204 || status == 304 {
            Framing::None
        } else if let Some(chunked) = chunked {
            if chunked {
                Framing::Chunked
            } else {
                Framing::UntilClose
            }
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        if framing == Framing::UntilClose {
            // The client learns the end of the body from the end of the connection.
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        Parsed::Complete(Self {
            head_len,
            status,
            framing,
            keep_alive: !close && framing != Framing::UntilClose,
        })
    }
}

enum Exchange {
    /// The response went to the client whole.
    Done { keep_service: bool },
    /// The service failed before answering; the request is still in the client buffer.
    NotSent,
    /// The service failed before answering and nothing reached the client.
    Unanswered(String),
    /// Either side failed mid-message: the client connection is closed.
    Broken,
}

/// Sends the request (head, then its body from `buf` and the client) and passes the
/// response back; consumes the request from `buf`.
async fn exchange(
    client: &mut TcpStream,
    buf: &mut BytesMut,
    svc: &mut Service,
    request: &RequestHead,
    pipe: &mut Option<Pipe>,
) -> Exchange {
    let head = &request.upstream[..];
    let in_buffer = (buf.len() - request.head_len) as u64;
    let whole = request.body_len <= in_buffer;
    // Where the request ends in `buf` when it is whole there.
    let body_end = request.head_len + usize::try_from(request.body_len).unwrap_or(0);
    let sent = if whole {
        write_two(&mut svc.stream, head, &buf[request.head_len..body_end]).await
    } else {
        svc.stream.write_all(head).await
    };
    if let Err(e) = sent {
        return if whole && request.idempotent {
            Exchange::NotSent
        } else {
            Exchange::Unanswered(e.to_string())
        };
    }
    // A whole request stays in `buf` until the service answers: the general path may
    // need to send it again.
    if !whole {
        // Stream the body: what came with the head, then the rest from the client.
        let mut left = request.body_len - in_buffer;
        buf.advance(request.head_len);
        if let Err(e) = svc.stream.write_all(buf).await {
            return Exchange::Unanswered(e.to_string());
        }
        buf.clear();
        while left > 0 {
            let cap = usize::try_from(left.min(64 * 1024)).unwrap_or(64 * 1024);
            buf.reserve(cap);
            let mut limited = (&mut *client).take(left);
            match limited.read_buf(buf).await {
                Ok(0) | Err(_) => return Exchange::Broken,
                Ok(n) => left -= n as u64,
            }
            if let Err(e) = svc.stream.write_all(buf).await {
                return Exchange::Unanswered(e.to_string());
            }
            buf.clear();
        }
    }
    // The response: informational heads pass through, then the final one and its body.
    let mut out = Vec::with_capacity(1024);
    let mut answered = false;
    loop {
        out.clear();
        let response = loop {
            if !svc.buf.is_empty() {
                match ResponseHead::parse(&svc.buf, request.is_head, &mut out) {
                    Parsed::Complete(r) => break r,
                    Parsed::Other if answered => return Exchange::Broken,
                    Parsed::Other => {
                        return Exchange::Unanswered("its response head is malformed".into())
                    }
                    Parsed::Partial => out.clear(),
                }
            }
            let failure = match svc.stream.read_buf(&mut svc.buf).await {
                Ok(0) => "it closed the connection".to_string(),
                Err(e) => e.to_string(),
                Ok(_) => continue,
            };
            return if answered {
                Exchange::Broken
            } else if whole && request.idempotent && svc.buf.is_empty() {
                // Sending it again is safe; the general path does (or answers 502).
                Exchange::NotSent
            } else {
                Exchange::Unanswered(failure)
            };
        };
        if whole && !answered {
            buf.advance(body_end);
        }
        answered = true;
        svc.buf.advance(response.head_len);
        if response.status == 101 {
            // Never asked for; nothing sensible follows on this connection.
            return Exchange::Broken;
        }
        if response.status < 200 {
            if client.write_all(&out).await.is_err() {
                return Exchange::Broken;
            }
            continue;
        }
        let ok = match response.framing {
            Framing::None => client.write_all(&out).await.is_ok(),
            Framing::Length(n) => length_body(client, svc, &out, n, pipe).await,
            Framing::Chunked => chunked_body(client, svc, &out).await,
            Framing::UntilClose => {
                let _ = until_close_body(client, svc, &out).await;
                let _ = client.shutdown().await;
                return Exchange::Broken;
            }
        };
        if !ok {
            return Exchange::Broken;
        }
        // Bytes past the end of the message mean the service misbehaved.
        let keep_service = response.keep_alive && svc.buf.is_empty();
        return Exchange::Done { keep_service };
    }
}

/// Writes `a` then `b` with as few system calls as the socket allows (one, usually).
async fn write_two(stream: &mut TcpStream, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() {
        let n = stream
            .write_vectored(&[std::io::IoSlice::new(a), std::io::IoSlice::new(b)])
            .await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        if n < a.len() {
            a = &a[n..];
        } else {
            b = &b[n - a.len()..];
            a = &[];
        }
    }
    stream.write_all(b).await
}

/// A body of `n` bytes: what the service sent with its head goes out with ours, the rest
/// is spliced when large, copied otherwise.
async fn length_body(
    client: &mut TcpStream,
    svc: &mut Service,
    head: &[u8],
    n: u64,
    pipe: &mut Option<Pipe>,
) -> bool {
    let first = usize::try_from(n.min(svc.buf.len() as u64)).unwrap_or(0);
    if write_two(client, head, &svc.buf[..first]).await.is_err() {
        return false;
    }
    svc.buf.advance(first);
    let mut left = n - first as u64;
    if left >= SPLICE_MIN {
        if pipe.is_none() {
            *pipe = Pipe::new().ok();
        }
        if let Some(p) = pipe.as_mut() {
            return p.transfer(&svc.stream, client, left).await.is_ok();
        }
    }
    while left > 0 {
        svc.buf.reserve(64 * 1024);
        let mut limited = (&mut svc.stream).take(left);
        match limited.read_buf(&mut svc.buf).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => left -= k as u64,
        }
        if client.write_all(&svc.buf).await.is_err() {
            return false;
        }
        svc.buf.clear();
    }
    true
}

/// A chunked body, passed on as it arrives (server-sent events are not held back) while
/// following the chunk framing to find its end.
async fn chunked_body(client: &mut TcpStream, svc: &mut Service, head: &[u8]) -> bool {
    let mut decoder = ChunkedEnd::default();
    let mut pending: Vec<u8> = head.to_vec();
    loop {
        if !svc.buf.is_empty() {
            match decoder.feed(&svc.buf) {
                Err(()) => return false,
                Ok(Some(end)) => {
                    pending.extend_from_slice(&svc.buf[..end]);
                    svc.buf.advance(end);
                    return client.write_all(&pending).await.is_ok();
                }
                Ok(None) => {
                    pending.extend_from_slice(&svc.buf);
                    svc.buf.clear();
                }
            }
        }
        if !pending.is_empty() {
            if client.write_all(&pending).await.is_err() {
                return false;
            }
            pending.clear();
        }
        match svc.stream.read_buf(&mut svc.buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
}

/// A body that ends when the service closes the connection.
async fn until_close_body(
    client: &mut TcpStream,
    svc: &mut Service,
    head: &[u8],
) -> std::io::Result<()> {
    write_two(client, head, &svc.buf).await?;
    svc.buf.clear();
    loop {
        if svc.stream.read_buf(&mut svc.buf).await? == 0 {
            return Ok(());
        }
        client.write_all(&svc.buf).await?;
        svc.buf.clear();
    }
}

impl Service {
    async fn connect(port: u16) -> std::io::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            port,
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
        })
    }

    /// Whether the kept connection is still open (the service may have closed it while
    /// it was idle): nothing to read and no end of stream.
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// Follows chunked framing to find where the message ends.
#[derive(Debug, Default)]
struct ChunkedEnd {
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    /// Before the first hex digit of a chunk size.
    #[default]
    SizeStart,
    /// In the size line (`ext`: past the digits, in extensions).
    Size {
        size: u64,
        ext: bool,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// Trailer section; `line_start`: nothing on this line yet.
    Trailer {
        line_start: bool,
    },
    TrailerLf {
        line_start: bool,
    },
}

impl ChunkedEnd {
    /// Consumes `bytes`; `Ok(Some(n))` when the message ends after `n` of them.
    fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ()> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            self.state = match self.state {
                ChunkState::SizeStart => match hex(b) {
                    Some(d) => ChunkState::Size {
                        size: u64::from(d),
                        ext: false,
                    },
                    None => return Err(()),
                },
                ChunkState::Size { size, ext } => match (b, hex(b)) {
                    (b'\r', _) => ChunkState::SizeLf { size },
                    (_, Some(d)) if !ext => ChunkState::Size {
                        size: size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(())?,
                        ext: false,
                    },
                    (b';' | b' ' | b'\t', _) => ChunkState::Size { size, ext: true },
                    (b'\n', _) => return Err(()),
                    _ if ext => ChunkState::Size { size, ext },
                    _ => return Err(()),
                },
                ChunkState::SizeLf { size } => match (b, size) {
                    (b'\n', 0) => ChunkState::Trailer { line_start: true },
                    (b'\n', n) => ChunkState::Data(n),
                    _ => return Err(()),
                },
                ChunkState::Data(n) => {
                    let take = usize::try_from(n)
                        .unwrap_or(usize::MAX)
                        .min(bytes.len() - i);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data(left)
                    };
                    continue;
                }
                ChunkState::DataCr if b == b'\r' => ChunkState::DataLf,
                ChunkState::DataLf if b == b'\n' => ChunkState::SizeStart,
                ChunkState::DataCr | ChunkState::DataLf => return Err(()),
                ChunkState::Trailer { line_start } => match b {
                    b'\r' => ChunkState::TrailerLf { line_start },
                    _ => ChunkState::Trailer { line_start: false },
                },
                ChunkState::TrailerLf { line_start } => match b {
                    b'\n' if line_start => return Ok(Some(i + 1)),
                    b'\n' => ChunkState::Trailer { line_start: true },
                    _ => return Err(()),
                },
            };
            i += 1;
        }
        Ok(None)
    }
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// A pipe for `splice(2)`.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> std::io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // A larger pipe means fewer round trips; the default (64 KiB) works too.
        let size = i32::try_from(PIPE_SIZE).unwrap_or(i32::MAX);
        let _ = nix::fcntl::fcntl(&write, FcntlArg::F_SETPIPE_SZ(size));
        Ok(Self { read, write })
    }

    /// Moves `n` bytes from `from` to `to` through the pipe, reading more while earlier
    /// bytes are still being written.
    ///
    /// A would-block from splicing into a pipe that holds bytes may be the pipe's (full),
    /// not the socket's, so only a splice into the empty pipe goes through `try_io` (which
    /// takes a would-block as "the socket is drained"); with bytes held, the loop waits for
    /// the writer side instead.
    async fn transfer(
        &mut self,
        from: &TcpStream,
        to: &TcpStream,
        mut n: u64,
    ) -> std::io::Result<()> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        let mut held = 0usize;
        while n > 0 || held > 0 {
            let mut progressed = false;
            if n > 0 && held < PIPE_SIZE {
                let want = usize::try_from(n)
                    .unwrap_or(usize::MAX)
                    .min(PIPE_SIZE - held);
                let splice_in = || {
                    splice(from, None, &self.write, None, want, flags).map_err(std::io::Error::from)
                };
                let result = if held == 0 {
                    from.try_io(Interest::READABLE, splice_in)
                } else {
                    splice_in()
                };
                match result {
                    Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                    Ok(k) => {
                        n -= k as u64;
                        held += k;
                        progressed = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if held > 0 {
                match to.try_io(Interest::WRITABLE, || {
                    splice(&self.read, None, to, None, held, flags).map_err(std::io::Error::from)
                }) {
                    Ok(k) => {
                        held -= k;
                        progressed = true;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if !progressed {
                if held > 0 {
                    to.writable().await?;
                } else {
                    from.readable().await?;
                }
            }
        }
        Ok(())
    }
}

/// Headers of one hop: the shared list, `Upgrade`, and those the `Connection` header names.
/// (A response's `Transfer-Encoding` is dealt with before this is asked.)
fn is_hop_by_hop(name: &str, named: &[&str]) -> bool {
    super::HOP_BY_HOP
        .iter()
        .chain(&["upgrade"])
        .chain(named)
        .any(|h| name.eq_ignore_ascii_case(h))
}

fn connection_tokens<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn has_token(value: &[u8], token: &str) -> bool {
    std::str::from_utf8(value)
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

fn last_token_is(value: &[u8], token: &str) -> bool {
    std::str::from_utf8(value).is_ok_and(|v| {
        v.rsplit(',')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let v = std::str::from_utf8(value).ok()?.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The client connection for the general path: the bytes the fast path read come first.
pub(super) struct Rewind {
    buffered: BytesMut,
    stream: TcpStream,
}

impl Rewind {
    pub(super) fn new(handoff: Handoff) -> Self {
        Self {
            buffered: handoff.buffered,
            stream: handoff.stream,
        }
    }
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.buffered.is_empty() {
            let n = self.buffered.len().min(out.remaining());
            out.put_slice(&self.buffered[..n]);
            self.buffered.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(raw: &str) -> Parsed<RequestHead> {
        RequestHead::parse(raw.as_bytes(), "127.0.0.1:1".parse().expect("addr"))
    }

    #[test]
    fn plain_requests_are_taken_the_rest_is_left() {
        let Parsed::Complete(r) = request(
            "POST /a?b HTTP/1.1\r\nHost: api.x:8080\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        ) else {
            panic!("a plain POST is taken");
        };
        assert_eq!(
            (r.body_len, r.close, r.host.as_deref(), r.is_head),
            (3, true, Some("api.x:8080"), false)
        );
        assert!(matches!(
            request("GET / HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        ));
        for other in [
            "GET / HTTP/1.0\r\n\r\n",
            "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "CONNECT x:443 HTTP/1.1\r\n\r\n",
            "GET /_agentbox/services HTTP/1.1\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            "GARBAGE\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            assert!(matches!(request(other), Parsed::Other), "{other:?}");
        }
    }

    #[test]
    fn the_service_gets_the_host_unchanged_and_forwarded_headers() {
        let raw = "GET /p HTTP/1.1\r\nHost: web.box:8080\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: forged\r\nAccept: */*\r\n\r\n";
        let peer = "127.0.0.9:5555".parse().expect("addr");
        let Parsed::Complete(r) = RequestHead::parse(raw.as_bytes(), peer) else {
            panic!("taken")
        };
        let out = r.upstream;
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "GET /p HTTP/1.1\r\nHost: web.box:8080\r\nAccept: */*\r\nX-Forwarded-Host: web.box:8080\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.9\r\nX-Forwarded-Proto: http\r\n\r\n"
        );
    }

    #[test]
    fn response_framing_and_rewritten_head() {
        let parse = |raw: &str, is_head: bool| {
            let mut out = Vec::new();
            match ResponseHead::parse(raw.as_bytes(), is_head, &mut out) {
                Parsed::Complete(r) => (r, String::from_utf8(out).expect("utf-8")),
                _ => panic!("not complete: {raw:?}"),
            }
        };
        let (r, head) = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n\r\nhello",
            false,
        );
        assert_eq!((r.framing, r.keep_alive), (Framing::Length(5), true));
        assert_eq!(head, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        let (r, _) = parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert_eq!(r.framing, Framing::None);
        let (r, _) = parse(
            "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert_eq!(r.framing, Framing::None);
        let (r, head) = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            false,
        );
        assert_eq!((r.framing, r.keep_alive), (Framing::Chunked, false));
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let (r, head) = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(r.framing, Framing::Chunked);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let (r, head) = parse("HTTP/1.0 200 OK\r\n\r\n", false);
        assert_eq!((r.framing, r.keep_alive), (Framing::UntilClose, false));
        assert!(head.ends_with("Connection: close\r\n\r\n"));
        let (r, _) = parse(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert_eq!((r.framing, r.keep_alive), (Framing::Length(0), true));
        let mut out = Vec::new();
        assert!(matches!(
            ResponseHead::parse(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                false,
                &mut out
            ),
            Parsed::Other
        ));
    }

    #[test]
    fn the_end_of_a_chunked_body_is_found_across_reads() {
        let body = b"5;name=v\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut d = ChunkedEnd::default();
            let end = match d.feed(&body[..split]) {
                Ok(Some(n)) => Some(n),
                Ok(None) => d.feed(&body[split..]).expect("valid").map(|n| n + split),
                Err(()) => panic!("valid at {split}"),
            };
            assert_eq!(end, Some(body.len() - 4), "split at {split}");
        }
        let mut d = ChunkedEnd::default();
        assert_eq!(d.feed(b"0\r\n\r\n"), Ok(Some(5)));
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"5\nhello",
            b"fffffffffffffffff\r\n",
        ] {
            assert!(ChunkedEnd::default().feed(bad).is_err(), "{bad:?}");
        }
    }
}
