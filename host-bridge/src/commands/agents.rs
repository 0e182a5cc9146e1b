//! The agents: `claude`, `codex`, `opencode` (a new box, or an existing box's agent
//! again) and `resync` (their credentials, and the git identity, into a box).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::context::{ensure_running, Ctx};
use super::create::run_in_session;
use super::exec::{attach_or_say, start_session};
use crate::cli::{AgentArgs, ResyncArgs};
use crate::config::Resolved;
use crate::image::Agent;
use crate::provider::{self, AnyBox};
use crate::state::BoxRecord;

/// `agentbox claude|codex|opencode [BOX]`.
pub fn agent(ctx: &Ctx, agent: Agent, a: &AgentArgs) -> anyhow::Result<ExitCode> {
    if let Some(target) = &a.target {
        // A new box starts the bridge as `create` does; an existing one may find it stopped.
        super::exec::bridge_on_demand(ctx);
        return agent_again(ctx, agent, target, &a.args, a.detach);
    }
    let mut flags = BTreeMap::new();
    if let Some(p) = &a.opts.provider {
        flags.insert("box.provider".to_string(), p.clone());
    }
    let cfg = ctx.resolved(flags)?;
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
    ensure_image_has(&cfg, &provider, name)?;
    let argv = agent.session_argv(&a.args, false);
    run_in_session(ctx, &a.opts, name, &argv, Some(name), a.detach)
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
    ctx: &Ctx,
    agent: Agent,
    target: &str,
    args: &[String],
    detach: bool,
) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(Some(target))?;
    let b = AnyBox::open(&record)?;
    if !b.running() {
        eprintln!("==> starting box `{}`", record.name);
        let url = b.start(&record.bridge_token)?;
        ctx.state.update(&record.name, "ready", Some(&url))?;
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
            if found.is_some() {
                eprintln!("==> resuming {name} in box `{}`", record.name);
            } else {
                eprintln!("==> starting {name} in box `{}`", record.name);
            }
            start_session(ctx, &b, name, &agent.session_argv(args, true), Some(name))?;
        }
    }
    attach_or_say(&record, name, detach)
}

/// `agentbox resync [BOX]`.
pub fn resync(ctx: &Ctx, args: &ResyncArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    ensure_running(&AnyBox::open(&record)?, &record.name)?;
    // The git identity too, as at create: it may have changed since.
    let relay = super::context::relay_of(&record)?;
    let identity = crate::git_identity::Identity::of_project(&record.project);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(identity.apply(&relay))
        .context("cannot give the box's git your user.name and user.email")?;
    send_credentials(&record)
}

/// The host's agent credentials into the box.
pub fn send_credentials(record: &BoxRecord) -> anyhow::Result<ExitCode> {
    let b = AnyBox::open(record)?;
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
