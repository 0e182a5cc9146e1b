//! Arguments of `agentbox dashboard`.

use clap::Args;

/// `agentbox dashboard`.
#[derive(Debug, Args)]
#[command(after_help = "\
Keys: ↑/↓ select, Enter or a attach (detach with Ctrl-a d to come back), o open the box's
address (or pick a service), s open its screen, y/n approve/deny its oldest waiting request,
S stop (asks first) or start, ? help, q quit.

Agent states and approvals come from what the host bridge records; whether a box runs and
its services are asked of each box in the background every few seconds (2 s local, 5 s
docker and daytona), so a slow or dead box never stalls the screen: it shows as
unreachable.")]
pub struct DashboardArgs {
    /// Every box of this machine, not only the current project's (the default outside a
    /// git repository).
    #[arg(short = 'g', long)]
    pub global: bool,
}
