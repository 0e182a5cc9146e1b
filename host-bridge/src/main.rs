//! `agentbox` entry point.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = agentbox::cli::Cli::parse_from(agentbox::cli::provider_prefix(std::env::args_os()));
    agentbox_protocol::logging::init(cli.log_format, "warn");
    match agentbox::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentbox: {e:#}");
            ExitCode::from(1)
        }
    }
}
