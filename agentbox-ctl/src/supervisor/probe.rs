//! Readiness probes: a TCP connect, an HTTP GET, or a line of output matching a regex.

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

/// One probe attempt. `Ok(())` means ready.
async fn attempt(kind: &ProbeKind, per_try: Duration) -> Result<(), String> {
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
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(probe.interval);
        }
    };
    match tokio::time::timeout(probe.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "readiness probe timed out after {}ms",
            probe.timeout.as_millis()
        )),
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
