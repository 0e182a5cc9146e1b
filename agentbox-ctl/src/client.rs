//! The CLI side of `ctl.sock`: connect, handshake, one request, its response(s).

use std::path::Path;
use std::time::Duration;

use agentbox_protocol::ctl::{CtlRequest, CtlResponse};
use agentbox_protocol::hello::{client_handshake_with, Connection, HandshakeError};
use agentbox_protocol::{ErrorReply, FrameError, Hello};
use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach the agentbox-ctl daemon at {socket}: {source} (is it running? start it with `agentbox-ctl daemon`)")]
    Unreachable {
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
    /// The daemon answered with a response that does not fit the request.
    #[error("unexpected answer from the daemon: {0}")]
    Unexpected(String),
}

/// An open connection to the daemon, after the handshake.
pub struct Client {
    conn: Connection<UnixStream, CtlResponse, CtlRequest>,
}

impl Client {
    /// Connects to `socket` and sends `request` together with the handshake (3 s timeout
    /// for connect and handshake; the answer itself may take longer, e.g. `wait-ready`).
    pub async fn request(socket: &Path, request: CtlRequest) -> Result<Self, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            socket: socket.display().to_string(),
            source,
        };
        let stream = tokio::time::timeout(Duration::from_secs(3), UnixStream::connect(socket))
            .await
            .map_err(|_| unreachable(std::io::Error::from(std::io::ErrorKind::TimedOut)))?
            .map_err(unreachable)?;
        let hello = Hello::new("agentbox-ctl", env!("CARGO_PKG_VERSION"));
        let (conn, _daemon) = tokio::time::timeout(
            Duration::from_secs(3),
            client_handshake_with(stream, &hello, request),
        )
        .await
        .map_err(|_| unreachable(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        Ok(Self { conn })
    }

    /// Sends a further frame on the connection.
    pub async fn send(&mut self, request: CtlRequest) -> Result<(), ClientError> {
        Ok(self.conn.send(request).await?)
    }

    /// Reads the next response; errors from the daemon become [`ClientError::Daemon`].
    pub async fn next(&mut self) -> Result<CtlResponse, ClientError> {
        match self.conn.next().await {
            None => Err(ClientError::NoAnswer),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(CtlResponse::Error(e))) => Err(ClientError::Daemon(e)),
            Some(Ok(r)) => Ok(r),
        }
    }
}

/// Connects, sends one request and returns the single response.
pub async fn call(socket: &Path, request: CtlRequest) -> Result<CtlResponse, ClientError> {
    Client::request(socket, request).await?.next().await
}
