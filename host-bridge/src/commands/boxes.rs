//! The box lifecycle after `create` (which is in `create.rs`) and `list` (in `list.rs`):
//! `status`, `stop`, `start`, `destroy`, each of the last three on several boxes.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::bail;

use super::context::Ctx;
use crate::cli::{BoxArg, BoxesArg, DestroyArgs, StatusArgs};
use crate::provider::AnyBox;
use crate::state::BoxRecord;
use crate::text::shown;

/// The agents of a box as `list --json` and `status --json` show them.
pub(crate) fn agents_json(agents: &crate::agents::States, running: bool) -> serde_json::Value {
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

/// What `list` and `status` say while the host bridge is not running.
pub(crate) const BRIDGE_DOWN: &str =
    "host bridge not running: boxes' requests wait; `agentbox bridge start`";

/// `agentbox status`.
pub fn status(ctx: &Ctx, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    let b = AnyBox::open(&record)?;
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
    let agents = crate::agents::load(&ctx.home.agent_states(&record.name));
    let bridge_running = crate::bridge::running_pid(&ctx.home).is_some();
    if args.json {
        let v = serde_json::json!({
            "box": record, "running": running, "units": units, "sessions": sessions,
            "agents": agents_json(&agents, running), "bridge_running": bridge_running,
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
    if !bridge_running {
        println!("{BRIDGE_DOWN}");
    }
    if let AnyBox::Local(l) = &b {
        println!("workspace: {}", l.workspace().display());
    }
    for u in units.as_array().into_iter().flatten() {
        println!(
            "  {:<8} {:<20} {:<9} {}",
            shown(u["kind"].as_str().unwrap_or("")),
            shown(u["name"].as_str().unwrap_or("")),
            shown(u["state"].as_str().unwrap_or("")),
            shown(u["detail"].as_str().unwrap_or(""))
        );
    }
    for a in agents.values() {
        println!(
            "  agent    {:<20} {:<9} {}",
            shown(&format!("{} ({})", a.agent, a.session)),
            crate::agents::shown_state(a, running),
            shown(a.detail.as_deref().unwrap_or(""))
        );
    }
    for s in sessions.as_array().into_iter().flatten() {
        println!(
            "  session  {:<20} {}",
            shown(s["name"].as_str().unwrap_or("")),
            if s["running"] == true {
                "running"
            } else {
                "exited"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `one` for each of `targets` (for the project's only box when there are none), on
/// through failures: each failure is reported on stderr with its box, and the exit code is
/// 1 when any failed. One target fails as `one` does.
fn each(
    targets: &[String],
    mut one: impl FnMut(Option<&str>) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    match targets {
        [] => one(None),
        [target] => one(Some(target)),
        _ => {
            let mut code = ExitCode::SUCCESS;
            for target in targets {
                match one(Some(target)) {
                    Ok(c) if c == ExitCode::SUCCESS => {}
                    Ok(c) => code = c,
                    Err(e) => {
                        eprintln!("agentbox: {}: {}", shown(target), shown(&format!("{e:#}")));
                        code = ExitCode::from(1);
                    }
                }
            }
            Ok(code)
        }
    }
}

/// `agentbox stop BOX…`.
pub fn stop_all(ctx: &Ctx, args: &BoxesArg) -> anyhow::Result<ExitCode> {
    each(&args.targets, |target| {
        stop(
            ctx,
            &BoxArg {
                target: target.map(str::to_string),
            },
        )
    })
}

/// `agentbox start BOX…`.
pub fn start_all(ctx: &Ctx, args: &BoxesArg) -> anyhow::Result<ExitCode> {
    each(&args.targets, |target| {
        start(
            ctx,
            &BoxArg {
                target: target.map(str::to_string),
            },
        )
    })
}

/// `agentbox destroy BOX…`.
pub fn destroy(ctx: &Ctx, args: &DestroyArgs) -> anyhow::Result<ExitCode> {
    each(&args.targets, |target| destroy_one(ctx, target, args))
}

/// `agentbox stop` of one box.
pub fn stop(ctx: &Ctx, args: &BoxArg) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    AnyBox::open(&record)?.stop()?;
    // Its agents ended with it: what they last reported is no longer so.
    forget_agents(ctx, &record.name);
    eprintln!("stopped {}", record.name);
    Ok(ExitCode::SUCCESS)
}

/// Drops what the host recorded of a box's agents (they ended with its processes); the
/// agents started later report afresh.
fn forget_agents(ctx: &Ctx, name: &str) {
    let path = ctx.home.agent_states(name);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            eprintln!(
                "warning: the agent states of `{name}` stay in {}: {e}",
                path.display()
            );
        }
    }
}

/// `agentbox start` of one box.
pub fn start(ctx: &Ctx, args: &BoxArg) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    let b = AnyBox::open(&record)?;
    if b.running() {
        // Like `stop` of a stopped box: the box is as asked, nothing to do.
        eprintln!("box {} is already running", record.name);
        return Ok(ExitCode::SUCCESS);
    }
    // A box stopped some other way (Daytona's auto-stop, `docker stop`, a reboot) left
    // its agents' last reports behind; the agents of this start report afresh.
    forget_agents(ctx, &record.name);
    let url = b.start(&record.bridge_token)?;
    ctx.state.update(&record.name, "ready", Some(&url))?;
    eprintln!("started {}", record.name);
    Ok(ExitCode::SUCCESS)
}

/// `agentbox destroy` of one box: the box, its workspace, its record and what the host
/// kept of it.
fn destroy_one(ctx: &Ctx, target: Option<&str>, args: &DestroyArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(target)?;
    if record.is_joined() {
        return super::joined::forget(&ctx.state, &record);
    }
    let b = AnyBox::open(&record)?;
    // The work that would be lost, in words (`None`: nothing of the box's is at stake).
    let at_stake = if args.force {
        None
    } else {
        unsaved_work(&record, &b)
    };
    if let (Some(what), true) = (&at_stake, args.yes) {
        let name = shown(&record.name);
        let how = if b.running() {
            "bring it back first (`agentbox download`, `git push` in the box)".to_string()
        } else {
            format!("start it (`agentbox start {name}`) and destroy it again to have it checked")
        };
        bail!("box `{name}` {what}: {how}, or pass --force to destroy it anyway");
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!(
                "destroying box `{}` deletes its workspace{}: pass -y to confirm",
                record.name,
                at_stake
                    .as_ref()
                    .map(|w| format!(" (it {w}; -y also needs --force)"))
                    .unwrap_or_default()
            );
        }
        match &at_stake {
            Some(what) => eprint!(
                "box `{}` {what}: destroy anyway? [y/N] ",
                shown(&record.name)
            ),
            None => eprint!("destroy box `{}` and its workspace? [y/N] ", record.name),
        }
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("kept {}", record.name);
            return Ok(ExitCode::from(1));
        }
    }
    if b.running() {
        b.stop()?;
    }
    b.remove(&record.dir)?;
    let records = crate::home::host_records(&record.dir);
    if records != record.dir {
        let _ = std::fs::remove_dir_all(&records);
    }
    let _ = std::fs::remove_file(
        ctx.home
            .root()
            .join("locks")
            .join(format!("push-{}.lock", record.name)),
    );
    let _ = std::fs::remove_file(ctx.home.agent_states(&record.name));
    ctx.state.remove(&record.name)?;
    eprintln!("destroyed {}", record.name);
    Ok(ExitCode::SUCCESS)
}

/// What of box `b`'s work the host does not have, as the rest of a sentence starting with
/// the box's name ("has 3 commits not pushed and 2 changed files not brought back"), or
/// `None` when there is none. A box that cannot be checked (stopped, unreachable) says so:
/// its work is at stake until someone looks.
fn unsaved_work(record: &BoxRecord, b: &AnyBox) -> Option<String> {
    if !b.running() {
        return Some(
            "is stopped, so its unpushed commits and changed files cannot be checked".into(),
        );
    }
    let work = match b.ctl(&["unpushed"]) {
        Ok(out) if out.status.success() => {
            match serde_json::from_slice::<serde_json::Value>(&out.stdout) {
                Ok(v) => v,
                Err(_) => return Some("cannot count its work the host has not received".into()),
            }
        }
        Ok(out) => {
            return Some(format!(
                "cannot count its work the host has not received ({})",
                shown(String::from_utf8_lossy(&out.stderr).trim())
            ))
        }
        Err(e) => {
            return Some(format!(
                "cannot count its work the host has not received ({e})"
            ))
        }
    };
    let Some(commits) = work["commits"].as_u64() else {
        return Some("cannot count its commits the host has not received".into());
    };
    // The box's records can miss a push the host carried out (its `git push` died before
    // the answer came): a commit the host's repository holds is not at stake.
    let ids: Vec<&str> = work["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    let commits = match crate::unsaved::commits_host_has(&record.project, &ids) {
        Ok(held) => commits.saturating_sub(held as u64),
        Err(e) => {
            return Some(format!(
                "cannot tell which of its commits the host has ({e:#})"
            ))
        }
    };
    // Uncommitted in the box (its `git status`), and not what the host has or gave it.
    let uncommitted: std::collections::BTreeSet<&str> = work["changed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    let files = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            let relay = super::context::relay_of(record)?;
            rt.block_on(crate::unsaved::changed_in_box(
                &relay,
                &record.project,
                &record.dir,
            ))
        });
    let files = match files {
        Ok(f) => f
            .iter()
            .filter(|p| uncommitted.contains(p.as_str()))
            .count(),
        // The error can carry the relay's words: escaped, they cannot redraw the prompt.
        Err(e) => {
            return Some(format!(
                "cannot list its changed files ({})",
                shown(&format!("{e:#}"))
            ))
        }
    };
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    match (commits, files) {
        (0, 0) => None,
        (c, 0) => Some(format!(
            "has {} not pushed",
            plural(c as usize, "commit", "commits")
        )),
        (0, f) => Some(format!(
            "has {} not brought back",
            plural(f, "changed file", "changed files")
        )),
        (c, f) => Some(format!(
            "has {} not pushed and {} not brought back",
            plural(c as usize, "commit", "commits"),
            plural(f, "changed file", "changed files")
        )),
    }
}
