//! The `agentbox-ctl` command line: argument definitions and what each command prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use agentbox_protocol::ctl::{
    CtlRequest, CtlResponse, LogLine, SessionSpec, StatusReport, UnitStatus, WaitReadyReport,
};
use agentbox_protocol::logging::LogFormat;
use clap::{Args, Parser, Subcommand};

use crate::client::{self, ClientError};
use crate::config;
use crate::paths::Paths;

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
own Docker engine as the built-in unit `agentbox-dockerd`.";

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
    /// Print a unit's log.
    Logs {
        /// Unit name.
        name: String,
        /// Number of latest lines to print first.
        #[arg(long, short = 'n', default_value_t = 200)]
        tail: u32,
        /// Keep printing new lines (across log rotation) until interrupted.
        #[arg(long, short)]
        follow: bool,
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

/// Runs a client command (everything but `daemon`).
pub fn run(cmd: Cmd, paths: &Paths) -> ExitCode {
    match run_inner(cmd, paths) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("agentbox-ctl: {e}");
            match e {
                ClientError::Unreachable { .. } | ClientError::Handshake(_) => {
                    ExitCode::from(EXIT_UNREACHABLE)
                }
                _ => ExitCode::from(1),
            }
        }
    }
}

fn print_json<T: serde::Serialize>(value: &T) {
    let text =
        serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    println!("{text}");
}

fn unexpected(r: &CtlResponse) -> ClientError {
    ClientError::Unexpected(format!("{r:?}"))
}

fn run_inner(cmd: Cmd, paths: &Paths) -> Result<ExitCode, ClientError> {
    let socket = paths.ctl_socket();
    match cmd {
        Cmd::Daemon | Cmd::SessionExec { .. } => unreachable!("handled in main"),
        Cmd::Validate { path } => Ok(validate(path.as_ref().unwrap_or(&paths.config))),
        Cmd::PortOpen { port } => {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            match std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1))
            {
                Ok(_) => Ok(ExitCode::SUCCESS),
                Err(e) => {
                    eprintln!("nothing accepts connections on port {port}: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Notify { message, wait } => {
            let request = agentbox_protocol::bridge::HostRequest::Notify {
                message: message.join(" "),
            };
            let wait = wait.map_or(crate::host::Wait::Detached, |ms| {
                crate::host::Wait::Follow(std::time::Duration::from_millis(ms))
            });
            Ok(crate::host::submit(&paths.run_dir, request, wait))
        }
        Cmd::Open { url, wait } => {
            let request = agentbox_protocol::bridge::HostRequest::Open { url };
            Ok(crate::host::submit(
                &paths.run_dir,
                request,
                crate::host::Wait::Follow(std::time::Duration::from_millis(wait)),
            ))
        }
        Cmd::Git { args } => Ok(crate::git::run(paths, &args)),
        Cmd::AgentState {
            value,
            agent,
            session,
            detail,
            from,
        } => Ok(agent_state(
            &socket,
            value.as_deref(),
            AgentFlags {
                agent,
                session,
                detail,
                from,
            },
        )),
        Cmd::Cp {
            to_host, src, dest, ..
        } => Ok(if to_host {
            crate::copy::to_host(paths, std::path::Path::new(&src), &dest)
        } else {
            crate::copy::from_host(paths, &src, &dest)
        }),
        Cmd::Gh { args } => Ok(crate::gh::run(paths, &args)),
        Cmd::Status { json } => match client::call(&socket, CtlRequest::Status)? {
            CtlResponse::Status(report) => {
                if json {
                    print_json(&report);
                } else {
                    print_status(&report);
                }
                Ok(ExitCode::SUCCESS)
            }
            other => Err(unexpected(&other)),
        },
        Cmd::WaitReady {
            units,
            timeout,
            json,
        } => {
            match client::call(
                &socket,
                CtlRequest::WaitReady {
                    units,
                    timeout_ms: timeout,
                },
            )? {
                CtlResponse::WaitReady(report) => {
                    if json {
                        print_json(&report);
                    } else {
                        print_wait(&report);
                    }
                    Ok(if report.ready {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    })
                }
                other => Err(unexpected(&other)),
            }
        }
        Cmd::Start(NameArg { name }) => unit_command(&socket, CtlRequest::Start { name }),
        Cmd::Stop(NameArg { name }) => unit_command(&socket, CtlRequest::Stop { name }),
        Cmd::Restart(NameArg { name }) => unit_command(&socket, CtlRequest::Restart { name }),
        Cmd::RunTask {
            name,
            force,
            wait,
            json,
        } => match client::call(&socket, CtlRequest::RunTask { name, force, wait })? {
            CtlResponse::Unit(u) => {
                if json {
                    print_json(&u);
                } else {
                    println!("{}", unit_line(&u));
                }
                let ok = !wait || u.ready;
                Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                })
            }
            other => Err(unexpected(&other)),
        },
        Cmd::Reload => match client::call(&socket, CtlRequest::Reload)? {
            CtlResponse::Reload(r) => {
                for w in &r.warnings {
                    eprintln!("{w}");
                }
                let list = |v: &[String]| {
                    if v.is_empty() {
                        "(none)".to_string()
                    } else {
                        v.join(", ")
                    }
                };
                println!(
                    "added: {}\nremoved: {}\nchanged: {}",
                    list(&r.added),
                    list(&r.removed),
                    list(&r.changed)
                );
                Ok(ExitCode::SUCCESS)
            }
            other => Err(unexpected(&other)),
        },
        Cmd::Logs { name, tail, follow } => logs(&socket, name, tail, follow),
        Cmd::Session(SessionCmd::Start {
            name,
            cwd,
            env_file,
            needs,
            agent,
            argv,
        }) => {
            if let Some(program) = needs.filter(|p| crate::session::find_program(p).is_none()) {
                if let Some(f) = &env_file {
                    let _ = std::fs::remove_file(f);
                }
                return Err(ClientError::Unexpected(format!(
                    "`{program}` is not installed in the box (not on its PATH)"
                )));
            }
            let env = match env_file {
                Some(path) => read_env_file(&path).map_err(|e| {
                    ClientError::Unexpected(format!(
                        "cannot use the environment file {}: {e}",
                        path.display()
                    ))
                })?,
                None => Vec::new(),
            };
            let spec = SessionSpec {
                name,
                cwd,
                argv,
                env,
                ends_with_command: false,
                agent,
            };
            match client::call(&socket, CtlRequest::SessionStart(spec))? {
                CtlResponse::Sessions(s) => {
                    for s in s {
                        println!("session `{}` started", s.name);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(&other)),
            }
        }
        Cmd::Session(SessionCmd::List { json }) => {
            match client::call(&socket, CtlRequest::SessionList)? {
                CtlResponse::Sessions(s) => {
                    if json {
                        print_json(&s);
                    } else if s.is_empty() {
                        println!("no sessions");
                    } else {
                        println!("{:<20} {:<8} {:<9} STARTED", "NAME", "RUNNING", "ATTACHED");
                        for s in s {
                            println!(
                                "{:<20} {:<8} {:<9} {}",
                                s.name,
                                if s.running { "yes" } else { "no" },
                                s.attached,
                                s.started_at_ms.map_or("-".into(), ago)
                            );
                        }
                    }
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(&other)),
            }
        }
        Cmd::Session(SessionCmd::Kill { name }) => {
            match client::call(&socket, CtlRequest::SessionKill { name: name.clone() })? {
                CtlResponse::Done => {
                    println!("session `{name}` killed");
                    Ok(ExitCode::SUCCESS)
                }
                other => Err(unexpected(&other)),
            }
        }
        Cmd::Shutdown => match client::call(&socket, CtlRequest::Shutdown)? {
            CtlResponse::Done => Ok(ExitCode::SUCCESS),
            other => Err(unexpected(&other)),
        },
    }
}

fn unit_command(socket: &std::path::Path, request: CtlRequest) -> Result<ExitCode, ClientError> {
    match client::call(socket, request)? {
        CtlResponse::Unit(u) => {
            println!("{}", unit_line(&u));
            Ok(ExitCode::SUCCESS)
        }
        other => Err(unexpected(&other)),
    }
}

fn logs(
    socket: &std::path::Path,
    name: String,
    tail: u32,
    follow: bool,
) -> Result<ExitCode, ClientError> {
    let mut c = client::Client::request(socket, CtlRequest::Logs { name, tail, follow })?;
    let mut out = std::io::stdout().lock();
    loop {
        match c.response() {
            Ok(CtlResponse::LogLines(lines)) => {
                for l in &lines {
                    if writeln!(out, "{}", log_line(l)).is_err() {
                        return Ok(ExitCode::SUCCESS); // stdout closed (e.g. `| head`)
                    }
                }
                let _ = out.flush();
            }
            Ok(CtlResponse::End) | Err(ClientError::NoAnswer) => return Ok(ExitCode::SUCCESS),
            Ok(other) => return Err(unexpected(&other)),
            Err(e) => return Err(e),
        }
    }
}

fn log_line(l: &LogLine) -> String {
    format!("{} {} {}", clock(l.ts_ms), l.stream.tag(), l.line)
}

/// `HH:MM:SS.mmm` (UTC) of an epoch-millisecond timestamp.
fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60,
        ms % 1000
    )
}

fn ago(ms: u64) -> String {
    let secs = agentbox_protocol::now_millis().saturating_sub(ms) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

fn unit_line(u: &UnitStatus) -> String {
    let pid = u.pid.map_or(String::new(), |p| format!(" (pid {p})"));
    let detail = u
        .detail
        .as_ref()
        .map_or(String::new(), |d| format!(" — {d}"));
    format!("{}: {}{pid}{detail}", u.name, u.state)
}

fn print_status(r: &StatusReport) {
    if let Some(e) = &r.daemon.config_error {
        println!(
            "CONFIG ERROR (no units running; fix the file, then `agentbox-ctl reload`):\n{e}\n"
        );
    }
    if r.units.is_empty() {
        println!("no services or tasks configured ({})", r.daemon.config_path);
        return;
    }
    println!(
        "{:<20} {:<8} {:<9} {:<8} {:<8} DETAIL",
        "NAME", "KIND", "STATE", "PID", "RESTARTS"
    );
    for u in &r.units {
        let kind = match u.kind {
            agentbox_protocol::ctl::UnitKind::Service => "service",
            agentbox_protocol::ctl::UnitKind::Task => "task",
        };
        let mut detail = u.detail.clone().unwrap_or_default();
        if let Some(e) = &u.expose {
            detail = format!(
                "{}port {}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!("{detail}; ")
                },
                e.port,
                if e.default { " (default)" } else { "" }
            );
        }
        println!(
            "{:<20} {:<8} {:<9} {:<8} {:<8} {}",
            u.name,
            kind,
            u.state.as_str(),
            u.pid.map_or("-".into(), |p| p.to_string()),
            u.restarts,
            detail
        );
    }
}

fn print_wait(r: &WaitReadyReport) {
    if r.ready {
        println!("ready");
        return;
    }
    println!("not ready");
    for p in &r.failed {
        println!("  failed: {}: {}", p.name, p.reason);
    }
    for p in &r.timed_out {
        println!("  timed out: {}: {}", p.name, p.reason);
    }
}

fn validate(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("{w}");
            }
            let services = c
                .units
                .iter()
                .filter(|u| u.kind == agentbox_protocol::ctl::UnitKind::Service)
                .count();
            println!(
                "{}: OK: {services} service(s), {} task(s)",
                path.display(),
                c.units.len() - services
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

/// The flags of `agent-state`.
struct AgentFlags {
    agent: Option<String>,
    session: Option<String>,
    detail: Option<String>,
    from: Option<String>,
}

/// `agentbox-ctl agent-state`: works out the report and hands it to the daemon.
fn agent_state(socket: &std::path::Path, value: Option<&str>, flags: AgentFlags) -> ExitCode {
    use agentbox_protocol::agent::{AgentState, AgentStatus};
    let hook = flags.from.is_some();
    // A hook's problem is reported on stderr and never fails the agent.
    let fail = |message: String| {
        eprintln!("agentbox-ctl agent-state: {message}");
        if hook {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        }
    };
    let report = match flags.from.as_deref() {
        Some("claude") => {
            let mut input = String::new();
            let read = std::io::Read::read_to_string(
                &mut std::io::Read::take(std::io::stdin(), 1 << 20),
                &mut input,
            );
            match read.map_err(|e| e.to_string()).and_then(|_| {
                serde_json::from_str::<serde_json::Value>(&input).map_err(|e| e.to_string())
            }) {
                Ok(event) => crate::hooks::from_claude(&event),
                Err(e) => return fail(format!("not a Claude Code hook event on stdin: {e}")),
            }
        }
        Some(_) => match value.map(serde_json::from_str::<serde_json::Value>) {
            Some(Ok(event)) => crate::hooks::from_codex(&event),
            Some(Err(e)) => return fail(format!("not a Codex notify payload: {e}")),
            None => return fail("no Codex notify payload given".into()),
        },
        None => match value.map(str::parse::<AgentState>) {
            Some(Ok(state)) => Some((state, flags.detail.clone())),
            Some(Err(e)) => return fail(e),
            None => return fail("name a state: working, waiting, idle, error or exited".into()),
        },
    };
    // An event that says nothing about the state.
    let Some((state, detail)) = report else {
        return ExitCode::SUCCESS;
    };
    let Some(session) = flags
        .session
        .or_else(|| std::env::var("AGENTBOX_SESSION").ok())
        .filter(|s| !s.is_empty())
    else {
        return fail("not in an agent session ($AGENTBOX_SESSION is unset): pass --session".into());
    };
    let agent = flags
        .agent
        .or(flags.from)
        .unwrap_or_else(|| session.clone());
    let status = AgentStatus {
        session,
        agent,
        state,
        detail: flags.detail.or(detail),
        since_ms: agentbox_protocol::now_millis(),
    };
    match client::call(socket, CtlRequest::AgentState(status)) {
        Ok(CtlResponse::Done) => ExitCode::SUCCESS,
        Ok(CtlResponse::Error(e)) => fail(e.message),
        Ok(other) => fail(unexpected(&other).to_string()),
        Err(e) => fail(e.to_string()),
    }
}

/// Reads and deletes a session environment file: a JSON object of names to strings, in a
/// file no one else can read (a wider file is refused, and deleted all the same).
fn read_env_file(path: &std::path::Path) -> Result<Vec<(String, String)>, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string());
    let _ = std::fs::remove_file(path);
    if !meta.is_file() || meta.mode() & 0o077 != 0 {
        return Err("it must be a regular file readable by its owner only (mode 0600)".into());
    }
    let map: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&text?).map_err(|e| format!("not a JSON object of strings: {e}"))?;
    Ok(map.into_iter().collect())
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
