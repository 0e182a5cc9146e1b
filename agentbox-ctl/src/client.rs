//! The CLI side of `ctl.sock`: connect, handshake, one request, its response(s).
//!
//! Blocking I/O on a std socket: a CLI call is one short exchange, and not starting an
//! async runtime is a measurable part of what makes `agentbox-ctl status` fast.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use agentbox_protocol::ctl::{CtlRequest, CtlResponse};
use agentbox_protocol::hello::HandshakeError;
use agentbox_protocol::{ErrorReply, FrameCodec, FrameError, Hello};
use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// How long connecting and the handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach the {peer} at {socket}: {source} ({hint})")]
    Unreachable {
        /// Who we tried to reach.
        peer: &'static str,
        /// What to do about it.
        hint: &'static str,
        /// The socket path.
        socket: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The handshake failed (for example a version mismatch).
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The daemon closed the connection without answering.
    #[error("the daemon closed the connection without answering")]
    NoAnswer,
    /// The daemon answered with an error.
    #[error("{0}")]
    Daemon(ErrorReply),
    /// The daemon answered with a response that does not fit the request (`{0}` names
    /// the kind of answer): the CLI and the daemon are of different versions.
    #[error(
        "the box's supervisor (agentbox-ctl daemon) answered `{0}`, which this agentbox-ctl \
         does not expect here: the two are of different versions. Restart the box from the \
         host (`agentbox stop BOX`, then `agentbox start BOX`) so both are the image's"
    )]
    Unexpected(String),
    /// The command cannot be done, for the reason given; the daemon was not asked.
    #[error("{0}")]
    Refused(String),
}

impl ClientError {
    /// A daemon answer that does not fit the request, named by its kind (the answer
    /// itself may be long, and means nothing to a user).
    pub fn unexpected(r: &CtlResponse) -> Self {
        let text = format!("{r:?}");
        let kind = text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .next()
            .unwrap_or_default();
        Self::Unexpected(kind.to_string())
    }
}

/// An open connection to the daemon, after the handshake.
pub struct Client {
    stream: UnixStream,
    buf: BytesMut,
}

impl Client {
    /// Connects to `socket`, sends our hello and `request` in one write, and checks the
    /// daemon's hello. Reading the answer itself has no timeout (`wait-ready`, `logs -f`).
    pub fn request(socket: &Path, request: CtlRequest) -> Result<Self, ClientError> {
        Self::request_to(
            socket,
            request,
            "agentbox-ctl daemon",
            "is it running? start it with `agentbox-ctl daemon`",
        )
    }

    /// Like [`Client::request`] for any peer speaking the framed protocol (`relay.sock`).
    pub fn request_to<Req: serde::Serialize>(
        socket: &Path,
        request: Req,
        peer: &'static str,
        hint: &'static str,
    ) -> Result<Self, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            peer,
            hint,
            socket: socket.display().to_string(),
            source,
        };
        let stream = UnixStream::connect(socket).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(unreachable)?;
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(unreachable)?;
        let ours = Hello::new("agentbox-ctl", env!("CARGO_PKG_VERSION"));
        let mut out = BytesMut::new();
        FrameCodec::<Hello, Hello>::new().encode(ours.clone(), &mut out)?;
        FrameCodec::<(), Req>::new().encode(request, &mut out)?;
        (&stream).write_all(&out).map_err(FrameError::Io)?;
        let mut client = Self {
            stream,
            buf: BytesMut::new(),
        };
        let theirs: Hello = client.read_frame()?.ok_or(HandshakeError::Closed)?;
        ours.check_peer(&theirs).map_err(HandshakeError::from)?;
        client
            .stream
            .set_read_timeout(None)
            .map_err(FrameError::Io)?;
        Ok(client)
    }

    /// Reads one frame as `T` (the codec is stateless: bytes stay buffered in `self.buf`);
    /// `None` when the peer closed the connection.
    pub fn read_frame<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let mut codec = FrameCodec::<T, ()>::new();
        loop {
            if let Some(item) = codec.decode(&mut self.buf)? {
                return Ok(Some(item));
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = (&self.stream).read(&mut chunk)?;
            if n == 0 {
                return codec.decode_eof(&mut self.buf);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads the next response; errors from the daemon become [`ClientError::Daemon`].
    pub fn response(&mut self) -> Result<CtlResponse, ClientError> {
        match self.read_frame()? {
            None => Err(ClientError::NoAnswer),
            Some(CtlResponse::Error(e)) => Err(ClientError::Daemon(e)),
            Some(r) => Ok(r),
        }
    }
}

/// Connects, sends one request and returns the single response.
pub fn call(socket: &Path, request: CtlRequest) -> Result<CtlResponse, ClientError> {
    Client::request(socket, request)?.response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_answer_that_does_not_fit_says_what_to_do_in_words() {
        let reply = agentbox_protocol::ctl::CtlResponse::Sessions(Vec::new());
        let text = super::ClientError::unexpected(&reply).to_string();
        assert!(!text.contains("unexpected answer"), "{text}");
        assert!(text.contains("answered `Sessions`"), "{text}");
        assert!(text.contains("different versions"), "{text}");
        assert!(text.contains("agentbox start BOX"), "{text}");
    }
}
