//! `agentbox-relay` entry point.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use agentbox_protocol::logging::LogFormat;
use std::time::Duration;

use agentbox_relay::bridge::{router, AppState};
use agentbox_relay::proxy::ProxyConfig;
use agentbox_relay::Settings;
use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The in-box relay: the WebProxy on AGENTBOX_WEB_PORT (8080) and the bridge API on
/// AGENTBOX_BRIDGE_PORT (8788) that the host talks to. Configured by the environment
/// contract (AGENTBOX_RUN_DIR, AGENTBOX_WORKSPACE, AGENTBOX_BIND_ADDR,
/// AGENTBOX_BRIDGE_TOKEN, AGENTBOX_MAX_UPLOAD_BYTES, AGENTBOX_PROXY_HOLD_MS); it takes no
/// subcommand. Port 0 picks a free port; the ports in use are written to
/// $AGENTBOX_RUN_DIR/relay.json.
#[derive(Debug, Parser)]
#[command(name = "agentbox-relay", version)]
struct Cli {
    /// Log format (stderr).
    #[arg(long, default_value = "pretty", value_name = "pretty|json")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    agentbox_protocol::logging::init(cli.log_format, "info");
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("agentbox-relay: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
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
    let web_listener = tokio::net::TcpListener::bind(bind(settings.web_port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (AGENTBOX_WEB_PORT)",
                bind(settings.web_port)
            )
        })?;
    let (bridge_addr, web_addr) = (bridge_listener.local_addr()?, web_listener.local_addr()?);
    write_relay_json(&settings, bridge_addr.port(), web_addr.port())?;
    tracing::info!(bridge = %bridge_addr, web = %web_addr, "agentbox-relay listening");

    let stop = CancellationToken::new();
    let units = agentbox_relay::ctl_link::follow(settings.run_dir.clone(), stop.clone());
    let proxy_config = ProxyConfig {
        hold: Duration::from_millis(settings.proxy_hold_ms),
        run_dir: settings.run_dir.clone(),
        header_timeout: Duration::from_millis(settings.proxy_header_timeout_ms),
    };
    let proxy = tokio::spawn(agentbox_relay::proxy::serve(
        web_listener,
        proxy_config,
        units,
        stop.clone(),
    ));
    let state = Arc::new(AppState {
        token,
        workspace: settings.workspace.clone(),
        max_upload_bytes: settings.max_upload_bytes,
    });
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
    let _ = proxy.await;
    let _ = bridge.await;
    Ok(())
}

/// `relay.json` tells the provider where the relay listens (ports may be ephemeral).
fn write_relay_json(settings: &Settings, bridge_port: u16, web_port: u16) -> anyhow::Result<()> {
    let info = serde_json::json!({ "bridge_port": bridge_port, "web_port": web_port, "pid": std::process::id() });
    let tmp = settings.run_dir.join("relay.json.tmp");
    std::fs::write(&tmp, info.to_string())?;
    std::fs::rename(&tmp, settings.run_dir.join("relay.json"))?;
    Ok(())
}
