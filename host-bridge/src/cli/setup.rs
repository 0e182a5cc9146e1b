//! Arguments of the commands that set this machine up: `install`, `completions`.

use clap::Args;

/// `agentbox install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Only report; ask nothing.
    #[arg(long)]
    pub check: bool,
}

/// `agentbox completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}
