//! `relay.sock`: where `agentbox-ctl` in the box hands requests to the relay.
//!
//! A `Submit` is validated, journalled (`Accepted{id}`), then followed: progress lines as
//! the host posts them, `Leased` on each delivery, and `Finished` with the host's outcome.
//! A request no host has picked up when the caller's deadline passes is withdrawn and
//! answered `Failed` — it will never run later. `Follow{id}` re-attaches to a journalled
//! request after the caller was interrupted.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::bridge::{HostRequest, RelayEvent, RelayRequest, RequestId};
use agentbox_protocol::hello::{server_handshake, Connection};
use agentbox_protocol::{ErrorCode, ErrorReply, Hello};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::host_seen::HostSeen;
use crate::journal::Journal;

/// How long a request waits before its caller hears that the host is not polling.
const ABSENT_NOTICE_AFTER: Duration = Duration::from_secs(3);
/// How long without a poll means the host bridge is not running (polls are held 20 s,
/// and a busy host polls again as soon as a slot frees).
const HOST_ABSENT: Duration = Duration::from_secs(25);
/// What a waiting caller is told, once, when nobody on the host polls.
pub const HOST_ABSENT_NOTICE: &str =
    "the host bridge is not running; start it with `agentbox bridge start` (the request keeps waiting)";

type Conn = Connection<UnixStream, RelayRequest, RelayEvent>;

/// Longest message or URL accepted from the box.
const MAX_TEXT: usize = 4096;
/// Longest a caller may wait.
const MAX_WAIT_MS: u64 = 60 * 60 * 1000;

/// Binds `relay.sock` (0600), replacing a stale one.
pub fn bind(run_dir: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = run_dir.join("relay.sock");
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Checks what the box asks for before it is journalled.
pub fn validate(request: &HostRequest) -> Result<(), String> {
    match request {
        HostRequest::Notify { message } if message.len() > MAX_TEXT => {
            Err(format!("the message is longer than {MAX_TEXT} bytes"))
        }
        HostRequest::Notify { message } if message.trim().is_empty() => {
            Err("the message is empty".into())
        }
        HostRequest::Open { url } if url.len() > MAX_TEXT => {
            Err(format!("the URL is longer than {MAX_TEXT} bytes"))
        }
        HostRequest::Open { url }
            if !(url.starts_with("http://") || url.starts_with("https://")) =>
        {
            Err(format!(
                "only http:// and https:// URLs can be opened, not `{url}`"
            ))
        }
        HostRequest::Open { url } if url.chars().any(char::is_control) => {
            Err("the URL contains control characters".into())
        }
        // Its session is a `SessionName`, checked when the report was read.
        HostRequest::AgentState(s) if !agentbox_protocol::agent::valid_agent_name(&s.agent) => {
            Err("the agent state names an invalid agent".into())
        }
        HostRequest::AgentState(s)
            if s.detail
                .as_ref()
                .is_some_and(|d| d.len() > 4 * agentbox_protocol::agent::MAX_DETAIL) =>
        {
            Err(format!(
                "the agent state's detail is longer than {} characters",
                agentbox_protocol::agent::MAX_DETAIL
            ))
        }
        _ => Ok(()),
    }
}

/// Serves `relay.sock` until `stop`.
pub async fn serve(
    listener: UnixListener,
    journal: Arc<Journal>,
    host_seen: Arc<HostSeen>,
    stop: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let (journal, host_seen, stop) = (journal.clone(), host_seen.clone(), stop.clone());
        tokio::spawn(async move {
            let hello = Hello::new("agentbox-relay", env!("CARGO_PKG_VERSION"));
            let Ok(Ok((mut conn, _))) = tokio::time::timeout(
                Duration::from_secs(10),
                server_handshake::<_, RelayRequest, RelayEvent>(stream, &hello),
            )
            .await
            else {
                return;
            };
            let request = match tokio::time::timeout(Duration::from_secs(10), conn.next()).await {
                Ok(Some(Ok(r))) => r,
                Ok(Some(Err(e))) => {
                    let _ = conn
                        .send(RelayEvent::Failed(ErrorReply::new(
                            ErrorCode::BadRequest,
                            format!("unreadable request: {e}"),
                        )))
                        .await;
                    return;
                }
                _ => return,
            };
            let (id, wait_ms) = match request {
                RelayRequest::Submit { request, wait_ms } => {
                    if let Err(why) = validate(&request) {
                        let _ = conn
                            .send(RelayEvent::Failed(ErrorReply::new(
                                ErrorCode::BadRequest,
                                why,
                            )))
                            .await;
                        return;
                    }
                    match journal.submit(&request) {
                        Ok(id) => {
                            if conn
                                .send(RelayEvent::Accepted { id: id.clone() })
                                .await
                                .is_err()
                            {
                                return;
                            }
                            (id, wait_ms)
                        }
                        Err(e) => {
                            let _ = conn
                                .send(RelayEvent::Failed(ErrorReply::new(
                                    ErrorCode::Internal,
                                    e.to_string(),
                                )))
                                .await;
                            return;
                        }
                    }
                }
                RelayRequest::Follow { id, wait_ms } => (id, wait_ms),
            };
            let waits = Waits {
                wait_ms: wait_ms.min(MAX_WAIT_MS),
                host_seen: &host_seen,
            };
            follow(&mut conn, &journal, &id, &waits, &stop).await;
        });
    }
}

/// How long a followed request may wait, and who can tell whether the host is polling.
struct Waits<'a> {
    wait_ms: u64,
    host_seen: &'a HostSeen,
}

/// Streams a request's progress to the caller until it is done or its pickup deadline passes.
/// While it waits unleased and the host has not polled for [`HOST_ABSENT`], the caller is
/// told once ([`HOST_ABSENT_NOTICE`]) and the request keeps waiting.
async fn follow(
    conn: &mut Conn,
    journal: &Journal,
    id: &RequestId,
    waits: &Waits<'_>,
    stop: &CancellationToken,
) {
    let wait_ms = waits.wait_ms;
    let began = tokio::time::Instant::now();
    let mut absent_told = false;
    let mut pickup_deadline = Some(tokio::time::Instant::now() + Duration::from_millis(wait_ms));
    let mut changed = journal.watch_request(id.as_str());
    let (mut sent_lines, mut sent_attempt) = (0usize, 0u32);
    loop {
        changed.mark_seen();
        let entry = match journal.get(id.as_str()) {
            Ok(e) => e,
            Err(e) => {
                let _ = conn
                    .send(RelayEvent::Failed(ErrorReply::new(
                        ErrorCode::NotFound,
                        e.to_string(),
                    )))
                    .await;
                return;
            }
        };
        if entry.attempt > sent_attempt {
            sent_attempt = entry.attempt;
            if conn
                .send(RelayEvent::Leased {
                    attempt: entry.attempt,
                })
                .await
                .is_err()
            {
                return;
            }
        }
        for line in entry.progress.iter().skip(sent_lines) {
            if conn
                .send(RelayEvent::Progress { line: line.clone() })
                .await
                .is_err()
            {
                return;
            }
        }
        sent_lines = entry.progress.len();
        match (entry.state.as_str(), entry.outcome) {
            ("done", Some(outcome)) => {
                let _ = conn.send(RelayEvent::Finished(outcome)).await;
                return;
            }
            ("expired", _) => {
                let _ = conn
                    .send(RelayEvent::Failed(ErrorReply::new(
                        ErrorCode::Timeout,
                        "the request expired before the host picked it up",
                    )))
                    .await;
                return;
            }
            _ => {}
        }
        let waiting_unleased = entry.state == "queued";
        if waiting_unleased
            && !absent_told
            && began.elapsed() >= ABSENT_NOTICE_AFTER
            && waits.host_seen.absent_for() >= HOST_ABSENT
        {
            absent_told = true;
            if conn
                .send(RelayEvent::Progress {
                    line: HOST_ABSENT_NOTICE.to_string(),
                })
                .await
                .is_err()
            {
                return;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = changed.changed() => {},
            // Look again at whether the host polls while the request waits for it.
            () = async {
                if waiting_unleased && !absent_told {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => {},
            // The caller hung up: the request stays journalled and can be followed again.
            _ = conn.next() => return,
            () = async {
                match pickup_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                pickup_deadline = None;
                if journal.expire_if_queued(id.as_str()).unwrap_or(false) {
                    let message = format!(
                        "no host picked up request {id} within {} s: is the host bridge running (`agentbox bridge status` on the host)? The request was withdrawn and will not run.",
                        wait_ms / 1000
                    );
                    let _ = conn.send(RelayEvent::Failed(ErrorReply::new(ErrorCode::Timeout, message))).await;
                    return;
                }
                // Picked up: the host is working on it; keep following.
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_and_sane_messages() {
        assert!(validate(&HostRequest::Open {
            url: "https://example.com/x".into()
        })
        .is_ok());
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "-x",
            "http://a\nb",
            "",
        ] {
            assert!(
                validate(&HostRequest::Open { url: bad.into() }).is_err(),
                "{bad}"
            );
        }
        let state = |session: &str, agent: &str, detail: usize| {
            HostRequest::AgentState(agentbox_protocol::agent::AgentStatus {
                session: session.parse().expect("session name"),
                agent: agent.into(),
                state: agentbox_protocol::agent::AgentState::Waiting,
                detail: Some("x".repeat(detail)),
                since_ms: 1,
            })
        };
        assert!(validate(&state("claude", "claude", 200)).is_ok());
        assert!("a:b"
            .parse::<agentbox_protocol::term::SessionName>()
            .is_err());
        assert!(validate(&state("claude", "$(x)", 1)).is_err());
        assert!(validate(&state("claude", "claude", 1 << 20)).is_err());
        assert!(validate(&HostRequest::Notify {
            message: "x".repeat(5000)
        })
        .is_err());
        assert!(validate(&HostRequest::Notify {
            message: "  ".into()
        })
        .is_err());
    }
}
