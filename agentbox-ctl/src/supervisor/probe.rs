//! Readiness probes: a TCP connect, an HTTP GET, or a line of output matching a regex. In a
//! box that shares the machine's ports (a local box) a connect passes only when the
//! listener is the box's own, and a port held by another box fails its service at start.

use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::ctl::LogLine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

use crate::config::{Probe, ProbeKind};
pub use crate::http_target::HttpTarget;

/// The first pause between probe attempts.
const FIRST_PAUSE: Duration = Duration::from_millis(10);

/// Whether this box shares the machine's ports with other boxes and programs: a local box,
/// whose host sets `AGENTBOX_SHARED_PORTS=1`. Then only a listener of the box's own process
/// tree makes a service ready, and a port another process holds fails it at start.
pub fn shared_ports() -> bool {
    static SHARED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SHARED.get_or_init(|| std::env::var("AGENTBOX_SHARED_PORTS").is_ok_and(|v| v == "1"))
}

/// The port on this machine a probe connects to, if it is a local one.
pub fn probe_port(kind: &ProbeKind) -> Option<u16> {
    let (host, port) = match kind {
        ProbeKind::Port { host, port } => (host.clone(), *port),
        ProbeKind::Http { url, .. } => {
            let t = HttpTarget::parse(url).ok()?;
            (t.host, t.port)
        }
        ProbeKind::LogMatch(_) => return None,
    };
    matches!(
        host.as_str(),
        "127.0.0.1" | "localhost" | "0.0.0.0" | "::1" | "[::1]"
    )
    .then_some(port)
}

/// `Ok` when a socket listening on `port` is held by this daemon's own process tree (its
/// units and what they start); else who answers instead. Unknowable (no `/proc`) is `Ok`:
/// the connect alone decides, as on any other machine.
fn own_listener(port: u16) -> Result<(), String> {
    use agentbox_protocol::listeners;
    let Some(inodes) = listeners::listening_inodes(port) else {
        return Ok(());
    };
    let tree = listeners::tree_of(std::process::id());
    if tree.iter().any(|pid| listeners::holds_any(*pid, &inodes)) {
        return Ok(());
    }
    Err(taken_by_other(port)
        .unwrap_or_else(|| format!("port {port} answers, but not from a process of this box")))
}

/// Who outside this box holds `port`, as a sentence with the way out; `None` when no
/// process outside this daemon's tree listens on it.
pub fn taken_by_other(port: u16) -> Option<String> {
    use agentbox_protocol::listeners;
    let inodes = listeners::listening_inodes(port)?;
    if inodes.is_empty() {
        return None;
    }
    let tree = listeners::tree_of(std::process::id());
    if tree.iter().any(|pid| listeners::holds_any(*pid, &inodes)) {
        return None;
    }
    let way_out = "or give this service another port in agentbox.yaml";
    let holders = listeners::holders(port).unwrap_or_default();
    let Some(pid) = holders.into_iter().find(|p| !tree.contains(p)) else {
        return Some(format!(
            "port {port} is in use by a process of another user on this machine: stop it {way_out}"
        ));
    };
    let program = listeners::command_of(pid).unwrap_or_else(|| "?".into());
    Some(match listeners::env_of(pid, "AGENTBOX_BOX_NAME") {
        Some(other) => format!(
            "port {port} is in use by box `{other}` (pid {pid}, {program}): stop that box (`agentbox stop {other}`) {way_out}"
        ),
        None => format!(
            "port {port} is in use by pid {pid} ({program}) on this machine: stop it {way_out}"
        ),
    })
}

/// One probe attempt. `Ok(())` means ready.
async fn attempt(kind: &ProbeKind, per_try: Duration) -> Result<(), String> {
    let result = attempt_connect(kind, per_try).await;
    match (result, probe_port(kind)) {
        (Ok(()), Some(port)) if shared_ports() => own_listener(port),
        (result, _) => result,
    }
}

/// The connect (and HTTP exchange) of one attempt.
async fn attempt_connect(kind: &ProbeKind, per_try: Duration) -> Result<(), String> {
    match kind {
        ProbeKind::Port { host, port } => {
            match tokio::time::timeout(per_try, TcpStream::connect((host.as_str(), *port))).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("connect timed out".into()),
            }
        }
        ProbeKind::Http { url, expect_status } => {
            let target = HttpTarget::parse(url)?;
            let status = tokio::time::timeout(Duration::from_secs(2), http_status(&target))
                .await
                .map_err(|_| "request timed out".to_string())??;
            let ok = match expect_status {
                Some(s) => status == *s,
                None => (200..300).contains(&status),
            };
            if ok {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
        ProbeKind::LogMatch(_) => Err("log probes do not poll".into()),
    }
}

/// Sends `GET` and reads the status code of the answer.
async fn http_status(t: &HttpTarget) -> Result<u16, String> {
    let mut stream = TcpStream::connect((t.host.as_str(), t.port))
        .await
        .map_err(|e| e.to_string())?;
    let host_header = if t.port == 80 {
        t.host.clone()
    } else {
        format!("{}:{}", t.host, t.port)
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: agentbox-ctl probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        t.path
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut byte).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&byte[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|s| s.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err("not an HTTP response".into()),
    }
}

/// Runs `probe` until it passes (returns `Ok`) or its timeout passes (returns the last
/// failure). `lines` must be subscribed before the unit was spawned so that no early line
/// is missed (log probes only).
pub async fn run(
    probe: &Probe,
    lines: Option<broadcast::Receiver<Arc<LogLine>>>,
) -> Result<(), String> {
    // What the last attempt said, for the timeout's message.
    let last_error = std::sync::Mutex::new(None::<String>);
    let work = async {
        if let ProbeKind::LogMatch(re) = &probe.kind {
            let Some(mut rx) = lines else {
                return Err("no log subscription".to_string());
            };
            loop {
                match rx.recv().await {
                    Ok(line) if re.is_match(&line.line) => return Ok(()),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err("output closed".into()),
                }
            }
        }
        tokio::time::sleep(probe.initial_delay).await;
        let per_try =
            (probe.interval * 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
        // Probe fast at first (10 ms, doubling up to `interval`), so that a service that is
        // up in 30 ms is seen as ready in about 30 ms, not after a whole interval.
        let mut pause = FIRST_PAUSE.min(probe.interval);
        loop {
            let last = match attempt(&probe.kind, per_try).await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            tracing::trace!(error = %last, "probe attempt failed");
            if let Ok(mut l) = last_error.lock() {
                *l = Some(last);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(probe.interval);
        }
    };
    match tokio::time::timeout(probe.timeout, work).await {
        Ok(result) => result,
        Err(_) => {
            let last = last_error.lock().ok().and_then(|mut l| l.take());
            Err(format!(
                "readiness probe timed out after {}ms{}",
                probe.timeout.as_millis(),
                last.map(|e| format!(" (last try: {e})"))
                    .unwrap_or_default()
            ))
        }
    }
}

/// Keeps probing after a timeout with `on_timeout: mark_unhealthy`, until it passes.
pub async fn until_ready(probe: &Probe) {
    let per_try = (probe.interval * 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        if attempt(&probe.kind, per_try).await.is_ok() {
            return;
        }
        tokio::time::sleep(probe.interval).await;
    }
}
