//! Running a command from a test with a time limit.
//!
//! `Command::output` waits forever: one command that hangs (a container that never stops,
//! a daemon holding the pipe, a server that accepts and never answers) then hangs the
//! whole suite until CI gives up on it, and says nothing of where. [`TimedOutput`] gives
//! every command a limit; past it, the command and everything in its process group is
//! killed and the call fails with the command line, the time and what the command had
//! printed so far, so a hang becomes a failure that names itself.
//!
//! host-bridge's test suites compile this file too (`host-bridge/tests/common/mod.rs`
//! includes it by path, as they cannot depend on this crate): it stays std-only, and its
//! own tests live in `run_tests.rs` so that they run once, not in every suite.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The limit of [`TimedOutput::timed_output`]: far above what any command of the suite
/// takes on a loaded 2-core machine, far below CI's patience.
pub const COMMAND_LIMIT: Duration = Duration::from_secs(300);

/// The limit for a command that builds an image (`prepare`): a cold machine runs apt-get
/// and npm inside `docker build`.
pub const BUILD_LIMIT: Duration = Duration::from_secs(1200);

/// The limit for `agentbox ARGS`: [`BUILD_LIMIT`] for `prepare`, else [`COMMAND_LIMIT`].
#[must_use]
pub fn limit_for(args: &[&str]) -> Duration {
    if args.contains(&"prepare") {
        BUILD_LIMIT
    } else {
        COMMAND_LIMIT
    }
}

/// `Command::output` with a time limit.
pub trait TimedOutput {
    /// Runs the command to its end within `limit`: stdin from /dev/null, stdout and
    /// stderr captured (as `Command::output` does).
    ///
    /// # Errors
    /// The spawn's error; or, past `limit`, an error of kind `TimedOut` that holds the
    /// command line and its output so far, after the command's process group was killed.
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output>;

    /// [`output_within`](TimedOutput::output_within) with [`COMMAND_LIMIT`].
    ///
    /// # Errors
    /// As `output_within`.
    fn timed_output(&mut self) -> std::io::Result<Output> {
        self.output_within(COMMAND_LIMIT)
    }
}

impl TimedOutput for Command {
    fn output_within(&mut self, limit: Duration) -> std::io::Result<Output> {
        // A group of its own, so that what it started goes with it on a timeout.
        let child = self
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        finish_within(child, &describe(self), limit)
    }
}

/// Waits for a spawned `child` (named `what` in errors) to end within `limit`, reading
/// whatever of its stdout and stderr is still piped and not taken.
///
/// # Errors
/// Past `limit`, an error of kind `TimedOut` with the output so far, after the child (and
/// its process group, if it leads one) was killed.
pub fn finish_within(mut child: Child, what: &str, limit: Duration) -> std::io::Result<Output> {
    let started = Instant::now();
    let (tx, rx) = mpsc::channel();
    read_all(child.stdout.take(), 1, tx.clone());
    read_all(child.stderr.take(), 2, tx);
    let status = wait_until(&mut child, started + limit);
    // The streams end when the last process holding them does: a daemon the command left
    // behind with them open would hold them for ever.
    let mut streams = [None, None];
    while streams.iter().any(Option::is_none) {
        let left = (started + limit).saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((1, bytes)) => streams[0] = Some(bytes),
            Ok((_, bytes)) => streams[1] = Some(bytes),
            Err(_) => break,
        }
    }
    if let (Some(status), [Some(stdout), Some(stderr)]) = (status, &mut streams) {
        return Ok(Output {
            status,
            stdout: std::mem::take(stdout),
            stderr: std::mem::take(stderr),
        });
    }
    kill(&child);
    let _ = child.wait();
    let how = match status {
        None => "did not finish".to_string(),
        Some(s) => format!("ended ({s}) but something it started still holds its output open"),
    };
    // The readers see the end of the streams once the group is gone.
    let mut partial = streams.map(Option::unwrap_or_default);
    while let Ok((n, bytes)) = rx.recv_timeout(Duration::from_secs(2)) {
        partial[usize::from(n != 1)] = bytes;
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "{what} {how} within {limit:?}; killed. stdout so far:\n{}\nstderr so far:\n{}",
            String::from_utf8_lossy(&partial[0]),
            String::from_utf8_lossy(&partial[1]),
        ),
    ))
}

/// Reads `stream` to its end on a thread of its own and sends `(tag, bytes)`.
fn read_all<R: Read + Send + 'static>(stream: Option<R>, tag: u8, tx: mpsc::Sender<(u8, Vec<u8>)>) {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut stream) = stream {
            let mut buf = [0u8; 8192];
            // What was read before an error is still worth showing.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                bytes.extend_from_slice(&buf[..n]);
            }
        }
        let _ = tx.send((tag, bytes));
    });
}

/// The child's exit status, or `None` when `deadline` came first.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            _ => return None,
        }
    }
}

/// SIGKILL to the child's process group when it leads one, and to the child.
fn kill(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The command line, for a message.
fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    format!("`{line}`")
}
