//! `agentbox-relay` entry point.

use std::process::ExitCode;

use agentbox_protocol::logging::LogFormat;
use clap::Parser;

/// The in-box relay: the WebProxy on AGENTBOX_WEB_PORT (8080) and the bridge API on
/// AGENTBOX_BRIDGE_PORT (8788) that the host polls. Configured by the environment
/// contract (AGENTBOX_* variables); it takes no subcommand.
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
    match agentbox_relay::Settings::from_env() {
        Ok(settings) => {
            tracing::error!(
                ?settings,
                "the WebProxy and bridge listeners are not built yet (issues #4 and #6)"
            );
            eprintln!("agentbox-relay: not implemented yet: the WebProxy and the bridge API land with issues #4 and #6");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("agentbox-relay: {e}");
            ExitCode::from(2)
        }
    }
}
