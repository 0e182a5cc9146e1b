//! `agentbox-relay` entry point.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use agentbox_protocol::logging::LogFormat;
use agentbox_relay::bridge::{router, AppState};
use agentbox_relay::Settings;
use anyhow::Context;
use clap::Parser;

/// The in-box relay: the WebProxy on AGENTBOX_WEB_PORT (8080) and the bridge API on
/// AGENTBOX_BRIDGE_PORT (8788) that the host talks to. Configured by the environment
/// contract (AGENTBOX_RUN_DIR, AGENTBOX_WORKSPACE, AGENTBOX_BIND_ADDR,
/// AGENTBOX_BRIDGE_TOKEN, AGENTBOX_MAX_UPLOAD_BYTES); it takes no subcommand.
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
    let state = Arc::new(AppState {
        token,
        workspace: settings.workspace.clone(),
        max_upload_bytes: settings.max_upload_bytes,
    });
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(settings.bind_addr, settings.bridge_port))
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}:{}",
                    settings.bind_addr, settings.bridge_port
                )
            })?;
    let addr = listener.local_addr()?;
    write_relay_json(&settings, addr.port())?;
    tracing::info!(%addr, "bridge API listening (the WebProxy is not built yet)");
    let shutdown = async {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        tracing::info!("stopping");
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// `relay.json` tells the provider where the bridge listens (the port may be ephemeral).
fn write_relay_json(settings: &Settings, bridge_port: u16) -> anyhow::Result<()> {
    let info = serde_json::json!({ "bridge_port": bridge_port, "pid": std::process::id() });
    let tmp = settings.run_dir.join("relay.json.tmp");
    std::fs::write(&tmp, info.to_string())?;
    std::fs::rename(&tmp, settings.run_dir.join("relay.json"))?;
    Ok(())
}
