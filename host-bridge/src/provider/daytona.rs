//! The `daytona` provider: a box is a Daytona sandbox started from the snapshot that
//! `agentbox prepare --provider daytona` pinned (`box.imageDaytona`).
//!
//! The host never has a shell in the sandbox: it reaches the relay through the preview
//! URL of port 8788 with both tokens (the bridge token for the relay, the preview token
//! for Daytona's proxy, renewed when it rotates), and runs one-off commands through the
//! relay too (`crate::relay_exec`: no time cap, output streamed, stdout and stderr apart);
//! the toolbox's `process/execute` only sets up what the relay cannot (a private file's
//! mode). The bridge token reaches the relay as the sandbox's `AGENTBOX_BRIDGE_TOKEN`; the
//! ctl daemon gives it to the relay unit only.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::size::Size;
use crate::daytona::login::{plain_http_refused, Settings};
use crate::daytona::{CreateSandbox, Daytona, DaytonaError, Sandbox};
use crate::transfer::client::{Relay, Remint};

/// The box's port of the relay's bridge API.
pub const BRIDGE_PORT: u16 = 8788;
/// The resources snapshots are baked with: 2 vCPU, 4 GB memory, 8 GB disk.
pub const DEFAULT_SIZE: (u32, u32, u32) = (2, 4, 8);
/// The organization's volume of renewable agent credentials.
pub const CREDENTIALS_VOLUME: &str = "agentbox-credentials";

/// Minutes without activity before Daytona stops the sandbox.
pub const AUTO_STOP_MINUTES: u32 = 30;

/// A box on Daytona.
pub struct DaytonaBox {
    name: String,
    home: std::path::PathBuf,
    sandbox: String,
    client: Daytona,
    runtime: tokio::runtime::Runtime,
}

/// The sandbox name of box `name`.
pub fn sandbox_name(name: &str) -> String {
    format!("agentbox-{name}")
}

impl DaytonaBox {
    /// Box `name`, with the Daytona credentials of `home`.
    pub fn new(name: &str, home: &std::path::Path) -> anyhow::Result<Self> {
        let client = Settings::load(home)?.client()?;
        Ok(Self {
            name: name.to_string(),
            home: home.to_path_buf(),
            sandbox: sandbox_name(name),
            client,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
        })
    }

    fn get(&self) -> Result<Sandbox, DaytonaError> {
        self.runtime
            .block_on(self.client.get_sandbox(&self.sandbox))
    }

    /// Creates the sandbox from `snapshot` (not waited on).
    pub fn create(
        &self,
        snapshot: &str,
        token: &str,
        home_label: &str,
        size: Option<Size>,
    ) -> anyhow::Result<()> {
        if let Some(s) = size {
            // Daytona gives a sandbox made from a snapshot the snapshot's resources.
            let (cpu, memory, disk) = DEFAULT_SIZE;
            eprintln!(
                "warning: --size {}-{}-{} is not applied: a box made from snapshot {snapshot} has its {cpu} vCPU, {memory} GB memory, {disk} GB disk",
                s.cpus, s.mem_gib, s.disk_gib
            );
        }
        let volume = self.runtime.block_on(
            self.client
                .ensure_volume(CREDENTIALS_VOLUME, Duration::from_secs(60)),
        )?;
        let volumes = crate::credentials::FILES
            .iter()
            .map(|(agent, _, _)| crate::daytona::VolumeMount {
                volume_id: volume.id.clone(),
                mount_path: crate::credentials::box_dir(agent),
                subpath: Some(format!("{agent}/")),
            })
            .collect();
        let request = CreateSandbox {
            name: Some(self.sandbox.clone()),
            snapshot: Some(snapshot.to_string()),
            env: BTreeMap::from([
                ("AGENTBOX_BRIDGE_TOKEN".to_string(), token.to_string()),
                ("AGENTBOX_BOX_NAME".to_string(), self.name.clone()),
                // The preview proxy reaches the sandbox's address: the relay makes
                // services that listen on loopback only reachable there too.
                ("AGENTBOX_EXPOSE_OUTSIDE".to_string(), "1".to_string()),
            ]),
            labels: BTreeMap::from([
                ("agentbox.box".to_string(), self.name.clone()),
                ("agentbox.home".to_string(), home_label.to_string()),
            ]),
            cpu: None,
            memory: None,
            disk: None,
            auto_stop_interval: Some(AUTO_STOP_MINUTES),
            volumes,
        };
        let made = self
            .runtime
            .block_on(self.client.create_sandbox(request))
            .map_err(|e| match e {
                DaytonaError::NotFound(_) => {
                    DaytonaError::SnapshotGone(snapshot.to_string()).into()
                }
                other => anyhow::Error::from(other),
            })?;
        tracing::info!(sandbox = %made.id, "daytona sandbox created");
        Ok(())
    }

    /// Starts the sandbox if needed; returns the bridge URL once the relay answers through
    /// the preview proxy.
    pub fn start(&self, token: &str) -> anyhow::Result<String> {
        let sandbox = self.get()?;
        if sandbox.state.as_deref() != Some("started") {
            if sandbox.state.as_deref() != Some("creating") {
                let _ = self
                    .runtime
                    .block_on(self.client.start_sandbox(&sandbox.id))?;
            }
            self.runtime
                .block_on(self.client.wait_for_state(
                    &sandbox.id,
                    "started",
                    Duration::from_secs(300),
                ))
                .with_context(|| format!("sandbox {} did not start", self.sandbox))?;
        }
        let relay = self.relay(token)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let healthy = self.runtime.block_on(async {
                relay
                    .request(reqwest::Method::GET, "/healthz")
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            });
            if healthy {
                return Ok(relay.url(""));
            }
            if Instant::now() > deadline {
                bail!(
                    "the relay of box {} did not answer through Daytona's preview proxy within 60 s",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The relay behind the preview proxy, with a preview token that renews itself.
    pub fn relay(&self, token: &str) -> anyhow::Result<Relay> {
        self.runtime
            .block_on(bridge_relay(&self.home, &self.name, token))
    }

    /// Copies the host's renewable agent credentials (those that exist under `host_home`)
    /// into the organization's credentials volume, through this box; returns the agents
    /// whose credentials went. Nothing is ever copied back.
    pub fn resync(&self, host_home: &std::path::Path) -> anyhow::Result<Vec<&'static str>> {
        let sandbox = self.get()?;
        if sandbox.state.as_deref() != Some("started") {
            bail!(
                "box `{}` is not running: `agentbox start {}`",
                self.name,
                self.name
            );
        }
        let mut sent = Vec::new();
        for c in crate::credentials::read(host_home)? {
            let dest = format!("{}/{}", crate::credentials::box_dir(c.agent), c.file);
            self.runtime
                .block_on(self.client.upload_file(&sandbox, &dest, c.bytes))
                .with_context(|| format!("cannot send the {} credentials", c.agent))?;
            sent.push(c.agent);
        }
        Ok(sent)
    }

    /// Writes `data` as `/run/agentbox/<name>` in the box (through the toolbox).
    pub fn put_private_file(&self, name: &str, data: &[u8]) -> anyhow::Result<String> {
        let sandbox = self.get()?;
        let dest = format!("/run/agentbox/{name}");
        self.runtime
            .block_on(self.client.upload_file(&sandbox, &dest, data.to_vec()))
            .context("cannot send a file to the box")?;
        // The toolbox may write it with a wider mode: narrow it before anything reads it.
        self.execute(&format!("chmod 600 {}", crate::shell::quote(&dest)))?;
        Ok(dest)
    }

    /// Captures the box's disk as snapshot `name` and waits until it is active and the box
    /// runs again.
    pub fn checkpoint(&self, name: &str) -> anyhow::Result<()> {
        let sandbox = self.get()?;
        self.runtime.block_on(async {
            self.client.snapshot_sandbox(&sandbox.id, name).await?;
            self.client
                .wait_snapshot(name, Duration::from_secs(15 * 60), &|state| {
                    eprintln!("==> checkpoint {name}: {state}");
                })
                .await?;
            self.client
                .wait_for_state(&sandbox.id, "started", Duration::from_secs(300))
                .await
        })?;
        Ok(())
    }

    /// A signed preview link of `port` that lasts `ttl` (it carries its own token).
    pub fn signed_url(&self, port: u16, ttl: Duration) -> anyhow::Result<String> {
        Ok(self
            .runtime
            .block_on(self.client.signed_preview_link(&self.sandbox, port, ttl))?
            .url)
    }

    /// Runs a shell command line through the toolbox: only to set the box up where the
    /// relay is not there to ask (Daytona caps its time and merges its output).
    fn execute(&self, command: &str) -> anyhow::Result<crate::daytona::Executed> {
        let sandbox = self.get()?;
        if sandbox.state.as_deref() != Some("started") {
            bail!(
                "box `{}` is not running: `agentbox start {}`",
                self.name,
                self.name
            );
        }
        Ok(self
            .runtime
            .block_on(self.client.execute(&sandbox, command, Some("/workspace")))?)
    }

    /// The relay of the started box, for commands (the bridge token from the host's
    /// record of the box).
    fn command_relay(&self) -> anyhow::Result<Relay> {
        if !self.running() {
            bail!(
                "box `{}` is not running: `agentbox start {}`",
                self.name,
                self.name
            );
        }
        let record = crate::state::State::open(&self.home.join("state.db"))?
            .get(&self.name)?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "this host has no record of box `{}` (see `agentbox list`)",
                    self.name
                )
            })?;
        self.relay(&record.bridge_token)
    }

    /// Runs `agentbox-ctl ARGS` in the sandbox through the relay, stdout and stderr apart.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        use crate::relay_exec::Ended;
        let relay = self.command_relay()?;
        let mut argv = vec!["agentbox-ctl".to_string()];
        argv.extend(args.iter().map(ToString::to_string));
        let request = agentbox_protocol::exec::ExecRequest::new(argv);
        let (ended, stdout, mut stderr) = self
            .runtime
            .block_on(crate::relay_exec::capture(&relay, &request))?;
        let raw = match &ended {
            Ended::Exited(e) => match (e.code, e.signal) {
                (Some(c), _) => (c & 0xff) << 8,
                (None, Some(s)) => s & 0x7f,
                (None, None) => 0xff << 8,
            },
            Ended::Refused { code, message } => {
                stderr.extend_from_slice(message.as_bytes());
                (code & 0xff) << 8
            }
        };
        Ok(std::process::Output {
            status: std::process::ExitStatus::from_raw(raw),
            stdout,
            stderr,
        })
    }

    /// Whether the sandbox is started.
    pub fn running(&self) -> bool {
        self.get()
            .is_ok_and(|s| s.state.as_deref() == Some("started"))
    }

    /// Stops the sandbox (its disk is kept).
    pub fn stop(&self) -> anyhow::Result<()> {
        let sandbox = self.get()?;
        if sandbox.state.as_deref() == Some("stopped") {
            return Ok(());
        }
        self.runtime.block_on(async {
            self.client.stop_sandbox(&sandbox.id).await?;
            self.client
                .wait_for_state(&sandbox.id, "stopped", Duration::from_secs(120))
                .await
        })?;
        Ok(())
    }

    /// Runs a command through the relay, as `docker exec -i` does: this process's stdin
    /// goes to it, its stdout and stderr come back apart as it prints them, and its exit
    /// status is returned (127 for a program the box lacks). No terminal: `agentbox shell`
    /// gives one. Ending this process ends the command.
    pub fn exec(&self, argv: &[String]) -> anyhow::Result<i32> {
        let relay = self.command_relay()?;
        let mut request = agentbox_protocol::exec::ExecRequest::new(argv.to_vec());
        request.stdin = true;
        let ended = self
            .runtime
            .block_on(crate::relay_exec::run_here(&relay, &request))?;
        if let crate::relay_exec::Ended::Refused { message, .. } = &ended {
            eprintln!("agentbox: {message}");
        }
        Ok(ended.status_code())
    }

    /// Deletes the sandbox and waits until it is gone.
    pub fn remove(&self) -> anyhow::Result<()> {
        let sandbox = match self.get() {
            Ok(s) => s,
            Err(DaytonaError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.runtime.block_on(async {
            self.client.delete_sandbox(&sandbox.id).await?;
            self.client
                .wait_for_state(&sandbox.id, "destroyed", Duration::from_secs(120))
                .await
        })?;
        Ok(())
    }
}

/// Sandboxes of this `AGENTBOX_HOME` (by its label): `(sandbox name, box name)`.
pub fn sandboxes(
    home: &std::path::Path,
    home_label: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let client = Settings::load(home)?.client()?;
    let labels = BTreeMap::from([("agentbox.home".to_string(), home_label.to_string())]);
    let found = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(client.list_sandboxes(&labels))?;
    Ok(found
        .into_iter()
        .filter_map(|s| Some((s.name.clone(), s.labels.get("agentbox.box")?.clone())))
        .collect())
}

/// Deletes Daytona snapshot `name` (gone already counts as done).
pub fn delete_snapshot(home: &std::path::Path, name: &str) -> anyhow::Result<()> {
    let client = Settings::load(home)?.client()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(client.delete_snapshot(name)) {
        Ok(()) | Err(DaytonaError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The relay of box `name` behind Daytona's preview proxy, for async callers (the host
/// bridge daemon).
pub async fn bridge_relay(
    home: &std::path::Path,
    name: &str,
    token: &str,
) -> anyhow::Result<Relay> {
    Ok(bridge_link(home, name, token).await?.0)
}

/// [`bridge_relay`], with the API client and the sandbox's id (for reporting its activity).
pub async fn bridge_link(
    home: &std::path::Path,
    name: &str,
    token: &str,
) -> anyhow::Result<(Relay, Daytona, String)> {
    let settings = Settings::load(home)?;
    let client = settings.client()?;
    let sandbox = sandbox_name(name);
    let link = client.preview_link(&sandbox, BRIDGE_PORT).await?;
    // The bridge token and everything the box is sent go this way.
    if let Some(why) = plain_http_refused(&link.url, "the preview URL", settings.insecure) {
        bail!("{why}");
    }
    let api = client.clone();
    let client = Arc::new(client);
    let remint: Remint = Arc::new(move || {
        let (client, sandbox) = (client.clone(), sandbox.clone());
        Box::pin(async move { Ok(client.preview_link(&sandbox, BRIDGE_PORT).await?.token) })
    });
    let relay = Relay::new(&link.url, token).with_preview(&link.token, remint);
    Ok((relay, api, link.sandbox_id))
}
