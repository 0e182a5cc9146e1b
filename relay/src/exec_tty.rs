//! A `/v1/exec` command on a terminal of its own (`docker exec -t`): started in a new PTY
//! (a new session, so its process id is its group's), its output read on a thread and
//! handed to the async side as a stream, its input written on a blocking task, its size
//! followed on request.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agentbox_protocol::term::TermSize;
use axum::body::Bytes;
use portable_pty::{CommandBuilder, MasterPty, PtySize};
use tokio::sync::mpsc;

/// What the terminal reads as the command's output.
pub type OutputReader = tokio_util::io::StreamReader<
    futures_util::stream::BoxStream<'static, std::io::Result<Bytes>>,
    Bytes,
>;

/// A command running on a PTY.
pub struct TtyChild {
    /// Its process id (also its process group's and session's).
    pub pid: u32,
    /// What it prints.
    pub output: OutputReader,
    /// Its terminal's input.
    pub input: TtyInput,
    /// The terminal, for resizing.
    pub master: Arc<Mutex<Box<dyn MasterPty + Send>>>,
    /// Waits for it: its exit code and the signal that ended it.
    pub wait: tokio::task::JoinHandle<std::io::Result<(Option<i32>, Option<i32>)>>,
}

/// The input side of a command's terminal.
#[derive(Clone)]
pub struct TtyInput(Arc<Mutex<Box<dyn Write + Send>>>);

impl TtyInput {
    /// Types `bytes` into the terminal.
    pub async fn write(&self, bytes: Vec<u8>) -> std::io::Result<()> {
        let writer = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = writer
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            w.write_all(&bytes)?;
            w.flush()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// The size of a PTY in cells.
pub fn pty_size(size: TermSize) -> PtySize {
    PtySize {
        rows: size.rows,
        cols: size.cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// The signal number of a name `strsignal` gives (what portable-pty reports).
fn signal_number(name: &str) -> i32 {
    match name {
        "Hangup" => 1,
        "Interrupt" => 2,
        "Quit" => 3,
        "Aborted" => 6,
        "Killed" => 9,
        "Segmentation fault" => 11,
        "Broken pipe" => 13,
        "Terminated" => 15,
        _ => name
            .strip_prefix("Signal ")
            .and_then(|n| n.parse().ok())
            .unwrap_or(15),
    }
}

/// Starts `argv` in `cwd` on a new terminal of `size`, with `env` on top of the relay's
/// environment minus `removed`.
pub fn spawn(
    argv: &[String],
    cwd: &Path,
    env: &std::collections::BTreeMap<String, String>,
    removed: &[&str],
    size: TermSize,
) -> std::io::Result<TtyChild> {
    let pty = portable_pty::native_pty_system()
        .openpty(pty_size(size))
        .map_err(std::io::Error::other)?;
    let mut command = CommandBuilder::new(&argv[0]);
    command.args(&argv[1..]);
    command.cwd(cwd);
    for var in removed {
        command.env_remove(var);
    }
    if !env.contains_key("TERM") {
        command.env("TERM", "xterm-256color");
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = pty
        .slave
        .spawn_command(command)
        .map_err(std::io::Error::other)?;
    drop(pty.slave);
    let pid = child
        .process_id()
        .ok_or_else(|| std::io::Error::other("the command ended before it could be followed"))?;
    let mut reader = pty
        .master
        .try_clone_reader()
        .map_err(std::io::Error::other)?;
    let writer = pty.master.take_writer().map_err(std::io::Error::other)?;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
    std::thread::Builder::new()
        .name("exec-tty-out".into())
        .spawn(move || {
            let mut buf = vec![0u8; agentbox_protocol::exec::MAX_CHUNK];
            loop {
                match std::io::Read::read(&mut reader, &mut buf) {
                    // EIO once the command and all it started closed the terminal.
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx
                            .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        })?;
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let wait = tokio::task::spawn_blocking(move || {
        let status = child.wait()?;
        Ok(match status.signal() {
            Some(name) => (None, Some(signal_number(name))),
            None => (Some(i32::try_from(status.exit_code()).unwrap_or(255)), None),
        })
    });
    Ok(TtyChild {
        pid,
        output: tokio_util::io::StreamReader::new(futures_util::StreamExt::boxed(stream)),
        input: TtyInput(Arc::new(Mutex::new(writer))),
        master: Arc::new(Mutex::new(pty.master)),
        wait,
    })
}
