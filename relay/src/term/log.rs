//! The output of one term, numbered by byte offset: what a viewer reads from, and what
//! lets a reconnect resume at the byte it had.
//!
//! The PTY reader appends; viewers read from any offset still held. Memory is bounded
//! two ways: the reader waits while more than [`AHEAD`] bytes are unread (tmux then
//! throttles its output to this slow client, as it would on a slow tty), and bytes more
//! than [`RETAIN`] behind the viewer's position are dropped — a reconnect from further
//! back is told the offset is gone and re-attaches (tmux redraws the screen).

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use agentbox_protocol::term::TermEnd;
use tokio::sync::watch;

/// Unread bytes the PTY reader may run ahead of the viewer.
pub const AHEAD: u64 = 1 << 20;
/// Bytes kept behind the viewer's position for a reconnect after a cut.
pub const RETAIN: u64 = 4 << 20;

/// What a read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Bytes from the offset asked for.
    Bytes(Vec<u8>),
    /// Nothing yet: wait for [`OutputLog::subscribe`] to change.
    Pending,
    /// The term ended and every byte has been read.
    Ended(TermEnd),
    /// The offset is no longer held; the oldest held is this.
    Gone(u64),
    /// The offset is past the end of the output.
    Ahead(u64),
}

#[derive(Debug)]
struct Inner {
    buf: VecDeque<u8>,
    /// Offset of `buf[0]`.
    start: u64,
    /// Where the current viewer has read to.
    read_to: u64,
    hasher: blake3::Hasher,
    ended: Option<TermEnd>,
    /// Set when the term is being torn down: the reader stops waiting for room.
    closing: bool,
}

impl Inner {
    fn produced(&self) -> u64 {
        self.start + self.buf.len() as u64
    }
}

/// One term's numbered output.
#[derive(Debug)]
pub struct OutputLog {
    inner: Mutex<Inner>,
    room: Condvar,
    produced: watch::Sender<u64>,
}

impl Default for OutputLog {
    fn default() -> Self {
        Self::new()
    }
}

impl OutputLog {
    /// An empty log.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                buf: VecDeque::new(),
                start: 0,
                read_to: 0,
                hasher: blake3::Hasher::new(),
                ended: None,
                closing: false,
            }),
            room: Condvar::new(),
            produced: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every update is one
        // step), so a poisoned lock is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A receiver that changes whenever output is added or the term ends.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.produced.subscribe()
    }

    /// Appends PTY output; blocks (the PTY reader thread) while the viewer is more than
    /// [`AHEAD`] behind. Returns false once the log is closing.
    pub fn push(&self, bytes: &[u8]) -> bool {
        let mut inner = self.lock();
        while !inner.closing && inner.produced() - inner.read_to > AHEAD {
            inner = self
                .room
                .wait_timeout(inner, Duration::from_millis(200))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        if inner.closing {
            return false;
        }
        inner.buf.extend(bytes);
        inner.hasher.update(bytes);
        let produced = inner.produced();
        drop(inner);
        self.produced.send_replace(produced);
        true
    }

    /// Reads up to `max` bytes from `offset`, which becomes the viewer's position.
    pub fn read(&self, offset: u64, max: usize) -> Read {
        let mut inner = self.lock();
        if offset < inner.start {
            return Read::Gone(inner.start);
        }
        let produced = inner.produced();
        if offset > produced {
            return Read::Ahead(produced);
        }
        if offset == produced {
            inner.read_to = offset;
            self.room.notify_all();
            return match inner.ended {
                Some(reason) => Read::Ended(reason),
                None => Read::Pending,
            };
        }
        let from = (offset - inner.start) as usize;
        let n = ((produced - offset) as usize).min(max);
        let bytes: Vec<u8> = inner.buf.range(from..from + n).copied().collect();
        inner.read_to = offset + n as u64;
        let keep_from = inner.read_to.saturating_sub(RETAIN);
        if keep_from > inner.start {
            let drop = (keep_from - inner.start) as usize;
            inner.buf.drain(..drop);
            inner.start = keep_from;
        }
        drop(inner);
        self.room.notify_all();
        Read::Bytes(bytes)
    }

    /// Checks where `offset` stands without reading: `Ok` when it can be read from.
    pub fn check(&self, offset: u64) -> Result<(), Read> {
        let inner = self.lock();
        if offset < inner.start {
            Err(Read::Gone(inner.start))
        } else if offset > inner.produced() {
            Err(Read::Ahead(inner.produced()))
        } else {
            Ok(())
        }
    }

    /// Records why the term ended (the first reason wins) and wakes every reader.
    pub fn end(&self, reason: TermEnd) {
        let mut inner = self.lock();
        inner.ended.get_or_insert(reason);
        inner.closing = true;
        let produced = inner.produced();
        drop(inner);
        self.room.notify_all();
        self.produced.send_replace(produced);
    }

    /// Stops the reader from waiting for room (the term is being torn down).
    pub fn close(&self) {
        self.lock().closing = true;
        self.room.notify_all();
    }

    /// `(produced, blake3 hex of all output, oldest held offset, ended)`.
    pub fn summary(&self) -> (u64, String, u64, Option<TermEnd>) {
        let inner = self.lock();
        (
            inner.produced(),
            inner.hasher.finalize().to_hex().to_string(),
            inner.start,
            inner.ended,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn reads_resume_from_any_held_offset_and_end_after_the_last_byte() {
        let log = OutputLog::new();
        assert!(log.push(b"hello "));
        assert!(log.push(b"world"));
        assert_eq!(log.read(0, 3), Read::Bytes(b"hel".to_vec()));
        assert_eq!(log.read(3, 100), Read::Bytes(b"lo world".to_vec()));
        // A reconnect from an earlier offset gets the same bytes again.
        assert_eq!(log.read(6, 100), Read::Bytes(b"world".to_vec()));
        assert_eq!(log.read(11, 100), Read::Pending);
        assert_eq!(log.read(12, 100), Read::Ahead(11));
        log.end(TermEnd::Detached);
        assert_eq!(log.read(11, 100), Read::Ended(TermEnd::Detached));
        let (produced, digest, _, ended) = log.summary();
        assert_eq!(produced, 11);
        assert_eq!(digest, blake3::hash(b"hello world").to_hex().to_string());
        assert_eq!(ended, Some(TermEnd::Detached));
        assert!(!log.push(b"late"), "an ended log takes nothing more");
    }

    #[test]
    fn old_bytes_are_dropped_only_once_the_viewer_is_far_past_them() {
        let log = OutputLog::new();
        let chunk = vec![b'x'; 1 << 20];
        let mut offset = 0;
        for _ in 0..6 {
            assert!(log.push(&chunk));
            while let Read::Bytes(b) = log.read(offset, 1 << 20) {
                offset += b.len() as u64;
            }
        }
        assert_eq!(offset, 6 << 20);
        assert_eq!(log.read(0, 1), Read::Gone(2 << 20));
        assert!(log.check(2 << 20).is_ok());
        assert_eq!(log.read(2 << 20, 1), Read::Bytes(b"x".to_vec()));
    }

    #[test]
    fn the_writer_waits_for_a_slow_viewer_and_a_close_frees_it() {
        let log = Arc::new(OutputLog::new());
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                let chunk = vec![b'y'; 256 << 10];
                let mut pushed = 0u64;
                while log.push(&chunk) {
                    pushed += chunk.len() as u64;
                }
                pushed
            })
        };
        std::thread::sleep(Duration::from_millis(300));
        let (produced, ..) = log.summary();
        assert!(produced <= AHEAD + (256 << 10), "ran ahead to {produced}");
        // Reading makes room.
        let Read::Bytes(b) = log.read(0, 1 << 20) else {
            panic!("no bytes")
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(log.summary().0 > produced, "reading did not make room");
        assert_eq!(b.len(), 1 << 20);
        log.close();
        let pushed = writer.join().expect("writer");
        assert!(pushed >= produced);
    }
}
