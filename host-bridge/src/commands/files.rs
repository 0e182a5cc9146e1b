//! Files between the host and a box: `cp`, `sync`, `download`.

use std::process::ExitCode;

use anyhow::bail;

use super::context::{relay_of, Ctx};
use crate::cli::{CpArgs, DownloadArgs, SyncArgs};
use crate::text::shown;

/// `agentbox download`: the box workspace back into the host tree, after showing what
/// changes and asking.
pub fn download(ctx: &Ctx, o: &DownloadArgs) -> anyhow::Result<ExitCode> {
    use crate::download::{self, Change};
    let target = o.target.as_deref();
    let record = match (target, ctx.resolve(target)) {
        (Some(what @ ("env" | "config" | "claude")), Err(_)) => bail!(
            "`agentbox download {what}` (the box's env files, config or Claude state) is not built; `agentbox download [BOX]` brings the workspace back (--with-env includes .env files)"
        ),
        (_, found) => found?,
    };
    let relay = relay_of(&record)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let base = crate::unsaved::Base::load(&record.dir);
    let plan = runtime.block_on(download::plan(&relay, &record.project, &base, o.with_env))?;
    let (go, held): (Vec<_>, Vec<_>) = plan
        .files
        .iter()
        .partition(|f| (!f.host_executed || o.allow_host_executed) && (!f.conflict || o.theirs));
    if !o.json {
        for f in &plan.files {
            let what = match f.change {
                Change::New => "new",
                Change::Modified => "modified",
            };
            let what = if f.conflict { "conflict" } else { what };
            let note = if f.conflict && !o.theirs {
                "   (changed on the host too: the host's stays; --theirs takes the box's)"
            } else if f.host_executed && !o.allow_host_executed {
                "   (held back: the host runs it; --allow-host-executed)"
            } else if f.host_executed {
                "   (runs on the host)"
            } else {
                ""
            };
            eprintln!("  {what:<9}{}{note}", shown(&f.path));
        }
        for path in &plan.host_newer {
            eprintln!(
                "  kept     {}   (changed on the host only: its edit stays)",
                shown(path)
            );
        }
        for path in &plan.refused {
            let why = download::refused_in_host_tree(path).unwrap_or_default();
            eprintln!("  refused  {}   (never written: {why})", shown(path));
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
    let max = ctx.max_transfer_bytes()?;
    let paths: Vec<String> = go.iter().map(|f| f.path.clone()).collect();
    let shown = crate::transfer::progress::meter("download");
    let written = runtime.block_on(download::apply(&relay, &record.project, paths, max, &shown))?;
    // Both sides have these now: the base of the next download.
    crate::unsaved::Base::save_downloaded(
        &record.dir,
        go.iter()
            .filter(|f| written.contains(&f.path))
            .map(|f| (f.path.clone(), f.digest.clone())),
    )?;
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

/// `agentbox sync`: the host tree's changes since the seed or last sync into the box.
pub fn sync(ctx: &Ctx, args: &SyncArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    let relay = relay_of(&record)?;
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(crate::sync::sync(&relay, &record.project, &record.dir))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(ExitCode::SUCCESS);
    }
    let r = &outcome.report;
    // The box wrote these sentences: escaped, so they cannot forge or redraw lines.
    println!("commits: {}", shown(&r.commits));
    println!("changes: {}", shown(&r.changes));
    println!(
        "untracked files: {} written ({} bytes sent)",
        r.written.len(),
        outcome.bytes_sent
    );
    for p in r.kept_box_version.iter().chain(&outcome.kept_in_box) {
        println!("kept the box's version of {}", shown(p));
    }
    if outcome.skipped_names > 0 {
        println!(
            "skipped {} untracked file(s) whose names are not UTF-8 (use `agentbox cp`)",
            outcome.skipped_names
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentbox cp`: like `docker cp`, verified and resumable.
pub fn cp(ctx: &Ctx, args: &CpArgs) -> anyhow::Result<ExitCode> {
    use crate::transfer::cp;
    let plan = cp::plan(&args.paths)?;
    let name = match &plan {
        cp::Plan::Upload { name, .. } | cp::Plan::Download { name, .. } => name,
    };
    let record = ctx.resolve(Some(name))?;
    let relay = relay_of(&record)?;
    let max = match args.max_size {
        Some(m) => m,
        None => ctx.max_transfer_bytes()?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let written: Vec<String> = runtime.block_on(async {
        match plan {
            cp::Plan::Upload { sources, dest, .. } => {
                let label = format!("to {}", record.name);
                let shown = crate::transfer::progress::meter(&label);
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
                    let shown = crate::transfer::progress::meter(&label);
                    for p in cp::download(&relay, source, &dest, slash, max, &shown).await? {
                        all.push(p.display().to_string());
                    }
                }
                Ok(all)
            }
        }
    })?;
    if args.json {
        println!("{}", serde_json::json!({ "written": written }));
    } else {
        for w in written {
            println!("{}", shown(&w));
        }
    }
    Ok(ExitCode::SUCCESS)
}
