//! The `agentbox` command line: argument definitions only, one file per command family.
//! What each command does is in [`crate::commands`], under the same family name.
//!
//! | family | commands | arguments | behaviour |
//! |---|---|---|---|
//! | boxes | create, run, list, status, stop, start, destroy | [`boxes`] | `commands::create` (create, run), `commands::boxes` |
//! | dashboard | dashboard | [`dashboard`] | `commands::dashboard` (`crate::dashboard`) |
//! | exec | exec, attach, shell | [`exec`] | `commands::exec` |
//! | files | cp, sync, download | [`files`] | `commands::files` |
//! | git | git, approvals, approve, deny, audit, bridge | [`git`] | `commands::git` |
//! | config | config get/set/unset/list | [`config`] | `commands::config` |
//! | images | prepare, prune | [`images`] | `commands::images` |
//! | url | url | [`url`] | `commands::url` |
//! | screen | screen | [`screen`] | `commands::screen` |
//! | proxy | proxy start/stop/status/trust | [`proxy`] | `commands::proxy` |
//! | share | share, join | [`share`] | `commands::share`, `commands::joined` (what works on a joined box) |
//! | services | logs, services, port | [`services`] | `commands::services`, `commands::port` |
//! | top | top | [`top`] | `commands::top` (`crate::stats`) |
//! | daytona | daytona login/resync, checkpoint | [`daytona`] | `commands::daytona` |
//! | agents | claude, codex, opencode, resync | [`agents`] | `commands::agents` |
//! | setup | install, completions | [`setup`] | `commands::setup` |

pub mod agents;
pub mod boxes;
pub mod config;
pub mod dashboard;
pub mod daytona;
mod duration;
pub mod exec;
pub mod files;
pub mod git;
pub mod images;
pub mod proxy;
pub mod screen;
pub mod services;
pub mod setup;
pub mod share;
pub mod top;
pub mod url;

use agentbox_protocol::logging::LogFormat;
use clap::{Parser, Subcommand};

pub use agents::{AgentArgs, ResyncArgs};
pub use boxes::{
    BoxArg, BoxesArg, CreateArgs, CreateOpts, DestroyArgs, ListArgs, ListFilter, ListFormat,
    ListKey, RunArgs, StatusArgs,
};
pub use config::{ConfigCmd, Scope};
pub use dashboard::DashboardArgs;
pub use daytona::{CheckpointCmd, DaytonaCmd};
pub use exec::{AttachArgs, ExecArgs, ShellArgs, ViewArgs};
pub use files::{CpArgs, DownloadArgs, SyncArgs};
pub use git::{ApprovalIdArg, ApprovalsArgs, AuditArgs, BridgeCmd, GitArgs};
pub use images::{PrepareArgs, PruneArgs};
pub use proxy::ProxyCmd;
pub use screen::ScreenArgs;
pub use services::{LogsArgs, PortArgs, ServicesArgs};
pub use setup::{CompletionsArgs, InstallArgs};
pub use share::{JoinArgs, ShareArgs};
pub use top::TopArgs;
pub use url::UrlArgs;

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
    /// Every box of the project (or -g all) on a live screen: state, agents, services,
    /// waiting requests; keys attach, open, approve/deny, stop/start.
    Dashboard(DashboardArgs),
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
    /// Build the box image of a provider (docker: from Dockerfile.box) and pin it: a docker
    /// image for this machine (global `box.image`, used by every repository), a Daytona
    /// snapshot in the project config. Does nothing when its inputs are unchanged.
    Prepare(PrepareArgs),
    /// Print (and `--open` open) the address of the box's screen: the noVNC page of the
    /// display its browser runs on, to watch the agent and take over. Boxes made from an
    /// image with the browser (`agentbox prepare --browser`); docker boxes through their
    /// WebProxy, Daytona boxes as a signed preview link.
    Screen(ScreenArgs),
    /// Print the address of a box's default service, or of the service exposing --port.
    ///
    /// The same form on every provider, through the host's HTTPS proxy (started if
    /// needed; see `agentbox proxy`): `https://<box>.localhost:<proxy port>` for the
    /// default service, `https://<service>.<box>.localhost:<proxy port>` for one service;
    /// it stays the same across stop and start. `--direct` prints the provider's own
    /// address instead (docker: the WebProxy's published port, which changes at each
    /// start; Daytona: a signed preview link).
    Url(UrlArgs),
    /// The host's HTTPS proxy of `https://<service>.<box>.localhost` addresses (started
    /// on demand by `agentbox url`), and trusting its local CA.
    #[command(subcommand)]
    Proxy(ProxyCmd),
    /// Invite a teammate to a box: prints an invite (`abx1_…`) with a scoped, expiring
    /// token — watch its sessions (type too with --write), its web address, its logs —
    /// never your bridge token or Daytona credentials. `--list` and `--revoke ID` manage
    /// the box's shares; a revoked share's sessions end within seconds.
    Share(ShareArgs),
    /// Record a teammate's box from the invite they gave you (`agentbox share`): then
    /// `attach`, `url` and `logs` work on it as its share allows; `destroy` forgets it.
    Join(JoinArgs),
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
    /// Live CPU, memory, disk and heaviest processes of each box (or BOX), measured inside
    /// the box by its relay; `--json` prints one sample.
    Top(TopArgs),
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
