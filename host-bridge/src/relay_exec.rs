//! One-off commands in a box through its relay (`POST /v1/exec`, contract in
//! [`agentbox_protocol::exec`]): what `docker exec` gives, for a box the host reaches only
//! through the relay (Daytona). Output arrives as it is printed, stdout and stderr apart;
//! stdin, when asked for, is sent in numbered pieces (a retried piece is never typed
//! twice); no time limit unless the request sets one ([`capture`]: 120 s), and the host
//! gives up [`OVERRUN`] past a limit the box did not keep. Dropping the call (Ctrl-C ends this
//! process) cuts the connection, and the relay then ends the command's process group.

use std::io::Write;
use std::time::Duration;

use agentbox_protocol::error::ErrorBody;
use agentbox_protocol::exec::{
    ExecExit, ExecFrame, ExecRequest, FrameReader, EOF_HEADER, HEARTBEAT_MS, MAX_STDIN_POST,
};
use agentbox_protocol::files::OFFSET_HEADER;
use agentbox_protocol::term::TermSize;
use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::transfer::capped::{read_error_body, ERROR_CAP};
use crate::transfer::client::Relay;

/// How long the stream may go without a frame (heartbeats included) before the box
/// counts as gone.
const SILENCE_LIMIT: Duration = Duration::from_millis(HEARTBEAT_MS * 10);

/// How long past a request's own `timeout_ms` the host waits for the box to end it and
/// say how it ended.
pub const OVERRUN: Duration = Duration::from_secs(10);

/// The time limit [`capture`] gives a request that sets none.
pub const CAPTURE_LIMIT: Duration = Duration::from_secs(120);

/// The most output [`capture`] keeps of each stream.
pub const CAPTURE_CAP: usize = 16 << 20;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It ran and ended so.
    Exited(ExecExit),
    /// The box could not start it (the message is the box's, shown escaped): `code` is
    /// the shell's and `docker exec`'s for it (127: no such program, else 126).
    Refused {
        /// 127 or 126.
        code: i32,
        /// Why, in the box's words.
        message: String,
    },
}

impl Ended {
    /// The exit status a shell would report.
    pub fn status_code(&self) -> i32 {
        match self {
            Self::Exited(e) => e.status_code(),
            Self::Refused { code, .. } => *code,
        }
    }
}

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The command's stdout.
    Stdout,
    /// The command's stderr.
    Stderr,
}

/// Whether an answer is a preview proxy refusing its token (a redirect to its login page,
/// an HTML page, or a `401` that is not the relay's JSON) rather than the relay's.
fn proxy_refused(response: &reqwest::Response) -> bool {
    let status = response.status();
    let html = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"));
    let json = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.contains("json"));
    status.is_redirection() || html || (status == reqwest::StatusCode::UNAUTHORIZED && !json)
}

/// Sends `build()`, once more with a new preview token if the preview proxy refused the
/// old one (the request then never reached the relay, so nothing runs twice).
pub(crate) async fn send_renewing(
    relay: &Relay,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> anyhow::Result<reqwest::Response> {
    let response = build().send().await.map_err(|e| network(&e))?;
    if relay.has_preview() && proxy_refused(&response) {
        tracing::info!("the preview proxy refused its token; minting a new one");
        relay.renew_preview().await?;
        return build().send().await.map_err(|e| network(&e));
    }
    Ok(response)
}

fn network(e: &reqwest::Error) -> anyhow::Error {
    anyhow!("cannot reach the box's relay: {}", crate::tls::explain(e))
}

/// The error message of a refused call, escaped for showing, and whether it is the
/// relay's own (its JSON error body).
pub(crate) async fn refusal(response: reqwest::Response) -> (reqwest::StatusCode, String, bool) {
    let status = response.status();
    let body = read_error_body(response, ERROR_CAP).await;
    let (message, relays) = serde_json::from_slice::<ErrorBody>(&body).map_or_else(
        |_| (String::from_utf8_lossy(&body).into_owned(), false),
        |b| (b.error.message, true),
    );
    (status, crate::text::shown(&message), relays)
}

/// Runs `request` in the box; every chunk of output goes to `output` as it arrives.
/// `stdin` (when the request asks for it) gives the command's input, `None` being its end.
pub async fn run(
    relay: &Relay,
    request: &ExecRequest,
    stdin: Option<mpsc::Receiver<Vec<u8>>>,
    output: &mut (dyn FnMut(Stream, &[u8]) -> std::io::Result<()> + Send),
) -> anyhow::Result<Ended> {
    run_sized(relay, request, stdin, None, output).await
}

/// [`run`], and for a request with a `tty`, the terminal's new sizes from `resizes`. A
/// detached request ends at its `Started` frame (exit code 0).
///
/// A request with a `timeout_ms` is given up by the host [`OVERRUN`] after it, whatever
/// the box does: a relay that keeps the stream alive with heartbeats and never ends the
/// command (a wedged box, or one that ignores the limit) cannot hold the caller longer.
pub async fn run_sized(
    relay: &Relay,
    request: &ExecRequest,
    stdin: Option<mpsc::Receiver<Vec<u8>>>,
    resizes: Option<mpsc::UnboundedReceiver<TermSize>>,
    output: &mut (dyn FnMut(Stream, &[u8]) -> std::io::Result<()> + Send),
) -> anyhow::Result<Ended> {
    let body = serde_json::to_value(request)?;
    let run = run_unbounded(relay, ("/v1/exec", body), request, stdin, resizes, output);
    let Some(limit) = request.timeout_ms.map(Duration::from_millis) else {
        return run.await;
    };
    // Dropping the call cuts the connection, and the relay ends the command.
    tokio::time::timeout(limit + OVERRUN, run)
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "the box did not end the command within its time limit of {} s (gave up {} s later)",
                limit.as_secs(),
                OVERRUN.as_secs()
            ))
        })
}

/// The units' logs through `POST /v1/logs` (what a share with scope `logs` may read; the
/// relay builds the command line), answered and read as [`run`] reads a command.
pub async fn run_logs(
    relay: &Relay,
    query: &agentbox_protocol::share::LogsQuery,
    output: &mut (dyn FnMut(Stream, &[u8]) -> std::io::Result<()> + Send),
) -> anyhow::Result<Ended> {
    query.validate().map_err(|e| anyhow!("{e}"))?;
    let body = serde_json::to_value(query)?;
    // Only its flags (no stdin, no terminal, no time limit) shape how the answer is read.
    let request = ExecRequest::new(vec!["agentbox-ctl".into()]);
    run_unbounded(relay, ("/v1/logs", body), &request, None, None, output).await
}

async fn run_unbounded(
    relay: &Relay,
    (path, body): (&str, serde_json::Value),
    request: &ExecRequest,
    stdin: Option<mpsc::Receiver<Vec<u8>>>,
    resizes: Option<mpsc::UnboundedReceiver<TermSize>>,
    output: &mut (dyn FnMut(Stream, &[u8]) -> std::io::Result<()> + Send),
) -> anyhow::Result<Ended> {
    request.validate().map_err(|e| anyhow!("{e}"))?;
    let response = send_renewing(relay, || {
        relay.request(reqwest::Method::POST, path).json(&body)
    })
    .await?;
    if !response.status().is_success() {
        let (status, message, relays) = refusal(response).await;
        return match status {
            reqwest::StatusCode::NOT_FOUND if relays => Ok(Ended::Refused { code: 127, message }),
            reqwest::StatusCode::BAD_REQUEST if relays => Ok(Ended::Refused { code: 126, message }),
            reqwest::StatusCode::NOT_FOUND => bail!(
                "the box's relay has no command API (/v1/exec): it is older than this agentbox; run `agentbox prepare` and make the box again"
            ),
            _ => bail!(
                "the box's relay refused the command: {}",
                crate::transfer::refusal::refusal(status, &message)
            ),
        };
    }
    let mut body = response.bytes_stream();
    let mut frames = FrameReader::new();
    let mut stdin = stdin.filter(|_| request.stdin);
    let mut resizes = resizes.filter(|_| request.tty.is_some());
    let mut pump: Option<tokio::task::JoinHandle<()>> = None;
    let mut resizer: Option<tokio::task::JoinHandle<()>> = None;
    let mut started = false;
    let cut = || {
        anyhow!("the connection to the box was cut before the command ended (the box stops a command whose caller went away)")
    };
    let ended = loop {
        let next = tokio::time::timeout(SILENCE_LIMIT, body.next())
            .await
            .map_err(|_| {
                anyhow!(
                    "the box sent nothing for {} s: its relay stopped answering",
                    SILENCE_LIMIT.as_secs()
                )
            })?;
        let chunk = match next {
            Some(Ok(c)) => c,
            Some(Err(e)) => return Err(network(&e)).context(cut()),
            None if started && request.detach => {
                break ExecExit {
                    code: Some(0),
                    signal: None,
                    timed_out: false,
                }
            }
            None => return Err(cut()),
        };
        frames.push(&chunk);
        let mut exit = None;
        while let Some(frame) = frames.next_frame().map_err(|e| anyhow!("{e}"))? {
            match frame {
                ExecFrame::Heartbeat => {}
                ExecFrame::Started(s) => {
                    started = true;
                    if let Some(rx) = resizes.take() {
                        resizer = Some(tokio::spawn(send_resizes(relay.clone(), s.id.clone(), rx)));
                    }
                    if let Some(rx) = stdin.take() {
                        pump = Some(tokio::spawn(send_stdin(relay.clone(), s.id, rx)));
                    }
                }
                ExecFrame::Stdout(b) => output(Stream::Stdout, &b)?,
                ExecFrame::Stderr(b) => output(Stream::Stderr, &b)?,
                ExecFrame::Exit(e) => exit = Some(e),
            }
        }
        if let Some(e) = exit {
            break e;
        }
    };
    for task in [pump, resizer].into_iter().flatten() {
        task.abort();
    }
    Ok(Ended::Exited(ended))
}

/// Sends each new size from `rx` to the command's terminal (a failed one is logged: the
/// command goes on at its old size).
async fn send_resizes(relay: Relay, id: String, mut rx: mpsc::UnboundedReceiver<TermSize>) {
    let path = format!("/v1/exec/{id}/resize");
    while let Some(size) = rx.recv().await {
        let sent = send_renewing(&relay, || {
            relay.request(reqwest::Method::POST, &path).json(&size)
        })
        .await;
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return,
            Ok(r) => {
                let (status, message, _) = refusal(r).await;
                tracing::warn!(%status, %message, "the box refused the terminal's new size");
            }
            Err(e) => tracing::warn!(error = %e, "cannot send the terminal's new size"),
        }
    }
}

/// Sends what comes from `rx` as the command's stdin, in order, each piece at its offset;
/// closes it when `rx` ends. Stops when the command is gone.
async fn send_stdin(relay: Relay, id: String, mut rx: mpsc::Receiver<Vec<u8>>) {
    let path = format!("/v1/exec/{id}/stdin");
    let mut offset: u64 = 0;
    loop {
        let piece = rx.recv().await;
        let eof = piece.is_none();
        let bytes = piece.unwrap_or_default();
        for part in bytes.chunks(MAX_STDIN_POST).chain(eof.then_some(&[][..])) {
            match post_input(&relay, &path, offset, part, eof).await {
                Ok(()) => {}
                // The command ended (or the relay forgot it): nobody reads any more.
                Err(InputEnd::Gone) => return,
                Err(InputEnd::Refused(status, message)) => {
                    tracing::warn!(%status, %message, "the box refused the command's stdin");
                    return;
                }
                Err(InputEnd::Unreachable(e)) => {
                    tracing::warn!(error = %e, "cannot send the command's stdin");
                    return;
                }
            }
            offset += part.len() as u64;
        }
        if eof {
            return;
        }
    }
}

/// Why input posted by offset (a command's stdin, a tunnel's bytes) cannot go on.
#[derive(Debug)]
pub(crate) enum InputEnd {
    /// The relay no longer knows the reader (`404`): it ended.
    Gone,
    /// The relay refused the input: its status and message (box text escaped).
    Refused(reqwest::StatusCode, String),
    /// The relay could not be reached, three retries included.
    Unreachable(anyhow::Error),
}

/// Posts `part` to `path` at `offset` (and, with `eof`, the end of the input), as the
/// relay's offset-numbered input takes it (`relay/src/numbered_input.rs`): a post that
/// did not arrive is sent again (three times, 200 ms more each), and the relay skips
/// what it already has, so nothing is doubled.
pub(crate) async fn post_input(
    relay: &Relay,
    path: &str,
    offset: u64,
    part: &[u8],
    eof: bool,
) -> Result<(), InputEnd> {
    let mut tries = 0u64;
    loop {
        let sent = send_renewing(relay, || {
            let r = relay
                .request(reqwest::Method::POST, path)
                .header(OFFSET_HEADER, offset.to_string())
                .body(part.to_vec());
            if eof {
                r.header(EOF_HEADER, "1")
            } else {
                r
            }
        })
        .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Err(InputEnd::Gone),
            Ok(r) => {
                let (status, message, _) = refusal(r).await;
                return Err(InputEnd::Refused(status, message));
            }
            Err(e) if tries < 3 => {
                tries += 1;
                tracing::info!(error = %e, "sending input again");
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
            }
            Err(e) => return Err(InputEnd::Unreachable(e)),
        }
    }
}

/// Runs `request` and keeps its output (at most [`CAPTURE_CAP`] bytes of each stream),
/// within its `timeout_ms`, or [`CAPTURE_LIMIT`] when it sets none (as the docker
/// provider's in-box commands): a box whose daemon never answers `agentbox-ctl`, or whose
/// relay never ends the command, costs the host that long, never more.
pub async fn capture(
    relay: &Relay,
    request: &ExecRequest,
) -> anyhow::Result<(Ended, Vec<u8>, Vec<u8>)> {
    let mut request = request.clone();
    if request.timeout_ms.is_none() {
        request.timeout_ms = Some(u64::try_from(CAPTURE_LIMIT.as_millis()).unwrap_or(u64::MAX));
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let ended = run(relay, &request, None, &mut |stream, bytes| {
        let into = match stream {
            Stream::Stdout => &mut out,
            Stream::Stderr => &mut err,
        };
        if into.len() + bytes.len() > CAPTURE_CAP {
            return Err(std::io::Error::other(format!(
                "the command printed more than {CAPTURE_CAP} bytes"
            )));
        }
        into.extend_from_slice(bytes);
        Ok(())
    })
    .await?;
    Ok((ended, out, err))
}

/// `agentbox exec` through the relay: [`run_here`], with this terminal in raw mode and
/// its size followed when the request has a `tty`; a command the box could not start is
/// said on stderr. Returns the exit status (126/127 for one that could not start).
pub fn exec_here(relay: &Relay, request: &ExecRequest) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ended = runtime.block_on(async {
        let raw = if request.tty.is_some() && request.stdin {
            crate::attach::terminal::RawMode::enable()?
        } else {
            None
        };
        let resizes = request.tty.map(|_| {
            let (tx, rx) = mpsc::unbounded_channel();
            if let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            {
                tokio::spawn(async move {
                    while winch.recv().await.is_some() {
                        if tx.send(crate::attach::terminal::size()).is_err() {
                            break;
                        }
                    }
                });
            }
            rx
        });
        let ended = run_here_sized(relay, request, resizes).await;
        drop(raw);
        ended
    })?;
    if let Ended::Refused { message, .. } = &ended {
        eprintln!("agentbox: {message}");
    }
    Ok(ended.status_code())
}

/// Runs `request` with this process's stdout and stderr (each chunk written and flushed as
/// it arrives) and, when the request asks for stdin, this process's stdin (read on a
/// thread of its own).
pub async fn run_here(relay: &Relay, request: &ExecRequest) -> anyhow::Result<Ended> {
    run_here_sized(relay, request, None).await
}

/// [`run_here`], following the terminal's sizes from `resizes`.
async fn run_here_sized(
    relay: &Relay,
    request: &ExecRequest,
    resizes: Option<mpsc::UnboundedReceiver<TermSize>>,
) -> anyhow::Result<Ended> {
    let stdin = request.stdin.then(|| {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut input = std::io::stdin();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        rx
    });
    run_sized(
        relay,
        request,
        stdin,
        resizes,
        &mut |stream, bytes| match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            Stream::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(bytes)?;
                err.flush()
            }
        },
    )
    .await
}
