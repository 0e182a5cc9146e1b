//! The fast path: plain HTTP/1.1 requests to a service that is ready, forwarded without
//! building `http` types, and large response bodies moved with `splice(2)` (socket → pipe
//! → socket, no copy through user space).
//!
//! A connection starts here. Each request head is parsed with `httparse` (in `http1.rs`,
//! which also rewrites heads and follows chunked framing); when it is the common case —
//! HTTP/1.1, origin-form target, no `Upgrade`/`Expect`/`Transfer-Encoding`, a body given
//! by `Content-Length` (or none), and a route to a service that is ready now — it is
//! rewritten (hop-by-hop headers out, `X-Forwarded-*` in, Host untouched) and sent
//! on this connection's own keep-alive connection to the service; the response head is
//! rewritten the same way and its body passed through with its own framing (length,
//! chunked — followed so that the end of the message is known — or until close).
//!
//! Everything else is handed to the general path (hyper) together with the bytes read so
//! far, for the rest of the connection: HTTP/2, upgrades, held requests, error pages,
//! malformed or oversized heads (431/400 come from there), and a service connection that
//! failed before the request was sent (hyper retries and answers 502 itself).
//!
//! It stays one file (about 600 lines): the connection loop, the exchange of one request
//! and its response, and the body transfers (copy or splice) are one state machine that
//! reads best in one place; the pure byte-level parts are in `http1.rs`.

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

use super::http1::{push_header, ChunkedEnd, Framing, Parsed, RequestHead, ResponseHead, MAX_HEAD};
use super::pages::{did_not_answer, Viewer};
use super::shared::{route, Shared};

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
    let name = route(&units, host)?;
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
    // A request with the bridge token never takes the fast path: this viewer is no owner.
    let viewer = Viewer { json, owner: false };
    let response = did_not_answer(shared, name, port, error, viewer).await;
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
