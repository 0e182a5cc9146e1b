//! `agentbox daytona resync [-a AGENT] [BOX]`: the host's renewable agent credentials into
//! the organization's credentials volume, which every Daytona box mounts.
//!
//! Without BOX no box is needed: a short-lived sandbox is made from the base snapshot
//! (`box.imageDaytona`), mounting only the chosen agents' parts of the volume; the files
//! are written through its toolbox and the sandbox is deleted, whatever happened (Daytona
//! stops it after a few idle minutes should this process die first). With BOX the files
//! go through that running box instead. Only the chosen agents' files are written; nothing
//! is ever copied back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::context::Ctx;
use crate::cli::daytona::ResyncAgent;
use crate::credentials::{self, Credential};
use crate::daytona::login::Settings;
use crate::daytona::{CreateSandbox, Daytona, Sandbox, VolumeMount};
use crate::provider::daytona::{sandbox_name, CREDENTIALS_VOLUME};
use crate::provider::docker::home_label;

/// How long the short-lived sandbox may take to start and to be deleted.
const START_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const DELETE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Minutes after which Daytona stops a short-lived sandbox left behind.
const LEFT_BEHIND_STOP_MINUTES: u32 = 5;
/// The label that marks a short-lived resync sandbox.
pub const RESYNC_LABEL: &str = "agentbox.resync";

/// `agentbox daytona resync`.
pub fn resync(ctx: &Ctx, agent: ResyncAgent, target: Option<&str>) -> anyhow::Result<ExitCode> {
    let host_home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .context("HOME is not set: cannot find the agents' credentials")?;
    let chosen: Vec<Credential> = credentials::read(&host_home)?
        .into_iter()
        .filter(|c| agent.includes(c.agent))
        .collect();
    if chosen.is_empty() {
        bail!(
            "no credentials of {} on this machine (looked for {}): sign the agent in here first",
            agent.describe(),
            credentials::looked_for()
        );
    }
    let home = ctx.home.root();
    let client = Settings::load(home)?.client()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sent = match target {
        Some(t) => {
            let record = ctx.resolve(Some(t))?;
            if record.provider != "daytona" {
                bail!(
                    "box `{}` is a {} box: use `agentbox resync {}`",
                    record.name,
                    record.provider,
                    record.name
                );
            }
            let name = sandbox_name(&record.name, &home_label(home));
            let sandbox = runtime.block_on(client.get_sandbox(&name))?;
            if sandbox.state.as_deref() != Some("started") {
                bail!(
                    "box `{}` is not running: start it, or leave BOX out to write through a short-lived sandbox",
                    record.name
                );
            }
            runtime.block_on(upload(&client, &sandbox, &chosen))?
        }
        None => {
            let snapshot = ctx
                .resolved(BTreeMap::new())?
                .get("box.imageDaytona")
                .map(|(v, _)| v.to_string())
                .context("there is no base snapshot to start the short-lived sandbox from: run `agentbox prepare --provider daytona` (or `agentbox install`) first, or name a running daytona box")?;
            runtime.block_on(through_short_lived(&client, home, &snapshot, &chosen))?
        }
    };
    eprintln!(
        "sent the credentials of: {} (into Daytona volume {CREDENTIALS_VOLUME})",
        sent.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes each credential where its agent's part of the volume is mounted.
async fn upload(
    client: &Daytona,
    sandbox: &Sandbox,
    chosen: &[Credential],
) -> anyhow::Result<Vec<&'static str>> {
    let mut sent = Vec::new();
    for c in chosen {
        let dest = format!("{}/{}", credentials::box_dir(c.agent), c.file);
        client
            .upload_file(sandbox, &dest, c.bytes.clone())
            .await
            .with_context(|| format!("cannot write the {} credentials", c.agent))?;
        sent.push(c.agent);
    }
    Ok(sent)
}

/// Makes a sandbox from `snapshot` mounting only the chosen agents' parts of the volume,
/// writes through it, and deletes it (also when the writing failed).
async fn through_short_lived(
    client: &Daytona,
    home: &Path,
    snapshot: &str,
    chosen: &[Credential],
) -> anyhow::Result<Vec<&'static str>> {
    let progress = |line: &str| eprintln!("==> {line}");
    let volume = client
        .ensure_volume(CREDENTIALS_VOLUME, Duration::from_secs(60))
        .await?;
    let volumes = chosen
        .iter()
        .map(|c| VolumeMount {
            volume_id: volume.id.clone(),
            mount_path: credentials::box_dir(c.agent),
            subpath: Some(format!("{}/", c.agent)),
        })
        .collect();
    let name = format!(
        "agentbox-resync-{}-{:x}",
        &home_label(home)[..8],
        agentbox_protocol::now_millis()
    );
    progress(&format!(
        "starting short-lived sandbox {name} from {snapshot} to write the credentials"
    ));
    let made = client
        .create_sandbox(CreateSandbox {
            name: Some(name.clone()),
            snapshot: Some(snapshot.to_string()),
            labels: BTreeMap::from([
                (RESYNC_LABEL.to_string(), "1".to_string()),
                ("agentbox.home".to_string(), home_label(home)),
            ]),
            auto_stop_interval: Some(LEFT_BEHIND_STOP_MINUTES),
            volumes,
            ..CreateSandbox::default()
        })
        .await
        .with_context(|| {
            format!("Daytona did not make the short-lived sandbox from snapshot {snapshot} (`agentbox prepare --provider daytona` makes it again)")
        })?;
    let written = async {
        let started = client
            .ensure_started(&made.id, START_TIMEOUT, &progress)
            .await
            .with_context(|| format!("short-lived sandbox {name} did not start"))?;
        upload(client, &started, chosen).await
    }
    .await;
    let deleted = client
        .ensure_deleted(&made.id, DELETE_TIMEOUT, &progress)
        .await;
    match (written, deleted) {
        (Ok(sent), Ok(())) => Ok(sent),
        (Ok(_), Err(e)) => Err(anyhow::Error::from(e).context(format!(
            "the credentials were written, but short-lived sandbox {name} was not deleted: delete it in Daytona's dashboard"
        ))),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(d)) => Err(e.context(format!(
            "and short-lived sandbox {name} was not deleted ({d}): delete it in Daytona's dashboard"
        ))),
    }
}
