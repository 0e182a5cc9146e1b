//! The relay's command API (`/v1/exec`): a one-off command in the box, run as the box's
//! user, with its stdout and stderr apart, streamed, and its exit status — what `docker
//! exec` gives, for boxes the host reaches only through the relay (Daytona, whose toolbox
//! caps a command's time and merges its output).
//!
//! - `POST /v1/exec` with an [`ExecRequest`] (JSON). A request that fails
//!   [`ExecRequest::validate`] is `400`; a program that cannot be started is `404`
//!   (not found) or `400`, with the error body, before anything runs. Otherwise the answer
//!   is `200` and its body a stream of frames ([`ExecFrame`], read with [`FrameReader`]):
//!   first [`ExecFrame::Started`] with the command's id, then its output as it comes,
//!   [`ExecFrame::Heartbeat`]s every [`HEARTBEAT_MS`] while it is silent (so proxies keep an
//!   idle stream and the relay notices a caller that went away), and last
//!   [`ExecFrame::Exit`]. A stream that ends without `Exit` means the command's fate is
//!   unknown to the caller.
//! - `POST /v1/exec/{id}/stdin` (only when the request asked for `stdin`): the body is the
//!   next bytes of the command's stdin, at [`crate::files::OFFSET_HEADER`] (a byte already
//!   taken is skipped, so a retried send is never typed twice; a gap is `409` with the
//!   relay's offset); header [`EOF_HEADER`]`: 1` closes stdin after them.
//!
//! - `POST /v1/exec/{id}/resize` (only when the request asked for a `tty`): the body is a
//!   [`TermSize`] (JSON), the command's terminal's new size.
//!
//! When the caller's connection goes, the command's process group is ended (SIGTERM, then
//! SIGKILL): nothing runs on behind a host that gave up. A command runs as long as it
//! likes unless the request sets `timeout_ms`. Three request fields give `docker exec`'s
//! options: `tty` runs the command on a terminal of its own (its output then all comes as
//! [`ExecFrame::Stdout`], as a terminal merges it), `user` runs it as another user of the
//! box (through `sudo`), and `detach` leaves it running: the answer is then the
//! [`ExecFrame::Started`] frame alone, and the command is not ended when the stream closes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::term::TermSize;

/// The most arguments a command may have.
pub const MAX_ARGS: usize = 4096;
/// The most bytes of argv, cwd and env together.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// The most environment variables a request may set.
pub const MAX_ENV: usize = 1024;
/// The longest name of an environment variable.
pub const MAX_ENV_NAME: usize = 256;
/// The largest output chunk the relay puts in one frame.
pub const MAX_CHUNK: usize = 64 * 1024;
/// The largest frame payload a reader accepts.
pub const MAX_FRAME_PAYLOAD: usize = 1 << 20;
/// The largest body of one `POST /v1/exec/{id}/stdin`.
pub const MAX_STDIN_POST: usize = 1 << 20;
/// The longest `timeout_ms` (a week).
pub const MAX_TIMEOUT_MS: u64 = 7 * 24 * 3600 * 1000;
/// How often the relay sends a heartbeat frame while the command prints nothing.
pub const HEARTBEAT_MS: u64 = 2_000;
/// The header of `POST /v1/exec/{id}/stdin` that closes the command's stdin.
pub const EOF_HEADER: &str = "x-agentbox-eof";
/// The exit code of a command ended by its `timeout_ms`, as `timeout(1)` has it.
pub const TIMED_OUT_CODE: i32 = 124;

/// `POST /v1/exec`: what to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ExecRequest {
    /// The program and its arguments (no shell: each is one argument).
    pub argv: Vec<String>,
    /// Where it runs: absolute, or relative to the workspace; the workspace if absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Variables set on top of the box's environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Whether stdin comes from `POST /v1/exec/{id}/stdin` (else it is `/dev/null`).
    #[serde(default)]
    pub stdin: bool,
    /// The command's process group is ended after this long (none: no limit).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Run it on a terminal of this size (`docker exec -t`); none: pipes.
    #[serde(default)]
    pub tty: Option<TermSize>,
    /// Run it as this user of the box (a name or a uid, see [`valid_user`]); none: the
    /// box's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Start it and leave it running (`docker exec -d`): no stdin, output or exit.
    #[serde(default)]
    pub detach: bool,
}

/// Why an [`ExecRequest`] or a frame stream is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// `argv` is empty or its program is the empty string.
    #[error("no command given: argv needs a program")]
    NoProgram,
    /// Too many arguments or variables, or too many bytes.
    #[error("the command is too large: {0}")]
    TooLarge(String),
    /// A string holds a NUL byte, which no argument, path or variable can carry.
    #[error("{0} holds a NUL byte")]
    Nul(String),
    /// An environment variable name that is not `[A-Za-z_][A-Za-z0-9_]*`.
    #[error("`{0}` is not a valid environment variable name (letters, digits, `_`; not starting with a digit)")]
    EnvName(String),
    /// `timeout_ms` is zero or past [`MAX_TIMEOUT_MS`].
    #[error("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")]
    Timeout,
    /// A user that is not a name or a uid (see [`valid_user`]).
    #[error(
        "`{0}` is not a user name or uid (letters, digits, `_`, `.`, `-`; not starting with `-`)"
    )]
    User(String),
    /// A terminal size outside 1–1000.
    #[error("a terminal size must be 1–1000 columns and rows")]
    TermSize,
    /// Options that do not go together.
    #[error("{0}")]
    Conflict(&'static str),
    /// A frame longer than [`MAX_FRAME_PAYLOAD`].
    #[error("an exec frame of {0} bytes is past the cap of {MAX_FRAME_PAYLOAD}")]
    FrameTooLarge(usize),
    /// A frame whose payload is not what its kind says.
    #[error("a malformed exec frame: {0}")]
    BadFrame(String),
}

/// Whether `name` can name an environment variable: `[A-Za-z_][A-Za-z0-9_]*`, at most
/// [`MAX_ENV_NAME`] bytes.
pub fn valid_env_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ENV_NAME
        && !b[0].is_ascii_digit()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Whether `user` can name a user of a box: a name (`[A-Za-z0-9_][A-Za-z0-9_.-]*`, at most
/// 32 bytes, as `useradd` takes) or a numeric uid. No group: `-u` means the same on every
/// provider.
pub fn valid_user(user: &str) -> bool {
    let b = user.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl ExecRequest {
    /// A request to run `argv` in the workspace, with no stdin, env or time limit.
    pub fn new(argv: Vec<String>) -> Self {
        Self {
            argv,
            cwd: None,
            env: BTreeMap::new(),
            stdin: false,
            timeout_ms: None,
            tty: None,
            user: None,
            detach: false,
        }
    }

    /// Checks the request: a program, no NUL bytes, valid variable names, sizes within the
    /// caps, a sane timeout.
    pub fn validate(&self) -> Result<(), ExecError> {
        if self.argv.first().is_none_or(String::is_empty) {
            return Err(ExecError::NoProgram);
        }
        if self.argv.len() > MAX_ARGS {
            return Err(ExecError::TooLarge(format!(
                "{} arguments, at most {MAX_ARGS}",
                self.argv.len()
            )));
        }
        if self.env.len() > MAX_ENV {
            return Err(ExecError::TooLarge(format!(
                "{} variables, at most {MAX_ENV}",
                self.env.len()
            )));
        }
        let mut bytes = self.cwd.as_ref().map_or(0, String::len);
        for (i, a) in self.argv.iter().enumerate() {
            if a.contains('\0') {
                return Err(ExecError::Nul(format!("argument {i}")));
            }
            bytes += a.len();
        }
        if self.cwd.as_ref().is_some_and(|c| c.contains('\0')) {
            return Err(ExecError::Nul("cwd".into()));
        }
        for (k, v) in &self.env {
            if !valid_env_name(k) {
                return Err(ExecError::EnvName(k.clone()));
            }
            if v.contains('\0') {
                return Err(ExecError::Nul(format!("variable {k}")));
            }
            bytes += k.len() + v.len();
        }
        if bytes > MAX_REQUEST_BYTES {
            return Err(ExecError::TooLarge(format!(
                "{bytes} bytes of arguments, cwd and variables, at most {MAX_REQUEST_BYTES}"
            )));
        }
        if self
            .timeout_ms
            .is_some_and(|t| t == 0 || t > MAX_TIMEOUT_MS)
        {
            return Err(ExecError::Timeout);
        }
        if let Some(user) = self.user.as_deref().filter(|u| !valid_user(u)) {
            return Err(ExecError::User(user.to_string()));
        }
        if self.tty.is_some_and(|t| !t.is_valid()) {
            return Err(ExecError::TermSize);
        }
        if self.detach && (self.stdin || self.tty.is_some()) {
            return Err(ExecError::Conflict(
                "a detached command takes no stdin and has no terminal",
            ));
        }
        Ok(())
    }
}

/// The first frame: the command runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ExecStarted {
    /// Its id, for `POST /v1/exec/{id}/stdin`.
    pub id: String,
    /// Its process id in the box (also its process group).
    pub pid: u32,
}

/// The last frame: how the command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ExecExit {
    /// Its exit code, if it exited.
    #[serde(default)]
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// Whether its `timeout_ms` ended it.
    #[serde(default)]
    pub timed_out: bool,
}

impl ExecExit {
    /// The exit status as a shell (and `docker exec`) reports it: the code, or 128 plus
    /// the signal; [`TIMED_OUT_CODE`] when the timeout ended it.
    pub fn status_code(&self) -> i32 {
        if self.timed_out {
            return TIMED_OUT_CODE;
        }
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 255,
        }
    }
}

/// One frame of a `POST /v1/exec` answer. On the wire: a kind byte, the payload's length
/// (4 bytes, big-endian), the payload (bytes for output, JSON otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ExecFrame {
    /// Nothing happened; the stream is alive.
    Heartbeat,
    /// The command runs (always first).
    Started(ExecStarted),
    /// Bytes the command wrote to stdout.
    Stdout(Vec<u8>),
    /// Bytes the command wrote to stderr.
    Stderr(Vec<u8>),
    /// The command ended (always last).
    Exit(ExecExit),
}

const KIND_HEARTBEAT: u8 = 0;
const KIND_STARTED: u8 = 1;
const KIND_STDOUT: u8 = 2;
const KIND_STDERR: u8 = 3;
const KIND_EXIT: u8 = 4;
const HEADER: usize = 5;

fn json_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    // These types hold only strings and numbers: serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl ExecFrame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Self::Heartbeat => (KIND_HEARTBEAT, (&[][..]).into()),
            Self::Started(s) => (KIND_STARTED, json_bytes(s).into()),
            Self::Stdout(b) => (KIND_STDOUT, b.as_slice().into()),
            Self::Stderr(b) => (KIND_STDERR, b.as_slice().into()),
            Self::Exit(e) => (KIND_EXIT, json_bytes(e).into()),
        };
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }
}

/// The bytes of an [`ExecFrame::Stdout`] (or, `stderr`, [`ExecFrame::Stderr`]) frame of
/// `bytes`, made in one copy (the relay's hot path).
pub fn encode_output(stderr: bool, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + bytes.len());
    out.push(if stderr { KIND_STDERR } else { KIND_STDOUT });
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Splits a byte stream into [`ExecFrame`]s: feed it what arrives, take whole frames out.
/// The length is checked against [`MAX_FRAME_PAYLOAD`] from the header, before the payload
/// is buffered.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Whether bytes of an unfinished frame are buffered (at the stream's end: truncated).
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The next whole frame, if one is buffered. A frame of an unknown kind is skipped (a
    /// newer relay may send more kinds).
    pub fn next_frame(&mut self) -> Result<Option<ExecFrame>, ExecError> {
        loop {
            if self.buf.len() < HEADER {
                return Ok(None);
            }
            let kind = self.buf[0];
            let len =
                u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > MAX_FRAME_PAYLOAD {
                return Err(ExecError::FrameTooLarge(len));
            }
            if self.buf.len() < HEADER + len {
                return Ok(None);
            }
            let payload = self.buf[HEADER..HEADER + len].to_vec();
            self.buf.drain(..HEADER + len);
            let json_err = |e: serde_json::Error| ExecError::BadFrame(e.to_string());
            let frame = match kind {
                KIND_HEARTBEAT if payload.is_empty() => ExecFrame::Heartbeat,
                KIND_HEARTBEAT => {
                    return Err(ExecError::BadFrame("a heartbeat with a payload".into()))
                }
                KIND_STARTED => {
                    ExecFrame::Started(serde_json::from_slice(&payload).map_err(json_err)?)
                }
                KIND_STDOUT => ExecFrame::Stdout(payload),
                KIND_STDERR => ExecFrame::Stderr(payload),
                KIND_EXIT => ExecFrame::Exit(serde_json::from_slice(&payload).map_err(json_err)?),
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok_request() -> ExecRequest {
        let mut r = ExecRequest::new(vec!["ls".into(), "-l".into()]);
        r.env.insert("FOO_1".into(), "bar".into());
        r
    }

    #[test]
    fn validation_names_what_is_wrong() {
        assert_eq!(ok_request().validate(), Ok(()));
        assert_eq!(
            ExecRequest::new(vec![]).validate(),
            Err(ExecError::NoProgram)
        );
        assert_eq!(
            ExecRequest::new(vec![String::new()]).validate(),
            Err(ExecError::NoProgram)
        );
        let mut r = ok_request();
        r.argv.push("a\0b".into());
        assert_eq!(r.validate(), Err(ExecError::Nul("argument 2".into())));
        for bad in ["", "1A", "A-B", "A=B", "É"] {
            let mut r = ok_request();
            r.env.insert(bad.into(), "x".into());
            assert_eq!(r.validate(), Err(ExecError::EnvName(bad.into())), "{bad}");
        }
        let mut r = ok_request();
        r.env.insert("V".into(), "\0".into());
        assert!(matches!(r.validate(), Err(ExecError::Nul(_))));
        let mut r = ok_request();
        r.argv = vec!["x".to_string(); MAX_ARGS + 1];
        assert!(matches!(r.validate(), Err(ExecError::TooLarge(_))));
        let mut r = ok_request();
        r.argv.push("y".repeat(MAX_REQUEST_BYTES));
        assert!(matches!(r.validate(), Err(ExecError::TooLarge(_))));
        for t in [0, MAX_TIMEOUT_MS + 1] {
            let mut r = ok_request();
            r.timeout_ms = Some(t);
            assert_eq!(r.validate(), Err(ExecError::Timeout));
        }
        for bad in ["", "-x", "a:b", "a b", "a/b", &"u".repeat(33)] {
            let mut r = ok_request();
            r.user = Some(bad.to_string());
            assert_eq!(r.validate(), Err(ExecError::User(bad.into())), "{bad}");
        }
        for good in ["agent", "1000", "_x", "a.b-c"] {
            let mut r = ok_request();
            r.user = Some(good.to_string());
            assert_eq!(r.validate(), Ok(()), "{good}");
        }
        let mut r = ok_request();
        r.tty = Some(TermSize { cols: 0, rows: 24 });
        assert_eq!(r.validate(), Err(ExecError::TermSize));
        let mut r = ok_request();
        r.detach = true;
        assert_eq!(r.validate(), Ok(()));
        r.stdin = true;
        assert!(matches!(r.validate(), Err(ExecError::Conflict(_))));
    }

    #[test]
    fn missing_fields_take_their_defaults() {
        let r: ExecRequest = serde_json::from_str(r#"{"argv":["true"]}"#).expect("parse");
        assert_eq!(r, ExecRequest::new(vec!["true".into()]));
        let e: ExecExit = serde_json::from_str("{}").expect("parse");
        assert_eq!(e.status_code(), 255);
    }

    #[test]
    fn status_codes_follow_docker_exec() {
        let exit = |code, signal, timed_out| ExecExit {
            code,
            signal,
            timed_out,
        };
        assert_eq!(exit(Some(3), None, false).status_code(), 3);
        assert_eq!(exit(None, Some(9), false).status_code(), 137);
        assert_eq!(exit(None, Some(9), true).status_code(), TIMED_OUT_CODE);
    }

    #[test]
    fn output_frames_encode_as_their_enum() {
        assert_eq!(
            encode_output(false, b"out"),
            ExecFrame::Stdout(b"out".to_vec()).encode()
        );
        assert_eq!(
            encode_output(true, b"err"),
            ExecFrame::Stderr(b"err".to_vec()).encode()
        );
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let mut r = FrameReader::new();
        r.push(&[KIND_STDOUT, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(r.next_frame(), Err(ExecError::FrameTooLarge(_))));
        let mut r = FrameReader::new();
        r.push(&[KIND_EXIT, 0, 0, 0, 2, b'{', b'x']);
        assert!(matches!(r.next_frame(), Err(ExecError::BadFrame(_))));
        let mut r = FrameReader::new();
        r.push(&[KIND_HEARTBEAT, 0, 0, 0, 1, 0]);
        assert!(matches!(r.next_frame(), Err(ExecError::BadFrame(_))));
        // An unknown kind is skipped; the frame after it is read.
        let mut r = FrameReader::new();
        r.push(&[99, 0, 0, 0, 1, 7]);
        r.push(&ExecFrame::Stdout(b"hi".to_vec()).encode());
        assert_eq!(r.next_frame(), Ok(Some(ExecFrame::Stdout(b"hi".to_vec()))));
        assert!(!r.has_partial());
    }

    proptest! {
        #[test]
        fn frames_round_trip_in_any_split(frames in proptest::collection::vec(any::<ExecFrame>(), 0..8), cut in 0usize..64) {
            let bytes: Vec<u8> = frames.iter().flat_map(ExecFrame::encode).collect();
            let mut reader = FrameReader::new();
            let mut got = Vec::new();
            for piece in bytes.chunks(cut + 1) {
                reader.push(piece);
                while let Some(f) = reader.next_frame().expect("valid frames") {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, frames);
            prop_assert!(!reader.has_partial());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut reader = FrameReader::new();
            reader.push(&bytes);
            while let Ok(Some(_)) = reader.next_frame() {}
        }

        #[test]
        fn requests_round_trip_as_json(r in any::<ExecRequest>()) {
            let text = serde_json::to_string(&r).expect("json");
            prop_assert_eq!(serde_json::from_str::<ExecRequest>(&text).expect("parse"), r);
        }
    }
}
