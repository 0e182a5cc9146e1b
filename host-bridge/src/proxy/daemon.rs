//! The proxy daemon's life: one per `AGENTBOX_HOME`, held by a `flock` on `proxy.lock`
//! (which carries its pid); it announces its port in `proxy.json` once it listens;
//! started in the background on demand (`agentbox url`, `agentbox proxy start`), stopped
//! by SIGTERM.

use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::ca::LocalCa;
use super::certs::{server_config, SniCerts};
use super::forward::{client, Client, Conn};
use super::routing::{parse_host, Resolver};
use super::{DEFAULT_PORT, PORT_VAR};
use crate::home::Home;

/// How long a browser has to finish its TLS handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// How often the proxy checks that its home still exists.
const HOME_CHECK: Duration = Duration::from_secs(2);

/// What a running proxy announces in `proxy.json`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Running {
    /// Its pid.
    pub pid: i32,
    /// The port it serves HTTPS on (127.0.0.1 and ::1).
    pub port: u16,
}

fn lock_path(home: &Home) -> PathBuf {
    home.root().join("proxy.lock")
}

fn info_path(home: &Home) -> PathBuf {
    home.root().join("proxy.json")
}

/// The log of the background proxy.
pub fn log_path(home: &Home) -> PathBuf {
    home.root().join("proxy.log")
}

/// The running proxy of `home`, if one holds the lock and has announced its port.
pub fn running(home: &Home) -> Option<Running> {
    let file = File::open(lock_path(home)).ok()?;
    if Flock::lock(file, FlockArg::LockSharedNonblock).is_ok() {
        return None; // nobody holds it
    }
    let pid: i32 = std::fs::read_to_string(lock_path(home))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let info: Running = serde_json::from_slice(&std::fs::read(info_path(home)).ok()?).ok()?;
    (info.pid == pid).then_some(info)
}

/// The port asked for in `AGENTBOX_PROXY_PORT`, if any.
fn port_asked() -> anyhow::Result<Option<u16>> {
    match std::env::var(PORT_VAR) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .with_context(|| format!("{PORT_VAR}=`{v}` is not a port (1-65535)")),
        _ => Ok(None),
    }
}

/// Binds the proxy's listeners: `AGENTBOX_PROXY_PORT` if set, else 443 when this user may
/// bind it, else [`DEFAULT_PORT`]; on 127.0.0.1, and on ::1 where the host has it.
fn bind() -> anyhow::Result<(u16, Vec<std::net::TcpListener>)> {
    let ports = match port_asked()? {
        Some(p) => vec![p],
        None => vec![443, DEFAULT_PORT],
    };
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
    bail!("the proxy cannot listen on 127.0.0.1:{port}: {e} (set {PORT_VAR} to another port)")
}

/// Runs the proxy in the foreground until SIGTERM or SIGINT.
pub fn run(home: &Home) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(home))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!("the proxy is already running"),
        Err((_, e)) => bail!("cannot lock {}: {e}", lock_path(home).display()),
    };
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;
    let ca = LocalCa::load_or_create(home.root())?;
    let (port, listeners) = bind()?;
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
        () = home_gone(lock_path(&home)) => tracing::info!("its home is gone"),
    }
    tracing::info!("proxy stopping");
    Ok(())
}

/// Returns once `lock` (this proxy's lock file) is removed or replaced: a home that was
/// deleted (a temporary one, or `rm -rf ~/.agentbox`) does not keep a proxy holding the
/// machine's port for ever.
async fn home_gone(lock: PathBuf) {
    use std::os::unix::fs::MetadataExt;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let Ok(first) = std::fs::metadata(&lock).map(id) else {
        return;
    };
    loop {
        tokio::time::sleep(HOME_CHECK).await;
        if std::fs::metadata(&lock).map(id).ok() != Some(first) {
            return;
        }
    }
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
    if let Some(r) = running(home) {
        return Ok(r);
    }
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(home))?;
    let mut child = std::process::Command::new("setsid")
        .arg(exe)
        .args(["proxy", "run"])
        .env("AGENTBOX_HOME", home.root())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the proxy")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(r) = running(home) {
            return Ok(r);
        }
        // setsid execs the proxy: its exit is the proxy's (a port it could not bind).
        let ended = child
            .try_wait()
            .ok()
            .flatten()
            .is_some_and(|s| !s.success());
        if ended || std::time::Instant::now() > deadline {
            let tail = std::fs::read_to_string(log_path(home)).unwrap_or_default();
            let last = tail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!(
                "the proxy did not start: {} (log: {})",
                crate::text::shown(last),
                log_path(home).display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the proxy if it runs; whether one ran.
pub fn stop(home: &Home) -> anyhow::Result<bool> {
    let Some(r) = running(home) else {
        return Ok(false);
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(r.pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running(home).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}
