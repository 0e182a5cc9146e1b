//! Arguments of the commands around the host bridge: `git`, `approvals`, `approve`,
//! `deny`, `audit`, `bridge`.

use clap::{Args, Subcommand};

/// `agentbox git`.
#[derive(Debug, Args)]
pub struct GitArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// push, pull or fetch, and their arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub args: Vec<String>,
}

/// `agentbox approvals`.
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// Also show decided and expired ones.
    #[arg(long)]
    pub all: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `agentbox approve ID` and `agentbox deny ID`.
#[derive(Debug, Args)]
pub struct ApprovalIdArg {
    /// The approval id.
    pub id: String,
}

/// `agentbox audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Print JSON (the entries as they are recorded, times in ms since the epoch).
    #[arg(long)]
    pub json: bool,
    /// Only the requests of this box.
    #[arg(long = "box", value_name = "BOX")]
    pub target: Option<String>,
    /// Only the requests of the last DURATION (30s, 5m, 1h, or seconds).
    #[arg(long, value_name = "DURATION", value_parser = super::duration::parse_duration)]
    pub since: Option<std::time::Duration>,
}

/// `bridge …`
#[derive(Debug, Subcommand)]
pub enum BridgeCmd {
    /// Start the daemon in the background (one per AGENTBOX_HOME).
    Start,
    /// Stop it.
    Stop,
    /// Say whether it runs.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run it in the foreground.
    #[command(hide = true)]
    Run,
}
