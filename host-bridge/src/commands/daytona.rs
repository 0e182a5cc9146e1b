//! Daytona's own commands: `daytona login` and `checkpoint` (`daytona resync` is
//! [`super::daytona_resync`]).

use std::process::ExitCode;

use anyhow::bail;

use super::config::pin;
use super::context::Ctx;
use crate::checkpoint::{self, Manifest};
use crate::cli::CheckpointCmd;
use crate::daytona::login::{self, LoginArgs};
use crate::git;
use crate::home::{project_id, Home};
use crate::provider::{self, AnyBox};

/// `agentbox daytona login [--status]`. Needs no box records.
pub fn login(home: &Home, args: LoginArgs, status: bool, json: bool) -> anyhow::Result<ExitCode> {
    if status {
        let accepted = login::status(home.root(), json)?;
        return Ok(if accepted {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    login::login(home.root(), args)?;
    eprintln!("next: `agentbox prepare --provider daytona` bakes the base snapshot boxes start from (once per organization; `agentbox install --provider daytona` does both)");
    Ok(ExitCode::SUCCESS)
}

/// `agentbox checkpoint create|list|rm`.
pub fn checkpoint(ctx: &Ctx, cmd: CheckpointCmd) -> anyhow::Result<ExitCode> {
    let repo = git::repo_root(&ctx.cwd)?;
    let project = project_id(&repo);
    let home = ctx.home.root();
    match cmd {
        CheckpointCmd::Create {
            name,
            target,
            set_default,
            merged,
            replace,
        } => {
            if merged || replace {
                bail!("a Daytona checkpoint is the box's whole disk: there is no --merged or --replace; `agentbox checkpoint rm NAME` and create it again to replace one");
            }
            if !checkpoint::valid_name(&name) {
                bail!("`{name}` is not a checkpoint name (1-40 of a-z, 0-9, -)");
            }
            if checkpoint::find(home, &project, &name).is_ok() {
                bail!("checkpoint `{name}` exists: `agentbox checkpoint rm {name}` first");
            }
            let record = ctx.resolve(target.as_deref())?;
            let AnyBox::Daytona(b) = AnyBox::open(&record)? else {
                bail!(
                    "box `{}` is a {} box: checkpoints are for daytona boxes",
                    record.name,
                    record.provider
                );
            };
            let snapshot = checkpoint::snapshot_name(&project, &name);
            let left = b.checkpoint(&snapshot)?;
            if left != "started" {
                eprintln!(
                    "==> box `{}` was captured {left} and stays {left} (`agentbox start {}` runs it)",
                    record.name, record.name
                );
            }
            checkpoint::save(
                home,
                &project,
                &Manifest {
                    name: name.clone(),
                    snapshot: snapshot.clone(),
                    source_box: record.name.clone(),
                    created_at_ms: agentbox_protocol::now_millis(),
                },
            )?;
            if set_default {
                pin(ctx, &[("box.defaultCheckpointDaytona", name.clone())])?;
                eprintln!("==> box.defaultCheckpointDaytona = {name}");
            }
            println!("{name}");
        }
        CheckpointCmd::List { json } => {
            let all = checkpoint::list(home, &project)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for m in all {
                    println!("{}\t{}\tfrom {}", m.name, m.snapshot, m.source_box);
                }
            }
        }
        CheckpointCmd::Rm { name } => {
            let manifest = checkpoint::find(home, &project, &name)?;
            provider::daytona::delete_snapshot(home, &manifest.snapshot)?;
            checkpoint::forget(home, &project, &name)?;
            eprintln!("removed checkpoint {name} (snapshot {})", manifest.snapshot);
        }
    }
    Ok(ExitCode::SUCCESS)
}
