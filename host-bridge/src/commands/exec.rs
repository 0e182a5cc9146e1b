//! Running and watching things in a box: `exec`, `attach`, `shell`, and the agent
//! sessions that `run` and the agent commands start.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use agentbox_protocol::term::TermEnd;
use anyhow::bail;

use super::context::{ensure_running, relay_of, Ctx};
use crate::cli::{AttachArgs, ExecArgs, ShellArgs, ViewArgs};
use crate::provider::AnyBox;
use crate::state::BoxRecord;

/// Starts the host bridge unless it runs, as `create` does: what runs in the box (a `git
/// push`, a `notify --wait`) waits on it. Failing to start it is a warning; the command
/// goes on.
pub fn bridge_on_demand(ctx: &Ctx) {
    if let Err(e) = crate::bridge::ensure_started(&ctx.home) {
        eprintln!("warning: {e:#}");
    }
}

/// The exit code of `agentbox exec` when agentbox itself cannot run the command (as
/// `docker exec` has it for the daemon's errors).
pub const EXEC_FAILED: u8 = 125;

/// `agentbox exec`: exits with the command's exit code; [`EXEC_FAILED`] when agentbox
/// cannot run it (said on stderr), 126/127 when the box cannot (see [`ExecArgs`]).
pub fn exec(ctx: &Ctx, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let mut args = ExecArgs {
        command: args.command.clone(),
        target: args.target.clone(),
        env: args.env.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        ..*args
    };
    args.settle(std::env::args());
    match exec_code(ctx, &args) {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(1))),
        Err(e) => {
            eprintln!("agentbox: {}", crate::text::shown_lines(&format!("{e:#}")));
            Ok(ExitCode::from(EXEC_FAILED))
        }
    }
}

/// Runs `agentbox exec` on the box's provider; its exit code.
fn exec_code(ctx: &Ctx, args: &ExecArgs) -> anyhow::Result<i32> {
    if args.target.is_some() && args.command.is_empty() {
        let target = args.target.as_deref().unwrap_or_default();
        if ctx.resolve(Some(target)).is_err() {
            // `agentbox exec ls` in a box's directory: the box was left out.
            bail!(
                "no box `{target}` and no command given: put the command after `--` (`agentbox exec -- {target}`) or name the box (`agentbox exec BOX {target}`)"
            );
        }
    }
    let request = args
        .request(|k| std::env::var(k).ok(), crate::attach::terminal::size())
        .map_err(anyhow::Error::msg)?;
    if request.tty.is_some() && request.stdin && !std::io::stdin().is_terminal() {
        bail!("-t with -i needs a terminal, and stdin is not one: drop `-t` (or `-i`)");
    }
    let record = ctx.resolve(args.target.as_deref())?;
    let b = AnyBox::open(&record)?;
    ensure_running(&b, &record.name)?;
    bridge_on_demand(ctx);
    match &b {
        AnyBox::Local(l) => l.exec(&request),
        AnyBox::Docker(d) => d.exec(&request),
        AnyBox::Daytona(_) => crate::relay_exec::exec_here(&relay_of(&record)?, &request),
    }
}

/// `agentbox attach`.
pub fn attach(ctx: &Ctx, args: &AttachArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    bridge_on_demand(ctx);
    view(&record, args.session.clone(), false, &args.view)
}

/// `agentbox shell`.
pub fn shell(ctx: &Ctx, args: &ShellArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    bridge_on_demand(ctx);
    view(&record, args.name.clone(), true, &args.view)
}

/// Starts session `session` running `argv` in box `b`, with the API keys the host
/// config forwards (`agents.forwardEnv`) in its environment only. For an `agent`
/// session, the box refuses when the agent is not installed, and lists it as idle
/// until its hooks report.
pub fn start_session(
    ctx: &Ctx,
    b: &AnyBox,
    session: &str,
    argv: &[String],
    agent: Option<&str>,
) -> anyhow::Result<()> {
    let cfg = ctx.resolved(BTreeMap::new())?;
    let forwarded = cfg
        .get("agents.forwardEnv")
        .map(|(v, _)| crate::credentials::forwarded(v))
        .unwrap_or_default();
    if let Some(agent) = agent {
        if let Some(warning) = missing_credentials(agent, &forwarded) {
            eprintln!("warning: {warning}");
        }
    }
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
        // The box's words are on stderr; a ctl that failed before it could say why (killed,
        // or a shell's error) may have left them on stdout.
        let said = if out.stderr.trim_ascii().is_empty() {
            &out.stdout
        } else {
            &out.stderr
        };
        bail!(
            "cannot start the session: {}",
            crate::text::shown(
                String::from_utf8_lossy(said)
                    .trim()
                    .trim_start_matches("agentbox-ctl: ")
                    // An older ctl's wording for a refusal that is not the daemon's fault.
                    .trim_start_matches("unexpected answer from the daemon: ")
            )
        );
    }
    Ok(())
}

/// The API keys each agent reads, any of which signs it in.
const AGENT_KEYS: [(&str, &[&str]); 3] = [
    ("claude", &["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN"]),
    ("codex", &["OPENAI_API_KEY"]),
    (
        "opencode",
        &["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY"],
    ),
];

/// A warning when `agent` starts with nothing to sign in with: no credential file under
/// this machine's `$HOME` and none of its API keys among the `forwarded` variables.
pub fn missing_credentials(agent: &str, forwarded: &[(String, String)]) -> Option<String> {
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from)?;
    let file = crate::credentials::FILES
        .iter()
        .find(|(a, _, _)| *a == agent)
        .map(|(_, f, _)| *f)?;
    let keys = AGENT_KEYS
        .iter()
        .find(|(a, _)| *a == agent)
        .map_or(&[][..], |(_, k)| *k);
    if home.join(file).is_file() || forwarded.iter().any(|(k, _)| keys.contains(&k.as_str())) {
        return None;
    }
    Some(format!(
        "{agent} has no credentials on this machine (no ~/{file}, and agents.forwardEnv forwards none of {}): it will ask you to sign in inside the box; sign in here and run `agentbox resync`, or forward a key (`agentbox config set agents.forwardEnv {}`)",
        keys.join(", "),
        keys.first().copied().unwrap_or_default()
    ))
}

/// Attaches this terminal to the session, or (detached, or without a terminal) says
/// how to.
pub fn attach_or_say(record: &BoxRecord, session: &str, detach: bool) -> anyhow::Result<ExitCode> {
    if detach || !std::io::stdin().is_terminal() {
        println!("{}", record.name);
        eprintln!("running in box `{}`, session `{session}`: attach with `agentbox attach {} --session {session}`", record.name, record.name);
        return Ok(ExitCode::SUCCESS);
    }
    let view_args = ViewArgs {
        read_only: false,
        transport: crate::attach::wire::Transport::Auto,
        reconnect_window: std::time::Duration::from_millis(
            agentbox_protocol::term::DEFAULT_KEEP_MS,
        ),
        log: None,
        no_tty: false,
    };
    view(record, Some(session.to_string()), false, &view_args)
}

/// Attaches this terminal to a session (or a new shell) of a running box.
fn view(
    record: &BoxRecord,
    session: Option<String>,
    shell: bool,
    view: &ViewArgs,
) -> anyhow::Result<ExitCode> {
    if record.is_joined() {
        return super::joined::attach(record, session, shell, view);
    }
    let b = AnyBox::open(record)?;
    ensure_running(&b, &record.name)?;
    let on_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !(view.no_tty || on_terminal) {
        let what = if shell { "shell" } else { "attach" };
        bail!(
            "`agentbox {what}` shows a terminal session and needs a terminal, but stdin or stdout is not one: run a command with `agentbox exec {0} -- COMMAND`, or pass `--no-tty` to stream the session's raw screen anyway",
            record.name
        );
    }
    let relay = relay_of(record)?;
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
    let outcome = match crate::attach::attach_terminal(&relay, &options, view.log.as_deref()) {
        Ok(o) => o,
        Err(e) if !shell && format!("{e:#}").contains("has no session") => bail!(
            "box `{0}` has no session to attach to: open a shell in it with `agentbox shell {0}`, or start a command with `agentbox run`",
            record.name
        ),
        Err(e) => return Err(e),
    };
    Ok(match outcome.end {
        TermEnd::Detached | TermEnd::SessionEnded => ExitCode::SUCCESS,
        TermEnd::Expired | TermEnd::Closed => ExitCode::from(1),
    })
}
