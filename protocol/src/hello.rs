//! The handshake that opens every socket connection.
//!
//! The client sends its [`Hello`]; the server always answers with its own, even when it is
//! about to refuse, so that *both* sides can tell the user which program is too old. The
//! `Hello` encoding is frozen: it must decode across every protocol version.

use futures_util::{SinkExt, StreamExt};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Framed;

use crate::frame::{FrameCodec, FrameError};
use crate::PROTOCOL_VERSION;

/// The first frame in each direction of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol_version: u32,
    /// The sending program, e.g. `agentbox-ctl` or `agentbox-ctl daemon`.
    pub program: String,
    /// The sender's release version, e.g. `0.3.1`.
    pub version: String,
}

impl Hello {
    /// A `Hello` for this build of `program`, at `version` (usually `env!("CARGO_PKG_VERSION")`).
    pub fn new(program: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            program: program.into(),
            version: version.into(),
        }
    }

    /// Checks that we (`self`) can talk to `peer`.
    pub fn check_peer(&self, peer: &Hello) -> Result<(), VersionMismatch> {
        if self.protocol_version == peer.protocol_version {
            Ok(())
        } else {
            Err(VersionMismatch {
                local: self.clone(),
                peer: peer.clone(),
            })
        }
    }
}

/// Two programs speak different protocol versions. Its `Display` is the sentence a user
/// sees: who cannot talk to whom, and which side to restart or upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {} cannot talk to {} {} (protocol {} vs {}): {}",
    local.program, local.version, peer.program, peer.version,
    local.protocol_version, peer.protocol_version, self.remedy())]
pub struct VersionMismatch {
    /// This side.
    pub local: Hello,
    /// The other side.
    pub peer: Hello,
}

impl VersionMismatch {
    /// What the user should do: the older side must be restarted on the new binary.
    pub fn remedy(&self) -> String {
        if self.peer.protocol_version < self.local.protocol_version {
            format!(
                "restart {} so that it runs the new version",
                self.peer.program
            )
        } else {
            format!(
                "upgrade {} to {} or later",
                self.local.program, self.peer.version
            )
        }
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The framing failed (I/O, garbage, oversized).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer closed the connection before saying hello.
    #[error("the peer closed the connection during the handshake")]
    Closed,
    /// The peer speaks another protocol version.
    #[error(transparent)]
    Mismatch(#[from] VersionMismatch),
}

/// A framed connection after the handshake: reads `In`, writes `Out`.
pub type Connection<S, In, Out> = Framed<S, FrameCodec<In, Out>>;

async fn exchange<S>(
    framed: &mut Framed<S, FrameCodec<Hello, Hello>>,
    ours: &Hello,
    we_speak_first: bool,
) -> Result<Hello, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if we_speak_first {
        framed.send(ours.clone()).await?;
    }
    let theirs = framed.next().await.ok_or(HandshakeError::Closed)??;
    if !we_speak_first {
        framed.send(ours.clone()).await?;
    }
    Ok(theirs)
}

/// Client side: send our hello, read the server's, check versions, return the typed
/// connection and the server's hello.
pub async fn client_handshake<S, In, Out>(
    io: S,
    ours: &Hello,
) -> Result<(Connection<S, In, Out>, Hello), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    In: DeserializeOwned,
    Out: Serialize,
{
    let mut framed = Framed::new(io, FrameCodec::<Hello, Hello>::new());
    let theirs = exchange(&mut framed, ours, true).await?;
    ours.check_peer(&theirs)?;
    Ok((framed.map_codec(FrameCodec::retype), theirs))
}

/// Client side, pipelined: send our hello *and* the first request in one write, then read
/// the server's hello and check it. Saves a round trip for one-shot requests; a server that
/// refuses the hello closes the connection without reading the request.
pub async fn client_handshake_with<S, In, Out>(
    io: S,
    ours: &Hello,
    first: Out,
) -> Result<(Connection<S, In, Out>, Hello), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    In: DeserializeOwned,
    Out: Serialize,
{
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::Encoder;
    let mut out = bytes::BytesMut::new();
    FrameCodec::<Hello, Hello>::new().encode(ours.clone(), &mut out)?;
    FrameCodec::<In, Out>::new().encode(first, &mut out)?;
    let mut framed = Framed::new(io, FrameCodec::<Hello, Hello>::new());
    framed
        .get_mut()
        .write_all(&out)
        .await
        .map_err(FrameError::Io)?;
    let theirs = framed.next().await.ok_or(HandshakeError::Closed)??;
    ours.check_peer(&theirs)?;
    Ok((framed.map_codec(FrameCodec::retype), theirs))
}

/// Server side: read the client's hello, answer with ours (always), check versions, return
/// the typed connection and the client's hello.
pub async fn server_handshake<S, In, Out>(
    io: S,
    ours: &Hello,
) -> Result<(Connection<S, In, Out>, Hello), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    In: DeserializeOwned,
    Out: Serialize,
{
    let mut framed = Framed::new(io, FrameCodec::<Hello, Hello>::new());
    let theirs = exchange(&mut framed, ours, false).await?;
    ours.check_peer(&theirs)?;
    Ok((framed.map_codec(FrameCodec::retype), theirs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_message_names_both_sides_and_the_fix() {
        let cli = Hello {
            protocol_version: 3,
            program: "agentbox-ctl".into(),
            version: "0.3".into(),
        };
        let daemon = Hello {
            protocol_version: 2,
            program: "daemon".into(),
            version: "0.2".into(),
        };
        let msg = cli.check_peer(&daemon).expect_err("mismatch").to_string();
        assert_eq!(
            msg,
            "agentbox-ctl 0.3 cannot talk to daemon 0.2 (protocol 3 vs 2): \
             restart daemon so that it runs the new version"
        );
        let msg = daemon.check_peer(&cli).expect_err("mismatch").to_string();
        assert!(msg.ends_with("upgrade daemon to 0.3 or later"), "{msg}");
    }

    #[tokio::test]
    async fn handshake_then_typed_messages() {
        let (a, b) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            let (mut conn, peer) =
                server_handshake::<_, String, u64>(b, &Hello::new("server", "1.0")).await?;
            let text = conn.next().await.ok_or(HandshakeError::Closed)??;
            conn.send(text.len() as u64).await?;
            Ok::<_, HandshakeError>(peer)
        });
        let (mut conn, peer) = client_handshake::<_, u64, String>(a, &Hello::new("client", "1.0"))
            .await
            .expect("hs");
        assert_eq!(peer.program, "server");
        conn.send("hello".to_string()).await.expect("send");
        assert_eq!(conn.next().await.expect("reply").expect("decode"), 5);
        assert_eq!(
            server.await.expect("join").expect("server").program,
            "client"
        );
    }

    #[tokio::test]
    async fn pipelined_handshake_carries_the_first_request() {
        let (a, b) = tokio::io::duplex(1024);
        let server = tokio::spawn(async move {
            let (mut conn, _) =
                server_handshake::<_, String, u64>(b, &Hello::new("server", "1")).await?;
            let text = conn.next().await.ok_or(HandshakeError::Closed)??;
            conn.send(text.len() as u64).await?;
            Ok::<_, HandshakeError>(())
        });
        let (mut conn, peer) =
            client_handshake_with::<_, u64, String>(a, &Hello::new("client", "1"), "four".into())
                .await
                .expect("handshake");
        assert_eq!(peer.program, "server");
        assert_eq!(conn.next().await.expect("reply").expect("decode"), 4);
        server.await.expect("join").expect("server");
    }

    #[tokio::test]
    async fn both_sides_see_the_mismatch() {
        let (a, b) = tokio::io::duplex(1024);
        let old = Hello {
            protocol_version: 0,
            ..Hello::new("daemon", "0.0.1")
        };
        let server =
            tokio::spawn(async move { server_handshake::<_, String, String>(b, &old).await });
        let err = client_handshake::<_, String, String>(a, &Hello::new("agentbox-ctl", "9"))
            .await
            .expect_err("mismatch");
        assert!(matches!(err, HandshakeError::Mismatch(_)), "{err}");
        assert!(err.to_string().contains("restart daemon"), "{err}");
        let server_err = server.await.expect("join").expect_err("server mismatch");
        assert!(matches!(server_err, HandshakeError::Mismatch(_)));
    }

    #[tokio::test]
    async fn garbage_instead_of_hello_is_an_error() {
        use tokio::io::AsyncWriteExt;
        let (mut a, b) = tokio::io::duplex(1024);
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").await.expect("write");
        drop(a);
        let err = server_handshake::<_, String, String>(b, &Hello::new("s", "1"))
            .await
            .expect_err("garbage");
        assert!(matches!(err, HandshakeError::Frame(_)), "{err}");
    }
}
