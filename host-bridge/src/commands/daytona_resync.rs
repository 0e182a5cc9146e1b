//! `agentbox daytona resync [-a AGENT] [BOX]`: the host's renewable agent credentials into
//! the organization's credentials volume, which every Daytona box mounts.
//!
//! Without BOX no box is needed: a short-lived sandbox is made from the base snapshot
//! (`box.imageDaytona`), mounting only the chosen agents' parts of the volume; the files
//! are written through its toolbox and the sandbox is deleted, whatever happened (Daytona
//! stops it after a few idle minutes should this process die first). With BOX the files
//! go through that running box instead. Only the chosen agents' files are written; nothing
//! is ever copied back.
//!
//! Each file lands whole: it is uploaded beside its place (`.<file>.partial`) and renamed
//! over it in one step, so an interruption never leaves half a credential where the agent
//! reads it. Ctrl-C (SIGINT) or SIGTERM while the short-lived sandbox exists (or is being
//! made) deletes it before exiting (130 / 143), and says so; a second one gives up the
//! deletion and says what is left.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, Signal, SignalKind};

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
            match runtime.block_on(through_short_lived(&client, home, &snapshot, &chosen))? {
                Outcome::Sent(sent) => sent,
                Outcome::Interrupted(code) => return Ok(ExitCode::from(code)),
            }
        }
    };
    eprintln!(
        "sent the credentials of: {} (into Daytona volume {CREDENTIALS_VOLUME})",
        sent.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes each credential where its agent's part of the volume is mounted, whole or not
/// at all ([`Daytona::replace_private_file`]).
async fn upload(
    client: &Daytona,
    sandbox: &Sandbox,
    chosen: &[Credential],
) -> anyhow::Result<Vec<&'static str>> {
    let mut sent = Vec::new();
    for c in chosen {
        let dir = credentials::box_dir(c.agent);
        client
            .replace_private_file(sandbox, &dir, c.file, c.bytes.clone())
            .await
            .with_context(|| format!("cannot write the {} credentials", c.agent))?;
        sent.push(c.agent);
    }
    Ok(sent)
}

/// How a write through a short-lived sandbox ended.
enum Outcome {
    /// These agents' credentials were written.
    Sent(Vec<&'static str>),
    /// A signal stopped it; the exit code (128 + the signal).
    Interrupted(u8),
}

/// SIGINT and SIGTERM, caught (not the default death) while a sandbox may exist.
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    fn catch() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("cannot catch SIGINT")?,
            term: signal(SignalKind::terminate()).context("cannot catch SIGTERM")?,
        })
    }

    /// The next one: its name and the exit code it means.
    async fn next(&mut self) -> (&'static str, u8) {
        tokio::select! {
            _ = self.int.recv() => ("interrupted (SIGINT)", 130),
            _ = self.term.recv() => ("terminated (SIGTERM)", 143),
        }
    }
}

/// After `why`: deletes sandbox `name` (an id or name, maybe still being made) and says
/// so; a second signal gives up, saying what is left.
async fn delete_interrupted(
    client: &Daytona,
    stop: &mut Stop,
    name: &str,
    (why, code): (&'static str, u8),
) -> anyhow::Result<Outcome> {
    let progress = |line: &str| eprintln!("==> {line}");
    eprintln!("==> {why}: deleting short-lived sandbox {name} before exiting (again to give up)");
    tokio::select! {
        deleted = client.ensure_deleted(name, DELETE_TIMEOUT, &progress) => {
            deleted.map_err(anyhow::Error::from).with_context(|| format!(
                "short-lived sandbox {name} was not deleted: delete it in Daytona's dashboard"
            ))?;
            eprintln!("==> deleted short-lived sandbox {name}; a credential is either written whole or left as it was");
        }
        _ = stop.next() => {
            eprintln!("==> gave up: short-lived sandbox {name} is left (Daytona stops it after {LEFT_BEHIND_STOP_MINUTES} idle minutes): delete it in Daytona's dashboard");
        }
    }
    Ok(Outcome::Interrupted(code))
}

/// Makes a sandbox from `snapshot` mounting only the chosen agents' parts of the volume,
/// writes through it, and deletes it (also when the writing failed).
async fn through_short_lived(
    client: &Daytona,
    home: &Path,
    snapshot: &str,
    chosen: &[Credential],
) -> anyhow::Result<Outcome> {
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
    // From here a signal means a sandbox may exist: it is deleted before exiting.
    let mut stop = Stop::catch()?;
    let create = client.create_sandbox(CreateSandbox {
        name: Some(name.clone()),
        snapshot: Some(snapshot.to_string()),
        labels: BTreeMap::from([
            (RESYNC_LABEL.to_string(), "1".to_string()),
            ("agentbox.home".to_string(), home_label(home)),
        ]),
        auto_stop_interval: Some(LEFT_BEHIND_STOP_MINUTES),
        volumes,
        ..CreateSandbox::default()
    });
    let made = tokio::select! {
        made = create => made.with_context(|| {
            format!("Daytona did not make the short-lived sandbox from snapshot {snapshot} (`agentbox prepare --provider daytona` makes it again)")
        })?,
        // The create may have reached Daytona: the sandbox is looked for by its name.
        signal = stop.next() => return delete_interrupted(client, &mut stop, &name, signal).await,
    };
    let work = async {
        let started = client
            .ensure_started(&made.id, START_TIMEOUT, &progress)
            .await
            .with_context(|| format!("short-lived sandbox {name} did not start"))?;
        upload(client, &started, chosen).await
    };
    let written = tokio::select! {
        written = work => written,
        signal = stop.next() => return delete_interrupted(client, &mut stop, &made.id, signal).await,
    };
    let deleted = client
        .ensure_deleted(&made.id, DELETE_TIMEOUT, &progress)
        .await;
    match (written, deleted) {
        (Ok(sent), Ok(())) => Ok(Outcome::Sent(sent)),
        (Ok(_), Err(e)) => Err(anyhow::Error::from(e).context(format!(
            "the credentials were written, but short-lived sandbox {name} was not deleted: delete it in Daytona's dashboard"
        ))),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(d)) => Err(e.context(format!(
            "and short-lived sandbox {name} was not deleted ({d}): delete it in Daytona's dashboard"
        ))),
    }
}
