//! `agentbox prepare --provider daytona`: the box image becomes a Daytona snapshot, named
//! after the checksum of its inputs (`agentbox-base-<checksum>`), so an unchanged image is
//! never baked twice and a changed one never reuses a stale snapshot.
//!
//! Daytona builds it server-side from `Dockerfile.box`: the build context (binaries and
//! shims) goes to Daytona's object storage, the Dockerfile in `buildInfo`. No local Docker
//! is needed.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::login::Settings;
use super::snapshots::{BuildInfo, CreateSnapshot, Snapshot};
use crate::provider::Size;

/// How long a snapshot may take to become active.
const BAKE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The snapshot name for the box image `tag` (`agentbox-box:<checksum>`).
pub fn snapshot_name(tag: &str) -> String {
    let checksum = tag.rsplit(':').next().unwrap_or(tag);
    format!("agentbox-base-{checksum}")
}

/// Whether snapshot `pinned` was baked from the inputs snapshot name `wanted` stands for:
/// that name itself, or it with the suffix a re-bake adds (`<wanted>-<nonce>`).
pub fn is_snapshot_of(pinned: &str, wanted: &str) -> bool {
    pinned
        .strip_prefix(wanted)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// A name for a new bake of `base` that no snapshot in `taken` holds. Daytona deletes a
/// snapshot asynchronously (`removing`) and its name stays taken meanwhile, and a name
/// reused soon after a delete makes a broken snapshot: a re-bake never reuses one.
pub fn fresh_name(base: &str, taken: &[Snapshot], now_secs: u64) -> String {
    let held = |n: &str| taken.iter().any(|s| s.name == n);
    if !held(base) {
        return base.to_string();
    }
    let mut n = now_secs;
    loop {
        let name = format!("{base}-{n:x}");
        if !held(&name) {
            return name;
        }
        n += 1;
    }
}

/// Makes (or finds) the active snapshot of the box image of `inputs` with `size`'s
/// resources (a sandbox made from a snapshot gets the snapshot's); returns its name.
pub fn snapshot(
    home: &Path,
    inputs: &crate::image::Inputs,
    force: bool,
    size: Size,
) -> anyhow::Result<String> {
    let base = inputs.base();
    let tag = inputs.tag()?;
    let client = Settings::load(home)?.client()?;
    let wanted = snapshot_name(&tag);
    let resources = (size.cpus, size.mem_gib, size.disk_gib);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mine: Vec<Snapshot> = client
            .list_snapshots(Some(&wanted))
            .await?
            .into_iter()
            .filter(|s| is_snapshot_of(&s.name, &wanted))
            .collect();
        if !force {
            if let Some(s) = mine
                .iter()
                .find(|s| s.state == "active" && s.resources() == Some(resources))
            {
                crate::transfer::progress::step(&format!("snapshot {} is already baked", s.name));
                return Ok(s.name.clone());
            }
        }
        // Failed bakes of these inputs are of no use: Daytona removes them in the
        // background, and their names stay taken meanwhile.
        for old in mine
            .iter()
            .filter(|s| matches!(s.state.as_str(), "error" | "build_failed"))
        {
            crate::transfer::progress::step(&format!(
                "removing snapshot {} ({})",
                old.name, old.state
            ));
            if let Err(e) = client.delete_snapshot(&old.id).await {
                eprintln!("warning: snapshot {} stays: {e}", old.name);
            }
        }
        for s in mine.iter().filter(|s| s.state == "removing") {
            crate::transfer::progress::step(&format!(
                "snapshot {} is being removed on Daytona (its name stays taken meanwhile)",
                s.name
            ));
        }
        let name = fresh_name(&wanted, &mine, agentbox_protocol::now_millis() / 1000);
        let (dockerfile, context) = (inputs.dockerfile(), inputs.context_tar(false)?);
        crate::transfer::progress::step(&format!(
            "sending the build context ({:.1} MiB)",
            context.len() as f64 / 1_048_576.0
        ));
        let hash = client.push_context(&context).await?;
        let request = CreateSnapshot {
            name: name.clone(),
            build_info: Some(BuildInfo {
                dockerfile_content: dockerfile,
                context_hashes: vec![hash],
            }),
            cpu: Some(size.cpus),
            memory: Some(size.mem_gib),
            disk: Some(size.disk_gib),
            ..CreateSnapshot::default()
        };
        crate::transfer::progress::step(&format!(
            "baking snapshot {name} ({} vCPU, {} GB memory, {} GB disk)",
            size.cpus, size.mem_gib, size.disk_gib
        ));
        client.create_snapshot(&request).await?;
        client
            .wait_snapshot(&name, BAKE_TIMEOUT, &|state| {
                crate::transfer::progress::step(&format!("snapshot {name}: {state}"));
            })
            .await
            .with_context(|| {
                format!("Daytona could not build snapshot {name} from Dockerfile.box on {base}")
            })?;
        // With --force, the bakes of the same size this one replaces go (Daytona removes
        // them in the background).
        for old in &mine {
            if force && old.state == "active" && old.resources() == Some(resources) {
                if let Err(e) = client.delete_snapshot(&old.id).await {
                    eprintln!("warning: snapshot {} stays: {e}", old.name);
                }
            }
        }
        Ok::<_, anyhow::Error>(name.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(name: &str, state: &str) -> Snapshot {
        Snapshot {
            id: format!("id-{name}"),
            name: name.into(),
            state: state.into(),
            image_name: None,
            size: None,
            error_reason: None,
            cpu: None,
            mem: None,
            disk: None,
            build_info: None,
        }
    }

    #[test]
    fn a_rebake_takes_a_name_nobody_holds() {
        assert_eq!(fresh_name("agentbox-base-ab", &[], 7), "agentbox-base-ab");
        let held = [
            taken("agentbox-base-ab", "removing"),
            taken("agentbox-base-ab-10", "build_failed"),
        ];
        assert_eq!(
            fresh_name("agentbox-base-ab", &held, 16),
            "agentbox-base-ab-11"
        );
        assert!(is_snapshot_of("agentbox-base-ab", "agentbox-base-ab"));
        assert!(is_snapshot_of("agentbox-base-ab-11", "agentbox-base-ab"));
        assert!(!is_snapshot_of("agentbox-base-abc", "agentbox-base-ab"));
        assert!(!is_snapshot_of("agentbox-base-cd", "agentbox-base-ab"));
    }
}
