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
/// The organization's volume of renewable agent credentials.
pub const CREDENTIALS_VOLUME: &str = "agentbox-credentials";

/// Minutes without activity before Daytona stops the sandbox.
pub const AUTO_STOP_MINUTES: u32 = 30;

/// How long a sandbox may take to start (a restore from the archive or a snapshot pull
/// included), to stop, and to be deleted.
const START_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const STOP_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DELETE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a checkpoint's capture may take, and how long after it a missing snapshot
/// record still means "not recorded yet".
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const CAPTURE_RECORD_GRACE: Duration = Duration::from_secs(60);

/// Where a box's progress lines go.
type Progress = Box<dyn Fn(&str) + Send + Sync>;

/// A box on Daytona.
pub struct DaytonaBox {
    name: String,
    home: std::path::PathBuf,
    /// [`home_label`](super::docker::home_label) of the home the box belongs to.
    home_label: String,
    /// The name a sandbox made for it gets ([`sandbox_name`]).
    sandbox: String,
    /// Its sandbox's id, once known.
    id: std::sync::OnceLock<String>,
    client: Daytona,
    runtime: tokio::runtime::Runtime,
    progress: Progress,
}

/// The sandbox name of box `name` of the home labelled `home_label`. Daytona's sandbox
/// names are unique per organization, and box names only per home: the name carries the
/// home's id (`agentbox-<box>-<8 hex>`) so that two homes (two people, two machines) in
/// one organization never collide. The labels `agentbox.box` and `agentbox.home` stay what
/// finds a box's sandbox.
pub fn sandbox_name(name: &str, home_label: &str) -> String {
    format!("agentbox-{name}-{}", &home_label[..home_label.len().min(8)])
}

impl DaytonaBox {
    /// Box `name`, with the Daytona credentials of `home`.
    pub fn new(name: &str, home: &std::path::Path) -> anyhow::Result<Self> {
        let client = Settings::load(home)?.client()?;
        let home_label = super::docker::home_label(home);
        Ok(Self {
            name: name.to_string(),
            home: home.to_path_buf(),
            sandbox: sandbox_name(name, &home_label),
            home_label,
            id: std::sync::OnceLock::new(),
            client,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            progress: Box::new(crate::transfer::progress::step),
        })
    }

    /// The same box, its progress lines (a restore from the archive, the states waited
    /// through) told to `progress` instead of stderr.
    #[must_use]
    pub fn with_progress(mut self, progress: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.progress = Box::new(progress);
        self
    }

    /// The name of the sandbox a create makes for this box.
    pub fn sandbox_name(&self) -> &str {
        &self.sandbox
    }

    /// The box's sandbox: by its id once known, else by its name when the labels say it is
    /// this box's, else by the labels alone (a sandbox made under another name).
    fn get(&self) -> Result<Sandbox, DaytonaError> {
        self.runtime.block_on(async {
            if let Some(id) = self.id.get() {
                return self.client.get_sandbox(id).await;
            }
            let ours = |s: &Sandbox| {
                s.labels.get("agentbox.box") == Some(&self.name)
                    && s.labels.get("agentbox.home") == Some(&self.home_label)
            };
            let found = match self.client.get_sandbox(&self.sandbox).await {
                Ok(s) if ours(&s) => s,
                Ok(_) | Err(DaytonaError::NotFound(_)) => {
                    let labels = BTreeMap::from([
                        ("agentbox.box".to_string(), self.name.clone()),
                        ("agentbox.home".to_string(), self.home_label.clone()),
                    ]);
                    self.client
                        .list_sandboxes(&labels)
                        .await?
                        .into_iter()
                        .find(|s| ours(s) && s.state_str() != "destroyed")
                        .ok_or_else(|| {
                            DaytonaError::NotFound(format!(
                                "box {} has no sandbox on Daytona",
                                self.name
                            ))
                        })?
                }
                Err(e) => return Err(e),
            };
            let _ = self.id.set(found.id.clone());
            Ok(found)
        })
    }

    /// The sandbox's id (looked up once).
    fn sandbox_id(&self) -> Result<String, DaytonaError> {
        match self.id.get() {
            Some(id) => Ok(id.clone()),
            None => self.get().map(|s| s.id),
        }
    }

    /// Creates the sandbox from `snapshot` (not waited on). A `size` other than the
    /// snapshot's: Daytona takes no resources for a sandbox made from a snapshot, so the
    /// sandbox is built from the snapshot's own Dockerfile and build contexts with those
    /// resources instead (Daytona reuses the snapshot's build); a checkpoint has no
    /// Dockerfile, so a size other than its own is refused.
    pub fn create(
        &self,
        snapshot: &str,
        token: &str,
        home_label: &str,
        size: Option<Size>,
    ) -> anyhow::Result<()> {
        self.create_stopping_after(snapshot, token, home_label, size, AUTO_STOP_MINUTES)
    }

    /// [`DaytonaBox::create`], Daytona stopping the sandbox after `auto_stop_minutes`
    /// without activity (`box.autoStopMinutes`; 0: never).
    pub fn create_stopping_after(
        &self,
        snapshot: &str,
        token: &str,
        home_label: &str,
        size: Option<Size>,
        auto_stop_minutes: u32,
    ) -> anyhow::Result<()> {
        let base = self
            .runtime
            .block_on(self.client.get_snapshot(snapshot))
            .map_err(|e| unusable(snapshot, e))?;
        let build_info = match size {
            Some(s) if base.resources() != Some(s.triple()) => {
                let has = base.resources().map_or_else(
                    || "resources Daytona does not say".to_string(),
                    |(c, m, d)| format!("{c}-{m}-{d}"),
                );
                let Some(build) = base.build_info.clone() else {
                    bail!(
                        "box size {s} cannot be applied: snapshot {snapshot} gives its sandboxes {has}, Daytona takes no resources for a sandbox made from a snapshot, and this one has no Dockerfile to build from (a checkpoint); create the box without --size (and without box.sizeDaytona), or take the checkpoint from a box of size {s}"
                    );
                };
                (self.progress)(&format!(
                    "snapshot {snapshot} is {has}: a box of size {s} is built from its Dockerfile (Daytona reuses the snapshot's build)"
                ));
                Some((build, s))
            }
            _ => None,
        };
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
            snapshot: build_info.is_none().then(|| snapshot.to_string()),
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
            cpu: build_info.as_ref().map(|(_, s)| s.cpus),
            memory: build_info.as_ref().map(|(_, s)| s.mem_gib),
            disk: build_info.as_ref().map(|(_, s)| s.disk_gib),
            build_info: build_info.map(|(b, _)| b),
            auto_stop_interval: Some(auto_stop_minutes),
            volumes,
        };
        let made = self
            .runtime
            .block_on(self.client.create_sandbox(request))
            .map_err(|e| match e {
                DaytonaError::Conflict(why) => anyhow::anyhow!(
                    "Daytona already has a sandbox named {} in this organization ({why}): a box of this name from this agentbox home exists there; `agentbox prune --provider daytona` removes sandboxes no box record knows",
                    self.sandbox
                ),
                other => unusable(snapshot, other),
            })?;
        let _ = self.id.set(made.id.clone());
        tracing::info!(sandbox = %made.id, "daytona sandbox created");
        Ok(())
    }

    /// Starts the sandbox if needed (waiting out Daytona's own changes; an archived one is
    /// restored, which says so); returns the bridge URL once the relay answers through
    /// the preview proxy.
    pub fn start(&self, token: &str) -> anyhow::Result<String> {
        let id = self.sandbox_id()?;
        let started = self
            .runtime
            .block_on(
                self.client
                    .ensure_started(&id, START_TIMEOUT, &*self.progress),
            )
            .with_context(|| format!("sandbox {} did not start", self.sandbox))?;
        // `box.autoStopMinutes` as configured now, for a box made under another value.
        let minutes = self.configured_auto_stop()?;
        if started.auto_stop_interval != Some(minutes) {
            self.runtime
                .block_on(self.client.set_auto_stop(&id, minutes))
                .with_context(|| {
                    format!(
                        "cannot set the auto-stop of sandbox {} to {minutes} minutes (box.autoStopMinutes)",
                        self.sandbox
                    )
                })?;
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

    /// `box.autoStopMinutes` as the box's project has it configured now (this host's
    /// global and project settings and the repo's defaults), or [`AUTO_STOP_MINUTES`].
    fn configured_auto_stop(&self) -> anyhow::Result<u32> {
        let home = crate::home::Home::at(&self.home);
        let record = crate::state::State::open(&home.state_db())?.get(&self.name)?;
        let project = record.map(|r| r.project);
        let cfg = crate::config::Resolved::load(
            &home.config(),
            project
                .as_deref()
                .map(|p| home.project_config(&crate::home::project_id(p)))
                .as_ref(),
            project.as_deref().filter(|p| p.is_dir()),
            BTreeMap::new(),
        )
        .map_err(anyhow::Error::msg)?;
        match cfg.get("box.autoStopMinutes").map(|(v, _)| v) {
            Some(m) => m.parse().map_err(|_| {
                anyhow::anyhow!("box.autoStopMinutes must be a whole number of minutes, not `{m}`")
            }),
            None => Ok(AUTO_STOP_MINUTES),
        }
    }

    /// The relay behind the preview proxy, with a preview token that renews itself.
    pub fn relay(&self, token: &str) -> anyhow::Result<Relay> {
        self.runtime
            .block_on(bridge_relay(&self.home, &self.name, token))
    }

    /// Copies the host's renewable agent credentials (those that exist under `host_home`)
    /// into the organization's credentials volume, through this box; returns the agents
    /// whose credentials went. Each file lands whole or not at all (uploaded beside its
    /// place and renamed over it, as `agentbox daytona resync` does). Nothing is ever
    /// copied back.
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
            let dir = crate::credentials::box_dir(c.agent);
            self.runtime
                .block_on(
                    self.client
                        .replace_private_file(&sandbox, &dir, c.file, c.bytes),
                )
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

    /// Captures the box's disk as snapshot `name` and waits until it is active. A running
    /// box is captured running and a stopped one stopped; either is left as it was.
    /// Returns the state the box is in afterwards.
    pub fn checkpoint(&self, name: &str) -> anyhow::Result<String> {
        let id = self.sandbox_id()?;
        let (_, after) = self.runtime.block_on(self.client.capture(
            &id,
            name,
            CAPTURE_TIMEOUT,
            CAPTURE_RECORD_GRACE,
            &|line| (self.progress)(&format!("checkpoint {name}: {line}")),
        ))?;
        Ok(after.state_str().to_string())
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

    /// Stops the sandbox (its disk is kept), waiting out Daytona's own changes first; an
    /// archived one counts as stopped.
    pub fn stop(&self) -> anyhow::Result<()> {
        let id = self.sandbox_id()?;
        self.runtime
            .block_on(
                self.client
                    .ensure_stopped(&id, STOP_TIMEOUT, &*self.progress),
            )
            .with_context(|| format!("sandbox {} did not stop", self.sandbox))?;
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

    /// Deletes the sandbox and waits until it is gone (a change under way is waited out
    /// first: Daytona refuses a delete meanwhile).
    pub fn remove(&self) -> anyhow::Result<()> {
        let id = match self.sandbox_id() {
            Ok(id) => id,
            Err(DaytonaError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.runtime
            .block_on(
                self.client
                    .ensure_deleted(&id, DELETE_TIMEOUT, &*self.progress),
            )
            .with_context(|| format!("sandbox {} was not deleted", self.sandbox))?;
        Ok(())
    }
}

/// What a create's failure about its snapshot means: Daytona answers 400 ("Snapshot X not
/// found", "Snapshot X is inactive") for a snapshot that is missing or not active, and
/// 404 when looking one up.
fn unusable(snapshot: &str, e: DaytonaError) -> anyhow::Error {
    match e {
        DaytonaError::NotFound(_) => DaytonaError::SnapshotGone(snapshot.to_string()).into(),
        DaytonaError::Invalid(why) if why.starts_with("Snapshot ") => anyhow::anyhow!(
            "Daytona cannot make a box from snapshot {snapshot} ({why}): run `agentbox prepare --provider daytona`"
        ),
        other => other.into(),
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
    let sandbox = sandbox_name(name, &super::docker::home_label(home));
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
