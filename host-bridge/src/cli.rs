//! The `agentbox` command line.

use agentbox_protocol::logging::LogFormat;
use clap::{CommandFactory, Parser, Subcommand};

/// Run coding agents (Claude Code, Codex, OpenCode, any command) in sandboxes seeded from
/// your repo. The box never holds your git credentials: a push in the box becomes a
/// request that this host answers.
#[derive(Debug, Parser)]
#[command(name = "agentbox", version)]
pub struct Cli {
    /// Log format (stderr).
    #[arg(
        long,
        global = true,
        default_value = "pretty",
        value_name = "pretty|json"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Runs a parsed command.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Cmd::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "agentbox",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}
