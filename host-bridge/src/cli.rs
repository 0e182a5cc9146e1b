//! The `agentbox` command line: definitions and what each command does.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use agentbox_protocol::logging::LogFormat;
use agentbox_protocol::term::TermEnd;
use anyhow::{bail, Context};
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::config::{self, Layer, Resolved};
use crate::home::Home;
use crate::image::Agent;
use crate::provider::{self, AnyBox};
use crate::state::{BoxRecord, State};
use crate::{git, seed};

/// Run coding agents (Claude Code, Codex, OpenCode, any command) in sandboxes seeded from
/// your repo. The box never holds your git credentials: a push in the box becomes a
/// request that this host answers.
///
/// BOX may be a name, an index from `agentbox list`, or omitted when the current project
/// has exactly one box.
#[derive(Debug, Parser)]
#[command(
    name = "agentbox",
    version,
    after_help = "State lives in $AGENTBOX_HOME (default ~/.agentbox)."
)]
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
    /// CPU-MEM-DISK of a docker box, e.g. 2-4-8 (default: config `box.size`; disk is not
    /// enforced by Docker's default storage driver). A daytona box has its snapshot's
    /// resources (2-4-8); --size there only warns.
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

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a box from the repo you are in: commits, uncommitted changes and untracked files.
    Create {
        /// Creation options.
        #[command(flatten)]
        opts: CreateOpts,
        /// Print the box record as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List boxes.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a box: its processes, services and sessions.
    Status {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a box (cwd = workspace, box environment); exits with its exit code.
    Exec {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// The command.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Attach the terminal to a tmux session of a box (detach with Ctrl-a d).
    ///
    /// Goes through the box relay's bridge port, so it works the same on every provider:
    /// WebSocket when the path allows it, HTTP streaming otherwise. A connection cut for
    /// less than --reconnect-window resumes byte for byte; after a longer one the session
    /// is attached again and tmux redraws the screen.
    Attach {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// Session name (default: the box's only session).
        #[arg(long, short)]
        session: Option<String>,
        /// Attach options.
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Open a fresh login shell in a new tmux session of a box and attach to it; the
    /// session ends when the shell exits (detach with Ctrl-a d to keep it).
    Shell {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// Name of the new session (default: shell-N).
        #[arg(long)]
        name: Option<String>,
        /// Attach options.
        #[command(flatten)]
        view: ViewArgs,
    },
    /// Create a box and run a command in its tmux session `agent`; attach unless -d.
    Run {
        /// Creation options.
        #[command(flatten)]
        opts: CreateOpts,
        /// Do not attach.
        #[arg(short, long)]
        detach: bool,
        /// The command.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// Claude Code in a new box (tmux session `claude`); with BOX, that box's again.
    Claude(AgentArgs),
    /// Codex in a new box (tmux session `codex`); with BOX, that box's again.
    Codex(AgentArgs),
    /// OpenCode in a new box (tmux session `opencode`); with BOX, that box's again.
    Opencode(AgentArgs),
    /// Stop a box's processes; its workspace is kept.
    Stop {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
    },
    /// Start a stopped box again.
    Start {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
    },
    /// Copy this machine's agent credentials (Claude's ~/.claude/.credentials.json, Codex's
    /// ~/.codex/auth.json, OpenCode's ~/.local/share/opencode/auth.json) into a box again,
    /// after they were renewed here. A docker box has its own copy; Daytona boxes share the
    /// organization's credentials volume. Nothing the box writes is copied back.
    Resync {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
    },
    /// Destroy a box and every trace of it.
    Destroy {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// Do not ask.
        #[arg(short, long)]
        yes: bool,
    },
    /// Copy files between the host and a box, like `docker cp`.
    ///
    /// Exactly one side is `BOX:PATH`; a relative box path is relative to the box
    /// workspace. Directories are copied whole; into an existing directory (or a path
    /// ending in `/`) entries keep their names. Several sources need a directory as the
    /// destination. Every transfer is verified by blake3 before it lands, lands atomically,
    /// and resumes after a cut connection.
    ///
    /// Examples: `agentbox cp notes.md mybox:docs/`, `agentbox cp mybox:target/report.html .`
    Cp {
        /// SRC… DST.
        #[arg(required = true, num_args = 2.., value_name = "PATH")]
        paths: Vec<String>,
        /// The largest download accepted from the box, in bytes [config transfer.maxBytes,
        /// default 1 GiB].
        #[arg(long, value_name = "BYTES")]
        max_size: Option<u64>,
        /// Print what was written as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run `git push|pull|fetch` in a box, from the host: the same request the box makes,
    /// answered by the host bridge under the same policy.
    Git {
        /// The box.
        #[arg(value_name = "BOX")]
        target: String,
        /// push, pull or fetch, and their arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Bring a box up to date with the host tree: new commits, uncommitted changes and
    /// changed untracked files.
    ///
    /// Only what changed since the last seed or sync travels (commits as a git bundle). The
    /// box wins every conflict: its own uncommitted changes are kept, a merge that
    /// conflicts is left undone (the host's commits wait at refs/agentbox/host), and an
    /// untracked file the box changed is not overwritten.
    Sync {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring the box workspace back into the host tree.
    ///
    /// Lists the files that git does not ignore in the box and differ from the host's, and
    /// asks before writing them. `.git/` is never written; files the host executes
    /// (`.envrc`, `.vscode/tasks.json`, hook directories, …) are held back unless
    /// `--allow-host-executed`. Nothing on the host is deleted.
    Download {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// Show the change list and stop.
        #[arg(long)]
        dry_run: bool,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
        /// Also bring back `.env*` files that git ignores.
        #[arg(long)]
        with_env: bool,
        /// Also write the files the host executes (review them in the change list first).
        #[arg(long)]
        allow_host_executed: bool,
        /// Print the change list (and what was written) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Read and change configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// The host bridge daemon that answers the boxes' requests (started on demand).
    #[command(subcommand)]
    Bridge(BridgeCmd),
    /// Daytona: credentials (`login`, `resync`), and the provider sugar.
    #[command(subcommand)]
    Daytona(DaytonaCmd),
    /// Checkpoints of daytona boxes: a box's disk that new boxes start from.
    #[command(subcommand)]
    Checkpoint(CheckpointCmd),
    /// What boxes asked the host to do, and what the host answered.
    Audit {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Requests from boxes that wait for your decision (see `approve`, `deny`).
    Approvals {
        /// Also show decided and expired ones.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Let a waiting box request run (the ID is in `agentbox approvals`).
    Approve {
        /// The approval id.
        id: String,
    },
    /// Refuse a waiting box request.
    Deny {
        /// The approval id.
        id: String,
    },
    /// Build the box image of a provider (docker: from Dockerfile.box) and pin it in the
    /// project config (`box.image`). Does nothing when its inputs are unchanged.
    Prepare {
        /// The provider (docker, or daytona: the image is then made a Daytona snapshot).
        #[arg(long, default_value = "docker")]
        provider: String,
        /// The base image (default: config `box.baseImage`, else debian:bookworm-slim).
        #[arg(long, value_name = "IMG")]
        base_image: Option<String>,
        /// Rebuild even when the inputs are unchanged.
        #[arg(long)]
        force: bool,
        /// The agents to bake in: a comma-separated list of claude, codex and opencode, or
        /// `none` (default: config `box.agents`, else all three). Their packages are fetched
        /// on this machine with `npm pack`, cached in ~/.cache/agentbox/agents
        /// (AGENTBOX_AGENT_CACHE).
        #[arg(long, value_name = "LIST")]
        agents: Option<String>,
        /// Bake a Docker engine into the image, for boxes created with `--dind` (default:
        /// config `box.dind`, else no; about 150 MB more).
        #[arg(long)]
        dind: bool,
    },
    /// Print a link to the box's desktop (noVNC on port 6080), when its image has one.
    Screen {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// How long a Daytona link lasts (1h to 24h).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<std::time::Duration>,
    },
    /// Print the host URL of a box's WebProxy, or of a service by the port it exposes.
    ///
    /// A docker box publishes only the WebProxy (8080) and the bridge (8788) on 127.0.0.1;
    /// a service is reached through the WebProxy as `http://<service>.localhost:<port>`.
    Url {
        /// The box.
        #[arg(value_name = "BOX")]
        target: Option<String>,
        /// The port a service exposes (`expose.port` in agentbox.yaml), or 8788 for the
        /// bridge.
        #[arg(long)]
        port: Option<u16>,
        /// How long a Daytona link lasts (1h to 24h; it carries its own token).
        #[arg(long, value_parser = parse_ttl)]
        ttl: Option<std::time::Duration>,
    },
    /// Remove containers of this AGENTBOX_HOME that no box record knows.
    Prune {
        /// The provider (docker or daytona).
        #[arg(long, default_value = "docker")]
        provider: String,
        /// Only list them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check what agentbox needs on this machine (tmux, git, docker, Daytona credentials)
    /// and, on a terminal, offer to log in to Daytona.
    Install {
        /// Only report; ask nothing.
        #[arg(long)]
        check: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Options of `download`.
pub struct DownloadOpts {
    /// Only show the change list.
    pub dry_run: bool,
    /// Do not ask.
    pub yes: bool,
    /// Include ignored `.env*` files.
    pub with_env: bool,
    /// Write host-executed files too.
    pub allow_host_executed: bool,
    /// JSON output.
    pub json: bool,
}

/// `agentbox install`: what this machine has for each provider, and the Daytona login on
/// a terminal. Exit 0 when the local provider can run.
fn install(home: &Home, check: bool) -> anyhow::Result<ExitCode> {
    let found = |program: &str, arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let line = |ok: bool, what: &str, fix: &str| {
        if ok {
            println!("ok       {what}");
        } else {
            println!("missing  {what}: {fix}");
        }
    };
    let tmux = found("tmux", "-V");
    let git = found("git", "--version");
    line(
        tmux,
        "tmux (agent sessions)",
        "install it (apt-get install tmux)",
    );
    line(
        git,
        "git (seeding, push)",
        "install it (apt-get install git)",
    );
    line(
        found("docker", "info"),
        "a Docker engine (the docker provider)",
        "install docker.io and start dockerd",
    );
    let settings = crate::daytona::login::Settings::load(home.root())?;
    line(
        settings.key.is_some(),
        "Daytona credentials (the daytona provider)",
        "run `agentbox daytona login`",
    );
    if settings.key.is_none()
        && !check
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
    {
        eprint!("Log in to Daytona now? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim().eq_ignore_ascii_case("y") {
            crate::daytona::login::login(home.root(), crate::daytona::login::LoginArgs::default())?;
        }
    }
    Ok(if tmux && git {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `agentbox checkpoint …`.
#[derive(Debug, Subcommand)]
pub enum CheckpointCmd {
    /// Capture a daytona box's disk as checkpoint NAME (the box runs on afterwards).
    Create {
        /// Its name (a-z, 0-9, -).
        name: String,
        /// The box (default: the project's only box).
        #[arg(long = "box", value_name = "BOX")]
        target: Option<String>,
        /// New daytona boxes of this project start from it (`box.defaultCheckpointDaytona`).
        #[arg(long)]
        set_default: bool,
        /// Not offered (the original's docker options): refused with a reason.
        #[arg(long, hide = true)]
        merged: bool,
        /// Not offered: refused with a reason.
        #[arg(long, hide = true)]
        replace: bool,
    },
    /// The project's checkpoints.
    List {
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a checkpoint and its snapshot.
    Rm {
        /// Its name.
        name: String,
    },
}

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

/// `agentbox daytona …`. Also `agentbox daytona create|run|claude|codex|opencode …`: the
/// same command with `--provider daytona` (or set `box.provider: daytona` once).
#[derive(Debug, Subcommand)]
pub enum DaytonaCmd {
    /// Check a Daytona API key with one cheap call and keep it in
    /// $AGENTBOX_HOME/secrets.env (0600). DAYTONA_API_KEY, DAYTONA_ORGANIZATION_ID and
    /// DAYTONA_API_URL in the environment win over the file; project .env files are never
    /// read.
    Login {
        /// The key (`-` reads it from stdin). Without it: a prompt that does not echo, or
        /// a line from stdin when that is not a terminal (keeps the key out of argv).
        #[arg(long, value_name = "KEY")]
        api_key: Option<String>,
        /// The organization, for keys that reach several.
        #[arg(long, value_name = "ORG")]
        org_id: Option<String>,
        /// Daytona's API (default https://app.daytona.io/api).
        #[arg(long, value_name = "URL")]
        api_url: Option<String>,
        /// Show what is configured (key masked) and whether Daytona accepts it; exit 1
        /// when it does not.
        #[arg(long)]
        status: bool,
        /// With --status: JSON.
        #[arg(long, requires = "status")]
        json: bool,
    },
    /// Copy this machine's renewable agent credentials (Claude `.credentials.json`, Codex
    /// and OpenCode `auth.json`) into the organization's credentials volume, which every
    /// Daytona box mounts; nothing is copied back.
    Resync {
        /// A running daytona box to write through (default: the project's only box).
        #[arg(value_name = "BOX")]
        target: Option<String>,
    },
}

/// How `attach` and `shell` view a session.
#[derive(Debug, Args)]
pub struct ViewArgs {
    /// Watch without typing (only detach, Ctrl-a d, works).
    #[arg(long)]
    pub read_only: bool,
    /// auto: WebSocket, or HTTP streaming when the path refuses it.
    #[arg(long, value_enum, default_value = "auto")]
    pub transport: crate::attach::wire::Transport,
    /// How long a cut connection may take to come back and resume with no output lost
    /// (e.g. 30s, 5m, 1h; at most 1h).
    #[arg(long, default_value = "5m", value_parser = parse_window)]
    pub reconnect_window: std::time::Duration,
    /// Append a copy of everything the session prints to this file.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

/// `1h` to `24h` (or minutes/seconds that add up to that) for a signed preview link.
fn parse_ttl(text: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(text)?;
    if !(3600..=86_400).contains(&d.as_secs()) {
        return Err(format!("`{text}`: a link lasts from 1h to 24h"));
    }
    Ok(d)
}

/// `30s`, `5m`, `1h` or plain seconds.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s, 5m or 1h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("`{text}`: the unit must be s, m or h")),
    };
    Ok(std::time::Duration::from_secs(seconds))
}

/// `30s`, `5m`, `1h` or plain seconds, at most an hour.
fn parse_window(text: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() || d.as_secs() > 3600 {
        return Err(format!("`{text}` must be between 1s and 1h"));
    }
    Ok(d)
}

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

/// Which file `config set|unset` writes.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct Scope {
    /// The global config ($AGENTBOX_HOME/config.yaml).
    #[arg(long)]
    pub global: bool,
    /// This project's config (the default inside a repo).
    #[arg(long)]
    pub project: bool,
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

/// `config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective value of a key.
    Get {
        /// The key.
        key: String,
        /// Show every layer: flag > agentbox.yaml defaults > project > global > built-in.
        #[arg(long)]
        all: bool,
    },
    /// Set a key.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Where.
        #[command(flatten)]
        scope: Scope,
    },
    /// Remove a key from a config file.
    Unset {
        /// The key.
        key: String,
        /// Where.
        #[command(flatten)]
        scope: Scope,
    },
    /// Every known key with its effective value and where it comes from.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a parsed command; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Cmd::Completions { shell } = &cli.command {
        clap_complete::generate(
            *shell,
            &mut Cli::command(),
            "agentbox",
            &mut std::io::stdout(),
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Cmd::Bridge(BridgeCmd::Run) = &cli.command {
        crate::bridge::run(&Home::from_env()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Cmd::Install { check } = &cli.command {
        return install(&Home::from_env()?, *check);
    }
    if let Cmd::Daytona(DaytonaCmd::Login {
        api_key,
        org_id,
        api_url,
        status,
        json,
    }) = &cli.command
    {
        let (api_key, org_id, api_url, status, json) = (
            api_key.clone(),
            org_id.clone(),
            api_url.clone(),
            *status,
            *json,
        );
        let home = Home::from_env()?;
        if status {
            let accepted = crate::daytona::login::status(home.root(), json)?;
            return Ok(if accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        let args = crate::daytona::login::LoginArgs {
            api_key,
            org_id,
            api_url,
        };
        crate::daytona::login::login(home.root(), args)?;
        return Ok(ExitCode::SUCCESS);
    }
    let ctx = Ctx::new()?;
    match cli.command {
        Cmd::Completions { .. } | Cmd::Install { .. } => Ok(ExitCode::SUCCESS),
        Cmd::Create { opts, json } => {
            let record = ctx.create(&opts)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&record)?);
            } else {
                println!("{}", record.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::List { json } => ctx.list(json),
        Cmd::Status { target, json } => ctx.status(target.as_deref(), json),
        Cmd::Exec { target, argv } => {
            let record = ctx.resolve(target.as_deref())?;
            let code = Ctx::open_box(&record)?.exec(&argv)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Cmd::Attach {
            target,
            session,
            view,
        } => {
            let record = ctx.resolve(target.as_deref())?;
            Ctx::view(&record, session, false, &view)
        }
        Cmd::Shell { target, name, view } => {
            let record = ctx.resolve(target.as_deref())?;
            Ctx::view(&record, name, true, &view)
        }
        Cmd::Run { opts, detach, argv } => ctx.run_in_session(&opts, "agent", &argv, None, detach),
        Cmd::Claude(a) => ctx.agent(Agent::Claude, &a),
        Cmd::Codex(a) => ctx.agent(Agent::Codex, &a),
        Cmd::Opencode(a) => ctx.agent(Agent::Opencode, &a),
        Cmd::Stop { target } => {
            let record = ctx.resolve(target.as_deref())?;
            Ctx::open_box(&record)?.stop()?;
            eprintln!("stopped {}", record.name);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Start { target } => {
            let record = ctx.resolve(target.as_deref())?;
            let b = Ctx::open_box(&record)?;
            if b.running() {
                bail!("box `{}` is already running", record.name);
            }
            let url = b.start(&record.bridge_token)?;
            ctx.state.update(&record.name, "ready", Some(&url))?;
            eprintln!("started {}", record.name);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Destroy { target, yes } => ctx.destroy(target.as_deref(), yes),
        Cmd::Config(cmd) => ctx.config(cmd),
        Cmd::Bridge(cmd) => ctx.bridge(&cmd),
        Cmd::Checkpoint(cmd) => ctx.checkpoint(cmd),
        Cmd::Daytona(DaytonaCmd::Resync { target }) => {
            let record = ctx.resolve(target.as_deref())?;
            if record.provider != "daytona" {
                bail!(
                    "box `{}` is a {} box: use `agentbox resync {}`",
                    record.name,
                    record.provider,
                    record.name
                );
            }
            Ctx::resync(&record)
        }
        Cmd::Resync { target } => {
            let record = ctx.resolve(target.as_deref())?;
            Ctx::resync(&record)
        }
        Cmd::Daytona(DaytonaCmd::Login { .. }) => {
            unreachable!("handled before the context is made")
        }
        Cmd::Audit { json } => ctx.audit(json),
        Cmd::Approvals { all, json } => ctx.approvals(all, json),
        Cmd::Prepare {
            provider,
            base_image,
            force,
            agents,
            dind,
        } => ctx.prepare(&provider, base_image, agents, dind, force),
        Cmd::Screen { target, ttl } => {
            let record = ctx.resolve(target.as_deref())?;
            let b = AnyBox::open(&record)?;
            ensure_running(&b, &record.name)?;
            let probe = b.ctl(&["port-open", "6080"]);
            let serving = probe.is_ok_and(|o| o.status.success());
            if !serving {
                bail!(
                    "box `{}` has no desktop: nothing serves port 6080 in it (its image has no VNC/noVNC)",
                    record.name
                );
            }
            match b {
                AnyBox::Daytona(b) => println!(
                    "{}",
                    b.signed_url(6080, ttl.unwrap_or(std::time::Duration::from_secs(3600)))?
                ),
                _ => {
                    bail!("a desktop is shown through a preview link: only daytona boxes have one")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Url { target, port, ttl } => {
            let record = ctx.resolve(target.as_deref())?;
            let b = AnyBox::open(&record)?;
            if ttl.is_some() && !matches!(b, AnyBox::Daytona(_)) {
                bail!(
                    "--ttl is for Daytona preview links; box `{}` is a {} box",
                    record.name,
                    record.provider
                );
            }
            match b {
                AnyBox::Docker(b) => match port {
                    None | Some(8080 | 8788) => println!("{}", b.url(port)?),
                    // A service port is reached through the WebProxy, by its name.
                    Some(p) => {
                        let out = b.ctl(&["status", "--json"])?;
                        let status: serde_json::Value =
                            serde_json::from_slice(&out.stdout).unwrap_or_default();
                        let service = status["units"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .find(|u| u["expose"]["port"].as_u64() == Some(u64::from(p)))
                            .and_then(|u| u["name"].as_str())
                            .with_context(|| {
                                format!("no service of box `{}` exposes port {p}", record.name)
                            })?
                            .to_string();
                        let web = b.url(None)?;
                        println!(
                            "{}",
                            web.replacen("127.0.0.1", &format!("{service}.localhost"), 1)
                        );
                    }
                },
                AnyBox::Local(l) => println!("{}", l.web_url(port)?),
                // A signed link: it carries its own token and expires.
                AnyBox::Daytona(b) => println!(
                    "{}",
                    b.signed_url(
                        port.unwrap_or(8080),
                        ttl.unwrap_or(std::time::Duration::from_secs(3600))
                    )?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Prune { provider, dry_run } => ctx.prune(&provider, dry_run),
        Cmd::Approve { id } => ctx.decide(&id, true),
        Cmd::Deny { id } => ctx.decide(&id, false),
        Cmd::Sync { target, json } => ctx.sync(target.as_deref(), json),
        Cmd::Git { target, args } => {
            if !matches!(
                args.first().map(String::as_str),
                Some("push" | "pull" | "fetch")
            ) {
                bail!("`agentbox git BOX` runs push, pull or fetch in the box; use `agentbox exec BOX -- git …` for the rest");
            }
            let record = ctx.resolve(Some(&target))?;
            let b = AnyBox::open(&record)?;
            ensure_running(&b, &record.name)?;
            let mut argv = vec!["git".to_string()];
            argv.extend(args);
            let code = b.exec(&argv)?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Cmd::Download {
            target,
            dry_run,
            yes,
            with_env,
            allow_host_executed,
            json,
        } => ctx.download(
            target.as_deref(),
            &DownloadOpts {
                dry_run,
                yes,
                with_env,
                allow_host_executed,
                json,
            },
        ),
        Cmd::Cp {
            paths,
            max_size,
            json,
        } => ctx.cp(&paths, max_size, json),
    }
}

/// The agents of a box as `list --json` and `status --json` show them.
fn agents_json(agents: &crate::agents::States, running: bool) -> serde_json::Value {
    agents
        .values()
        .map(|a| {
            serde_json::json!({
                "session": a.session, "agent": a.agent,
                "state": crate::agents::shown_state(a, running),
                "reported_state": a.state, "detail": a.detail, "since_ms": a.since_ms,
            })
        })
        .collect()
}

fn ensure_running(b: &AnyBox, name: &str) -> anyhow::Result<()> {
    if b.running() {
        Ok(())
    } else {
        bail!("box `{name}` is stopped: start it with `agentbox start {name}`")
    }
}

fn valid_box_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        && !b.iter().all(u8::is_ascii_digit)
}

/// The last component of `path`, lowercased, with anything but letters, digits and `-`
/// turned into `-`, trimmed, at most `max` characters.
fn slug(path: &Path, max: usize) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    s.trim_matches('-').to_string()
}

/// The project's id in `AGENTBOX_HOME/projects/`: readable name + hash of the root path.
/// The id of a project's config file under `AGENTBOX_HOME/projects/`.
pub(crate) fn project_id(root: &Path) -> String {
    let hash = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
    format!("{}-{}", slug(root, 40), &hash[..12])
}

struct Ctx {
    home: Home,
    state: State,
    cwd: PathBuf,
}

impl Ctx {
    fn new() -> anyhow::Result<Self> {
        let home = Home::from_env()?;
        let state = State::open(&home.state_db())?;
        Ok(Self {
            home,
            state,
            cwd: std::env::current_dir()?,
        })
    }

    fn repo(&self) -> Option<PathBuf> {
        git::repo_root(&self.cwd).ok()
    }

    fn resolved(&self, flags: BTreeMap<String, String>) -> anyhow::Result<Resolved> {
        let repo = self.repo();
        let project = repo
            .as_deref()
            .map(|r| self.home.project_config(&project_id(r)));
        Resolved::load(
            &self.home.config(),
            project.as_ref(),
            repo.as_deref(),
            flags,
        )
        .map_err(anyhow::Error::msg)
    }

    /// A client for the box's relay, from the host's own record.
    fn relay_of(record: &BoxRecord) -> anyhow::Result<crate::transfer::client::Relay> {
        let url = record
            .bridge_url
            .as_deref()
            .with_context(|| format!("box `{}` has no relay address yet: start it", record.name))?;
        AnyBox::open(record)?.relay(url, &record.bridge_token)
    }

    /// `transfer.maxBytes`: the largest transfer accepted from a box.
    fn max_transfer_bytes(&self) -> anyhow::Result<u64> {
        Ok(self
            .resolved(BTreeMap::new())?
            .get("transfer.maxBytes")
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or(1 << 30))
    }

    fn open_box(record: &BoxRecord) -> anyhow::Result<AnyBox> {
        AnyBox::open(record)
    }

    /// A name, an index from `list`, or the project's only box.
    fn resolve(&self, target: Option<&str>) -> anyhow::Result<BoxRecord> {
        let all = self.state.all()?;
        match target {
            Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                let i: usize = t.parse().unwrap_or(0);
                all.get(i.wrapping_sub(1))
                    .cloned()
                    .with_context(|| format!("there is no box number {t} (see `agentbox list`)"))
            }
            Some(name) => self
                .state
                .get(name)?
                .with_context(|| format!("no box named `{name}` (see `agentbox list`)")),
            None => {
                let repo = self
                    .repo()
                    .context("name a box: you are not inside a git repository")?;
                let mut mine: Vec<BoxRecord> =
                    all.into_iter().filter(|b| b.project == repo).collect();
                match mine.len() {
                    0 => bail!("this project has no box: create one with `agentbox create`"),
                    1 => Ok(mine.remove(0)),
                    n => bail!(
                        "this project has {n} boxes ({}): name one",
                        mine.iter()
                            .map(|b| b.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }
            }
        }
    }

    fn create(&self, opts: &CreateOpts) -> anyhow::Result<BoxRecord> {
        let repo = git::repo_root(&self.cwd)?;
        let mut flags = BTreeMap::new();
        if let Some(p) = &opts.provider {
            flags.insert("box.provider".to_string(), p.clone());
        }
        let cfg = self.resolved(flags)?;
        let provider_name = cfg
            .get("box.provider")
            .map_or("local", |(v, _)| v)
            .to_string();
        provider::ensure_available(&provider_name)?;
        let depth: u32 = cfg
            .get("box.bundleDepth")
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or(200);

        let (ctl, _) = provider::local::box_binaries()?;
        let yaml = repo.join("agentbox.yaml");
        if yaml.exists() {
            let out = std::process::Command::new(&ctl)
                .arg("validate")
                .arg(&yaml)
                .output()?;
            if !out.status.success() {
                bail!("{}", String::from_utf8_lossy(&out.stderr).trim());
            }
        }
        if opts.dind {
            match provider_name.as_str() {
                "docker" => {}
                // Daytona starts the engine itself on every boot when the snapshot has one.
                "daytona" if cfg.get("box.dind").is_some_and(|(v, _)| v == "yes") => {}
                "daytona" => bail!("the Daytona snapshot has no Docker engine: bake one with `agentbox prepare --provider daytona --dind`"),
                other => bail!("--dind is for docker and daytona boxes; a {other} box runs on this machine and can use its Docker"),
            }
        }
        let name = match &opts.name {
            Some(n) if valid_box_name(n) => n.clone(),
            Some(n) => bail!("invalid box name `{n}`: use letters, digits, `-` and `_` (not only digits), at most 63"),
            None => self.free_name(&repo)?,
        };
        if let Some(branch) = &opts.branch {
            git::run(
                &repo,
                &[
                    "rev-parse",
                    "--verify",
                    "-q",
                    &format!("refs/heads/{branch}"),
                ],
            )
            .map_err(|_| anyhow::anyhow!("there is no branch `{branch}` in {}", repo.display()))?;
        }
        let record = BoxRecord {
            name: name.clone(),
            provider: provider_name,
            project: repo.clone(),
            branch: format!("agentbox/{name}"),
            dir: self.home.box_dir(&name),
            created_at_ms: agentbox_protocol::now_millis(),
            phase: "creating".into(),
            bridge_url: None,
            bridge_token: agentbox_protocol::bridge::new_bridge_token()?,
        };
        let docker = if record.provider == "docker" || record.provider == "daytona" {
            let (key, what) = if record.provider == "docker" {
                ("box.image", "box image")
            } else {
                ("box.imageDaytona", "snapshot")
            };
            let mut image = cfg.get(key).map(|(v, _)| v.to_string()).with_context(|| {
                format!(
                    "no {what} for the {} provider: run `agentbox prepare --provider {}` first",
                    record.provider, record.provider
                )
            })?;
            let checkpoint = opts.checkpoint.clone().or_else(|| {
                cfg.get("box.defaultCheckpointDaytona")
                    .map(|(v, _)| v.to_string())
                    .filter(|v| !v.is_empty())
            });
            let mut seeded = false;
            match (&checkpoint, record.provider.as_str()) {
                (Some(name), "daytona") => {
                    let manifest =
                        crate::checkpoint::find(self.home.root(), &project_id(&repo), name)?;
                    eprintln!(
                        "==> from checkpoint {name} (snapshot {})",
                        manifest.snapshot
                    );
                    image = manifest.snapshot;
                    seeded = true;
                }
                (Some(_), _) if opts.checkpoint.is_some() => {
                    bail!("--checkpoint is for daytona boxes")
                }
                _ if record.provider == "daytona" => {
                    image = self.fresh_snapshot(&cfg, image, !opts.yes)?;
                }
                _ => {}
            }
            let size = match opts.size.as_deref().or(cfg.get("box.size").map(|(v, _)| v)) {
                Some(s) => Some(
                    s.parse::<provider::docker::Size>()
                        .map_err(anyhow::Error::msg)?,
                ),
                None => None,
            };
            Some(provider::DockerSettings {
                image,
                home_label: provider::docker::home_label(self.home.root()),
                size,
                seeded,
                dind: opts.dind,
            })
        } else {
            None
        };
        self.state.insert(&record)?;
        // Whatever an earlier box of this name reported is not this box's.
        let _ = std::fs::remove_file(self.home.agent_states(&name));
        let b = AnyBox::open(&record)?;
        match Self::build(&record, &b, opts, depth, docker.as_ref()) {
            Ok(url) => {
                self.state.update(&name, "ready", Some(&url))?;
                // A docker box gets its own copy of this machine's agent credentials.
                if record.provider == "docker" {
                    let sent = std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .map(|home| b.resync(&home));
                    match sent {
                        Some(Ok(agents)) if !agents.is_empty() => {
                            eprintln!("==> agent credentials copied in: {}", agents.join(", "));
                        }
                        Some(Err(e)) => eprintln!("warning: agent credentials not copied: {e:#}"),
                        _ => {}
                    }
                }
                // The box's requests need someone to answer them.
                if let Err(e) = crate::bridge::ensure_started(&self.home) {
                    eprintln!("warning: {e:#}");
                }
                Ok(BoxRecord {
                    phase: "ready".into(),
                    bridge_url: Some(url),
                    ..record
                })
            }
            Err(e) => {
                // Nothing half-made stays behind: processes, directory, record.
                if record.dir.exists() || record.provider != "local" {
                    let _ = b.stop();
                    let _ = b.remove(&record.dir);
                }
                let _ = self.state.remove(&name);
                Err(e.context(format!("could not create box `{name}`")))
            }
        }
    }

    fn build(
        record: &BoxRecord,
        b: &AnyBox,
        opts: &CreateOpts,
        depth: u32,
        docker: Option<&provider::DockerSettings>,
    ) -> anyhow::Result<String> {
        let progress = |s: &str| eprintln!("==> {s}");
        progress(&format!(
            "creating box `{}` ({} provider)",
            record.name, record.provider
        ));
        b.lay_out(record, docker)?;
        if docker.is_some_and(|d| d.seeded) {
            progress("starting the box daemon and relay (the checkpoint holds the workspace)");
            std::fs::create_dir_all(&record.dir)?;
            return b.start(&record.bridge_token);
        }
        progress(&format!(
            "packing the seed (history depth {})",
            if depth == 0 {
                "all".to_string()
            } else {
                depth.to_string()
            }
        ));
        let source = match &opts.branch {
            Some(branch) => seed::Source::Branch(branch.clone()),
            None => seed::Source::Worktree,
        };
        let seed = seed::pack(&record.project, &record.branch, depth, &source)?;
        progress("starting the box daemon and relay");
        let url = b.start(&record.bridge_token)?;
        progress(&format!(
            "uploading the seed ({:.1} MiB{}, {} untracked file(s))",
            seed.size as f64 / 1_048_576.0,
            if seed.manifest.stash.is_some() {
                ", uncommitted changes"
            } else {
                ""
            },
            seed.untracked
        ));
        let relay = b.relay(&url, &record.bridge_token)?;
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(relay.upload_and_use::<serde_json::Value>(
                &agentbox_protocol::files::new_transfer_id()?,
                &seed.archive,
                "/v1/seed",
                &|_, _| {},
            ))
            .context("the box refused the seed")?;
        crate::sync::SyncRecord {
            head: seed.manifest.head.clone(),
            changes_tree: match &seed.manifest.stash {
                Some(s) => git::run(&record.project, &["rev-parse", &format!("{s}^{{tree}}")])?,
                None => String::new(),
            },
            files: seed.digests.clone(),
        }
        .save(&record.dir)?;
        let reload = b.ctl(&["reload"])?;
        if !reload.status.success() {
            bail!(
                "the box rejected agentbox.yaml: {}",
                String::from_utf8_lossy(&reload.stderr).trim()
            );
        }
        progress("waiting for services");
        let wait = b.ctl(&["wait-ready", "--timeout", "60000"])?;
        if !wait.status.success() {
            eprintln!(
                "warning: not every unit is ready:\n{}(see `agentbox status {}`)",
                String::from_utf8_lossy(&wait.stdout),
                record.name
            );
        }
        Ok(url)
    }

    fn download(&self, target: Option<&str>, o: &DownloadOpts) -> anyhow::Result<ExitCode> {
        use crate::download::{self, Change};
        let record = match (target, self.resolve(target)) {
            (Some(what @ ("env" | "config" | "claude")), Err(_)) => bail!(
                "`agentbox download {what}` (the box's env files, config or Claude state) is not built; `agentbox download [BOX]` brings the workspace back (--with-env includes .env files)"
            ),
            (_, found) => found?,
        };
        let relay = Self::relay_of(&record)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let plan = runtime.block_on(download::plan(&relay, &record.project, o.with_env))?;
        let (go, held): (Vec<_>, Vec<_>) = plan
            .files
            .iter()
            .partition(|f| !f.host_executed || o.allow_host_executed);
        if !o.json {
            for f in &plan.files {
                let what = match f.change {
                    Change::New => "new",
                    Change::Modified => "modified",
                };
                let note = if f.host_executed && !o.allow_host_executed {
                    "   (held back: the host runs it; --allow-host-executed)"
                } else if f.host_executed {
                    "   (runs on the host)"
                } else {
                    ""
                };
                eprintln!("  {what:<9}{}{note}", f.path);
            }
            if plan.files.is_empty() {
                eprintln!(
                    "the host tree already has everything in box `{}`",
                    record.name
                );
            }
        }
        if o.dry_run || go.is_empty() {
            if o.json {
                println!("{}", serde_json::json!({ "plan": plan, "written": [] }));
            }
            return Ok(ExitCode::SUCCESS);
        }
        if !o.yes {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                bail!(
                    "pass -y to write these {} file(s) (or --dry-run to only look)",
                    go.len()
                );
            }
            eprint!(
                "write {} file(s) into {}? [y/N] ",
                go.len(),
                record.project.display()
            );
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                eprintln!("nothing written");
                return Ok(ExitCode::from(1));
            }
        }
        let max = self.max_transfer_bytes()?;
        let paths: Vec<String> = go.iter().map(|f| f.path.clone()).collect();
        let shown = crate::transfer::cp::progress_line("download");
        let written =
            runtime.block_on(download::apply(&relay, &record.project, paths, max, &shown))?;
        if o.json {
            println!(
                "{}",
                serde_json::json!({ "plan": plan, "written": written })
            );
        } else {
            eprintln!(
                "wrote {} file(s){}",
                written.len(),
                if held.is_empty() {
                    String::new()
                } else {
                    format!("; held back {} the host executes", held.len())
                }
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn sync(&self, target: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
        let record = self.resolve(target)?;
        let relay = Self::relay_of(&record)?;
        let outcome = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(crate::sync::sync(&relay, &record.project, &record.dir))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            return Ok(ExitCode::SUCCESS);
        }
        let r = &outcome.report;
        println!("commits: {}", r.commits);
        println!("changes: {}", r.changes);
        println!(
            "untracked files: {} written ({} bytes sent)",
            r.written.len(),
            outcome.bytes_sent
        );
        for p in r.kept_box_version.iter().chain(&outcome.kept_in_box) {
            println!("kept the box's version of {p}");
        }
        if outcome.skipped_names > 0 {
            println!(
                "skipped {} untracked file(s) whose names are not UTF-8 (use `agentbox cp`)",
                outcome.skipped_names
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn cp(&self, paths: &[String], max_size: Option<u64>, json: bool) -> anyhow::Result<ExitCode> {
        use crate::transfer::cp;
        let plan = cp::plan(paths)?;
        let name = match &plan {
            cp::Plan::Upload { name, .. } | cp::Plan::Download { name, .. } => name,
        };
        let record = self.resolve(Some(name))?;
        let relay = Self::relay_of(&record)?;
        let max = match max_size {
            Some(m) => m,
            None => self.max_transfer_bytes()?,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let written: Vec<String> = runtime.block_on(async {
            match plan {
                cp::Plan::Upload { sources, dest, .. } => {
                    let label = format!("to {}", record.name);
                    let shown = cp::progress_line(&label);
                    let landed = cp::upload(&relay, &sources, &dest, &shown).await?;
                    anyhow::Ok(landed.paths)
                }
                cp::Plan::Download { sources, dest, .. } => {
                    let slash = dest.as_os_str().to_string_lossy().ends_with('/');
                    if sources.len() > 1 && !dest.is_dir() {
                        bail!(
                            "{}: several sources need an existing directory",
                            dest.display()
                        );
                    }
                    let mut all = Vec::new();
                    for source in &sources {
                        let label = format!("from {}:{source}", record.name);
                        let shown = cp::progress_line(&label);
                        for p in cp::download(&relay, source, &dest, slash, max, &shown).await? {
                            all.push(p.display().to_string());
                        }
                    }
                    Ok(all)
                }
            }
        })?;
        if json {
            println!("{}", serde_json::json!({ "written": written }));
        } else {
            for w in written {
                println!("{w}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn free_name(&self, repo: &Path) -> anyhow::Result<String> {
        let base = slug(repo, 50);
        let base = if base.is_empty() {
            "box".to_string()
        } else {
            base
        };
        for n in 1.. {
            let name = format!("{base}-{n}");
            if self.state.get(&name)?.is_none() && !self.home.box_dir(&name).exists() {
                return Ok(name);
            }
        }
        unreachable!("names are unbounded")
    }

    fn run_in_session(
        &self,
        opts: &CreateOpts,
        session: &str,
        argv: &[String],
        agent: Option<&str>,
        detach: bool,
    ) -> anyhow::Result<ExitCode> {
        let record = self.create(opts)?;
        let b = Self::open_box(&record)?;
        self.start_session(&b, session, argv, agent)?;
        Self::attach_or_say(&record, session, detach)
    }

    /// Starts session `session` running `argv` in box `b`, with the API keys the host
    /// config forwards (`agents.forwardEnv`) in its environment only. For an `agent`
    /// session, the box refuses when the agent is not installed, and lists it as idle
    /// until its hooks report.
    fn start_session(
        &self,
        b: &AnyBox,
        session: &str,
        argv: &[String],
        agent: Option<&str>,
    ) -> anyhow::Result<()> {
        let cfg = self.resolved(BTreeMap::new())?;
        let forwarded = cfg
            .get("agents.forwardEnv")
            .map(|(v, _)| crate::credentials::forwarded(v))
            .unwrap_or_default();
        let env_file = if forwarded.is_empty() {
            None
        } else {
            let map: BTreeMap<String, String> = forwarded.into_iter().collect();
            let name = format!(
                "session-env-{}",
                agentbox_protocol::files::new_transfer_id()?
            );
            Some(b.put_private_file(&name, serde_json::to_string(&map)?.as_bytes())?)
        };
        let mut args = vec!["session", "start", session];
        if let Some(agent) = agent {
            args.extend(["--needs", agent, "--agent", agent]);
        }
        if let Some(f) = &env_file {
            args.extend(["--env-file", f.as_str()]);
        }
        args.push("--");
        args.extend(argv.iter().map(String::as_str));
        let out = b.ctl(&args)?;
        if !out.status.success() {
            // Daytona's toolbox hands back one stream, as stdout.
            let said = if out.stderr.trim_ascii().is_empty() {
                &out.stdout
            } else {
                &out.stderr
            };
            bail!(
                "cannot start the session: {}",
                String::from_utf8_lossy(said)
                    .trim()
                    .trim_start_matches("agentbox-ctl: ")
            );
        }
        Ok(())
    }

    /// Attaches this terminal to the session, or (detached, or without a terminal) says
    /// how to.
    fn attach_or_say(record: &BoxRecord, session: &str, detach: bool) -> anyhow::Result<ExitCode> {
        if detach || !std::io::stdin().is_terminal() {
            println!("{}", record.name);
            eprintln!("running in box `{}`, session `{session}`: attach with `agentbox attach {} --session {session}`", record.name, record.name);
            return Ok(ExitCode::SUCCESS);
        }
        let view = ViewArgs {
            read_only: false,
            transport: crate::attach::wire::Transport::Auto,
            reconnect_window: std::time::Duration::from_millis(
                agentbox_protocol::term::DEFAULT_KEEP_MS,
            ),
            log: None,
        };
        Self::view(record, Some(session.to_string()), false, &view)
    }

    /// Attaches this terminal to a session (or a new shell) of a running box.
    fn view(
        record: &BoxRecord,
        session: Option<String>,
        shell: bool,
        view: &ViewArgs,
    ) -> anyhow::Result<ExitCode> {
        let b = Self::open_box(record)?;
        ensure_running(&b, &record.name)?;
        let relay = Self::relay_of(record)?;
        let options = crate::attach::Options {
            session,
            shell,
            read_only: view.read_only,
            keep: view.reconnect_window,
            transport: view.transport,
            term: std::env::var("TERM")
                .ok()
                .filter(|t| agentbox_protocol::term::valid_term_name(t)),
        };
        let outcome = crate::attach::attach_terminal(&relay, &options, view.log.as_deref())?;
        Ok(match outcome.end {
            TermEnd::Detached | TermEnd::SessionEnded => ExitCode::SUCCESS,
            TermEnd::Expired | TermEnd::Closed => ExitCode::from(1),
        })
    }

    fn agent(&self, agent: Agent, a: &AgentArgs) -> anyhow::Result<ExitCode> {
        if let Some(target) = &a.target {
            return self.agent_again(agent, target, &a.args, a.detach);
        }
        let mut flags = BTreeMap::new();
        if let Some(p) = &a.opts.provider {
            flags.insert("box.provider".to_string(), p.clone());
        }
        let cfg = self.resolved(flags)?;
        let provider = cfg
            .get("box.provider")
            .map_or_else(|| "local".to_string(), |(v, _)| v.to_string());
        // The local provider runs this machine's programs: the agent must be installed here.
        // Other providers run their image's: checked before a box is made for nothing (and
        // again by the box when the session starts).
        let name = agent.name();
        if provider == "local" && crate::shell::which(name).is_none() {
            bail!("`{name}` is not installed in the box (the local provider runs this machine's programs: install it, or use a provider whose image has it)");
        }
        Self::ensure_image_has(&cfg, &provider, name)?;
        let argv = agent.session_argv(&a.args, false);
        self.run_in_session(&a.opts, name, &argv, Some(name), a.detach)
    }

    /// Refuses, before any box is made, an agent that the pinned docker image (by its
    /// label) or Daytona snapshot (by `box.agents`, which its freshness check follows)
    /// was built without.
    fn ensure_image_has(cfg: &Resolved, provider: &str, agent: &str) -> anyhow::Result<()> {
        let baked = match provider {
            "docker" => match cfg.get("box.image") {
                Some((image, _)) => provider::docker::image_agents(image),
                None => None,
            },
            "daytona" => {
                let list = cfg
                    .get("box.agents")
                    .map_or(crate::image::DEFAULT_AGENTS, |(v, _)| v);
                crate::image::agents::parse_list(list)
                    .ok()
                    .map(|a| a.iter().map(|a| a.name().to_string()).collect())
            }
            _ => None,
        };
        match baked {
            Some(list) if !list.iter().any(|a| a == agent) => {
                let has = if list.is_empty() {
                    "no agents".to_string()
                } else {
                    list.join(", ")
                };
                let wanted = [list, vec![agent.to_string()]].concat().join(",");
                bail!(
                    "the {provider} box image has no {agent} (it has {has}); make one with it: `agentbox prepare --provider {provider} --agents {wanted}`"
                )
            }
            _ => Ok(()),
        }
    }

    /// `agentbox claude|codex|opencode BOX`: the agent of an existing box. A running
    /// session is attached to; a session whose agent ended, or none (the box restarted),
    /// is started again, resuming the agent's last conversation when it has one.
    fn agent_again(
        &self,
        agent: Agent,
        target: &str,
        args: &[String],
        detach: bool,
    ) -> anyhow::Result<ExitCode> {
        let record = self.resolve(Some(target))?;
        let b = Self::open_box(&record)?;
        if !b.running() {
            eprintln!("==> starting box `{}`", record.name);
            let url = b.start(&record.bridge_token)?;
            self.state.update(&record.name, "ready", Some(&url))?;
        }
        let sessions: Vec<agentbox_protocol::ctl::SessionInfo> = b
            .ctl(&["session", "list", "--json"])
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice(&o.stdout).ok())
            .unwrap_or_default();
        let name = agent.name();
        match sessions.iter().find(|s| s.name == name) {
            Some(s) if s.running => {}
            found => {
                if found.is_some() {
                    // The agent ended; its pane stays until the session goes.
                    let _ = b.ctl(&["session", "kill", name]);
                }
                eprintln!("==> resuming {name} in box `{}`", record.name);
                self.start_session(&b, name, &agent.session_argv(args, true), Some(name))?;
            }
        }
        Self::attach_or_say(&record, name, detach)
    }

    fn list(&self, json: bool) -> anyhow::Result<ExitCode> {
        let boxes = self.state.all()?;
        let rows: Vec<serde_json::Value> = boxes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let running = b.phase == "ready" && AnyBox::open(b).is_ok_and(|x| x.running());
                let state = if b.phase != "ready" {
                    b.phase.clone()
                } else if running {
                    "running".into()
                } else {
                    "stopped".into()
                };
                let agents = crate::agents::load(&self.home.agent_states(&b.name));
                serde_json::json!({
                    "index": i + 1, "name": b.name, "provider": b.provider, "state": state,
                    "project": b.project, "branch": b.branch, "created_at_ms": b.created_at_ms,
                    "agents": agents_json(&agents, running),
                    "agents_summary": crate::agents::summary(&agents, running),
                })
            })
            .collect();
        if json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else if rows.is_empty() {
            println!("no boxes: create one with `agentbox create` inside a git repository");
        } else {
            println!(
                "{:<3} {:<24} {:<9} {:<9} {:<24} PROJECT",
                "#", "NAME", "PROVIDER", "STATE", "AGENTS"
            );
            for r in &rows {
                println!(
                    "{:<3} {:<24} {:<9} {:<9} {:<24} {}",
                    r["index"],
                    r["name"].as_str().unwrap_or(""),
                    r["provider"].as_str().unwrap_or(""),
                    r["state"].as_str().unwrap_or(""),
                    r["agents_summary"].as_str().unwrap_or(""),
                    r["project"].as_str().unwrap_or("")
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn status(&self, target: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
        let record = self.resolve(target)?;
        let b = Self::open_box(&record)?;
        let running = b.running();
        let (units, sessions) = if running {
            let parse = |args: &[&str]| -> serde_json::Value {
                b.ctl(args)
                    .ok()
                    .filter(|o| o.status.success())
                    .and_then(|o| serde_json::from_slice(&o.stdout).ok())
                    .unwrap_or_default()
            };
            (
                parse(&["status", "--json"])["units"].clone(),
                parse(&["session", "list", "--json"]),
            )
        } else {
            (serde_json::json!([]), serde_json::json!([]))
        };
        let agents = crate::agents::load(&self.home.agent_states(&record.name));
        if json {
            let v = serde_json::json!({
                "box": record, "running": running, "units": units, "sessions": sessions,
                "agents": agents_json(&agents, running),
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "box:       {} ({}, {})",
            record.name,
            record.provider,
            if running { "running" } else { "stopped" }
        );
        println!("project:   {}", record.project.display());
        println!("branch:    {}", record.branch);
        if let AnyBox::Local(l) = &b {
            println!("workspace: {}", l.workspace().display());
        }
        for u in units.as_array().into_iter().flatten() {
            println!(
                "  {:<8} {:<20} {:<9} {}",
                u["kind"].as_str().unwrap_or(""),
                u["name"].as_str().unwrap_or(""),
                u["state"].as_str().unwrap_or(""),
                u["detail"].as_str().unwrap_or("")
            );
        }
        for a in agents.values() {
            println!(
                "  agent    {:<20} {:<9} {}",
                format!("{} ({})", a.agent, a.session),
                crate::agents::shown_state(a, running),
                a.detail.as_deref().unwrap_or("")
            );
        }
        for s in sessions.as_array().into_iter().flatten() {
            println!(
                "  session  {:<20} {}",
                s["name"].as_str().unwrap_or(""),
                if s["running"] == true {
                    "running"
                } else {
                    "exited"
                }
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn destroy(&self, target: Option<&str>, yes: bool) -> anyhow::Result<ExitCode> {
        let record = self.resolve(target)?;
        if !yes {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "destroying box `{}` deletes its workspace: pass -y to confirm",
                    record.name
                );
            }
            eprint!("destroy box `{}` and its workspace? [y/N] ", record.name);
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                eprintln!("kept {}", record.name);
                return Ok(ExitCode::from(1));
            }
        }
        let b = Self::open_box(&record)?;
        if b.running() {
            b.stop()?;
        }
        b.remove(&record.dir)?;
        let _ = std::fs::remove_file(
            self.home
                .root()
                .join("locks")
                .join(format!("push-{}.lock", record.name)),
        );
        let _ = std::fs::remove_file(self.home.agent_states(&record.name));
        self.state.remove(&record.name)?;
        eprintln!("destroyed {}", record.name);
        Ok(ExitCode::SUCCESS)
    }

    fn bridge(&self, cmd: &BridgeCmd) -> anyhow::Result<ExitCode> {
        match cmd {
            BridgeCmd::Start => {
                let pid = crate::bridge::ensure_started(&self.home)?;
                eprintln!("host bridge running (pid {pid})");
            }
            BridgeCmd::Stop => {
                if crate::bridge::stop(&self.home)? {
                    eprintln!("host bridge stopped");
                } else {
                    eprintln!("host bridge was not running");
                }
            }
            BridgeCmd::Status { json } => {
                let pid = crate::bridge::running_pid(&self.home);
                if *json {
                    println!(
                        "{}",
                        serde_json::json!({ "running": pid.is_some(), "pid": pid })
                    );
                } else {
                    match pid {
                        Some(pid) => println!("host bridge running (pid {pid})"),
                        None => println!("host bridge not running: `agentbox bridge start`"),
                    }
                }
                return Ok(if pid.is_some() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
            BridgeCmd::Run => unreachable!("handled before the context is built"),
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `agentbox resync`: the host's agent credentials into the box.
    fn resync(record: &BoxRecord) -> anyhow::Result<ExitCode> {
        let b = Self::open_box(record)?;
        ensure_running(&b, &record.name)?;
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("HOME is not set: cannot find the agents' credentials")?;
        let sent = b.resync(&home)?;
        if sent.is_empty() {
            eprintln!(
                "no agent credentials on this machine (looked for {})",
                crate::credentials::looked_for()
            );
        } else {
            eprintln!("sent the credentials of: {}", sent.join(", "));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The base image and agents of the box image: flags, else config, else defaults.
    fn image_choice(
        cfg: &Resolved,
        base_image: Option<String>,
        agents: Option<String>,
    ) -> anyhow::Result<(String, Vec<crate::image::Agent>, bool)> {
        let base = base_image
            .or_else(|| cfg.get("box.baseImage").map(|(v, _)| v.to_string()))
            .unwrap_or_else(|| provider::docker::DEFAULT_BASE.to_string());
        let agents = agents
            .or_else(|| cfg.get("box.agents").map(|(v, _)| v.to_string()))
            .unwrap_or_else(|| crate::image::DEFAULT_AGENTS.to_string());
        let agents = crate::image::agents::parse_list(&agents).map_err(anyhow::Error::msg)?;
        let dind = cfg.get("box.dind").is_some_and(|(v, _)| v == "yes");
        Ok((base, agents, dind))
    }

    fn prepare(
        &self,
        provider: &str,
        base_image: Option<String>,
        agents: Option<String>,
        dind: bool,
        force: bool,
    ) -> anyhow::Result<ExitCode> {
        if provider != "docker" && provider != "daytona" {
            bail!(
                "`prepare` makes the box image of the docker or daytona provider; not `{provider}`"
            );
        }
        let cfg = self.resolved(BTreeMap::new())?;
        let explicit_base = base_image.is_some();
        let explicit_agents = agents.is_some();
        let (base, agents, dind_config) = Self::image_choice(&cfg, base_image, agents)?;
        let inputs = crate::image::Inputs::gather(&base, &agents, crate::image::Packages::Latest)?
            .with_dind(dind || dind_config);
        let (key, pinned) = if provider == "daytona" {
            let home = self.home.root().to_path_buf();
            (
                "box.imageDaytona",
                crate::daytona::prepare::snapshot(&home, &inputs, force)?,
            )
        } else {
            ("box.image", provider::docker::prepare(&inputs, force)?)
        };
        let path = self.config_file(&Scope {
            global: false,
            project: false,
        })?;
        let mut values = config::read_file(&path).map_err(anyhow::Error::msg)?;
        values.insert(key.into(), pinned.clone());
        if explicit_base {
            // What the image was made from, so that `create` can tell when it is stale.
            values.insert("box.baseImage".into(), base.clone());
        }
        if explicit_agents {
            values.insert("box.agents".into(), inputs.agents_text());
        }
        if dind {
            values.insert("box.dind".into(), "yes".into());
        }
        config::write_file(&path, &values)?;
        eprintln!("==> {key} = {pinned} (in {})", path.display());
        println!("{pinned}");
        Ok(ExitCode::SUCCESS)
    }

    /// `agentbox checkpoint create|list|rm`.
    fn checkpoint(&self, cmd: CheckpointCmd) -> anyhow::Result<ExitCode> {
        let repo = git::repo_root(&self.cwd)?;
        let project = project_id(&repo);
        let home = self.home.root();
        match cmd {
            CheckpointCmd::Create {
                name,
                target,
                set_default,
                merged,
                replace,
            } => {
                if merged || replace {
                    bail!("a Daytona checkpoint is the box's whole disk: there is no --merged or --replace; `agentbox checkpoint rm NAME` and create it again to replace one");
                }
                if !crate::checkpoint::valid_name(&name) {
                    bail!("`{name}` is not a checkpoint name (1-40 of a-z, 0-9, -)");
                }
                if crate::checkpoint::find(home, &project, &name).is_ok() {
                    bail!("checkpoint `{name}` exists: `agentbox checkpoint rm {name}` first");
                }
                let record = self.resolve(target.as_deref())?;
                let AnyBox::Daytona(b) = AnyBox::open(&record)? else {
                    bail!(
                        "box `{}` is a {} box: checkpoints are for daytona boxes",
                        record.name,
                        record.provider
                    );
                };
                let snapshot = crate::checkpoint::snapshot_name(&project, &name);
                b.checkpoint(&snapshot)?;
                crate::checkpoint::save(
                    home,
                    &project,
                    &crate::checkpoint::Manifest {
                        name: name.clone(),
                        snapshot: snapshot.clone(),
                        source_box: record.name.clone(),
                        created_at_ms: agentbox_protocol::now_millis(),
                    },
                )?;
                if set_default {
                    let path = self.config_file(&Scope {
                        global: false,
                        project: false,
                    })?;
                    let mut values = config::read_file(&path).map_err(anyhow::Error::msg)?;
                    values.insert("box.defaultCheckpointDaytona".into(), name.clone());
                    config::write_file(&path, &values)?;
                    eprintln!("==> box.defaultCheckpointDaytona = {name}");
                }
                println!("{name}");
            }
            CheckpointCmd::List { json } => {
                let all = crate::checkpoint::list(home, &project)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                } else {
                    for m in all {
                        println!("{}\t{}\tfrom {}", m.name, m.snapshot, m.source_box);
                    }
                }
            }
            CheckpointCmd::Rm { name } => {
                let manifest = crate::checkpoint::find(home, &project, &name)?;
                provider::daytona::delete_snapshot(home, &manifest.snapshot)?;
                crate::checkpoint::forget(home, &project, &name)?;
                eprintln!("removed checkpoint {name} (snapshot {})", manifest.snapshot);
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The pinned snapshot, or a new one when its inputs changed and the user agrees (on
    /// a terminal and `ask`); otherwise (`-y`, or no terminal) a stale snapshot boots after a loud warning.
    fn fresh_snapshot(&self, cfg: &Resolved, pinned: String, ask: bool) -> anyhow::Result<String> {
        let (base, agents, dind) = Self::image_choice(cfg, None, None)?;
        let inputs =
            match crate::image::Inputs::gather(&base, &agents, crate::image::Packages::Cached) {
                Ok(i) => i.with_dind(dind),
                Err(e) => {
                    // Without the agents' packages here, the inputs cannot be compared.
                    eprintln!("note: cannot tell whether snapshot {pinned} is up to date ({e:#})");
                    return Ok(pinned);
                }
            };
        let wanted = crate::daytona::prepare::snapshot_name(&inputs.tag()?);
        if wanted == pinned {
            return Ok(pinned);
        }
        let stale = format!(
            "snapshot {pinned} was baked from other inputs than this agentbox's (now {wanted})"
        );
        if ask && std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
            eprint!("{stale}. Bake it again now (a few minutes)? [Y/n] ");
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !answer.trim().eq_ignore_ascii_case("n") {
                self.prepare("daytona", Some(base), None, false, false)?;
                return Ok(wanted);
            }
        }
        eprintln!("WARNING: {stale}; booting it anyway. Run `agentbox prepare --provider daytona` to bring it up to date.");
        Ok(pinned)
    }

    fn prune(&self, provider: &str, dry_run: bool) -> anyhow::Result<ExitCode> {
        let known: std::collections::BTreeSet<String> =
            self.state.all()?.into_iter().map(|b| b.name).collect();
        if provider == "daytona" {
            let label = provider::docker::home_label(self.home.root());
            for (sandbox, name) in provider::daytona::sandboxes(self.home.root(), &label)? {
                if known.contains(&name) {
                    continue;
                }
                if dry_run {
                    println!("{sandbox}");
                } else {
                    provider::daytona::DaytonaBox::new(&name, self.home.root())?.remove()?;
                    println!("removed {sandbox}");
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        if provider != "docker" {
            bail!("`prune` cleans up docker containers or Daytona sandboxes; not `{provider}`");
        }
        let label = provider::docker::home_label(self.home.root());
        // Containers, and the engine volumes of `--dind` boxes (one may outlive its
        // container when that was removed by hand).
        let containers = provider::docker::containers(&label)?;
        let volumes = provider::docker::volumes(&label)?;
        for (item, name) in containers.into_iter().chain(volumes) {
            if known.contains(&name) {
                continue;
            }
            if dry_run {
                println!("{item}");
            } else {
                provider::docker::DockerBox::new(&name).remove()?;
                println!("removed {item}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn approvals(&self, all: bool, json: bool) -> anyhow::Result<ExitCode> {
        let list =
            crate::bridge::journal::HostJournal::open(&self.home.state_db())?.approvals(all)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else if list.is_empty() {
            println!("nothing waits for approval");
        } else {
            let now = agentbox_protocol::now_millis();
            for a in list {
                let left = a.expires_ms.saturating_sub(now) / 1000;
                println!(
                    "{}  {:<8}  {:<12} {}  ({})",
                    a.id,
                    a.state,
                    a.box_name,
                    a.summary,
                    if a.state == "pending" {
                        format!("expires in {}m{:02}s", left / 60, left % 60)
                    } else {
                        a.kind
                    }
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn decide(&self, id: &str, approve: bool) -> anyhow::Result<ExitCode> {
        let journal = crate::bridge::journal::HostJournal::open(&self.home.state_db())?;
        let a = journal.decide(id, approve)?;
        println!(
            "{} {}: {}",
            if approve { "approved" } else { "denied" },
            a.id,
            a.summary
        );
        Ok(ExitCode::SUCCESS)
    }

    fn audit(&self, json: bool) -> anyhow::Result<ExitCode> {
        let entries =
            crate::bridge::journal::HostJournal::open(&self.home.state_db())?.entries()?;
        if json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
        } else if entries.is_empty() {
            println!("no requests from boxes yet");
        } else {
            for e in entries {
                println!(
                    "{} {:<16} {:<10} {:<9} exit {} {}",
                    e.ts_ms, e.box_name, e.kind, e.decision, e.exit_code, e.detail
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn config_file(&self, scope: &Scope) -> anyhow::Result<PathBuf> {
        if scope.global {
            return Ok(self.home.config());
        }
        match self.repo() {
            Some(repo) => Ok(self.home.project_config(&project_id(&repo))),
            None if scope.project => bail!("--project needs a git repository: run it inside one"),
            None => Ok(self.home.config()),
        }
    }

    fn config(&self, cmd: ConfigCmd) -> anyhow::Result<ExitCode> {
        match cmd {
            ConfigCmd::Get { key, all } => {
                config::key(&key).map_err(anyhow::Error::msg)?;
                let cfg = self.resolved(BTreeMap::new())?;
                if all {
                    for (layer, value) in cfg.all(&key) {
                        if layer != Layer::Flag {
                            println!("{:<14} {}", layer.as_str(), value.unwrap_or("-"));
                        }
                    }
                    return Ok(ExitCode::SUCCESS);
                }
                match cfg.get(&key) {
                    Some((v, _)) => {
                        println!("{v}");
                        Ok(ExitCode::SUCCESS)
                    }
                    None => Ok(ExitCode::from(1)),
                }
            }
            ConfigCmd::Set { key, value, scope } => {
                config::check(&key, &value).map_err(anyhow::Error::msg)?;
                let path = self.config_file(&scope)?;
                let mut values = config::read_file(&path).map_err(anyhow::Error::msg)?;
                values.insert(key, value);
                config::write_file(&path, &values)?;
                Ok(ExitCode::SUCCESS)
            }
            ConfigCmd::Unset { key, scope } => {
                config::key(&key).map_err(anyhow::Error::msg)?;
                let path = self.config_file(&scope)?;
                let mut values = config::read_file(&path).map_err(anyhow::Error::msg)?;
                values.remove(&key);
                config::write_file(&path, &values)?;
                Ok(ExitCode::SUCCESS)
            }
            ConfigCmd::List { json } => {
                let cfg = self.resolved(BTreeMap::new())?;
                let rows: Vec<serde_json::Value> = config::KEYS
                    .iter()
                    .map(|k| {
                        let (value, layer) = cfg.get(k.name).map_or((None, None), |(v, l)| (Some(v), Some(l.as_str())));
                        serde_json::json!({ "key": k.name, "value": value, "from": layer, "help": k.help })
                    })
                    .collect();
                if json {
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                } else {
                    for r in rows {
                        println!(
                            "{:<30} {:<20} {:<14} {}",
                            r["key"].as_str().unwrap_or(""),
                            r["value"].as_str().unwrap_or("-"),
                            r["from"].as_str().unwrap_or(""),
                            r["help"].as_str().unwrap_or("")
                        );
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
