//! Arguments of the box lifecycle: `create`, `run`, `list`, `status`, `stop`, `start`,
//! `destroy`.

use clap::Args;

/// Options shared by the commands that create a box.
#[derive(Debug, Args, Clone)]
pub struct CreateOpts {
    /// Where the box runs (default: config `box.provider`, built-in `local`).
    #[arg(long)]
    pub provider: Option<String>,
    /// Box name (default: <repo>-<n>).
    #[arg(long)]
    pub name: Option<String>,
    /// Seed from this host branch instead of the current checkout (uncommitted changes stay behind).
    #[arg(long)]
    pub branch: Option<String>,
    /// CPU-MEM-DISK of the box, e.g. 2-4-8 (default: config `box.size`; for a daytona box
    /// `box.sizeDaytona` first). Docker does not enforce the disk with its default storage
    /// driver. A daytona box otherwise gets its snapshot's resources; another size is
    /// built from the snapshot's Dockerfile (Daytona reuses its build).
    #[arg(long)]
    pub size: Option<String>,
    /// Start a daytona box from this checkpoint (default: `box.defaultCheckpointDaytona`);
    /// its workspace is the checkpoint's, not seeded from here.
    #[arg(long, value_name = "NAME")]
    pub checkpoint: Option<String>,
    /// Ask nothing: a Daytona snapshot baked from older inputs boots as it is (with a
    /// warning) instead of offering to bake it again.
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Run a Docker engine inside the box (its image or snapshot made with
    /// `prepare --dind`). A docker box's container gets CAP_SYS_ADMIN and NET_ADMIN
    /// without seccomp or AppArmor confinement: whatever runs in it can then act as root on
    /// this machine. Daytona starts the engine of such a snapshot in every sandbox itself.
    #[arg(long)]
    pub dind: bool,
}

/// `agentbox create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Creation options.
    #[command(flatten)]
    pub opts: CreateOpts,
    /// Print the box record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `agentbox run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Creation options.
    #[command(flatten)]
    pub opts: CreateOpts,
    /// Do not attach.
    #[arg(short, long)]
    pub detach: bool,
    /// The command.
    #[arg(last = true, required = true)]
    pub argv: Vec<String>,
}

/// `agentbox list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `agentbox status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// A command that takes one box and nothing else (`stop`, `start`).
#[derive(Debug, Args)]
pub struct BoxArg {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
}

/// `agentbox destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
    /// Do not ask.
    #[arg(short, long)]
    pub yes: bool,
    /// Destroy even a box with commits the host has not received or changed files not
    /// brought back, or one that cannot be checked (stopped); `-y` alone refuses those.
    #[arg(long)]
    pub force: bool,
}
