//! Running a short-lived program with a time limit.
//!
//! The host talks to a local box through `agentbox-ctl`, a client that waits for its
//! daemon's answer with no limit of its own (`wait-ready` and `logs -f` wait on purpose).
//! The daemon's socket is the box's to replace: a listener there that never answers would
//! hold `agentbox stop` for ever. [`output_within`] bounds such a call.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Runs `cmd` (stdin from /dev/null, stdout and stderr captured) and waits at most
/// `limit` for it to end.
///
/// # Errors
/// The spawn's error; or, past `limit`, an error of kind `TimedOut` after the program was
/// killed.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    let deadline = Instant::now() + limit;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (tx, rx) = mpsc::channel();
    read_all(child.stdout.take(), true, tx.clone());
    read_all(child.stderr.take(), false, tx);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            return Err(killed(&mut child, limit));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, bytes)) => stdout = Some(bytes),
            Ok((false, bytes)) => stderr = Some(bytes),
            // Something it started holds its output open: what it printed so far will do.
            Err(_) => break,
        }
    }
    Ok(Output {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    })
}

fn read_all<R: Read + Send + 'static>(
    stream: Option<R>,
    is_stdout: bool,
    tx: mpsc::Sender<(bool, Vec<u8>)>,
) {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut stream) = stream {
            let _ = stream.read_to_end(&mut bytes);
        }
        let _ = tx.send((is_stdout, bytes));
    });
}

fn killed(child: &mut Child, limit: Duration) -> std::io::Error {
    let _ = child.kill();
    let _ = child.wait();
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer within {} s", limit.as_secs()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_ends_gives_its_output_and_one_that_hangs_is_killed() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .expect("ran");
        assert_eq!(
            (out.stdout.as_slice(), out.stderr.as_slice()),
            (&b"out\n"[..], &b"err\n"[..])
        );
        assert_eq!(out.status.code(), Some(3));
        let started = Instant::now();
        let err = output_within(
            Command::new("sh").args(["-c", "exec sleep 30"]),
            Duration::from_millis(300),
        )
        .expect_err("timed out");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
