//! Making a box: `create` and `run` (a new box running a command in a session). A step
//! that fails, or Ctrl-C, rolls back what was made (processes, directory, record).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::context::Ctx;
use super::{exec, images, interrupt};
use crate::cli::{CreateArgs, CreateOpts, RunArgs};
use crate::home::{project_id, slug};
use crate::provider::{self, AnyBox};
use crate::state::BoxRecord;
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
                crate::transfer::progress::step(&format!(
                    "from checkpoint {name} (snapshot {})",
                    manifest.snapshot
                ));
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
        let configured = |key: &str| cfg.get(key).map(|(v, _)| v);
        let size_key = (record.provider == "daytona")
            .then(|| configured("box.sizeDaytona"))
            .flatten();
        let size = match opts.size.as_deref().or(size_key).or(configured("box.size")) {
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
            auto_stop_minutes: match cfg.get("box.autoStopMinutes").map(|(v, _)| v) {
                Some(m) => m.parse().map_err(|_| {
                    anyhow::anyhow!(
                        "box.autoStopMinutes must be a whole number of minutes, not `{m}`"
                    )
                })?,
                None => provider::daytona::AUTO_STOP_MINUTES,
            },
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
                        crate::transfer::progress::step(&format!(
                            "agent credentials copied in: {}",
                            agents.join(", ")
                        ));
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
    let progress = crate::transfer::progress::step;
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
    // A commit in the box has the user's name on it, as on this machine; nothing else of
    // the host's git config goes.
    let identity = crate::git_identity::Identity::of_project(&record.project);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(identity.apply(&relay))
        .context("cannot give the box's git your user.name and user.email")?;
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
            crate::text::shown(String::from_utf8_lossy(&reload.stderr).trim())
        );
    }
    progress("waiting for services");
    super::ready::wait_for_units(b, &record.name)?;
    Ok(url)
}

pub(crate) fn valid_box_name(name: &str) -> bool {
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
