//! `agentbox-relay` entry point.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use agentbox_protocol::logging::LogFormat;
use std::time::Duration;

use agentbox_relay::bridge::BridgeState;
use agentbox_relay::proxy::ProxyConfig;
use agentbox_relay::routes::{router, ApiState};
use agentbox_relay::Settings;
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The in-box relay: the WebProxy on AGENTBOX_WEB_PORT (8080) and the bridge API on
/// AGENTBOX_BRIDGE_PORT (8788) that the host talks to. Configured by the environment
/// contract (AGENTBOX_RUN_DIR, AGENTBOX_WORKSPACE, AGENTBOX_BIND_ADDR,
/// AGENTBOX_BRIDGE_TOKEN, AGENTBOX_MAX_UPLOAD_BYTES, AGENTBOX_PROXY_HOLD_MS,
/// AGENTBOX_PROXY_HEADER_TIMEOUT_MS, AGENTBOX_PROXY_THREADS); it takes no subcommand. Port 0 picks a free port; the ports in use are written to
/// $AGENTBOX_RUN_DIR/relay.json.
#[derive(Debug, Parser)]
#[command(name = "agentbox-relay", version)]
struct Cli {
    /// Log format (stderr).
    #[arg(long, default_value = "pretty", value_name = "pretty|json")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    agentbox_protocol::closed_pipe::exit_quietly();
    let cli = Cli::parse();
    agentbox_protocol::logging::init(cli.log_format, "info");
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agentbox-relay: {e}");
            return ExitCode::from(2);
        }
    };
    // The bridge and the supervisor link share one thread; the WebProxy has its own.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentbox-relay: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentbox-relay: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.run_dir)
        .with_context(|| format!("cannot create {}", settings.run_dir.display()))?;
    let token = agentbox_relay::token::load_or_create(&settings.run_dir)
        .context("cannot load the bridge token")?;
    let bind = |port| SocketAddr::new(settings.bind_addr, port);
    let bridge_listener = tokio::net::TcpListener::bind(bind(settings.bridge_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (AGENTBOX_BRIDGE_PORT)",
                bind(settings.bridge_port)
            )
        })?;
    // One WebProxy listener per proxy thread, each on its own single-threaded runtime,
    // sharing the port with SO_REUSEPORT: a request and its service connection stay on one
    // thread.
    let threads = settings.proxy_threads;
    let first = reuseport_listener(bind(settings.web_port)).with_context(|| {
        format!(
            "cannot listen on {} (AGENTBOX_WEB_PORT)",
            bind(settings.web_port)
        )
    })?;
    let web_addr = first.local_addr()?;
    let mut web_listeners = vec![first];
    for _ in 1..threads {
        web_listeners.push(reuseport_listener(web_addr)?);
    }
    let bridge_addr = bridge_listener.local_addr()?;
    std::fs::create_dir_all(&settings.state_dir)
        .with_context(|| format!("cannot create {}", settings.state_dir.display()))?;
    let journal_path = settings.state_dir.join("relay.db");
    let journal = Arc::new(
        agentbox_relay::journal::Journal::open(&journal_path)
            .context("cannot open the request journal")?,
    );
    journal
        .checkpoint_in_background(&journal_path)
        .context("cannot start the journal checkpointer")?;
    let box_listener =
        agentbox_relay::box_api::bind(&settings.run_dir).context("cannot listen on relay.sock")?;
    write_relay_json(&settings, bridge_addr.port(), web_addr.port())?;
    tracing::info!(bridge = %bridge_addr, web = %web_addr, "agentbox-relay listening");

    let stop = CancellationToken::new();
    let units = agentbox_relay::ctl_link::follow(settings.run_dir.clone(), stop.clone());
    let outside = if settings.expose_outside {
        match agentbox_relay::outside::outside_address() {
            Some(ip) => Some(tokio::spawn(agentbox_relay::outside::run(
                ip,
                units.clone(),
                vec![web_addr.port(), bridge_addr.port()],
                stop.clone(),
            ))),
            None => {
                tracing::warn!("AGENTBOX_EXPOSE_OUTSIDE: the box has no outside address");
                None
            }
        }
    } else {
        None
    };
    let proxy_config = ProxyConfig {
        hold: Duration::from_millis(settings.proxy_hold_ms),
        run_dir: settings.run_dir.clone(),
        header_timeout: Duration::from_millis(settings.proxy_header_timeout_ms),
        token: Some(token.clone()),
    };
    let proxies: Vec<std::thread::JoinHandle<()>> = web_listeners
        .into_iter()
        .map(|listener| {
            let (config, units, stop) = (proxy_config.clone(), units.clone(), stop.clone());
            std::thread::spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return tracing::error!(error = %e, "cannot start a proxy thread"),
                };
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => agentbox_relay::proxy::serve(l, config, units, stop).await,
                        Err(e) => tracing::error!(error = %e, "cannot use the proxy listener"),
                    }
                });
            })
        })
        .collect();
    let host_seen = Arc::new(agentbox_relay::host_seen::HostSeen::default());
    let box_api = tokio::spawn(agentbox_relay::box_api::serve(
        box_listener,
        journal.clone(),
        host_seen.clone(),
        stop.clone(),
    ));
    let transfers = settings.state_dir.join("transfers");
    agentbox_relay::files::prepare_staging(&transfers)
        .with_context(|| format!("cannot prepare {}", transfers.display()))?;
    let terms = Arc::new(agentbox_relay::term::Terms::new(
        settings.run_dir.clone(),
        settings.workspace.clone(),
        stop.clone(),
    ));
    let reaper = tokio::spawn(terms.clone().reap());
    let shares = Arc::new(
        agentbox_relay::share::Shares::load(&settings.run_dir).context("cannot read the shares")?,
    );
    tokio::spawn(shares.clone().watch(stop.clone()));
    let uploads = Arc::new(agentbox_relay::files::Uploads::new(
        transfers.clone(),
        settings.workspace.clone(),
        settings.max_upload_bytes,
    ));
    let state = ApiState {
        token,
        bridge: Arc::new(BridgeState {
            workspace: settings.workspace.clone(),
            max_upload_bytes: settings.max_upload_bytes,
            journal,
            lease_ms: settings.lease_ms,
            blob_dir: settings.run_dir.join("blobs"),
            stop: stop.clone(),
            uploads: uploads.clone(),
            host_seen,
        }),
        uploads,
        downloads: Arc::new(agentbox_relay::files::Downloads::new(
            transfers,
            settings.workspace.clone(),
        )),
        terms,
        shares,
    };
    let bridge_stop = stop.clone();
    let bridge = tokio::spawn(async move {
        axum::serve(bridge_listener, router(state))
            .with_graceful_shutdown(bridge_stop.cancelled_owned())
            .await
    });

    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        anyhow::bail!("cannot install the SIGTERM handler");
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
    tracing::info!("stopping");
    stop.cancel();
    let _ = bridge.await;
    let _ = box_api.await;
    let _ = reaper.await;
    if let Some(t) = outside {
        let _ = t.await;
    }
    for p in proxies {
        let _ = tokio::task::spawn_blocking(move || p.join()).await;
    }
    Ok(())
}

/// A non-blocking listener with `SO_REUSEPORT`, so that several threads can accept on one port.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(1024)?.into_std()?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// `relay.json` tells the provider where the relay listens (ports may be ephemeral).
fn write_relay_json(settings: &Settings, bridge_port: u16, web_port: u16) -> anyhow::Result<()> {
    let info = serde_json::json!({ "bridge_port": bridge_port, "web_port": web_port, "pid": std::process::id() });
    let tmp = settings.run_dir.join("relay.json.tmp");
    std::fs::write(&tmp, info.to_string())?;
    std::fs::rename(&tmp, settings.run_dir.join("relay.json"))?;
    Ok(())
}
