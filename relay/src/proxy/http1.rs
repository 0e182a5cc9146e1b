//! HTTP/1.1 messages as the fast path (`fast.rs`) reads them, without building `http`
//! types: request and response heads parsed with `httparse` and rewritten in the same pass
//! (hop-by-hop headers out, `X-Forwarded-*` in, Host untouched), the framing of a
//! response body, and the end of a chunked body found across reads.

use std::io::Write as _;
use std::net::SocketAddr;

use super::shared::{HOP_BY_HOP, TOKEN_HEADER};

/// The largest request or response head the fast path reads (hyper's limit too: a larger
/// request head gets its 431 there).
pub(super) const MAX_HEAD: usize = 64 * 1024;
/// Headers per head the fast path parses; more goes to the general path.
const MAX_HEADERS: usize = 64;
/// A head parsed from the start of a buffer.
pub(super) enum Parsed<T> {
    /// Whole, and taken by the fast path.
    Complete(T),
    /// More bytes are needed.
    Partial,
    /// Not for the fast path.
    Other,
}

/// What the fast path needs of a request head it accepted.
#[derive(Debug)]
pub(super) struct RequestHead {
    /// Bytes of the head, CRLFCRLF included.
    pub(super) head_len: usize,
    /// Bytes of the body (`Content-Length`).
    pub(super) body_len: u64,
    /// The head as the service gets it.
    pub(super) upstream: Vec<u8>,
    /// `HEAD`: the response has no body whatever its headers say.
    pub(super) is_head: bool,
    /// A request that may be sent twice (GET, HEAD, OPTIONS).
    pub(super) idempotent: bool,
    /// `Accept` names JSON (for an error page).
    pub(super) json: bool,
    /// The client asked to close after this request.
    pub(super) close: bool,
    /// The Host header.
    pub(super) host: Option<String>,
}

impl RequestHead {
    /// Parses the head at the start of `buf`, and rewrites it when it is taken.
    pub(super) fn parse(buf: &[u8], peer: SocketAddr) -> Parsed<Self> {
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
                // The owner's requests are checked on the general path.
                || name.eq_ignore_ascii_case(TOKEN_HEADER)
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
pub(super) enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// What the fast path needs of a response head.
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) head_len: usize,
    pub(super) status: u16,
    pub(super) framing: Framing,
    /// The service keeps the connection open after this response.
    pub(super) keep_alive: bool,
}

impl ResponseHead {
    /// Parses the head at the start of `buf` and writes its rewritten form to `out`.
    pub(super) fn parse(buf: &[u8], is_head: bool, out: &mut Vec<u8>) -> Parsed<Self> {
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

/// Follows chunked framing to find where the message ends.
#[derive(Debug, Default)]
pub(super) struct ChunkedEnd {
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
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ()> {
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

/// Headers of one hop: the shared list, `Upgrade`, and those the `Connection` header names.
/// (A response's `Transfer-Encoding` is dealt with before this is asked.)
fn is_hop_by_hop(name: &str, named: &[&str]) -> bool {
    HOP_BY_HOP
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

/// Writes one `name: value` header line.
pub(super) fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
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
