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
//!
//! A request's `tty` runs the command on a PTY ([`crate::exec_tty`]); its `user` runs it
//! through `sudo -n -u USER` unless that is the relay's own user; `detach` starts it with
//! no stdio and answers with its `Started` frame alone.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::exec::{
    encode_output, ExecExit, ExecFrame, ExecRequest, ExecStarted, HEARTBEAT_MS, MAX_CHUNK,
    MAX_STDIN_POST,
};
use agentbox_protocol::term::TermSize;
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

use crate::exec_tty::TtyInput;
use crate::http::{internal, ApiError};
use crate::numbered_input::{self, Piece};

/// Something a command prints.
type Source = Box<dyn AsyncRead + Unpin + Send>;
/// Waits for a command: its exit code and the signal that ended it.
type Waiter = Pin<Box<dyn Future<Output = std::io::Result<(Option<i32>, Option<i32>)>> + Send>>;
/// A command's terminal, for resizing.
type Master = Arc<Mutex<Box<dyn portable_pty::MasterPty + Send>>>;

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

/// A command's stdin: the pipe or terminal (gone once closed), how many bytes it took, and
/// its terminal if it has one.
struct StdinSlot {
    pipe: Option<Input>,
    taken: u64,
    master: Option<Master>,
}

/// Where a command's stdin goes.
enum Input {
    Pipe(ChildStdin),
    Tty(TtyInput),
}

impl Input {
    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Self::Pipe(p) => {
                p.write_all(bytes).await?;
                p.flush().await
            }
            Self::Tty(t) => t.write(bytes.to_vec()).await,
        }
    }
}

/// The `/v1/exec` routes (the token check is the caller's); commands run in `workspace`
/// unless they say otherwise.
pub fn routes(workspace: PathBuf) -> Router {
    let execs = Execs::new(workspace);
    Router::new()
        .route("/v1/exec", post(start))
        .route("/v1/exec/{id}/stdin", post(stdin))
        .route("/v1/exec/{id}/resize", post(resize))
        .with_state(execs)
}

impl Execs {
    /// The commands of a relay whose workspace is `workspace` (none yet).
    pub fn new(workspace: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            workspace,
            stdin: Mutex::new(HashMap::new()),
        })
    }

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

/// The path of `program` as the relay's `PATH` finds it (itself when it has a `/`).
fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// The argv that runs `request` as its `user`: its own when that is the relay's user (or
/// none), else through `sudo -n -u`, its variables then set by `env` (sudo resets them).
/// Refused (`400`) for a user the box lacks or a box without sudo; `404` for a program
/// that is not there.
#[allow(clippy::result_large_err)]
fn argv_for(request: &ExecRequest) -> Result<(Vec<String>, bool), Response> {
    use nix::unistd::{Uid, User};
    let Some(name) = request.user.as_deref() else {
        return Ok((request.argv.clone(), false));
    };
    let me = Uid::effective();
    let wanted = match name.parse::<u32>() {
        Ok(uid) => User::from_uid(Uid::from_raw(uid)).ok().flatten(),
        Err(_) => User::from_name(name).ok().flatten(),
    };
    let Some(user) = wanted else {
        return Err(bad_request(format!(
            "cannot run as `{name}`: no such user in the box"
        )));
    };
    if user.uid == me {
        return Ok((request.argv.clone(), false));
    }
    if find_program("sudo").is_none() {
        return Err(bad_request(format!(
            "cannot run as `{name}`: the box has no sudo to change user with"
        )));
    }
    let program = &request.argv[0];
    if find_program(program).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("cannot run `{program}`: no such program in the box's PATH"),
        )
        .into_response());
    }
    let mut argv: Vec<String> = ["sudo", "-n", "-u", &format!("#{}", user.uid), "--"]
        .map(String::from)
        .to_vec();
    if !request.env.is_empty() {
        argv.push("env".into());
        argv.extend(request.env.iter().map(|(k, v)| format!("{k}={v}")));
    }
    argv.extend(request.argv.iter().cloned());
    Ok((argv, true))
}

/// Why a command could not start, as the answer: `404` for a program that is not there,
/// `400` (the caller's 126) otherwise — a missing directory included, as `docker exec`
/// has it.
fn spawn_refused(program: &str, cwd: &Path, e: &std::io::Error) -> Response {
    if !cwd.is_dir() {
        return bad_request(format!(
            "cannot run `{program}`: no directory {} in the box",
            cwd.display()
        ));
    }
    if e.kind() == std::io::ErrorKind::NotFound
        || e.to_string().contains("No such file or directory")
    {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("cannot run `{program}`: no such program in the box's PATH"),
        )
        .into_response();
    }
    bad_request(format!("cannot run `{program}`: {e}"))
}

/// A started command, however it runs.
struct Spawned {
    pid: u32,
    out: Option<Source>,
    err: Option<Source>,
    input: Option<Input>,
    master: Option<Master>,
    wait: Waiter,
}

/// Starts `argv` on pipes (stdin piped only when asked for); `detach`: no stdio at all.
fn spawn_piped(
    request: &ExecRequest,
    argv: &[String],
    sudo: bool,
    cwd: &Path,
) -> std::io::Result<Spawned> {
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(cwd)
        .process_group(0)
        .stdin(piped(request.stdin && !request.detach))
        .stdout(piped(!request.detach))
        .stderr(piped(!request.detach));
    if !sudo {
        command.envs(&request.env);
    }
    for var in SECRET_VARS {
        if !request.env.contains_key(var) {
            command.env_remove(var);
        }
    }
    let mut child = command.spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| std::io::Error::other("the command ended before it could be followed"))?;
    let out = child.stdout.take().map(|p| Box::new(p) as Source);
    let err = child.stderr.take().map(|p| Box::new(p) as Source);
    let input = child.stdin.take().map(Input::Pipe);
    let wait: Waiter = Box::pin(async move {
        let s = child.wait().await?;
        Ok((s.code(), s.signal()))
    });
    Ok(Spawned {
        pid,
        out,
        err,
        input,
        master: None,
        wait,
    })
}

/// `POST /v1/exec` (also what `/v1/logs` runs, with a command line of the relay's).
pub async fn start(State(execs): State<Arc<Execs>>, Json(request): Json<ExecRequest>) -> Response {
    if let Err(e) = request.validate() {
        return bad_request(e.to_string());
    }
    let cwd = resolve_cwd(&execs.workspace, request.cwd.as_deref());
    let program = request.argv[0].clone();
    let (argv, sudo) = match argv_for(&request) {
        Ok(a) => a,
        Err(refused) => return refused,
    };
    if !cwd.is_dir() {
        return spawn_refused(&program, &cwd, &std::io::ErrorKind::NotFound.into());
    }
    let spawned = match request.tty {
        Some(size) => {
            let env = if sudo {
                std::collections::BTreeMap::new()
            } else {
                request.env.clone()
            };
            let removed: Vec<&str> = SECRET_VARS
                .into_iter()
                .filter(|v| !request.env.contains_key(*v))
                .collect();
            if find_program(&argv[0]).is_none() {
                return spawn_refused(&program, &cwd, &std::io::ErrorKind::NotFound.into());
            }
            crate::exec_tty::spawn(&argv, &cwd, &env, &removed, size).map(|t| Spawned {
                pid: t.pid,
                out: Some(Box::new(t.output) as Source),
                err: None,
                input: Some(Input::Tty(t.input)),
                master: Some(t.master),
                wait: Box::pin(async move { t.wait.await.map_err(std::io::Error::other)? }),
            })
        }
        None => spawn_piped(&request, &argv, sudo, &cwd),
    };
    let spawned = match spawned {
        Ok(s) => s,
        Err(e) => return spawn_refused(&program, &cwd, &e),
    };
    let pid = spawned.pid;
    let id = match agentbox_protocol::files::new_transfer_id() {
        Ok(id) => id,
        Err(e) => {
            end_group(pid as i32);
            return internal(e).into_response();
        }
    };
    let started = ExecFrame::Started(ExecStarted {
        id: id.clone(),
        pid,
    });
    if request.detach {
        tracing::info!(%id, pid, program = %program, cwd = %cwd.display(), "exec started, detached");
        // Reaped when it ends; nothing ends it.
        let wait = spawned.wait;
        tokio::spawn(async move {
            let _ = wait.await;
        });
        return (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            started.encode(),
        )
            .into_response();
    }
    let guard = GroupGuard {
        pgid: pid as i32,
        armed: true,
    };
    let slot = Arc::new(tokio::sync::Mutex::new(StdinSlot {
        pipe: spawned.input,
        taken: 0,
        master: spawned.master,
    }));
    execs.slots().insert(id.clone(), slot);
    tracing::info!(%id, pid, program = %program, cwd = %cwd.display(), tty = request.tty.is_some(), "exec started");
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let started = ExecFrame::Started(ExecStarted {
        id: id.clone(),
        pid,
    });
    let timeout = request.timeout_ms.map(Duration::from_millis);
    let (out, err, wait) = (spawned.out, spawned.err, spawned.wait);
    tokio::spawn(async move {
        follow(out, err, wait, guard, tx, started, timeout).await;
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
    mut out: Option<Source>,
    mut err: Option<Source>,
    mut wait: Waiter,
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
    let (mut out_buf, mut err_buf) = (vec![0u8; MAX_CHUNK], vec![0u8; MAX_CHUNK]);
    let never = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let mut deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut drain_until: Option<tokio::time::Instant> = None;
    let mut status: Option<(Option<i32>, Option<i32>)> = None;
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
            waited = &mut wait, if status.is_none() => match waited {
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
    let (code, signal) = status.unwrap_or((None, None));
    let exit = ExecExit {
        code,
        signal,
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
    let mut slot = slot.lock().await;
    let Piece { fresh, eof } = match numbered_input::piece(&headers, slot.taken, &body, "stdin") {
        Ok(piece) => piece,
        Err(refused) => return *refused,
    };
    if let Some(pipe) = slot.pipe.as_mut() {
        // A command that stopped reading (closed stdin, exited) takes nothing more: its
        // stdin is then closed here too, as a pipe to it would be.
        if pipe.write_all(fresh).await.is_err() {
            slot.pipe = None;
        }
    }
    slot.taken += fresh.len() as u64;
    if eof {
        slot.pipe = None;
    }
    numbered_input::taken(slot.taken)
}

/// `POST /v1/exec/{id}/resize`: the command's terminal's new size.
async fn resize(
    State(execs): State<Arc<Execs>>,
    UrlPath(id): UrlPath<String>,
    Json(size): Json<TermSize>,
) -> Response {
    if !size.is_valid() {
        return bad_request("a terminal size must be 1–1000 columns and rows");
    }
    let Some(slot) = execs.slots().get(&id).cloned() else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no command {id} runs (it ended, or the relay restarted)"),
        )
        .into_response();
    };
    let slot = slot.lock().await;
    let Some(master) = &slot.master else {
        return bad_request(format!("command {id} has no terminal to resize"));
    };
    let resized = master
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .resize(crate::exec_tty::pty_size(size));
    match resized {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e).into_response(),
    }
}
