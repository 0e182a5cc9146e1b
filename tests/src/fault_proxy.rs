//! A TCP proxy that breaks things on purpose: it cuts a connection or flips a byte once a
//! direction has carried a given number of bytes, and counts what passed, so that a test
//! can prove a transfer resumed instead of starting over.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// What to break, counted in bytes of one direction over all connections. Each fault
/// happens once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything.
    None,
    /// Cut the connection when the client → server direction reaches this many bytes.
    CutUp(u64),
    /// Cut the connection when the server → client direction reaches this many bytes.
    CutDown(u64),
    /// Flip the bits of the client → server byte at this position.
    FlipUp(u64),
    /// Flip the bits of the server → client byte at this position.
    FlipDown(u64),
    /// Like Daytona's private previews: a request asking for a WebSocket upgrade gets
    /// `403 Forbidden`; everything else passes.
    RefuseWebSocket,
    /// Like Daytona's edge: when a request has waited this many milliseconds without a
    /// byte of answer, answer `504 Gateway Timeout` and close (every time, not once).
    GatewayTimeoutAfterIdleMs(u64),
}

/// A running proxy to `127.0.0.1:<upstream>`.
pub struct FaultProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Bytes carried client → server.
    pub up: Arc<AtomicU64>,
    /// Bytes carried server → client.
    pub down: Arc<AtomicU64>,
    /// Whether the fault happened.
    pub fired: Arc<AtomicBool>,
    /// How many `504`s the proxy made up.
    pub gateway_timeouts: Arc<AtomicU64>,
    /// While set, connections are cut and new ones closed at once (see [`FaultProxy::outage`]).
    in_outage: Arc<AtomicBool>,
    /// The client side of every connection, to cut them all at once.
    live: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl FaultProxy {
    /// Starts a proxy; it runs until the test process ends.
    ///
    /// # Panics
    /// When it cannot listen.
    pub fn start(upstream: u16, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("addr").port();
        let proxy = Self {
            port,
            up: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicU64::new(0)),
            fired: Arc::new(AtomicBool::new(false)),
            gateway_timeouts: Arc::new(AtomicU64::new(0)),
            in_outage: Arc::new(AtomicBool::new(false)),
            live: Arc::new(std::sync::Mutex::new(Vec::new())),
        };
        let (is_down, live) = (proxy.in_outage.clone(), proxy.live.clone());
        let (up, down, fired) = (proxy.up.clone(), proxy.down.clone(), proxy.fired.clone());
        let timeouts = proxy.gateway_timeouts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if is_down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                if let Ok(c) = client.try_clone() {
                    live.lock().expect("live").push(c);
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (cut_up, flip_up, cut_down, flip_down) = match fault {
                    Fault::None | Fault::GatewayTimeoutAfterIdleMs(_) | Fault::RefuseWebSocket => {
                        (None, None, None, None)
                    }
                    Fault::CutUp(n) => (Some(n), None, None, None),
                    Fault::FlipUp(n) => (None, Some(n), None, None),
                    Fault::CutDown(n) => (None, None, Some(n), None),
                    Fault::FlipDown(n) => (None, None, None, Some(n)),
                };
                let pair = |a: &TcpStream, b: &TcpStream| {
                    (a.try_clone().expect("clone"), b.try_clone().expect("clone"))
                };
                let (c1, s1) = pair(&client, &server);
                let (c2, s2) = pair(&client, &server);
                if let Fault::GatewayTimeoutAfterIdleMs(ms) = fault {
                    let awaiting = Arc::new(AtomicBool::new(false));
                    let (u, a) = (up.clone(), awaiting.clone());
                    std::thread::spawn(move || idle_up(c1, s1, &u, &a));
                    let (d, t) = (down.clone(), timeouts.clone());
                    std::thread::spawn(move || idle_down(s2, c2, &d, &awaiting, ms, &t));
                    continue;
                }
                if fault == Fault::RefuseWebSocket {
                    let (u, f) = (up.clone(), fired.clone());
                    std::thread::spawn(move || refuse_upgrades(c1, s1, &u, &f));
                    let d = down.clone();
                    std::thread::spawn(move || {
                        pump(s2, c2, &d, None, None, &AtomicBool::new(true));
                    });
                    continue;
                }
                let (u, f) = (up.clone(), fired.clone());
                std::thread::spawn(move || pump(c1, s1, &u, cut_up, flip_up, &f));
                let (d, f) = (down.clone(), fired.clone());
                std::thread::spawn(move || pump(s2, c2, &d, cut_down, flip_down, &f));
            }
        });
        proxy
    }
}

impl FaultProxy {
    /// Starts (`true`) or ends an outage: every open connection is cut, and while it lasts
    /// new ones are closed as soon as they are accepted.
    ///
    /// # Panics
    /// When a thread of the proxy panicked.
    pub fn outage(&self, on: bool) {
        self.in_outage.store(on, Ordering::SeqCst);
        if on {
            for c in self.live.lock().expect("live").drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Client → server, answering `403` to a request that asks for a WebSocket upgrade.
fn refuse_upgrades(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64, fired: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count.fetch_add(n as u64, Ordering::SeqCst);
        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
        if head.contains("upgrade: websocket") {
            fired.store(true, Ordering::SeqCst);
            let _ = from.write_all(
                b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    count: &AtomicU64,
    cut: Option<u64>,
    flip: Option<u64>,
    fired: &AtomicBool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let start = count.fetch_add(n as u64, Ordering::SeqCst);
        let end = start + n as u64;
        let mut len = n;
        let mut cut_now = false;
        if let Some(at) = cut.filter(|&at| at >= start && at < end) {
            if !fired.swap(true, Ordering::SeqCst) {
                len = usize::try_from(at - start).unwrap_or(n);
                cut_now = true;
            }
        }
        if let Some(at) = flip.filter(|&at| at >= start && at < end) {
            if !fired.swap(true, Ordering::SeqCst) {
                buf[usize::try_from(at - start).unwrap_or(0)] ^= 0xff;
            }
        }
        if to.write_all(&buf[..len]).is_err() || cut_now {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Client → server, noting that an answer is now awaited.
fn idle_up(mut from: TcpStream, mut to: TcpStream, count: &AtomicU64, awaiting: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count.fetch_add(n as u64, Ordering::SeqCst);
        awaiting.store(true, Ordering::SeqCst);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Server → client; a request left without an answer for `ms` gets a made-up 504.
fn idle_down(
    mut from: TcpStream,
    mut to: TcpStream,
    count: &AtomicU64,
    awaiting: &AtomicBool,
    ms: u64,
    timeouts: &AtomicU64,
) {
    let _ = from.set_read_timeout(Some(std::time::Duration::from_millis(ms)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                count.fetch_add(n as u64, Ordering::SeqCst);
                awaiting.store(false, Ordering::SeqCst);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if awaiting.load(Ordering::SeqCst) {
                    timeouts.fetch_add(1, Ordering::SeqCst);
                    let _ = to.write_all(
                        b"HTTP/1.1 504 Gateway Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
