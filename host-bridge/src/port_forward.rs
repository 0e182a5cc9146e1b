//! `agentbox port`'s forward: a listener on this machine's loopback whose every connection
//! becomes a tunnel to a port of the box's loopback through its relay (`/v1/tunnel`,
//! contract in [`agentbox_protocol::tunnel`]) — plain HTTP, so it works on every provider,
//! Daytona's preview proxy included. The box's bytes come back as exec frames; ours go in
//! numbered posts (a retried piece is never delivered twice), one at a time, in order.

use std::time::Duration;

use agentbox_protocol::exec::{ExecFrame, FrameReader, HEARTBEAT_MS, MAX_STDIN_POST};
use agentbox_protocol::files::TransferId;
use agentbox_protocol::tunnel::{input_path, TunnelOpen};
use anyhow::{anyhow, bail};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;

use crate::relay_exec::{post_input, refusal, send_renewing, InputEnd};
use crate::transfer::client::Relay;

/// How long the box's side may stay silent (heartbeats included) before the tunnel counts
/// as cut.
const SILENCE_LIMIT: Duration = Duration::from_millis(HEARTBEAT_MS * 10);

/// Carries one local connection to `port` of the box until both sides are done. An error
/// says why the box refused or the tunnel broke (box text escaped).
pub async fn carry(relay: &Relay, port: u16, local: TcpStream) -> anyhow::Result<()> {
    let response = send_renewing(relay, || {
        relay
            .request(reqwest::Method::POST, "/v1/tunnel")
            .json(&TunnelOpen { port })
    })
    .await?;
    if !response.status().is_success() {
        let (status, message, relays) = refusal(response).await;
        if status == reqwest::StatusCode::NOT_FOUND && !relays {
            bail!("the box's relay has no tunnel API (/v1/tunnel): it is older than this agentbox; run `agentbox prepare` and make the box again");
        }
        bail!("{message}");
    }
    let _ = local.set_nodelay(true);
    let (local_read, mut local_write) = local.into_split();
    let mut body = response.bytes_stream();
    let mut frames = FrameReader::new();
    let mut upstream: Option<tokio::task::JoinHandle<()>> = None;
    let mut local_read = Some(local_read);
    let outcome = async {
        loop {
            let next = tokio::time::timeout(SILENCE_LIMIT, body.next())
                .await
                .map_err(|_| anyhow!("the box sent nothing for {} s", SILENCE_LIMIT.as_secs()))?;
            let chunk = match next {
                Some(Ok(c)) => c,
                Some(Err(e)) => bail!("the tunnel was cut: {}", crate::tls::explain(&e)),
                None => bail!("the tunnel was cut before the box's side closed"),
            };
            frames.push(&chunk);
            while let Some(frame) = frames.next_frame().map_err(|e| anyhow!("{e}"))? {
                match frame {
                    ExecFrame::Started(s) => {
                        let id = TransferId::try_from(s.id).map_err(|e| anyhow!("{e}"))?;
                        if let Some(read) = local_read.take() {
                            upstream = Some(tokio::spawn(send_up(relay.clone(), id, read)));
                        }
                    }
                    ExecFrame::Stdout(b) => {
                        // The local client went away: nothing more to carry.
                        if local_write.write_all(&b).await.is_err() {
                            return Ok(());
                        }
                    }
                    ExecFrame::Exit(_) => {
                        let _ = local_write.shutdown().await;
                        return Ok(());
                    }
                    ExecFrame::Heartbeat | ExecFrame::Stderr(_) => {}
                }
            }
        }
    };
    let result: anyhow::Result<()> = outcome.await;
    if let Some(up) = upstream {
        // The box's side closed: what the local client still sends has nowhere to go.
        up.abort();
    }
    result
}

/// Sends what the local client writes to tunnel `id`, each piece at its offset, then the
/// end of its input. Stops when the tunnel is gone.
async fn send_up(relay: Relay, id: TransferId, mut read: OwnedReadHalf) {
    let path = input_path(&id);
    let mut offset: u64 = 0;
    let mut buf = vec![0u8; MAX_STDIN_POST.min(256 * 1024)];
    loop {
        let n = read.read(&mut buf).await.unwrap_or(0);
        let eof = n == 0;
        match post_input(&relay, &path, offset, &buf[..n], eof).await {
            Ok(()) => {}
            Err(InputEnd::Gone) => {
                tracing::info!("the box's side of the tunnel is gone");
                return;
            }
            Err(InputEnd::Refused(status, message)) => {
                tracing::info!(%status, %message, "the box's side of the tunnel is gone");
                return;
            }
            Err(InputEnd::Unreachable(e)) => {
                tracing::warn!(error = %e, "cannot send to the tunnel");
                return;
            }
        }
        offset += n as u64;
        if eof {
            return;
        }
    }
}
