//! Unit logs: one file per unit, one record per line, size-capped with rotation.
//!
//! A record is `TS_MS \t TAG \t TEXT \n` (TAG is `O` stdout, `E` stderr, `C` supervisor) and
//! is written with a single `write` so that a reader never sees half of it. Output is split
//! into lines by [`LineSplitter`], which carries partial lines across reads (so a line is
//! never split in two) and treats a lone `\r` as a line end (progress bars).
//!
//! When a file passes its cap it is renamed to `NAME.log.1` and a new one is started;
//! [`Follower`] notices the rename and carries on in the new file, so `logs -f` never
//! misses or repeats a line across rotation.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agentbox_protocol::ctl::{LogLine, LogStream};
use agentbox_protocol::now_millis;
use tokio::sync::broadcast;

/// Longest line kept whole; longer output is cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

/// Default cap of one log file before rotation.
pub const DEFAULT_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// Splits a byte stream into lines, carrying partial lines over between chunks.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` right after it belongs to the same break.
    after_cr: bool,
}

impl LineSplitter {
    /// Feeds a chunk; returns the lines it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &b in chunk {
            let after_cr = std::mem::take(&mut self.after_cr);
            match b {
                b'\n' if after_cr => {}
                b'\n' => lines.push(self.take()),
                b'\r' => {
                    lines.push(self.take());
                    self.after_cr = true;
                }
                _ => {
                    self.partial.push(b);
                    if self.partial.len() >= MAX_LINE {
                        lines.push(self.take());
                    }
                }
            }
        }
        lines
    }

    /// The unterminated rest, at end of stream.
    pub fn finish(&mut self) -> Option<String> {
        (!self.partial.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let bytes = std::mem::take(&mut self.partial);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn format_record(ts_ms: u64, stream: LogStream, text: &str) -> String {
    format!("{ts_ms}\t{}\t{text}\n", stream.tag())
}

/// Parses one record (without its newline).
pub fn parse_record(unit: &str, record: &str) -> Option<LogLine> {
    let mut parts = record.splitn(3, '\t');
    let ts_ms = parts.next()?.parse().ok()?;
    let mut tag = parts.next()?.chars();
    let stream = LogStream::from_tag(tag.next()?)?;
    let line = parts.next().unwrap_or("").to_string();
    Some(LogLine {
        unit: unit.to_string(),
        ts_ms,
        stream,
        line,
    })
}

struct Writer {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max_bytes: u64,
}

impl Writer {
    fn open(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = file.metadata()?.len();
            self.file = Some(file);
        }
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("log file not open"))
    }

    fn write(&mut self, record: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + record.len() as u64 > self.max_bytes {
            self.file = None;
            std::fs::rename(&self.path, rotated(&self.path))?;
        }
        self.open()?.write_all(record)?;
        self.size += record.len() as u64;
        Ok(())
    }
}

/// The path a rotated log moves to.
pub fn rotated(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

/// The log of one unit: appends records, publishes them to live subscribers
/// (`log_match` probes). Followers read the file (`Follower`).
#[derive(Clone)]
pub struct UnitLog {
    unit: Arc<str>,
    writer: Arc<Mutex<Writer>>,
    live: broadcast::Sender<Arc<LogLine>>,
}

impl UnitLog {
    /// A log for `unit` at `path`, rotated past `max_bytes`.
    pub fn new(unit: &str, path: PathBuf, max_bytes: u64) -> Self {
        Self {
            unit: unit.into(),
            writer: Arc::new(Mutex::new(Writer {
                path,
                file: None,
                size: 0,
                max_bytes,
            })),
            live: broadcast::channel(256).0,
        }
    }

    /// Appends one line. A write error is reported to the caller but never loses the
    /// live copy.
    pub fn append(&self, stream: LogStream, text: &str) -> io::Result<()> {
        let line = LogLine {
            unit: self.unit.to_string(),
            ts_ms: now_millis(),
            stream,
            line: text.to_string(),
        };
        let record = format_record(line.ts_ms, stream, text);
        let result = match self.writer.lock() {
            Ok(mut w) => w.write(record.as_bytes()),
            Err(_) => Err(io::Error::other("log writer poisoned")),
        };
        let _no_subscribers = self.live.send(Arc::new(line));
        result
    }

    /// Subscribes to lines as they are appended.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.live.subscribe()
    }
}

/// The last `n` records of a unit's log, reading the rotated file too when needed.
pub fn read_tail(unit: &str, path: &Path, n: usize) -> io::Result<Vec<LogLine>> {
    read_tail_until(unit, path, n, u64::MAX)
}

/// Like [`read_tail`], looking only at the first `end` bytes of the current file.
pub fn read_tail_until(unit: &str, path: &Path, n: usize, end: u64) -> io::Result<Vec<LogLine>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut lines = tail_records(path, n, end)?;
    if lines.len() < n {
        let mut older = tail_records(&rotated(path), n - lines.len(), u64::MAX)?;
        older.append(&mut lines);
        lines = older;
    }
    Ok(lines.iter().filter_map(|r| parse_record(unit, r)).collect())
}

/// The last `n` complete records of one file, reading backwards in chunks.
fn tail_records(path: &Path, n: usize, end: u64) -> io::Result<Vec<String>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut end = file.metadata()?.len().min(end);
    let mut buf: Vec<u8> = Vec::new();
    const CHUNK: u64 = 64 * 1024;
    loop {
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        if newlines > n || end == 0 {
            break;
        }
        let start = end.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        end = start;
    }
    // Only complete records: drop an unterminated tail (a write in progress), and a
    // leading fragment when we did not read from the start of the file.
    if let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') {
        buf.truncate(last_nl);
    } else {
        return Ok(Vec::new());
    }
    let text = String::from_utf8_lossy(&buf);
    let mut records: Vec<&str> = text.split('\n').collect();
    if end > 0 && !records.is_empty() {
        records.remove(0);
    }
    let skip = records.len().saturating_sub(n);
    Ok(records[skip..].iter().map(|s| (*s).to_string()).collect())
}

/// Reads new records of a log file as they are appended, across rotation.
pub struct Follower {
    unit: String,
    path: PathBuf,
    file: Option<(File, u64)>,
    pos: u64,
    partial: Vec<u8>,
}

impl Follower {
    /// Starts at the current end of the file (or at its start once it appears).
    pub fn from_end(unit: &str, path: &Path) -> Self {
        let mut f = Self {
            unit: unit.into(),
            path: path.into(),
            file: None,
            pos: 0,
            partial: Vec::new(),
        };
        if let Ok(file) = File::open(path) {
            if let Ok(meta) = file.metadata() {
                f.pos = meta.len();
                f.file = Some((file, meta.ino()));
            }
        }
        f
    }

    /// The offset in the current file where following starts or continues.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Every complete record appended since the last call.
    pub fn read_new(&mut self) -> io::Result<Vec<LogLine>> {
        let mut out = Vec::new();
        loop {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(file) => {
                        let ino = file.metadata()?.ino();
                        self.file = Some((file, ino));
                        self.pos = 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(e),
                }
            }
            let Some((file, ino)) = self.file.as_mut() else {
                return Ok(out);
            };
            file.seek(SeekFrom::Start(self.pos))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            self.pos += bytes.len() as u64;
            self.partial.extend_from_slice(&bytes);
            if let Some(last_nl) = self.partial.iter().rposition(|&b| b == b'\n') {
                let rest = self.partial.split_off(last_nl + 1);
                let complete = std::mem::replace(&mut self.partial, rest);
                for record in String::from_utf8_lossy(&complete).lines() {
                    out.extend(parse_record(&self.unit, record));
                }
            }
            // Rotated away? Everything up to the rename has been read above; continue in
            // the new file from its start.
            let current = std::fs::metadata(&self.path).map(|m| m.ino()).ok();
            if current == Some(*ino) {
                return Ok(out);
            }
            self.file = None;
            self.partial.clear();
            if current.is_none() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_carries_partial_lines_and_handles_cr() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"hel"), Vec::<String>::new());
        assert_eq!(s.push(b"lo\nwor"), vec!["hello"]);
        assert_eq!(s.push(b"ld\r"), vec!["world"]);
        assert_eq!(s.push(b"\nnext\r50%\r100%\n"), vec!["next", "50%", "100%"]);
        assert_eq!(s.push(b"tail"), Vec::<String>::new());
        assert_eq!(s.finish().as_deref(), Some("tail"));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn splitter_caps_line_length() {
        let mut s = LineSplitter::default();
        let lines = s.push(&vec![b'x'; MAX_LINE * 2 + 5]);
        assert_eq!(lines.len(), 2);
        assert_eq!(s.finish().map(|l| l.len()), Some(5));
    }

    #[test]
    fn tail_reads_across_rotation_and_follower_survives_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("u.log");
        let log = UnitLog::new("u", path.clone(), 200);
        let mut follower = Follower::from_end("u", &path);
        let mut seen = Vec::new();
        for i in 0..40 {
            log.append(LogStream::Stdout, &format!("line {i}"))
                .expect("append");
            if i % 7 == 0 {
                seen.extend(
                    follower
                        .read_new()
                        .expect("follow")
                        .into_iter()
                        .map(|l| l.line),
                );
            }
        }
        seen.extend(
            follower
                .read_new()
                .expect("follow")
                .into_iter()
                .map(|l| l.line),
        );
        let expected: Vec<String> = (0..40).map(|i| format!("line {i}")).collect();
        assert_eq!(
            seen, expected,
            "follower lost or repeated lines across rotation"
        );
        assert!(
            rotated(&path).exists(),
            "the cap must have rotated the file"
        );

        let tail = read_tail("u", &path, 5).expect("tail");
        let tail: Vec<&str> = tail.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(
            tail,
            ["line 35", "line 36", "line 37", "line 38", "line 39"]
        );
        let size = std::fs::metadata(&path).expect("meta").len();
        assert!(size <= 200, "file exceeds its cap: {size}");
    }

    #[test]
    fn tail_ignores_unterminated_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("u.log");
        std::fs::write(&path, "1\tO\ta\n2\tE\tb\n3\tO\tpart").expect("write");
        let tail = read_tail("u", &path, 10).expect("tail");
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[1].stream, LogStream::Stderr);
    }
}
