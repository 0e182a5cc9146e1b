//! The `agentbox` command line: argument definitions only, one file per command family.
//! What each command does is in [`crate::commands`], under the same family name.
//!
//! | family | commands | arguments | behaviour |
//! |---|---|---|---|
//! | boxes | create, run, list, status, stop, start, destroy | [`boxes`] | `commands::create` (create, run), `commands::boxes` |
//! | exec | exec, attach, shell | [`exec`] | `commands::exec` |
//! | files | cp, sync, download | [`files`] | `commands::files` |
//! | git | git, approvals, approve, deny, audit, bridge | [`git`] | `commands::git` |
//! | config | config get/set/unset/list | [`config`] | `commands::config` |
//! | images | prepare, prune | [`images`] | `commands::images` |
//! | url | url, screen | [`url`] | `commands::url` |
//! | services | logs, services, port | [`services`] | `commands::services`, `commands::port` |
//! | daytona | daytona login/resync, checkpoint | [`daytona`] | `commands::daytona` |
//! | agents | claude, codex, opencode, resync | [`agents`] | `commands::agents` |
//! | setup | install, completions | [`setup`] | `commands::setup` |

pub mod agents;
pub mod boxes;
pub mod config;
pub mod daytona;
mod duration;
pub mod exec;
pub mod files;
pub mod git;
pub mod images;
pub mod services;
pub mod setup;
pub mod url;

use agentbox_protocol::logging::LogFormat;
use clap::{Parser, Subcommand};

pub use agents::{AgentArgs, ResyncArgs};
pub use boxes::{
    BoxArg, BoxesArg, CreateArgs, CreateOpts, DestroyArgs, ListArgs, ListFilter, ListFormat,
    ListKey, RunArgs, StatusArgs,
};
pub use config::{ConfigCmd, Scope};
pub use daytona::{CheckpointCmd, DaytonaCmd};
pub use exec::{AttachArgs, ExecArgs, ShellArgs, ViewArgs};
pub use files::{CpArgs, DownloadArgs, SyncArgs};
pub use git::{ApprovalIdArg, ApprovalsArgs, AuditArgs, BridgeCmd, GitArgs};
pub use images::{PrepareArgs, PruneArgs};
pub use services::{LogsArgs, PortArgs, ServicesArgs};
pub use setup::{CompletionsArgs, InstallArgs};
pub use url::{ScreenArgs, UrlArgs};

/// Run coding agents (Claude Code, Codex, OpenCode, any command) in sandboxes seeded from
/// your repo. The box never holds your git credentials: a push in the box becomes a
/// request that this host answers.
///
/// BOX may be a name, a number from `agentbox list` (a box keeps its number; a destroyed
/// box's number is never given to another), or omitted when the current project has
/// exactly one box.
#[derive(Debug, Parser)]
#[command(
    name = "agentbox",
    version,
    after_help = "\
Global options (every command takes them):
  --log-format <pretty|json>  The format of log lines on stderr [default: pretty]

State lives in $AGENTBOX_HOME (default ~/.agentbox)."
)]
pub struct Cli {
    /// Log format (stderr). Global: taken by every command, shown once, in `agentbox
    /// --help` (its after-help), not in each command's.
    #[arg(
        long,
        global = true,
        hide = true,
        default_value = "pretty",
        value_name = "pretty|json"
    )]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Cmd,
}

/// The subcommands, in the order `--help` lists them.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a box from the repo you are in: commits, uncommitted changes and untracked files.
    Create(CreateArgs),
    /// List boxes: number, name, provider, state, agents, age, project.
    #[command(visible_aliases = ["ls", "ps"])]
    List(ListArgs),
    /// Show a box: its processes, services and sessions.
    Status(StatusArgs),
    /// Run a command in a box (cwd = workspace, box environment); exits with its exit code.
    Exec(ExecArgs),
    /// Attach the terminal to a tmux session of a box (detach with Ctrl-a d).
    ///
    /// Goes through the box relay's bridge port, so it works the same on every provider:
    /// WebSocket when the path allows it, HTTP streaming otherwise. A connection cut for
    /// less than --reconnect-window resumes byte for byte; after a longer one the session
    /// is attached again and tmux redraws the screen.
    Attach(AttachArgs),
    /// Open a fresh login shell in a new tmux session of a box and attach to it; the
    /// session ends when the shell exits (detach with Ctrl-a d to keep it).
    Shell(ShellArgs),
    /// Create a box and run a command in its tmux session `agent`; attach unless -d.
    Run(RunArgs),
    /// Claude Code in a new box (tmux session `claude`); with BOX, that box's again.
    Claude(AgentArgs),
    /// Codex in a new box (tmux session `codex`); with BOX, that box's again.
    Codex(AgentArgs),
    /// OpenCode in a new box (tmux session `opencode`); with BOX, that box's again.
    Opencode(AgentArgs),
    /// Stop boxes' processes; their workspaces are kept.
    Stop(BoxesArg),
    /// Start stopped boxes again.
    Start(BoxesArg),
    /// Copy this machine's agent credentials (Claude's ~/.claude/.credentials.json, Codex's
    /// ~/.codex/auth.json, OpenCode's ~/.local/share/opencode/auth.json) into a box again,
    /// after they were renewed here. A docker box has its own copy; Daytona boxes share the
    /// organization's credentials volume. Nothing the box writes is copied back.
    Resync(ResyncArgs),
    /// Destroy boxes and every trace of them.
    #[command(visible_alias = "rm")]
    Destroy(DestroyArgs),
    /// Copy files between the host and a box, like `docker cp`.
    ///
    /// Exactly one side is `BOX:PATH`; a relative box path is relative to the box
    /// workspace. Directories are copied whole; into an existing directory (or a path
    /// ending in `/`) entries keep their names. Several sources need a directory as the
    /// destination. Every transfer is verified by blake3 before it lands, lands atomically,
    /// and resumes after a cut connection.
    ///
    /// Examples: `agentbox cp notes.md mybox:docs/`, `agentbox cp mybox:target/report.html .`
    Cp(CpArgs),
    /// Run `git push|pull|fetch` in a box, from the host: the same request the box makes,
    /// answered by the host bridge under the same policy.
    Git(GitArgs),
    /// Bring a box up to date with the host tree: new commits, uncommitted changes and
    /// changed untracked files.
    ///
    /// Only what changed since the last seed or sync travels (commits as a git bundle). The
    /// box wins every conflict: its own uncommitted changes are kept, a merge that
    /// conflicts is left undone (the host's commits wait at refs/agentbox/host), and an
    /// untracked file the box changed is not overwritten.
    Sync(SyncArgs),
    /// Bring the box workspace back into the host tree.
    ///
    /// Lists the files that git does not ignore in the box and differ from the host's, and
    /// asks before writing them. `.git/` is never written; files the host executes
    /// (`.envrc`, `.vscode/tasks.json`, hook directories, …) are held back unless
    /// `--allow-host-executed`. Nothing on the host is deleted.
    Download(DownloadArgs),
    /// Read and change configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The host bridge daemon that answers the boxes' requests (started on demand).
    #[command(subcommand)]
    Bridge(BridgeCmd),
    /// Daytona: credentials (`login`, `resync`), and
    /// `agentbox daytona create|run|claude|codex|opencode …`, which are those commands with
    /// `--provider daytona`.
    #[command(subcommand, after_help = DAYTONA_SUGAR_HELP)]
    Daytona(DaytonaCmd),
    /// Checkpoints of daytona boxes: a box's disk that new boxes start from.
    #[command(subcommand)]
    Checkpoint(CheckpointCmd),
    /// What boxes asked the host to do, and what the host answered.
    Audit(AuditArgs),
    /// Requests from boxes that wait for your decision (see `approve`, `deny`).
    Approvals(ApprovalsArgs),
    /// Let a waiting box request run (the ID is in `agentbox approvals`).
    Approve(ApprovalIdArg),
    /// Refuse a waiting box request.
    Deny(ApprovalIdArg),
    /// Build the box image of a provider (docker: from Dockerfile.box) and pin it in the
    /// project config (`box.image`). Does nothing when its inputs are unchanged.
    Prepare(PrepareArgs),
    /// Print a link to the box's desktop (noVNC on port 6080), when its image has one.
    Screen(ScreenArgs),
    /// Print the host URL of a box's WebProxy, or of a service by the port it exposes.
    ///
    /// A docker box publishes only the WebProxy (8080) and the bridge (8788) on 127.0.0.1;
    /// a service is reached through the WebProxy as `http://<service>.localhost:<port>`.
    Url(UrlArgs),
    /// Print a box's service and task logs (every unit merged by time, or one UNIT);
    /// `-f` follows until Ctrl-C and ends when the box stops.
    Logs(LogsArgs),
    /// List a box's services: state, port and the address to reach each from here.
    Services(ServicesArgs),
    /// Forward a TCP port of a box to this machine, like `kubectl port-forward`.
    ///
    /// Any port listening on the box's loopback, declared in agentbox.yaml or not, through
    /// the box's relay on every provider (Daytona through its preview URL). Connect to
    /// 127.0.0.1:P here (--local P, default the same port); Ctrl-C ends the forward.
    Port(PortArgs),
    /// Remove containers of this AGENTBOX_HOME that no box record knows.
    Prune(PruneArgs),
    /// Set this machine up: choose where boxes run (local, docker, daytona; stored as
    /// `box.provider`), sign in to Daytona, and build the box image or bake the Daytona
    /// snapshot. Asks on a terminal; `-y` takes the answers from flags; `--check` only
    /// reports what the machine has. Safe to run again.
    Install(InstallArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
}

/// What `agentbox daytona --help` says of [`PROVIDER_SUGAR`] (clap lists only `login` and
/// `resync` as its subcommands).
const DAYTONA_SUGAR_HELP: &str = "\
Also, each the same command with `--provider daytona` (see `agentbox CMD --help`):
  agentbox daytona create …    Create a daytona box from the repo you are in
  agentbox daytona run …       Create a daytona box and run a command in it
  agentbox daytona claude …    Claude Code in a new daytona box
  agentbox daytona codex …     Codex in a new daytona box
  agentbox daytona opencode …  OpenCode in a new daytona box
Or set `agentbox config set box.provider daytona` once.";

/// Commands that `agentbox daytona CMD …` runs as `agentbox CMD --provider daytona …`.
pub const PROVIDER_SUGAR: [&str; 5] = ["create", "run", "claude", "codex", "opencode"];

/// Rewrites `agentbox daytona create …` (and the rest of [`PROVIDER_SUGAR`]) into
/// `agentbox create --provider daytona …`; anything else is left alone.
pub fn provider_prefix(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let sugar = args.get(1).is_some_and(|a| a == "daytona")
        && args
            .get(2)
            .and_then(|a| a.to_str())
            .is_some_and(|a| PROVIDER_SUGAR.contains(&a));
    if sugar {
        args.remove(1);
        args.insert(2, "--provider".into());
        args.insert(3, "daytona".into());
    }
    args
}
