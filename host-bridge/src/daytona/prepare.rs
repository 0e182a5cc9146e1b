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

use super::error::DaytonaError;
use super::login::Settings;
use super::snapshots::{BuildInfo, CreateSnapshot};

/// How long a snapshot may take to become active.
const BAKE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The snapshot name for the box image `tag` (`agentbox-box:<checksum>`).
pub fn snapshot_name(tag: &str) -> String {
    let checksum = tag.rsplit(':').next().unwrap_or(tag);
    format!("agentbox-base-{checksum}")
}

/// Makes (or finds) the active snapshot of the box image of `inputs`; returns its name.
pub fn snapshot(home: &Path, inputs: &crate::image::Inputs, force: bool) -> anyhow::Result<String> {
    let base = inputs.base();
    let tag = inputs.tag()?;
    let client = Settings::load(home)?.client()?;
    let name = snapshot_name(&tag);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match client.get_snapshot(&name).await {
            Ok(s) if s.state == "active" && !force => {
                eprintln!("==> snapshot {name} is already baked");
                return Ok(name.clone());
            }
            Ok(s) => {
                eprintln!("==> removing snapshot {name} ({})", s.state);
                client.delete_snapshot(&s.id).await?;
            }
            Err(DaytonaError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let (cpu, memory, disk) = crate::provider::daytona::DEFAULT_SIZE;
        let (dockerfile, context) = (inputs.dockerfile(), inputs.context_tar(false)?);
        eprintln!(
            "==> sending the build context ({:.1} MiB)",
            context.len() as f64 / 1_048_576.0
        );
        let hash = client.push_context(&context).await?;
        let request = CreateSnapshot {
            name: name.clone(),
            build_info: Some(BuildInfo {
                dockerfile_content: dockerfile,
                context_hashes: vec![hash],
            }),
            cpu: Some(cpu),
            memory: Some(memory),
            disk: Some(disk),
            ..CreateSnapshot::default()
        };
        client.create_snapshot(&request).await?;
        client
            .wait_snapshot(&name, BAKE_TIMEOUT, &|state| {
                eprintln!("==> snapshot {name}: {state}");
            })
            .await
            .with_context(|| {
                format!("Daytona could not build snapshot {name} from Dockerfile.box on {base}")
            })?;
        Ok::<_, anyhow::Error>(name.clone())
    })
}
