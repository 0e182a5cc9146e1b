//! The relay's view of the box supervisor: a live copy of the unit table, kept by
//! following `WatchStatus` on `ctl.sock`, reconnecting whenever the daemon restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::ctl::{CtlRequest, CtlResponse, UnitStatus};
use agentbox_protocol::hello::{client_handshake_with, Connection};
use agentbox_protocol::Hello;
use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the relay knows of the units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Units {
    /// The daemon answered and this is its latest table.
    pub reachable: bool,
    /// The units (empty while unreachable).
    pub units: Vec<UnitStatus>,
}

type Conn = Connection<UnixStream, CtlResponse, CtlRequest>;

async fn connect(socket: &Path, request: CtlRequest) -> std::io::Result<Conn> {
    let stream = UnixStream::connect(socket).await?;
    let hello = Hello::new("agentbox-relay", env!("CARGO_PKG_VERSION"));
    let (conn, _) = tokio::time::timeout(
        Duration::from_secs(3),
        client_handshake_with(stream, &hello, request),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(conn)
}

/// Follows the daemon until `stop`; publishes into the returned receiver.
pub fn follow(run_dir: PathBuf, stop: CancellationToken) -> watch::Receiver<Arc<Units>> {
    let (tx, rx) = watch::channel(Arc::new(Units::default()));
    tokio::spawn(async move {
        let socket = run_dir.join("ctl.sock");
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Ok(mut conn) = connect(&socket, CtlRequest::WatchStatus).await {
                backoff = Duration::from_millis(50);
                loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => return,
                        next = conn.next() => next,
                    };
                    match next {
                        Some(Ok(CtlResponse::Status(report))) => {
                            let units = Arc::new(Units {
                                reachable: true,
                                units: report.units,
                            });
                            tx.send_if_modified(|old| {
                                if *old == units {
                                    false
                                } else {
                                    *old = units;
                                    true
                                }
                            });
                        }
                        _ => break,
                    }
                }
                tracing::info!("lost the ctl daemon; reconnecting");
            }
            tx.send_if_modified(|old| {
                if old.reachable {
                    *old = Arc::new(Units::default());
                    true
                } else {
                    false
                }
            });
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {},
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    });
    rx
}

/// One request to the daemon and its first answer.
pub async fn call(run_dir: &Path, request: CtlRequest) -> std::io::Result<CtlResponse> {
    let mut conn = connect(&run_dir.join("ctl.sock"), request).await?;
    let answer = tokio::time::timeout(Duration::from_secs(10), conn.next())
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
    let _ = conn.close().await;
    match answer {
        Some(Ok(response)) => Ok(response),
        Some(Err(e)) => Err(std::io::Error::other(e.to_string())),
        None => Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
    }
}

/// The last `n` log lines of a unit, from the daemon (empty if it cannot say).
pub async fn log_tail(run_dir: &Path, unit: &str, n: u32) -> Vec<String> {
    let request = CtlRequest::Logs {
        name: unit.to_string(),
        tail: n,
        follow: false,
    };
    let Ok(mut conn) = connect(&run_dir.join("ctl.sock"), request).await else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    while let Ok(Some(Ok(CtlResponse::LogLines(batch)))) =
        tokio::time::timeout(Duration::from_secs(2), conn.next()).await
    {
        lines.extend(batch.into_iter().map(|l| l.line));
    }
    let _ = conn.close().await;
    lines
}

/// Unit tables for the relay's own tests.
#[cfg(test)]
pub(crate) mod test_units {
    use agentbox_protocol::ctl::{Exposure, UnitKind, UnitState, UnitStatus};

    /// Service `name` in `state`, exposing `port` (the default exposure when `default`).
    pub fn exposed(name: &str, port: u16, default: bool, state: UnitState) -> UnitStatus {
        UnitStatus {
            name: name.into(),
            kind: UnitKind::Service,
            state,
            ready: state == UnitState::Ready,
            autostart: true,
            pid: None,
            restarts: 0,
            exit_code: None,
            exit_signal: None,
            started_at_ms: None,
            finished_at_ms: None,
            next_restart_at_ms: None,
            blocked_on: vec![],
            detail: None,
            expose: Some(Exposure { port, default }),
            command: String::new(),
        }
    }
}
