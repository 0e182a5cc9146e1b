//! The proxy daemon's life: one per `AGENTBOX_HOME`, held by a `flock` on `proxy.lock`
//! (which carries its pid; [`HomeDaemon`]); it announces its port in `proxy.json` once it listens;
//! started in the background on demand (`agentbox url`, `agentbox proxy start`), stopped
//! by SIGTERM.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};

use super::ca::LocalCa;
use super::certs::{server_config, SniCerts};
use super::forward::{client, Client, Conn};
use super::routing::{parse_host, Resolver};
use crate::home::Home;
use crate::home_daemon::HomeDaemon;

/// How long a browser has to finish its TLS handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// The proxy as a per-home daemon: `proxy.lock`, `proxy.log`, `agentbox proxy run`.
const DAEMON: HomeDaemon = HomeDaemon {
    name: "the proxy",
    command: "proxy",
    lock_file: "proxy.lock",
    log_file: "proxy.log",
};

/// What a running proxy announces in `proxy.json`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Running {
    /// Its pid.
    pub pid: i32,
    /// The port it serves HTTPS on (127.0.0.1 and ::1).
    pub port: u16,
}

fn info_path(home: &Home) -> PathBuf {
    home.root().join("proxy.json")
}

/// The log of the background proxy.
pub fn log_path(home: &Home) -> PathBuf {
    DAEMON.log_path(home)
}

/// The running proxy of `home`, if one holds the lock and has announced its port.
pub fn running(home: &Home) -> Option<Running> {
    let pid = DAEMON.running_pid(home)?;
    let info: Running = serde_json::from_slice(&std::fs::read(info_path(home)).ok()?).ok()?;
    (info.pid == pid).then_some(info)
}

/// Binds the proxy's listeners on the first port of [`super::port::candidates`] it can
/// have; on 127.0.0.1, and on ::1 where the host has it.
fn bind(home: &Home) -> anyhow::Result<(u16, Vec<std::net::TcpListener>)> {
    let ports = super::port::candidates(home)?;
    let mut last = None;
    for port in ports {
        match std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
            Ok(v4) => {
                let mut listeners = vec![v4];
                if let Ok(v6) =
                    std::net::TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, port)))
                {
                    listeners.push(v6);
                }
                return Ok((port, listeners));
            }
            Err(e) => last = Some((port, e)),
        }
    }
    let (port, e) = last.context("no port to try")?;
    bail!(
        "the proxy cannot listen on 127.0.0.1:{port}: {e} ({})",
        super::port::how_to_change()
    )
}

/// Runs the proxy in the foreground until SIGTERM or SIGINT.
pub fn run(home: &Home) -> anyhow::Result<()> {
    let _lock = DAEMON.hold(home)?;
    let ca = LocalCa::load_or_create(home.root())?;
    let (port, listeners) = bind(home)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(serve(home.clone(), ca, port, listeners));
    let _ = std::fs::remove_file(info_path(home));
    result
}

async fn serve(
    home: Home,
    ca: LocalCa,
    port: u16,
    listeners: Vec<std::net::TcpListener>,
) -> anyhow::Result<()> {
    let tls = tokio_rustls::TlsAcceptor::from(server_config(Arc::new(SniCerts::new(ca))));
    let resolver = Arc::new(Resolver::new(home.clone()));
    let client = client();
    for listener in listeners {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        tokio::spawn(accept_loop(
            listener,
            tls.clone(),
            resolver.clone(),
            client.clone(),
        ));
    }
    // Announced once it serves: `ensure_started` hands the port out from then on.
    let info = Running {
        pid: std::process::id() as i32,
        port,
    };
    let partial = info_path(&home).with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec(&info)?)?;
    std::fs::rename(&partial, info_path(&home))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!("proxy running");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
        () = DAEMON.home_gone(&home) => tracing::info!("its home is gone"),
    }
    tracing::info!("proxy stopping");
    Ok(())
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    resolver: Arc<Resolver>,
    client: Client,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (tls, resolver, client) = (tls.clone(), resolver.clone(), client.clone());
        tokio::spawn(async move {
            let Ok(Ok(stream)) = tokio::time::timeout(HANDSHAKE_LIMIT, tls.accept(stream)).await
            else {
                return; // no handshake, or a name the proxy has no certificate for
            };
            // The certificate was minted for this name, so it parses.
            let Some(Ok(route)) = stream.get_ref().1.server_name().map(parse_host) else {
                return;
            };
            let conn = Arc::new(Conn::new(route, peer, resolver, client));
            let service = hyper::service::service_fn(move |req| conn.clone().handle(req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
}

/// Starts the proxy in the background unless it runs; returns what it announced.
pub fn ensure_started(home: &Home) -> anyhow::Result<Running> {
    DAEMON.ensure_started(home, running)
}

/// Stops the proxy if it runs; whether one ran.
pub fn stop(home: &Home) -> anyhow::Result<bool> {
    DAEMON.stop(home)
}
