//! The box lifecycle: `create`, `run`, `list`, `status`, `stop`, `start`, `destroy`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::context::Ctx;
use super::{exec, images, interrupt};
use crate::cli::{BoxArg, CreateArgs, CreateOpts, DestroyArgs, ListArgs, RunArgs, StatusArgs};
use crate::home::{project_id, slug};
use crate::provider::{self, AnyBox};
use crate::state::BoxRecord;
use crate::text::shown;
use crate::{git, seed};

/// `agentbox create`: prints the new box's name (or its record as JSON).
pub fn create(ctx: &Ctx, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let record = new_box(ctx, &args.opts)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&record)?);
    } else {
        println!("{}", record.name);
    }
    Ok(ExitCode::SUCCESS)
}

/// Makes a box from the repository around the current directory: its record, its
/// container or sandbox, the seed, its services. Nothing half-made stays behind when a
/// step fails.
pub fn new_box(ctx: &Ctx, opts: &CreateOpts) -> anyhow::Result<BoxRecord> {
    let repo = git::repo_root(&ctx.cwd)?;
    let mut flags = BTreeMap::new();
    if let Some(p) = &opts.provider {
        flags.insert("box.provider".to_string(), p.clone());
    }
    let cfg = ctx.resolved(flags)?;
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
        None => free_name(ctx, &repo)?,
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
        dir: ctx.home.box_dir(&name),
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
                let manifest = crate::checkpoint::find(ctx.home.root(), &project_id(&repo), name)?;
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
                image = images::fresh_snapshot(ctx, &cfg, image, !opts.yes)?;
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
            home_label: provider::docker::home_label(ctx.home.root()),
            size,
            seeded,
            dind: opts.dind,
        })
    } else {
        None
    };
    let armed = {
        let _step = interrupt::step();
        ctx.state.insert(&record)?;
        // Ctrl-C from here on undoes what `build` did, like a failure (only once the
        // name is ours: the record of another box of this name is never touched).
        let (undo, db) = (record.clone(), ctx.home.state_db());
        interrupt::arm(format!("the half-made box `{name}`"), move || {
            if let Ok(b) = AnyBox::open(&undo) {
                roll_back(&undo, &b);
            }
            if let Err(e) = crate::state::State::open(&db).and_then(|s| s.remove(&undo.name)) {
                eprintln!("warning: the record of box `{}` stays: {e}", undo.name);
            }
        })
    };
    let armed = match armed {
        Ok(armed) => armed,
        Err(e) => {
            let _ = ctx.state.remove(&name);
            return Err(e.context("cannot watch for Ctrl-C"));
        }
    };
    // Whatever an earlier box of this name reported is not this box's.
    let _ = std::fs::remove_file(ctx.home.agent_states(&name));
    let b = AnyBox::open(&record)?;
    match build(&record, &b, opts, depth, docker.as_ref()) {
        Ok(url) => {
            {
                let _step = interrupt::step();
                ctx.state.update(&name, "ready", Some(&url))?;
                armed.disarm();
            }
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
            if let Err(e) = crate::bridge::ensure_started(&ctx.home) {
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
            let _step = interrupt::step();
            armed.disarm();
            roll_back(&record, &b);
            let _ = ctx.state.remove(&name);
            Err(e.context(format!("could not create box `{name}`")))
        }
    }
}

/// Ends a half-made box's processes and removes its directory (the record is the
/// caller's): after a failed step of `create`, or Ctrl-C.
fn roll_back(record: &BoxRecord, b: &AnyBox) {
    if record.dir.exists() || record.provider != "local" {
        let _ = b.stop();
        let _ = b.remove(&record.dir);
    }
}

/// Lays the box out, seeds it and waits for its services; returns its relay's address.
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
    // Steps that make things run under `interrupt::step`, so Ctrl-C undoes them whole.
    interrupt::step_of(|| b.lay_out(record, docker))?;
    if docker.is_some_and(|d| d.seeded) {
        progress("starting the box daemon and relay (the checkpoint holds the workspace)");
        return interrupt::step_of(|| {
            std::fs::create_dir_all(&record.dir)?;
            b.start(&record.bridge_token)
        });
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
    let url = interrupt::step_of(|| b.start(&record.bridge_token))?;
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
    let sync = crate::sync::SyncRecord {
        head: seed.manifest.head.clone(),
        changes_tree: match &seed.manifest.stash {
            Some(s) => git::run(&record.project, &["rev-parse", &format!("{s}^{{tree}}")])?,
            None => String::new(),
        },
        files: seed.digests.clone(),
    };
    interrupt::step_of(|| sync.save(&record.dir))?;
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

fn valid_box_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        && !b.iter().all(u8::is_ascii_digit)
}

/// `<repo>-<n>` with the first `n` no box (record or directory) has.
fn free_name(ctx: &Ctx, repo: &Path) -> anyhow::Result<String> {
    let base = slug(repo, 50);
    let base = if base.is_empty() {
        "box".to_string()
    } else {
        base
    };
    for n in 1.. {
        let name = format!("{base}-{n}");
        if ctx.state.get(&name)?.is_none() && !ctx.home.box_dir(&name).exists() {
            return Ok(name);
        }
    }
    unreachable!("names are unbounded")
}

/// `agentbox run`: a new box running `argv` in its session `agent`.
pub fn run(ctx: &Ctx, args: &RunArgs) -> anyhow::Result<ExitCode> {
    run_in_session(ctx, &args.opts, "agent", &args.argv, None, args.detach)
}

/// Creates a box and runs `argv` in its session `session`; attaches unless `detach`.
pub fn run_in_session(
    ctx: &Ctx,
    opts: &CreateOpts,
    session: &str,
    argv: &[String],
    agent: Option<&str>,
    detach: bool,
) -> anyhow::Result<ExitCode> {
    let record = new_box(ctx, opts)?;
    let b = AnyBox::open(&record)?;
    exec::start_session(ctx, &b, session, argv, agent)?;
    exec::attach_or_say(&record, session, detach)
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

/// What `list` and `status` say while the host bridge is not running.
const BRIDGE_DOWN: &str = "host bridge not running: boxes' requests wait; `agentbox bridge start`";

/// `agentbox list`.
pub fn list(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let boxes = ctx.state.all()?;
    let bridge_running = crate::bridge::running_pid(&ctx.home).is_some();
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
            let agents = crate::agents::load(&ctx.home.agent_states(&b.name));
            serde_json::json!({
                "index": i + 1, "name": b.name, "provider": b.provider, "state": state,
                "project": b.project, "branch": b.branch, "created_at_ms": b.created_at_ms,
                "agents": agents_json(&agents, running),
                "agents_summary": crate::agents::summary(&agents, running),
                "bridge_running": bridge_running,
            })
        })
        .collect();
    if args.json {
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
                shown(r["agents_summary"].as_str().unwrap_or("")),
                r["project"].as_str().unwrap_or("")
            );
        }
        if !bridge_running {
            println!("{BRIDGE_DOWN}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

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

/// `agentbox stop`.
pub fn stop(ctx: &Ctx, args: &BoxArg) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    AnyBox::open(&record)?.stop()?;
    eprintln!("stopped {}", record.name);
    Ok(ExitCode::SUCCESS)
}

/// `agentbox start`.
pub fn start(ctx: &Ctx, args: &BoxArg) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    let b = AnyBox::open(&record)?;
    if b.running() {
        bail!("box `{}` is already running", record.name);
    }
    let url = b.start(&record.bridge_token)?;
    ctx.state.update(&record.name, "ready", Some(&url))?;
    eprintln!("started {}", record.name);
    Ok(ExitCode::SUCCESS)
}

/// `agentbox destroy`: the box, its workspace, its record and what the host kept of it.
pub fn destroy(ctx: &Ctx, args: &DestroyArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    let b = AnyBox::open(&record)?;
    // The work that would be lost, in words (`None`: nothing of the box's is at stake).
    let at_stake = if args.force {
        None
    } else {
        unsaved_work(&record, &b)
    };
    if let (Some(what), true) = (&at_stake, args.yes) {
        bail!(
            "box `{}` {what}: bring it back first (`agentbox download`, `git push` in the box), or pass --force to destroy it anyway",
            shown(&record.name)
        );
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
            "is stopped, so its unpushed commits and changed files cannot be checked (start it to check)"
                .into(),
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
        Err(e) => return Some(format!("cannot list its changed files ({e:#})")),
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
