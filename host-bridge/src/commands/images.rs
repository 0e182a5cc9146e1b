//! Box images and what is left of boxes: `prepare`, `prune`, and the freshness check of
//! a pinned Daytona snapshot.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::bail;

use super::config::pin;
use super::context::Ctx;
use crate::cli::{PrepareArgs, PruneArgs};
use crate::config::Resolved;
use crate::image::{self, Agent, Inputs, Packages};
use crate::provider;

/// The base image and agents of the box image: flags, else config, else defaults; whether
/// it carries a Docker engine; whether the browser (`box.browser`, or `browser` among the
/// agents).
fn image_choice(
    cfg: &Resolved,
    base_image: Option<String>,
    agents: Option<String>,
) -> anyhow::Result<(String, Vec<Agent>, bool, bool)> {
    let base = base_image
        .or_else(|| cfg.get("box.baseImage").map(|(v, _)| v.to_string()))
        .unwrap_or_else(|| provider::docker::DEFAULT_BASE.to_string());
    let agents = agents
        .or_else(|| cfg.get("box.agents").map(|(v, _)| v.to_string()))
        .unwrap_or_else(|| image::DEFAULT_AGENTS.to_string());
    let (agents, browser_listed) = image::browser::split_agents(&agents);
    let agents = image::agents::parse_list(&agents).map_err(anyhow::Error::msg)?;
    let dind = cfg.get("box.dind").is_some_and(|(v, _)| v == "yes");
    let browser = browser_listed || cfg.get("box.browser").is_some_and(|(v, _)| v == "yes");
    Ok((base, agents, dind, browser))
}

/// `agentbox prepare`: builds (or finds) the image and pins it in the project config.
pub fn prepare(ctx: &Ctx, args: &PrepareArgs) -> anyhow::Result<ExitCode> {
    let PrepareArgs {
        provider,
        base_image,
        force,
        agents,
        dind,
        browser,
        size,
    } = args;
    if provider != "docker" && provider != "daytona" {
        bail!("`prepare` makes the box image of the docker or daytona provider; not `{provider}`");
    }
    if size.is_some() && provider != "daytona" {
        bail!("`prepare --size` sets a Daytona snapshot's resources; a docker box's size is given to `create --size`");
    }
    let cfg = ctx.resolved(BTreeMap::new())?;
    let snapshot_size = match size
        .as_deref()
        .or(cfg.get("box.sizeDaytona").map(|(v, _)| v))
    {
        Some(s) => s.parse::<provider::Size>().map_err(anyhow::Error::msg)?,
        None => provider::Size::DAYTONA_DEFAULT,
    };
    let explicit_base = base_image.is_some();
    let explicit_agents = agents.is_some();
    let (base, agents, dind_config, browser_choice) =
        image_choice(&cfg, base_image.clone(), agents.clone())?;
    let arch = image::BoxArch::of_provider(provider)?;
    let inputs = Inputs::gather(&base, &agents, Packages::Latest, arch)?
        .with_dind(*dind || dind_config)
        .with_browser(*browser || browser_choice, Packages::Latest)?;
    let (key, pinned) = if provider == "daytona" {
        let home = ctx.home.root().to_path_buf();
        (
            "box.imageDaytona",
            crate::daytona::prepare::snapshot(&home, &inputs, *force, snapshot_size)?,
        )
    } else {
        ("box.image", provider::docker::prepare(&inputs, *force)?)
    };
    let mut pins = vec![(key, pinned.clone())];
    if explicit_base {
        // What the image was made from, so that `create` can tell when it is stale.
        pins.push(("box.baseImage", base.clone()));
    }
    if explicit_agents {
        pins.push(("box.agents", inputs.agents_text()));
    }
    if *dind {
        pins.push(("box.dind", "yes".into()));
    }
    if *browser || (explicit_agents && inputs.browser()) {
        pins.push(("box.browser", "yes".into()));
    }
    if size.is_some() {
        pins.push(("box.sizeDaytona", snapshot_size.to_string()));
    }
    let path = pin(ctx, &pins)?;
    eprintln!("==> {key} = {pinned} (in {})", path.display());
    println!("{pinned}");
    Ok(ExitCode::SUCCESS)
}

/// The pinned snapshot, or a new one when its inputs changed and the user agrees (on
/// a terminal and `ask`); otherwise (`-y`, or no terminal) a stale snapshot boots after a
/// loud warning.
pub fn fresh_snapshot(
    ctx: &Ctx,
    cfg: &Resolved,
    pinned: String,
    ask: bool,
) -> anyhow::Result<String> {
    let (base, agents, dind, browser) = image_choice(cfg, None, None)?;
    let inputs = match Inputs::gather(&base, &agents, Packages::Cached, image::BoxArch::X86_64)
        .and_then(|i| i.with_dind(dind).with_browser(browser, Packages::Cached))
    {
        Ok(i) => i,
        Err(e) => {
            // Without the agents' packages here, the inputs cannot be compared.
            eprintln!("note: cannot tell whether snapshot {pinned} is up to date ({e:#})");
            return Ok(pinned);
        }
    };
    let wanted = crate::daytona::prepare::snapshot_name(&inputs.tag()?);
    if crate::daytona::prepare::is_snapshot_of(&pinned, &wanted) {
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
            let again = PrepareArgs {
                provider: "daytona".into(),
                base_image: Some(base),
                force: false,
                agents: None,
                dind: false,
                browser: false,
                size: None,
            };
            prepare(ctx, &again)?;
            // A re-bake may have taken a name of its own (`<wanted>-<nonce>`).
            let baked = ctx.resolved(BTreeMap::new())?;
            return Ok(baked
                .get("box.imageDaytona")
                .map_or(wanted, |(v, _)| v.to_string()));
        }
    }
    eprintln!("WARNING: {stale}; booting it anyway. Run `agentbox prepare --provider daytona` to bring it up to date.");
    Ok(pinned)
}

/// `agentbox prune`: containers, engine volumes or sandboxes of this `AGENTBOX_HOME`
/// that no box record knows.
pub fn prune(ctx: &Ctx, args: &PruneArgs) -> anyhow::Result<ExitCode> {
    let (provider, dry_run) = (args.provider.as_str(), args.dry_run);
    let known: std::collections::BTreeSet<String> =
        ctx.state.all()?.into_iter().map(|b| b.name).collect();
    if provider == "daytona" {
        let label = provider::docker::home_label(ctx.home.root());
        for (sandbox, name) in provider::daytona::sandboxes(ctx.home.root(), &label)? {
            if known.contains(&name) {
                continue;
            }
            if dry_run {
                println!("{sandbox}");
            } else {
                provider::daytona::DaytonaBox::new(&name, ctx.home.root())?.remove()?;
                println!("removed {sandbox}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if provider != "docker" {
        bail!("`prune` cleans up docker containers or Daytona sandboxes; not `{provider}`");
    }
    let label = provider::docker::home_label(ctx.home.root());
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
            provider::docker::DockerBox::stray(&name, &label).remove()?;
            println!("removed {item}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
