//! Arguments of the agent commands: `claude`, `codex`, `opencode`, and `resync` (their
//! credentials).

use clap::Args;

use super::boxes::CreateOpts;

/// Arguments of `claude`, `codex`, `opencode`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// An existing box: attach to its agent session, or resume the agent's last
    /// conversation there when the session is gone (after a box restart). Without it, a
    /// new box is created.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Creation options (for a new box).
    #[command(flatten)]
    pub opts: CreateOpts,
    /// Do not attach.
    #[arg(short, long)]
    pub detach: bool,
    /// Extra arguments for the agent.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// `agentbox resync`.
#[derive(Debug, Args)]
pub struct ResyncArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
}
