//! A daemon that runs once per `AGENTBOX_HOME`: the host bridge and the HTTPS proxy.
//!
//! One way to hold, find, start and stop one. Its lock file in the home is `flock`ed
//! exclusively for the daemon's whole life and carries its pid: a held lock is what says
//! it runs. It is started in the background as `setsid agentbox <command> run` with its
//! output appended to its log in the home; the starter waits until the daemon says it is
//! ready, its process failed, or 10 s passed. It is stopped by SIGTERM, and
//! [`HomeDaemon::home_gone`] lets it end when its home is deleted.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};

use crate::home::Home;

/// How long a start or a stop waits for the daemon.
const WAIT: Duration = Duration::from_secs(10);

/// How often a start or a stop looks again.
const POLL: Duration = Duration::from_millis(20);

/// How often [`HomeDaemon::home_gone`] checks that the home still exists.
const HOME_CHECK: Duration = Duration::from_secs(2);

/// One kind of per-home daemon: its name in messages and its files in the home.
#[derive(Debug, Clone, Copy)]
pub struct HomeDaemon {
    /// What messages call it ("the host bridge").
    pub name: &'static str,
    /// The subcommand that runs it in the foreground: `agentbox <command> run`.
    pub command: &'static str,
    /// Its lock file's name in the home (holds its pid).
    pub lock_file: &'static str,
    /// Its log's name in the home.
    pub log_file: &'static str,
}

impl HomeDaemon {
    /// Its lock file in `home`.
    pub fn lock_path(&self, home: &Home) -> PathBuf {
        home.root().join(self.lock_file)
    }

    /// Its log in `home`.
    pub fn log_path(&self, home: &Home) -> PathBuf {
        home.root().join(self.log_file)
    }

    /// The pid of the daemon that holds the lock, if one does.
    pub fn running_pid(&self, home: &Home) -> Option<i32> {
        let file = File::open(self.lock_path(home)).ok()?;
        if Flock::lock(file, FlockArg::LockSharedNonblock).is_ok() {
            return None; // nobody holds it
        }
        std::fs::read_to_string(self.lock_path(home))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Takes the lock for this process and writes its pid into it; the daemon keeps what
    /// this returns for as long as it runs. Fails when another daemon holds it.
    pub fn hold(&self, home: &Home) -> anyhow::Result<Flock<File>> {
        let path = self.lock_path(home);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!("{} is already running", self.name),
            Err((_, e)) => bail!("cannot lock {}: {e}", path.display()),
        };
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;
        Ok(lock)
    }

    /// Starts the daemon in the background unless `ready` already answers, and waits until
    /// it does; returns that answer. A daemon whose process fails while no other holds the
    /// lock fails the start at once with the last line of its log.
    pub fn ensure_started<T>(
        &self,
        home: &Home,
        ready: impl Fn(&Home) -> Option<T>,
    ) -> anyhow::Result<T> {
        if let Some(r) = ready(home) {
            return Ok(r);
        }
        let log_path = self.log_path(home);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let mut child = std::process::Command::new("setsid")
            .arg(std::env::current_exe()?)
            .args([self.command, "run"])
            .env("AGENTBOX_HOME", home.root())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.name))?;
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(r) = ready(home) {
                return Ok(r);
            }
            // setsid execs the daemon: its exit is the daemon's (a port it could not
            // bind). One that lost the lock to another starter waits for the winner.
            let failed = child
                .try_wait()
                .ok()
                .flatten()
                .is_some_and(|s| !s.success());
            let lost = failed && self.running_pid(home).is_some();
            if (failed && !lost) || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let last = log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                bail!(
                    "{} did not start: {} (log: {})",
                    self.name,
                    crate::text::shown(last),
                    log_path.display()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops the daemon if one runs (SIGTERM, then waits up to 10 s for it to let go of
    /// its lock); whether one ran.
    pub fn stop(&self, home: &Home) -> anyhow::Result<bool> {
        let Some(pid) = self.running_pid(home) else {
            return Ok(false);
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + WAIT;
        while self.running_pid(home).is_some() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        Ok(true)
    }

    /// Returns once the daemon's lock file is removed or replaced: a home that was deleted
    /// (a temporary one, or `rm -rf ~/.agentbox`) does not keep its daemon, and what it
    /// holds, for ever.
    pub async fn home_gone(&self, home: &Home) {
        use std::os::unix::fs::MetadataExt;
        let lock = self.lock_path(home);
        let id = |m: std::fs::Metadata| (m.dev(), m.ino());
        let Ok(first) = std::fs::metadata(&lock).map(id) else {
            return;
        };
        loop {
            tokio::time::sleep(HOME_CHECK).await;
            if std::fs::metadata(&lock).map(id).ok() != Some(first) {
                return;
            }
        }
    }
}
