//! The daemon side of `ctl.sock`: one task per connection, one request per connection.
//!
//! A connection that sends garbage, the wrong protocol version or nothing at all gets an
//! error reply (where it can still be framed) and is closed; the daemon keeps serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::ctl::{
    CtlRequest, CtlResponse, StatusReport, UnitKind, UnitProblem, UnitState, UnitStatus,
    WaitReadyReport,
};
use agentbox_protocol::hello::{server_handshake, Connection, HandshakeError};
use agentbox_protocol::{ErrorCode, ErrorReply, Hello};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::logs;
use crate::paths::Paths;
use crate::session::Tmux;
use crate::supervisor::{Command, Handle};

/// How long a client may take to say hello and send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared by every connection.
#[derive(Clone)]
pub struct Context {
    /// The supervisor.
    pub supervisor: Handle,
    /// Paths of the box.
    pub paths: Paths,
    /// The tmux server.
    pub tmux: Tmux,
    /// The agents' states.
    pub agents: crate::agents::Agents,
    /// Cancelled to stop the daemon (a `Shutdown` request, or a signal).
    pub shutdown: CancellationToken,
}

type Conn = Connection<UnixStream, CtlRequest, CtlResponse>;

/// Accepts connections until `ctx.shutdown` is cancelled.
pub async fn serve(listener: UnixListener, ctx: Context) {
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let ctx = ctx.clone();
                    tokio::spawn(async move { handle_connection(stream, ctx).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn handle_connection(stream: UnixStream, ctx: Context) {
    let hello = Hello::new("agentbox-ctl daemon", env!("CARGO_PKG_VERSION"));
    let mut conn: Conn =
        match tokio::time::timeout(REQUEST_TIMEOUT, server_handshake(stream, &hello)).await {
            Ok(Ok((conn, _client))) => conn,
            Ok(Err(HandshakeError::Mismatch(m))) => {
                tracing::info!("refused a client: {m}");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "bad handshake");
                return;
            }
            Err(_) => return,
        };
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, conn.next()).await {
        Ok(Some(Ok(r))) => r,
        Ok(Some(Err(e))) => {
            let reply = ErrorReply::new(ErrorCode::BadRequest, format!("unreadable request: {e}"));
            let _ = conn.send(CtlResponse::Error(reply)).await;
            return;
        }
        Ok(None) | Err(_) => return,
    };
    tracing::debug!(?request, "request");
    if let Err(e) = dispatch(request, &mut conn, &ctx).await {
        tracing::debug!(error = %e, "client went away");
    }
}

fn answer<T>(result: Result<T, ErrorReply>, wrap: impl FnOnce(T) -> CtlResponse) -> CtlResponse {
    match result {
        Ok(v) => wrap(v),
        Err(e) => CtlResponse::Error(e),
    }
}

async fn dispatch(
    request: CtlRequest,
    conn: &mut Conn,
    ctx: &Context,
) -> Result<(), agentbox_protocol::FrameError> {
    let sup = &ctx.supervisor;
    let response = match request {
        CtlRequest::Ping => CtlResponse::Pong,
        CtlRequest::Status => CtlResponse::Status((*sup.status()).clone()),
        CtlRequest::WaitReady { units, timeout_ms } => {
            CtlResponse::WaitReady(wait_ready(sup, &units, Duration::from_millis(timeout_ms)).await)
        }
        CtlRequest::Start { name } => answer(
            sup.call(|r| Command::Start(name, r)).await,
            CtlResponse::Unit,
        ),
        CtlRequest::Stop { name } => answer(
            sup.call(|r| Command::Stop(name, r)).await,
            CtlResponse::Unit,
        ),
        CtlRequest::Restart { name } => answer(
            sup.call(|r| Command::Restart(name, r)).await,
            CtlResponse::Unit,
        ),
        CtlRequest::Reload => answer(sup.call(Command::Reload).await, CtlResponse::Reload),
        CtlRequest::RunTask { name, force, wait } => answer(
            sup.call(|reply| Command::RunTask {
                name,
                force,
                wait,
                reply,
            })
            .await,
            CtlResponse::Unit,
        ),
        CtlRequest::WatchStatus => return watch_status(conn, ctx).await,
        CtlRequest::Logs { name, tail, follow } => {
            return stream_logs(conn, ctx, &name, tail, follow).await
        }
        CtlRequest::SessionStart(spec) => {
            // A new session of an old name: what the old one's agent said is over (and
            // forgotten before the new agent's first report can arrive).
            if !ctx.tmux.exists(&spec.name).await.unwrap_or(true) {
                ctx.agents.forget(&spec.name);
            }
            let agent = spec.agent.clone();
            answer(ctx.tmux.start(&spec).await, |s| {
                if let Some(agent) = agent {
                    ctx.agents.started(&s.name, &agent);
                }
                CtlResponse::Sessions(vec![s])
            })
        }
        CtlRequest::SessionList => answer(ctx.tmux.list().await, |mut sessions| {
            ctx.agents.annotate(&mut sessions);
            CtlResponse::Sessions(sessions)
        }),
        CtlRequest::AgentState(status) => answer(ctx.agents.report(status), |()| CtlResponse::Done),
        CtlRequest::SessionKill { name } => {
            answer(ctx.tmux.kill(&name).await, |()| CtlResponse::Done)
        }
        CtlRequest::Shutdown => {
            ctx.shutdown.cancel();
            CtlResponse::Done
        }
    };
    conn.send(response).await
}

async fn stream_logs(
    conn: &mut Conn,
    ctx: &Context,
    name: &str,
    tail: u32,
    follow: bool,
) -> Result<(), agentbox_protocol::FrameError> {
    let path: PathBuf = ctx.paths.unit_log(name);
    let known = ctx.supervisor.status().units.iter().any(|u| u.name == name);
    if !known && !path.exists() {
        let e = ErrorReply::new(
            ErrorCode::NotFound,
            format!("no unit named `{name}` and no log for it"),
        );
        return conn.send(CtlResponse::Error(e)).await;
    }
    // Start following at the current end *before* reading the tail, so that nothing written
    // in between is lost; the tail stops where the follower starts.
    let mut follower = logs::Follower::from_end(name, &path);
    let lines = logs::read_tail_until(name, &path, tail as usize, follower.position())
        .map_err(agentbox_protocol::FrameError::Io)?;
    conn.send(CtlResponse::LogLines(lines)).await?;
    if !follow {
        return conn.send(CtlResponse::End).await;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return conn.send(CtlResponse::End).await,
            // The client closing its side ends the follow.
            _ = conn.next() => return Ok(()),
            _ = tick.tick() => {
                let lines = follower.read_new().map_err(agentbox_protocol::FrameError::Io)?;
                if !lines.is_empty() {
                    conn.send(CtlResponse::LogLines(lines)).await?;
                }
            }
        }
    }
}

/// Sends the status now and on every change until the client goes away or the daemon stops.
async fn watch_status(conn: &mut Conn, ctx: &Context) -> Result<(), agentbox_protocol::FrameError> {
    let mut rx = ctx.supervisor.watch();
    loop {
        let snapshot = (**rx.borrow_and_update()).clone();
        conn.send(CtlResponse::Status(snapshot)).await?;
        tokio::select! {
            () = ctx.shutdown.cancelled() => return conn.send(CtlResponse::End).await,
            _ = conn.next() => return Ok(()),
            changed = rx.changed() => if changed.is_err() { return conn.send(CtlResponse::End).await },
        }
    }
}

/// Waits until the targets are ready, one fails, or `timeout` passes.
pub async fn wait_ready(sup: &Handle, units: &[String], timeout: Duration) -> WaitReadyReport {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut rx = sup.watch();
    loop {
        let snapshot = rx.borrow_and_update().clone();
        let (report, pending) = evaluate(&snapshot, units);
        if report.ready || !report.failed.is_empty() {
            return report;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => {
                return WaitReadyReport {
                    ready: false,
                    failed: Vec::new(),
                    timed_out: pending,
                }
            }
        }
    }
}

/// Whether a unit that is not ready will not become so while one waits: it failed, was
/// skipped or stopped, or is a service that exited before it was ready (restarting or
/// not: a service that dies on start-up dies again, and waiting out its backoff only
/// hides why), or one whose probe gave up and marked it unhealthy.
fn failed_before_ready(u: &UnitStatus) -> bool {
    matches!(
        u.state,
        UnitState::Failed | UnitState::Skipped | UnitState::Stopped
    ) || (u.kind == UnitKind::Service && matches!(u.state, UnitState::Exited | UnitState::Running))
}

/// Classifies each target: ready, failed (with why), or still pending (with why).
fn evaluate(snapshot: &Arc<StatusReport>, units: &[String]) -> (WaitReadyReport, Vec<UnitProblem>) {
    let targets: Vec<String> = if units.is_empty() {
        snapshot
            .units
            .iter()
            .filter(|u| u.autostart)
            .map(|u| u.name.clone())
            .collect()
    } else {
        units.to_vec()
    };
    let mut failed = Vec::new();
    let mut pending = Vec::new();
    for name in targets {
        let Some(u) = snapshot.units.iter().find(|u| u.name == name) else {
            failed.push(UnitProblem {
                name,
                state: None,
                reason: "no such unit".into(),
            });
            continue;
        };
        if u.ready {
            continue;
        }
        let reason = u.detail.clone().unwrap_or_else(|| u.state.to_string());
        let problem = UnitProblem {
            name,
            state: Some(u.state),
            reason,
        };
        if failed_before_ready(u) {
            failed.push(problem);
        } else {
            pending.push(problem);
        }
    }
    let ready = failed.is_empty() && pending.is_empty();
    (
        WaitReadyReport {
            ready,
            failed,
            timed_out: Vec::new(),
        },
        pending,
    )
}
