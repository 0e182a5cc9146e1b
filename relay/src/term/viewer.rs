//! One term: `tmux attach-session -t =SESSION` running in a PTY for one viewer, its
//! numbered output and its numbered input.
//!
//! Two threads per term: the reader copies PTY output into the [`OutputLog`] (and, at
//! EOF, works out why the term ended), the writer types queued input into the PTY, so
//! that no async task ever blocks on the PTY.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agentbox_protocol::term::{TermEnd, TermInfo, TermSize};
use portable_pty::{ChildKiller, CommandBuilder, MasterPty, PtySize};

use super::log::OutputLog;

/// What a term is started with.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The term id.
    pub id: agentbox_protocol::term::TermId,
    /// The session (already checked to exist).
    pub session: agentbox_protocol::term::SessionName,
    /// The viewer's size.
    pub size: TermSize,
    /// The viewer's `TERM`.
    pub term: String,
    /// tmux `attach -r`: keys other than detach do nothing.
    pub read_only: bool,
    /// How long the term waits for a reconnect.
    pub keep: Duration,
    /// The share that opened it (`None`: the owner's host); only that share reaches it.
    pub opener: Option<agentbox_protocol::share::ShareId>,
}

/// Why input was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum InputError {
    /// Input from a later offset than the next expected one (some was lost).
    Gap {
        /// The next offset the term expects.
        expected: u64,
    },
    /// The term has ended.
    Ended,
}

/// A running viewer of a session.
pub struct Term {
    /// What it was started with.
    pub spec: Spec,
    /// Its output.
    pub log: Arc<OutputLog>,
    input_taken: Mutex<u64>,
    keys: Mutex<Option<mpsc::Sender<Vec<u8>>>>,
    master: Mutex<Box<dyn MasterPty + Send>>,
    killer: Mutex<Box<dyn ChildKiller + Send + Sync>>,
    /// Why the relay is ending it (expired, closed), set before it kills the tmux client.
    ending: Mutex<Option<TermEnd>>,
    generation: AtomicU64,
    viewers: AtomicUsize,
    last_seen: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Term {
    /// Starts `tmux -S socket attach-session -t =SESSION` in a new PTY.
    pub fn start(spec: Spec, tmux_socket: &Path, cwd: &Path) -> std::io::Result<Arc<Self>> {
        let pty = portable_pty::native_pty_system()
            .openpty(pty_size(spec.size))
            .map_err(std::io::Error::other)?;
        let mut command = CommandBuilder::new("tmux");
        command.arg("-S");
        command.arg(tmux_socket);
        command.args(["attach-session", "-t", &format!("={}", spec.session)]);
        if spec.read_only {
            command.arg("-r");
        }
        command.env("TERM", &spec.term);
        command.cwd(cwd);
        let mut child = pty
            .slave
            .spawn_command(command)
            .map_err(std::io::Error::other)?;
        drop(pty.slave);
        let mut reader = pty
            .master
            .try_clone_reader()
            .map_err(std::io::Error::other)?;
        let mut writer = pty.master.take_writer().map_err(std::io::Error::other)?;
        let (keys_tx, keys_rx) = mpsc::channel::<Vec<u8>>();
        let term = Arc::new(Self {
            log: Arc::new(OutputLog::new()),
            input_taken: Mutex::new(0),
            keys: Mutex::new(Some(keys_tx)),
            master: Mutex::new(pty.master),
            killer: Mutex::new(child.clone_killer()),
            ending: Mutex::new(None),
            generation: AtomicU64::new(0),
            viewers: AtomicUsize::new(0),
            last_seen: Mutex::new(Instant::now()),
            spec,
        });
        std::thread::Builder::new()
            .name(format!("term-keys-{}", &term.spec.id[..9]))
            .spawn(move || {
                for bytes in keys_rx {
                    if writer
                        .write_all(&bytes)
                        .and_then(|()| writer.flush())
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        let reading = term.clone();
        let socket = tmux_socket.to_path_buf();
        std::thread::Builder::new()
            .name(format!("term-out-{}", &term.spec.id[..9]))
            .spawn(move || {
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if !reading.log.push(&buf[..n]) {
                                break;
                            }
                        }
                    }
                }
                let _ = child.wait();
                let reason = reading.end_reason(&socket);
                reading.log.end(reason);
                lock(&reading.keys).take();
            })?;
        Ok(term)
    }

    /// Why the tmux client exited: the relay's own reason, or whether the session is
    /// still there (a detach) or gone.
    fn end_reason(&self, socket: &PathBuf) -> TermEnd {
        if let Some(reason) = *lock(&self.ending) {
            return reason;
        }
        let alive = std::process::Command::new("tmux")
            .arg("-S")
            .arg(socket)
            .args(["has-session", "-t", &format!("={}", self.spec.session)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if alive {
            TermEnd::Detached
        } else {
            TermEnd::SessionEnded
        }
    }

    /// Types `bytes`, which start at input `offset`; bytes already taken are skipped, so a
    /// retried send types nothing twice. Returns the next expected input offset.
    pub fn input(&self, offset: u64, bytes: &[u8]) -> Result<u64, InputError> {
        let mut taken = lock(&self.input_taken);
        if offset > *taken {
            return Err(InputError::Gap { expected: *taken });
        }
        let skip = (*taken - offset) as usize;
        if skip >= bytes.len() {
            return Ok(*taken);
        }
        let fresh = bytes[skip..].to_vec();
        let n = fresh.len() as u64;
        match lock(&self.keys).as_ref() {
            Some(keys) if keys.send(fresh).is_ok() => {
                *taken += n;
                Ok(*taken)
            }
            _ => Err(InputError::Ended),
        }
    }

    /// The next input offset expected.
    pub fn input_taken(&self) -> u64 {
        *lock(&self.input_taken)
    }

    /// Follows the viewer's window size.
    pub fn resize(&self, size: TermSize) -> std::io::Result<()> {
        lock(&self.master)
            .resize(pty_size(size))
            .map_err(std::io::Error::other)
    }

    /// Ends the term for `reason` (the session itself goes on).
    pub fn stop(&self, reason: TermEnd) {
        lock(&self.ending).get_or_insert(reason);
        self.log.close();
        let _ = lock(&self.killer).kill();
    }

    /// A new connection takes the term over; an older one sees the generation change.
    pub fn connect(self: &Arc<Self>) -> ViewerGuard {
        self.viewers.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ViewerGuard {
            generation: self.generation.fetch_add(1, Ordering::SeqCst) + 1,
            term: self.clone(),
        }
    }

    /// Whether a connection is attached.
    pub fn has_viewer(&self) -> bool {
        self.viewers.load(Ordering::SeqCst) > 0
    }

    /// How long since the last connection or request.
    pub fn idle_for(&self) -> Duration {
        lock(&self.last_seen).elapsed()
    }

    /// Notes a request.
    pub fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    /// The API's view.
    pub fn info(&self) -> TermInfo {
        let (produced, digest, held_from, ended) = self.log.summary();
        TermInfo {
            id: self.spec.id.clone(),
            session: self.spec.session.clone(),
            produced,
            digest,
            input: self.input_taken(),
            held_from,
            read_only: self.spec.read_only,
            ended,
        }
    }
}

/// A connection's hold on its term; dropping it notes the time, so the keep window counts
/// from the disconnect.
pub struct ViewerGuard {
    term: Arc<Term>,
    generation: u64,
}

impl ViewerGuard {
    /// The term.
    pub fn term(&self) -> &Arc<Term> {
        &self.term
    }

    /// Whether a newer connection has taken the term over.
    pub fn superseded(&self) -> bool {
        self.term.generation.load(Ordering::SeqCst) != self.generation
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        self.term.viewers.fetch_sub(1, Ordering::SeqCst);
        self.term.touch();
    }
}

fn pty_size(size: TermSize) -> PtySize {
    PtySize {
        rows: size.rows,
        cols: size.cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}
