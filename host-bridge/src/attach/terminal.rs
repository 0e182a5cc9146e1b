//! The local terminal: raw mode (restored on every exit path, panics included), its size,
//! keystrokes from a reader thread, and window-size changes.

use std::io::Write;
use std::os::fd::AsFd;

use agentbox_protocol::term::TermSize;
use rustix::termios::{self, OptionalActions, Termios};
use tokio::sync::mpsc;

/// Raw mode on stdin until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin in raw mode; `None` when stdin is not a terminal.
    pub fn enable() -> std::io::Result<Option<Self>> {
        let stdin = std::io::stdin();
        if !termios::isatty(stdin.as_fd()) {
            return Ok(None);
        }
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)?;
        let guard = Self { saved };
        // A panic unwinds through the guard's drop; this also covers a panic on another
        // thread, which would otherwise leave the terminal raw when the process exits.
        let restore = guard.saved.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &restore);
            previous(info);
        }));
        Ok(Some(guard))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}

/// The size of the terminal on stdout (or stdin), 80x24 when neither is one.
pub fn size() -> TermSize {
    let from = |fd: std::os::fd::BorrowedFd<'_>| {
        termios::tcgetwinsize(fd)
            .ok()
            .filter(|w| w.ws_col > 0 && w.ws_row > 0)
            .map(|w| TermSize {
                cols: w.ws_col.min(1000),
                rows: w.ws_row.min(1000),
            })
    };
    from(std::io::stdout().as_fd())
        .or_else(|| from(std::io::stdin().as_fd()))
        .unwrap_or(TermSize { cols: 80, rows: 24 })
}

/// Keystrokes from stdin, read on a thread of their own (the read blocks).
pub fn keystrokes() -> mpsc::UnboundedReceiver<Vec<u8>> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            match std::io::Read::read(&mut stdin, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}

/// Writes session output to stdout at once.
pub fn show(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}
