//! Loopback-bound services made reachable from outside the box (Daytona).
//!
//! Daytona's preview proxy connects to the sandbox's own address, so a dev server that
//! listens on 127.0.0.1 only — the default of many — has no preview URL. With
//! `AGENTBOX_EXPOSE_OUTSIDE=1` the relay watches the exposed services (`expose.port`)
//! and, for each one that answers on 127.0.0.1:P but not on the box's outside address,
//! listens on `<outside address>:P` and pipes each connection to 127.0.0.1:P. Binding the
//! outside address only never takes the loopback port from the service; a service that
//! listens on every address already answers outside and is left alone. The listener is
//! dropped whenever its service stops running, so a service restarted to listen on every
//! address finds the port free.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::ctl::UnitState;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ctl_link::Units;

/// How often ports not yet decided are looked at again (a service without a readiness
/// probe is `running` before it listens).
const RECHECK: Duration = Duration::from_secs(1);

/// The box's outside IPv4 address: the source address of its default route, or `None`
/// when it has none. (A UDP `connect` sends nothing.)
pub fn outside_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

async fn answers(addr: SocketAddr) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await,
        Ok(Ok(_))
    )
}

/// Keeps the outside listeners in line with the exposed services until `stop`.
/// `skip` are the relay's own ports.
pub async fn run(
    outside: IpAddr,
    mut units: watch::Receiver<Arc<Units>>,
    skip: Vec<u16>,
    stop: CancellationToken,
) {
    // Port → the listener's task, stopped by its token.
    let mut open: BTreeMap<u16, CancellationToken> = BTreeMap::new();
    let mut tick = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = units.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
        let table = units.borrow().clone();
        let running: BTreeMap<u16, String> = table
            .units
            .iter()
            .filter(|u| matches!(u.state, UnitState::Running | UnitState::Ready))
            .filter_map(|u| Some((u.expose.as_ref()?.port, u.name.clone())))
            .filter(|(port, _)| !skip.contains(port))
            .collect();
        // A service that stopped gives its port back at once.
        open.retain(|port, token| {
            let keep = running.contains_key(port);
            if !keep {
                token.cancel();
            }
            keep
        });
        for (port, name) in running {
            if open.contains_key(&port) {
                continue;
            }
            let outside_addr = SocketAddr::new(outside, port);
            let inside = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            if answers(outside_addr).await || !answers(inside).await {
                continue; // reachable already, or not listening yet
            }
            match TcpListener::bind(outside_addr).await {
                Ok(listener) => {
                    tracing::info!(service = %name, %outside_addr, "service listens on loopback only: relaying it from the outside address");
                    let token = stop.child_token();
                    tokio::spawn(pipe_all(listener, inside, token.clone()));
                    open.insert(port, token);
                }
                Err(e) => tracing::debug!(service = %name, error = %e, "cannot listen outside"),
            }
        }
    }
    for token in open.values() {
        token.cancel();
    }
}

/// Accepts on `listener` and pipes every connection to `inside`, until `stop`.
async fn pipe_all(listener: TcpListener, inside: SocketAddr, stop: CancellationToken) {
    loop {
        let (mut client, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(inside).await else {
                return; // the service went away: the client sees the connection close
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::select! {
                () = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentbox_protocol::ctl::UnitStatus;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn service(port: u16, state: UnitState) -> UnitStatus {
        crate::ctl_link::test_units::exposed("web", port, true, state)
    }

    /// 127.0.0.2 stands in for the outside address: a loopback-only service on
    /// 127.0.0.1:P is reached through it, and the port is given back when it stops.
    #[tokio::test]
    async fn a_loopback_service_is_reached_from_outside_and_let_go() {
        let inside = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = inside.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = inside.accept().await {
                let _ = s.write_all(b"hello from inside").await;
            }
        });
        let outside = IpAddr::from([127, 0, 0, 2]);
        let (tx, rx) = watch::channel(Arc::new(Units {
            reachable: true,
            units: vec![service(port, UnitState::Ready)],
        }));
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(outside, rx, vec![], stop.clone()));
        let mut got = String::new();
        for _ in 0..50 {
            if let Ok(mut s) = TcpStream::connect((outside, port)).await {
                got.clear();
                let _ = s.read_to_string(&mut got).await;
                if !got.is_empty() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(got, "hello from inside");
        // Stopped: the outside port is free again.
        tx.send(Arc::new(Units {
            reachable: true,
            units: vec![service(port, UnitState::Stopped)],
        }))
        .expect("send");
        let mut free = false;
        for _ in 0..50 {
            if std::net::TcpListener::bind((outside, port)).is_ok() {
                free = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(free, "the outside port was kept after the service stopped");
        stop.cancel();
        task.await.expect("join");
    }
}
