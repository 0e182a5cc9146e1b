//! A tunnel's target → caller half: the target's bytes as exec frames, a heartbeat in
//! silence, `Exit` when the target closed its side.

use std::time::Duration;

use agentbox_protocol::exec::{
    encode_output, ExecExit, ExecFrame, ExecStarted, HEARTBEAT_MS, MAX_CHUNK,
};
use agentbox_protocol::files::TransferId;
use axum::body::Bytes;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;

/// Streams what the target sends into `tx` until it closes (then `Exit`) or the caller went
/// away (a failed send; dropping `read` then closes that side).
pub(super) async fn pump(mut read: OwnedReadHalf, id: TransferId, tx: mpsc::Sender<Bytes>) {
    let send = |bytes: Vec<u8>| {
        let tx = tx.clone();
        async move { tx.send(Bytes::from(bytes)).await.is_ok() }
    };
    let started = ExecFrame::Started(ExecStarted {
        id: id.as_str().to_string(),
        pid: 0,
    });
    if !send(started.encode()).await {
        return;
    }
    let beat = Duration::from_millis(HEARTBEAT_MS);
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    let mut buf = vec![0u8; MAX_CHUNK];
    loop {
        tokio::select! {
            got = read.read(&mut buf) => match got {
                Ok(n) if n > 0 => {
                    if !send(encode_output(false, &buf[..n])).await {
                        return;
                    }
                    heartbeat.reset();
                }
                _ => break,
            },
            // A heartbeat also finds a caller that went away while the target is silent.
            () = tx.closed() => return,
            _ = heartbeat.tick() => {
                if !send(ExecFrame::Heartbeat.encode()).await {
                    return;
                }
            }
        }
    }
    let exit = ExecExit {
        code: Some(0),
        signal: None,
        timed_out: false,
    };
    let _ = send(ExecFrame::Exit(exit).encode()).await;
}
