//! Arguments of the commands that move files between the host and a box: `cp`, `sync`,
//! `download`.

use clap::Args;

/// `agentbox cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// SRC… DST.
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    pub paths: Vec<String>,
    /// The largest download accepted from the box, in bytes [config transfer.maxBytes,
    /// default 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<u64>,
    /// Print what was written as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `agentbox sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `agentbox download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Show the change list and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Also bring back `.env*` files that git ignores.
    #[arg(long)]
    pub with_env: bool,
    /// Also write the files the host executes (review them in the change list first).
    #[arg(long)]
    pub allow_host_executed: bool,
    /// Take the box's version of files changed on both sides since the seed or last sync
    /// (conflicts; without it the host's stay).
    #[arg(long)]
    pub theirs: bool,
    /// Print the change list (and what was written) as JSON.
    #[arg(long)]
    pub json: bool,
}
