//! Spawning a unit in its own process group, and ending the whole group.
//!
//! Every unit is the leader of a fresh process group, so a `bash -c 'server & worker'`
//! is stopped as a whole: SIGTERM to the group, SIGKILL to the group after the grace
//! period. When the leader exits by itself, the rest of its group is ended the same way
//! before the exit is reported, so a restarted service never finds its port still held
//! by an orphaned grandchild.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use agentbox_protocol::ctl::LogStream;
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::logs::{LineSplitter, UnitLog};
use crate::paths::SECRET_VARS;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, when the process exited normally.
    pub code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
}

impl Exit {
    fn from_status(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self {
            code: status.code(),
            signal: status.signal(),
        }
    }

    /// Exit code 0.
    pub fn success(self) -> bool {
        self.code == Some(0)
    }

    /// "exited with code 1" / "killed by SIGKILL".
    pub fn describe(self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(s)) => format!("killed by {}", signal_name(s)),
            (None, None) => "exited".into(),
        }
    }
}

/// `SIGTERM` for 15, …
pub fn signal_name(sig: i32) -> String {
    Signal::try_from(sig).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

/// The environment a unit starts with: the daemon's, minus secrets, plus its own.
pub fn unit_env(own: &BTreeMap<String, String>, unit: &str) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| !SECRET_VARS.contains(&k.as_str()))
        .collect();
    env.insert("AGENTBOX_UNIT".into(), unit.into());
    env.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.into_iter().collect()
}

/// Builds a command that runs in its own process group with a clean environment.
pub fn command(argv: &[String], cwd: &Path, env: &[(String, String)]) -> Option<Command> {
    let (program, args) = argv.split_first()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(false);
    Some(cmd)
}

/// Spawns `cmd` with stdout and stderr piped into `log`. Returns the child (its pid is the
/// process group id, recorded in the daemon's group ledger) and a task that copies the
/// output until both pipes close.
pub fn spawn_logged(
    mut cmd: Command,
    log: &UnitLog,
) -> std::io::Result<(Child, tokio::task::JoinHandle<()>)> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    if let Some(pgid) = child.id() {
        super::groups::record(pgid);
    }
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (l1, l2) = (log.clone(), log.clone());
    let copier = tokio::spawn(async move {
        let out = async move {
            if let Some(s) = stdout {
                pump(s, &l1, LogStream::Stdout).await;
            }
        };
        let err = async move {
            if let Some(s) = stderr {
                pump(s, &l2, LogStream::Stderr).await;
            }
        };
        tokio::join!(out, err);
    });
    Ok((child, copier))
}

async fn pump(mut reader: impl AsyncReadExt + Unpin, log: &UnitLog, stream: LogStream) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                for line in splitter.push(&buf[..n]) {
                    write_line(log, stream, &line);
                }
            }
        }
    }
    if let Some(line) = splitter.finish() {
        write_line(log, stream, &line);
    }
}

fn write_line(log: &UnitLog, stream: LogStream, line: &str) {
    if let Err(e) = log.append(stream, line) {
        tracing::warn!(error = %e, "cannot write unit log");
    }
}

/// Sends `signal` to process group `pgid`. `false` when the group no longer exists.
pub fn signal_group(pgid: u32, signal: Signal) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    if raw <= 1 {
        return false; // never signal "every process" or init's group
    }
    !matches!(killpg(Pid::from_raw(raw), signal), Err(Errno::ESRCH))
}

/// Whether process group `pgid` still has members.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    raw > 1 && !matches!(killpg(Pid::from_raw(raw), None), Err(Errno::ESRCH))
}

/// Ends what is left of group `pgid`: SIGTERM, then SIGKILL once `grace` has passed.
/// Returns when the group is empty (or after the SIGKILL, which cannot be resisted).
pub async fn end_group(pgid: u32, grace: Duration) {
    if !signal_group(pgid, Signal::SIGTERM) {
        return;
    }
    let _ = signal_group(pgid, Signal::SIGCONT);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline {
        if !group_alive(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = signal_group(pgid, Signal::SIGKILL);
}

/// Waits for the leader, then ends the rest of its group, then the output copier.
pub async fn wait_run(
    mut child: Child,
    copier: tokio::task::JoinHandle<()>,
    grace: Duration,
) -> Exit {
    let pgid = child.id();
    let exit = match child.wait().await {
        Ok(status) => Exit::from_status(status),
        Err(_) => Exit {
            code: None,
            signal: None,
        },
    };
    if let Some(pgid) = pgid {
        end_group(pgid, grace).await;
    }
    // Pipes held by killed grandchildren are closed now; do not wait forever regardless.
    let _ = tokio::time::timeout(Duration::from_secs(2), copier).await;
    exit
}
