//! What each client command does: one request to the daemon (or the host, through it) and
//! its answer turned into output and an exit code.

use std::process::ExitCode;

use agentbox_protocol::ctl::{CtlRequest, CtlResponse, SessionSpec};
use agentbox_protocol::term::SessionName;

use super::args::{Cmd, NameArg, SessionCmd, EXIT_UNREACHABLE};
use super::output::{ago, print_json, print_status, print_wait, unit_line};
use crate::client::{self, ClientError};
use crate::config;
use crate::paths::Paths;

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

/// A session name from the command line, refused here as the daemon would refuse it.
fn session_name(name: String) -> Result<SessionName, ClientError> {
    SessionName::try_from(name).map_err(|e| {
        ClientError::Daemon(agentbox_protocol::ErrorReply::new(
            agentbox_protocol::ErrorCode::BadRequest,
            format!("invalid session name: {e}"),
        ))
    })
}

fn unexpected(r: &CtlResponse) -> ClientError {
    ClientError::unexpected(r)
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
        Cmd::Unpushed => Ok(crate::git::unpushed(paths)),
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
        Cmd::Logs {
            names,
            tail,
            follow,
            json,
            since_ms,
        } => super::logs::logs(
            &socket,
            &super::logs::LogsArgs {
                names,
                tail,
                follow,
                json,
                since_ms,
            },
        ),
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
                return Err(ClientError::Refused(format!(
                    "`{program}` is not installed in the box (not on its PATH)"
                )));
            }
            let env = match env_file {
                Some(path) => read_env_file(&path).map_err(|e| {
                    ClientError::Refused(format!(
                        "cannot use the environment file {}: {e}",
                        path.display()
                    ))
                })?,
                None => Vec::new(),
            };
            let spec = SessionSpec {
                name: session_name(name)?,
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
            let name = session_name(name)?;
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
    let session = match SessionName::try_from(session) {
        Ok(s) => s,
        Err(e) => return fail(format!("invalid session name: {e}")),
    };
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
