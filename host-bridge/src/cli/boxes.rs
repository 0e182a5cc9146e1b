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
    /// Print JSON (the same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Output format: an aligned table, or JSON for programs.
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the names, one a line (for scripts: `agentbox stop $(agentbox list -q)`).
    #[arg(short, long, conflicts_with_all = ["json", "format"])]
    pub quiet: bool,
    /// Only the boxes whose KEY is VALUE; KEY is name, provider, state or project (a path:
    /// that repository's boxes). Repeat to narrow further.
    #[arg(long, value_name = "KEY=VALUE")]
    pub filter: Vec<ListFilter>,
}

/// How `list` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    /// An aligned table with a header.
    Table,
    /// A JSON array, one object per box.
    Json,
}

/// One `--filter KEY=VALUE` of `list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFilter {
    /// name, provider, state or project.
    pub key: ListKey,
    /// What it must be.
    pub value: String,
}

/// The fields `list --filter` can test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKey {
    /// The box name.
    Name,
    /// local, docker or daytona.
    Provider,
    /// running, stopped, creating, …
    State,
    /// The repository the box was seeded from.
    Project,
}

impl std::str::FromStr for ListFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not KEY=VALUE (e.g. state=running)"))?;
        let key = match key {
            "name" => ListKey::Name,
            "provider" => ListKey::Provider,
            "state" => ListKey::State,
            "project" => ListKey::Project,
            other => {
                return Err(format!(
                    "unknown filter key `{other}`: use name, provider, state or project"
                ))
            }
        };
        Ok(Self {
            key,
            value: value.to_string(),
        })
    }
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

/// A command that takes one box and nothing else.
#[derive(Debug, Args)]
pub struct BoxArg {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: Option<String>,
}

/// A command that takes boxes and nothing else (`stop`, `start`).
#[derive(Debug, Args)]
pub struct BoxesArg {
    /// The boxes (default: the project's only box); each is done even when another fails.
    #[arg(value_name = "BOX")]
    pub targets: Vec<String>,
}

/// `agentbox destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The boxes (default: the project's only box); each is done even when another fails.
    #[arg(value_name = "BOX")]
    pub targets: Vec<String>,
    /// Do not ask.
    #[arg(short, long)]
    pub yes: bool,
    /// Destroy even a box with commits the host has not received or changed files not
    /// brought back, or one that cannot be checked (stopped); `-y` alone refuses those.
    #[arg(long)]
    pub force: bool,
}
