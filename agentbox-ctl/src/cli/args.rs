//! The `agentbox-ctl` command line: argument definitions and the fast path for the
//! invocations hooks and scripts run most.

use std::path::PathBuf;

use agentbox_protocol::logging::LogFormat;
use clap::{Args, Parser, Subcommand};

/// Exit code: the daemon could not be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for wait-ready: every unit is ready; for run-task --wait: the task succeeded)
  1  the request failed: a unit failed or timed out, a task failed, an unknown name, a bad config
  2  bad command-line usage
  3  the daemon could not be reached
  124  notify --wait / open: no host picked the request up in time (it was withdrawn)
  other  notify --wait / open: the host's exit code

Environment: AGENTBOX_WORKSPACE, AGENTBOX_RUN_DIR, AGENTBOX_STATE_DIR, AGENTBOX_LOG_DIR,
AGENTBOX_CONFIG (see DESIGN.md §2); RUST_LOG filters the daemon's own log.
AGENTBOX_RELAY=auto|PATH makes the daemon run agentbox-relay as its built-in unit
`agentbox-relay` (the only unit that receives AGENTBOX_BRIDGE_TOKEN).
AGENTBOX_DIND=1 (docker boxes made with `agentbox create --dind`) makes it run the box's
own Docker engine as the built-in unit `agentbox-dockerd`.
AGENTBOX_SCREEN=1 (images made with `agentbox prepare --browser`) makes it run the box's
screen: `agentbox-display` (Xvnc), `agentbox-wm` and `agentbox-screen` (noVNC on :6080).";

/// The in-box supervisor of agentbox.yaml services and tasks, agent tmux sessions, and
/// the CLI the agent uses.
#[derive(Debug, Parser)]
#[command(name = "agentbox-ctl", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Log format of the daemon's own messages (stderr).
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

/// Recognises the hot invocations without building clap's command tree: `status
/// [--json|-j]`, which scripts poll, and `agent-state --from claude` / `agent-state --from
/// codex PAYLOAD`, which the agents' hooks run before and after every tool call. Building
/// the whole tree of subcommands allocates and touches more memory than the rest of such a
/// call, a third of its time. Any other shape (options, `--help`, a different order) is
/// `None` and goes through clap, which parses these shapes to the same [`Cli`] (tested).
pub fn quick_parse<I>(args: I) -> Option<Cli>
where
    I: IntoIterator<Item = std::ffi::OsString>,
{
    // One more than the longest shape, so that a longer command line matches none.
    let args: Vec<std::ffi::OsString> = args.into_iter().take(5).collect();
    let args: Vec<&str> = args
        .iter()
        .map(|a| a.to_str())
        .collect::<Option<Vec<_>>>()?;
    let command = match args.as_slice() {
        ["status"] => Cmd::Status { json: false },
        ["status", "--json" | "-j"] => Cmd::Status { json: true },
        ["agent-state", "--from", "claude"] => Cmd::AgentState {
            value: None,
            agent: None,
            session: None,
            detail: None,
            from: Some("claude".to_owned()),
        },
        ["agent-state", "--from", "codex", payload] if !payload.starts_with('-') => {
            Cmd::AgentState {
                value: Some((*payload).to_owned()),
                agent: None,
                session: None,
                detail: None,
                from: Some("codex".to_owned()),
            }
        }
        _ => return None,
    };
    Some(Cli {
        log_format: LogFormat::default(),
        command,
    })
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the supervisor daemon in the foreground (one per box).
    Daemon,
    /// Show every service and task.
    Status {
        /// Print JSON (an object with `daemon` and `units`).
        #[arg(long, short)]
        json: bool,
    },
    /// Wait until units are ready; exit 0 when they are, 1 when one failed or time ran out.
    WaitReady {
        /// Units to wait for (default: every task and every autostart service).
        units: Vec<String>,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 60_000, value_name = "MS")]
        timeout: u64,
        /// Print JSON.
        #[arg(long, short)]
        json: bool,
    },
    /// Print the log of units (every unit when none is named), merged by time.
    Logs {
        /// Unit names (none: every unit).
        names: Vec<String>,
        /// Number of latest lines to print first.
        #[arg(long, short = 'n', default_value_t = 200)]
        tail: u32,
        /// Keep printing new lines (across log rotation) until interrupted.
        #[arg(long, short)]
        follow: bool,
        /// One JSON object a line (`unit`, `ts_ms`, `stream`, `line`).
        #[arg(long)]
        json: bool,
        /// Only the lines of the last MS milliseconds (by the box's clock).
        #[arg(long, value_name = "MS")]
        since_ms: Option<u64>,
    },
    /// Start a unit (a service waits for its `needs`).
    Start(NameArg),
    /// Stop a unit: SIGTERM to its process group, SIGKILL after its grace period.
    Stop(NameArg),
    /// Stop, then start a unit.
    Restart(NameArg),
    /// Re-read agentbox.yaml: start new units, stop removed ones, restart changed ones.
    Reload,
    /// Run a task now.
    RunTask {
        /// Task name.
        name: String,
        /// Run even if its run_once marker or check says it already ran.
        #[arg(long)]
        force: bool,
        /// Wait for the task to finish; exit 0 only if it succeeded.
        #[arg(long)]
        wait: bool,
        /// Print JSON.
        #[arg(long, short)]
        json: bool,
    },
    /// Exit 0 when something in the box accepts connections on 127.0.0.1:PORT, else 1.
    PortOpen {
        /// The port.
        port: u16,
    },
    /// Check an agentbox.yaml without running it.
    Validate {
        /// The file (default: $AGENTBOX_CONFIG or $AGENTBOX_WORKSPACE/agentbox.yaml).
        path: Option<PathBuf>,
    },
    /// Agent sessions in tmux.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Stop every unit and the daemon.
    Shutdown,
    /// Show a notification on the host (delivered when the host bridge polls).
    Notify {
        /// The message.
        #[arg(required = true)]
        message: Vec<String>,
        /// Wait for the host to show it, up to this many milliseconds.
        #[arg(long, value_name = "MS")]
        wait: Option<u64>,
    },
    /// Open an http(s) URL in the host's browser.
    Open {
        /// The URL.
        url: String,
        /// Give up if no host picks it up within this many milliseconds.
        #[arg(long, default_value_t = 60_000, value_name = "MS")]
        wait: u64,
    },
    /// Copy files between the box and the host project, through the host.
    ///
    /// `--to-host BOXPATH HOSTPATH` writes into the host project; `--from-host HOSTPATH
    /// BOXPATH` reads from it. HOSTPATH is relative to the project root and may not leave
    /// it or touch `.git`. Unless the host's policy allows it, each copy waits until
    /// someone runs `agentbox approve ID` on the host.
    #[command(group(clap::ArgGroup::new("direction").required(true).args(["to_host", "from_host"])))]
    Cp {
        /// Copy a box path into the host project.
        #[arg(long)]
        to_host: bool,
        /// Copy a host project path into the box.
        #[arg(long)]
        from_host: bool,
        /// The source.
        src: String,
        /// The destination.
        dest: String,
    },
    /// Internal: how many commits of the workspace the host has not received (what
    /// `agentbox destroy` asks before it deletes them).
    #[command(hide = true)]
    Unpushed,
    /// git push|pull|fetch|clone through the host (what the `git` shim calls).
    #[command(disable_help_flag = true)]
    Git {
        /// The git arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// gh through the host (what the `gh` shim calls).
    #[command(disable_help_flag = true)]
    Gh {
        /// The gh arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Report what the agent in this session is doing (what the agents' hooks call).
    ///
    /// `agent-state STATE` reports working, waiting (for the user), idle, error or exited.
    /// `--from claude` reads a Claude Code hook event from stdin instead; `--from codex`
    /// takes Codex's `notify` payload (JSON) as the argument. The session is
    /// $AGENTBOX_SESSION, set in every agent session, unless --session names one. The
    /// host sees each change in `agentbox list`. With --from this always exits 0, so a
    /// hook never disturbs its agent; problems go to stderr.
    AgentState {
        /// The state, or with `--from codex` the payload.
        #[arg(value_name = "STATE|PAYLOAD")]
        value: Option<String>,
        /// Which agent (default: the one named by --from, else the session name).
        #[arg(long)]
        agent: Option<String>,
        /// The session (default: $AGENTBOX_SESSION).
        #[arg(long)]
        session: Option<String>,
        /// A short text, such as what the agent waits for.
        #[arg(long)]
        detail: Option<String>,
        /// Read the agent's own hook payload: claude or codex.
        #[arg(long, value_name = "AGENT", value_parser = ["claude", "codex"])]
        from: Option<String>,
    },
    /// Internal: load a session's environment file, then exec the command.
    #[command(hide = true)]
    SessionExec {
        /// The 0600 JSON file written by the daemon (deleted after reading).
        #[arg(long)]
        env_file: PathBuf,
        /// The command.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
}

/// A unit name.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Unit name.
    pub name: String,
}

/// `session …`
#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Start a detached tmux session running a command.
    Start {
        /// Session name (letters, digits, `_`, `-`).
        name: String,
        /// Working directory, relative to the workspace.
        #[arg(long)]
        cwd: Option<String>,
        /// Extra environment for this session only: a JSON object of names to values in a
        /// file that only you can read. It is deleted once read; the values never appear
        /// in any command line.
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
        /// Refuse to start unless PROGRAM is installed (on PATH); for a command that wraps
        /// it in a shell.
        #[arg(long, value_name = "PROGRAM")]
        needs: Option<String>,
        /// The agent this session runs (claude, codex, opencode, …): listed as `idle`
        /// until its hooks report, and watched on screen where it has no hook for starting
        /// work (Codex).
        #[arg(long)]
        agent: Option<String>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        argv: Vec<String>,
    },
    /// List sessions.
    List {
        /// Print JSON.
        #[arg(long, short)]
        json: bool,
    },
    /// Kill a session (exact name).
    Kill {
        /// Session name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(std::ffi::OsString::from).collect()
    }

    /// Every shape the quick path takes parses to the same thing through clap, and the
    /// shapes it leaves alone are left to clap.
    #[test]
    fn the_quick_path_agrees_with_clap() {
        let taken: &[&[&str]] = &[
            &["status"],
            &["status", "--json"],
            &["status", "-j"],
            &["agent-state", "--from", "claude"],
            &[
                "agent-state",
                "--from",
                "codex",
                r#"{"type":"agent-turn-complete"}"#,
            ],
        ];
        for args in taken {
            let quick = quick_parse(argv(args)).expect("taken by the quick path");
            let mut full = argv(&["agentbox-ctl"]);
            full.extend(argv(args));
            let clap = Cli::try_parse_from(full).expect("clap parses it");
            assert_eq!(format!("{quick:?}"), format!("{clap:?}"), "{args:?}");
        }
        let left: &[&[&str]] = &[
            &[],
            &["status", "--help"],
            &["status", "--json", "--json"],
            &["status", "--log-format", "json"],
            &["--log-format", "json", "status"],
            &["status", "--json", "x", "y", "z", "w"],
            &["agent-state", "--from", "codex", "--detail"],
            &["agent-state", "--from", "gemini"],
            &["agent-state", "--from", "claude", "--detail", "x"],
            &["wait-ready"],
        ];
        for args in left {
            assert!(quick_parse(argv(args)).is_none(), "{args:?}");
        }
    }
}
