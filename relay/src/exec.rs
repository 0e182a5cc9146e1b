//! The command API (`/v1/exec`, contract in [`agentbox_protocol::exec`]): a one-off
//! command run as the box's user (the relay's), in a new process group, its stdout and
//! stderr streamed back apart as frames, then its exit status.
//!
//! One task per command reads both pipes and waits on the process; its frames go through a
//! small channel into the answer's body, so a slow caller slows the command (as a
//! terminal would) instead of filling memory. A heartbeat goes out every
//! [`HEARTBEAT_MS`] of silence: a caller that went away shows as a failed send, and the
//! command's group is then ended (SIGTERM, SIGKILL a second later) — as it is when the
//! relay stops or the request's `timeout_ms` passes. A command that exits by itself leaves
//! what it put in the background alone, as `docker exec` does.

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::exec::{
    encode_output, ExecExit, ExecFrame, ExecRequest, ExecStarted, EOF_HEADER, HEARTBEAT_MS,
    MAX_CHUNK, MAX_STDIN_POST,
};
use agentbox_protocol::files::OFFSET_HEADER;
use agentbox_protocol::ErrorCode;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

use crate::http::{internal, ApiError};

/// Variables of the relay's own environment no command gets.
const SECRET_VARS: [&str; 2] = ["AGENTBOX_BRIDGE_TOKEN", "AGENTBOX_RELAY_TOKEN"];

/// How long the pipes may stay open after the command exited (something it left in the
/// background holds them): its output is cut there and the exit reported.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// How long a group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(1);

/// The commands of this relay run: their stdin, by id.
pub struct Execs {
    workspace: PathBuf,
    stdin: Mutex<HashMap<String, Arc<tokio::sync::Mutex<StdinSlot>>>>,
}

/// A command's stdin: the pipe (gone once closed) and how many bytes it took.
struct StdinSlot {
    pipe: Option<ChildStdin>,
    taken: u64,
}

/// The `/v1/exec` routes (the token check is the caller's); commands run in `workspace`
/// unless they say otherwise.
pub fn routes(workspace: PathBuf) -> Router {
    let execs = Arc::new(Execs {
        workspace,
        stdin: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/v1/exec", post(start))
        .route("/v1/exec/{id}/stdin", post(stdin))
        .with_state(execs)
}

impl Execs {
    fn slots(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<StdinSlot>>>> {
        self.stdin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn bad_request(message: impl Into<String>) -> Response {
    ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message).into_response()
}

/// Where a command runs: `cwd` if absolute, else under the workspace.
fn resolve_cwd(workspace: &Path, cwd: Option<&str>) -> PathBuf {
    match cwd {
        None => workspace.to_path_buf(),
        Some(c) => workspace.join(c),
    }
}

/// Ends process group `pgid`: SIGTERM now, SIGKILL after [`KILL_GRACE`].
fn end_group(pgid: i32) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    if pgid <= 1 {
        return;
    }
    let group = Pid::from_raw(pgid);
    if killpg(group, Signal::SIGTERM).is_err() {
        return;
    }
    std::thread::spawn(move || {
        std::thread::sleep(KILL_GRACE);
        let _ = killpg(group, Signal::SIGKILL);
    });
}

/// Ends the command's group when dropped while armed: the caller went away, or the relay
/// is stopping.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            tracing::info!(
                pgid = self.pgid,
                "the caller of an exec went away: ending its process group"
            );
            end_group(self.pgid);
        }
    }
}

/// `POST /v1/exec`.
async fn start(State(execs): State<Arc<Execs>>, Json(request): Json<ExecRequest>) -> Response {
    if let Err(e) = request.validate() {
        return bad_request(e.to_string());
    }
    let cwd = resolve_cwd(&execs.workspace, request.cwd.as_deref());
    let program = &request.argv[0];
    let mut command = tokio::process::Command::new(program);
    command
        .args(&request.argv[1..])
        .current_dir(&cwd)
        .envs(&request.env)
        .process_group(0)
        .stdin(if request.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for var in SECRET_VARS {
        if !request.env.contains_key(var) {
            command.env_remove(var);
        }
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !cwd.is_dir() => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!(
                    "cannot run `{program}`: no directory {} in the box",
                    cwd.display()
                ),
            )
            .into_response()
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("cannot run `{program}`: no such program in the box's PATH"),
            )
            .into_response()
        }
        Err(e) => return bad_request(format!("cannot run `{program}`: {e}")),
    };
    let Some(pid) = child.id() else {
        return internal("the command ended before it could be followed").into_response();
    };
    let id = match agentbox_protocol::files::new_transfer_id() {
        Ok(id) => id,
        Err(e) => {
            let _ = child.start_kill();
            return internal(e).into_response();
        }
    };
    let guard = GroupGuard {
        pgid: pid as i32,
        armed: true,
    };
    let slot = Arc::new(tokio::sync::Mutex::new(StdinSlot {
        pipe: child.stdin.take(),
        taken: 0,
    }));
    execs.slots().insert(id.clone(), slot);
    tracing::info!(%id, pid, program = %program, cwd = %cwd.display(), "exec started");
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let started = ExecFrame::Started(ExecStarted {
        id: id.clone(),
        pid,
    });
    let timeout = request.timeout_ms.map(Duration::from_millis);
    tokio::spawn(async move {
        follow(child, guard, tx, started, timeout).await;
        execs.slots().remove(&id);
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

/// Reads into `buf` from `pipe`, or waits forever once it is gone.
async fn read_from<R: AsyncRead + Unpin>(
    pipe: &mut Option<R>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    match pipe {
        Some(p) => p.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Streams the command's frames into `tx` until it ended (then its exit) or the caller
/// went away (then `guard` ends its group).
async fn follow(
    mut child: tokio::process::Child,
    mut guard: GroupGuard,
    tx: mpsc::Sender<Bytes>,
    started: ExecFrame,
    timeout: Option<Duration>,
) {
    let send_bytes = |bytes: Vec<u8>| {
        let tx = tx.clone();
        async move { tx.send(Bytes::from(bytes)).await.is_ok() }
    };
    let send = |frame: ExecFrame| send_bytes(frame.encode());
    if !send(started).await {
        return;
    }
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let (mut out_buf, mut err_buf) = (vec![0u8; MAX_CHUNK], vec![0u8; MAX_CHUNK]);
    let never = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut status: Option<std::process::ExitStatus> = None;
    let mut timed_out = false;
    let beat = Duration::from_millis(HEARTBEAT_MS);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    loop {
        if status.is_some() && out.is_none() && err.is_none() {
            break;
        }
        tokio::select! {
            read = read_from(&mut out, &mut out_buf) => match read {
                Ok(n) if n > 0 => {
                    if !send_bytes(encode_output(false, &out_buf[..n])).await {
                        return;
                    }
                    heartbeat.reset();
                }
                _ => out = None,
            },
            read = read_from(&mut err, &mut err_buf) => match read {
                Ok(n) if n > 0 => {
                    if !send_bytes(encode_output(true, &err_buf[..n])).await {
                        return;
                    }
                    heartbeat.reset();
                }
                _ => err = None,
            },
            waited = child.wait(), if status.is_none() => match waited {
                Ok(s) => {
                    status = Some(s);
                    drain_until = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for an exec's process");
                    return;
                }
            },
            () = tokio::time::sleep_until(drain_until.unwrap_or(never)), if drain_until.is_some() => break,
            () = tokio::time::sleep_until(deadline.unwrap_or(never)), if deadline.is_some() && status.is_none() => {
                tracing::info!(pgid = guard.pgid, "an exec ran past its timeout: ending its process group");
                timed_out = true;
                deadline = None;
                end_group(guard.pgid);
            }
            _ = heartbeat.tick() => {
                if !send(ExecFrame::Heartbeat).await {
                    return;
                }
            }
        }
    }
    guard.armed = false;
    let status = status.unwrap_or_default();
    let exit = ExecExit {
        code: status.code(),
        signal: status.signal(),
        timed_out,
    };
    tracing::info!(pgid = guard.pgid, code = ?exit.code, signal = ?exit.signal, timed_out, "exec ended");
    let _ = send(ExecFrame::Exit(exit)).await;
}

/// `POST /v1/exec/{id}/stdin`: the next bytes of the command's stdin.
async fn stdin(
    State(execs): State<Arc<Execs>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_STDIN_POST {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("at most {MAX_STDIN_POST} bytes of stdin per request"),
        )
        .into_response();
    }
    let Some(slot) = execs.slots().get(&id).cloned() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no command {id} runs (it ended, or the relay restarted)"),
        )
        .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let eof = header(EOF_HEADER) == Some("1");
    let mut slot = slot.lock().await;
    let offset = match header(OFFSET_HEADER).map(str::parse::<u64>) {
        None => slot.taken,
        Some(Ok(o)) => o,
        Some(Err(_)) => return bad_request(format!("{OFFSET_HEADER} is not a byte offset")),
    };
    if offset > slot.taken {
        let mut r = ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            format!("stdin is at byte {}, not {offset}", slot.taken),
        )
        .into_response();
        r.headers_mut().insert(OFFSET_HEADER, slot.taken.into());
        return r;
    }
    let skip = usize::try_from(slot.taken - offset)
        .unwrap_or(usize::MAX)
        .min(body.len());
    let fresh = &body[skip..];
    if let Some(pipe) = slot.pipe.as_mut() {
        // A command that stopped reading (closed stdin, exited) takes nothing more: its
        // stdin is then closed here too, as a pipe to it would be.
        if pipe.write_all(fresh).await.is_err() || pipe.flush().await.is_err() {
            slot.pipe = None;
        }
    }
    slot.taken += fresh.len() as u64;
    if eof {
        slot.pipe = None;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(OFFSET_HEADER, slot.taken.into());
    r
}
