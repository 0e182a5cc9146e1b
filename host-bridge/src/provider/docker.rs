//! The `docker` provider: a box is a container of the image built from `Dockerfile.box`
//! (`agentbox prepare --provider docker`), talked to through the Docker API (bollard).
//!
//! The container is labelled `agentbox.box` and `agentbox.home`, and the labels are what
//! finds it (`prune`, `list`, and every command on a box), so a box made by an older
//! agentbox under the plain name `agentbox-<box>` is still found. A new container is named
//! `agentbox-<box>-<home id>-<project id>` (see [`container_name`]): box names are unique
//! within one `AGENTBOX_HOME` only, and one engine serves every home, project and user of
//! the machine. It runs with an init that reaps orphans; the
//! WebProxy (8080) and the bridge (8788) are published on 127.0.0.1 only, on free ports.
//! The bridge token is written into the container as `/run/agentbox/bridge.token` (0600)
//! before it starts — never in its environment, which every `docker exec` would inherit.
//! Interactive `exec` and `attach` use the `docker` CLI, which owns terminal handling.
//! A `--dind` box runs a Docker engine of its own: see `dind_host_config` for what its
//! container is given, and `box/dind` for how the engine starts inside.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::Docker;
use futures_util::StreamExt;

// The box size lives in `provider::size`; `provider::docker::Size` still names it.
pub use super::size::Size;

/// Label holding the box name.
pub const LABEL_BOX: &str = "agentbox.box";
/// Label holding which `AGENTBOX_HOME` made the container.
pub const LABEL_HOME: &str = "agentbox.home";
/// The default base image.
pub const DEFAULT_BASE: &str = "debian:bookworm-slim";
/// Image label saying whether the image carries a Docker engine (`yes`; `prepare --dind`).
pub const LABEL_DIND: &str = "dev.agentbox.dind";
/// Image label listing the agents baked in (`AGENTS=` form: `claude,codex` or `none`).
pub const LABEL_AGENTS: &str = "dev.agentbox.agents";

/// The most of a command's output (stdout and stderr together) [`DockerBox::capture`]
/// reads: the box is untrusted, and what the host runs there prints status and listings.
pub const CAPTURE_CAP: usize = 16 << 20;

/// How long the host waits for a command it runs in a box to end (the longest it runs
/// is `agentbox-ctl wait-ready --timeout 60000`).
pub const CAPTURE_LIMIT: Duration = Duration::from_secs(120);

/// What `exec -t` runs in the box before the command (`$1` rows, `$2` columns, `$3` the
/// box's name, then the command's argv): the terminal's size set on the box's side, then
/// the command in its place. A `stty` that fails leaves the size as it was; a program the
/// box does not have is said in agentbox's words with 127, as without a terminal.
const SIZED_EXEC: &str = r#"stty rows "$1" cols "$2" 2>/dev/null; box=$3; shift 3
if ! command -v "$1" >/dev/null 2>&1; then
  printf "agentbox: cannot run \`%s\` in box %s: no such program in the box's PATH\n" "$1" "$box" >&2
  exit 127
fi
exec "$@""#;

/// A runtime and a connected, version-negotiated Docker client.
fn connect() -> anyhow::Result<(tokio::runtime::Runtime, Docker)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let docker = rt
        .block_on(async {
            Docker::connect_with_local_defaults()?
                .negotiate_version()
                .await
        })
        .context("cannot reach the Docker engine (is dockerd running? `docker info` tells)")?;
    Ok((rt, docker))
}

/// What identifies an `AGENTBOX_HOME` on the labels.
pub fn home_label(home: &std::path::Path) -> String {
    blake3::hash(home.as_os_str().as_encoded_bytes()).to_hex()[..16].to_string()
}

/// Builds the box image unless an image with the same inputs exists; returns its tag.
/// Progress goes to stderr.
pub fn prepare(inputs: &crate::image::Inputs, force: bool) -> anyhow::Result<String> {
    let tag = inputs.tag()?;
    let (rt, docker) = connect()?;
    if !force && rt.block_on(docker.inspect_image(&tag)).is_ok() {
        crate::transfer::progress::step(&format!("{tag} is up to date"));
        return Ok(tag);
    }
    crate::transfer::progress::step(&format!(
        "building {tag} from Dockerfile.box on {} with agents {}{}",
        inputs.base(),
        inputs.agents_text(),
        if inputs.dind() {
            " and a Docker engine"
        } else {
            ""
        }
    ));
    // A base image that is not here is pulled by the build; offline, that is what fails.
    let base_here = rt.block_on(docker.inspect_image(inputs.base())).is_ok();
    let context = inputs.context_tar(true)?;
    let options = bollard::query_parameters::BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .build();
    let built = rt.block_on(async {
        let mut stream = docker.build_image(
            options,
            None,
            Some(bollard::body_full(bytes::Bytes::from(context))),
        );
        while let Some(item) = stream.next().await {
            let info = item.context("the image build failed")?;
            if let Some(e) = info.error_detail.and_then(|d| d.message).or(info.error) {
                bail!("the image build failed: {e}");
            }
            if let Some(line) = info.stream {
                let line = line.trim_end();
                if line.starts_with("Step ") {
                    crate::transfer::progress::detail(line);
                }
            }
        }
        anyhow::Ok(())
    });
    match built {
        Ok(()) => Ok(tag),
        Err(e) if !base_here => Err(e.context(format!(
            "the base image {} is not on this machine and the build could not pull it (offline?): \
             build on one that is here with `agentbox prepare --provider docker --base-image IMG` \
             (`scripts/make-base-image` makes agentbox-base:bookworm from a Debian mirror, no registry needed)",
            inputs.base()
        ))),
        Err(e) => Err(e),
    }
}

/// The name a new container of box `name` gets: `agentbox-<box>-<home id>-<project id>`,
/// each id 8 hex digits of a hash. The ids have a fixed length, so two different
/// (box, home, project) never make the same name unless the hashes' prefixes collide.
pub fn container_name(name: &str, home_label: &str, project: &std::path::Path) -> String {
    let project = blake3::hash(project.as_os_str().as_encoded_bytes()).to_hex();
    format!(
        "agentbox-{name}-{}-{}",
        &home_label[..home_label.len().min(8)],
        &project[..8]
    )
}

/// One docker box: found by its labels, named by [`container_name`] when made.
#[derive(Debug, Clone)]
pub struct DockerBox {
    /// Box name.
    pub name: String,
    /// [`home_label`] of the `AGENTBOX_HOME` the box belongs to.
    home_label: String,
    /// The name a container made for it gets (`None`: the project is not known, so it
    /// can be found and removed, not made).
    fresh: Option<String>,
    /// The container found by its labels, once looked up.
    found: std::sync::OnceLock<String>,
}

impl DockerBox {
    /// Box `name` of project `project` in the home labelled `home_label`.
    pub fn new(name: &str, home_label: &str, project: &std::path::Path) -> Self {
        Self {
            name: name.to_string(),
            home_label: home_label.to_string(),
            fresh: Some(container_name(name, home_label, project)),
            found: std::sync::OnceLock::new(),
        }
    }

    /// Box `name` of the home labelled `home_label` whose project is not known (a stray
    /// container or volume `prune` removes).
    pub fn stray(name: &str, home_label: &str) -> Self {
        Self {
            name: name.to_string(),
            home_label: home_label.to_string(),
            fresh: None,
            found: std::sync::OnceLock::new(),
        }
    }

    /// The label filters that select this box's containers and volumes.
    fn label_filters(&self) -> HashMap<&'static str, Vec<String>> {
        HashMap::from([(
            "label",
            vec![
                format!("{LABEL_HOME}={}", self.home_label),
                format!("{LABEL_BOX}={}", self.name),
            ],
        )])
    }

    /// The names of the containers carrying this box's labels.
    fn labelled(
        &self,
        rt: &tokio::runtime::Runtime,
        docker: &Docker,
    ) -> anyhow::Result<Vec<String>> {
        let filters = self.label_filters();
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = rt
            .block_on(docker.list_containers(Some(options)))
            .with_context(|| format!("cannot list the containers of box {}", self.name))?;
        Ok(list
            .into_iter()
            .filter_map(|c| Some(c.names?.first()?.trim_start_matches('/').to_string()))
            .collect())
    }

    /// The box's container, by its labels: the one of the name it was made under, else
    /// the one an older agentbox named `agentbox-<box>`, else the only one. With none,
    /// the name a new one gets (the engine then says it does not exist).
    fn container(&self, rt: &tokio::runtime::Runtime, docker: &Docker) -> anyhow::Result<String> {
        if let Some(found) = self.found.get() {
            return Ok(found.clone());
        }
        let labelled = self.labelled(rt, docker)?;
        let legacy = format!("agentbox-{}", self.name);
        let chosen = match labelled.as_slice() {
            [] => self.fresh.clone().unwrap_or(legacy),
            [one] => one.clone(),
            many => {
                if let Some(own) = many.iter().find(|c| Some(*c) == self.fresh.as_ref()) {
                    own.clone()
                } else if many.contains(&legacy) {
                    legacy
                } else {
                    bail!(
                        "several containers carry the labels of box {}: {}; remove the strays with `docker rm -f NAME`",
                        self.name,
                        many.join(", ")
                    )
                }
            }
        };
        Ok(self.found.get_or_init(|| chosen).clone())
    }

    /// The name of the box's container (looked up by its labels).
    pub fn container_name(&self) -> anyhow::Result<String> {
        let (rt, docker) = connect()?;
        self.container(&rt, &docker)
    }

    /// Creates the container (not started) with the token file in place. With `dind`, the
    /// container may run a Docker engine of its own (see `dind_host_config`).
    pub fn create(
        &self,
        image: &str,
        token: &str,
        size: Option<Size>,
        dind: bool,
    ) -> anyhow::Result<()> {
        let Some(container) = self.fresh.clone() else {
            bail!(
                "box {}: a container is made only for a box whose project is known",
                self.name
            );
        };
        // What carries this home's labels for this name belongs to no box any more (the
        // name is this box's by its record): a container an earlier box left, which
        // `prune` would remove, goes now rather than stand in the way or be found instead.
        let (rt, docker) = connect()?;
        let left = self.labelled(&rt, &docker)?;
        if !left.is_empty() {
            note(&format!(
                "removing {} left by an earlier box `{}` of this AGENTBOX_HOME",
                left.join(", "),
                self.name
            ));
        }
        self.remove()?;
        if dind {
            if image_label(image, LABEL_DIND)?.as_deref() != Some("yes") {
                bail!("image {image} has no Docker engine: make one with `agentbox prepare --provider docker --dind`");
            }
            note(&format!(
                "box {} runs its own Docker engine: it has CAP_SYS_ADMIN and can act as root on this machine",
                self.name
            ));
        }
        let bindings = |port: &str| {
            (
                format!("{port}/tcp"),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )
        };
        let mut host_config = HostConfig {
            init: Some(true),
            port_bindings: Some(HashMap::from([bindings("8080"), bindings("8788")])),
            nano_cpus: size.map(|s| i64::from(s.cpus) * 1_000_000_000),
            memory: size.map(|s| i64::from(s.mem_gib) << 30),
            ..HostConfig::default()
        };
        let mut env = vec![format!("AGENTBOX_BOX_NAME={}", self.name)];
        if dind {
            host_config = dind_host_config(host_config);
            env.push("AGENTBOX_DIND=1".into());
            // The engine's storage: a volume (overlay2 cannot sit on the container's own
            // overlay), labelled like the container so that `prune` finds a stray one.
            // (A volume left by an earlier box of this name went with `remove` above: it
            // must not hand its images on.)
            let volume = engine_volume(&container);
            rt.block_on(docker.create_volume(bollard::models::VolumeCreateOptions {
                name: Some(volume.clone()),
                labels: Some(HashMap::from([
                    (LABEL_BOX.to_string(), self.name.clone()),
                    (LABEL_HOME.to_string(), self.home_label.clone()),
                ])),
                ..Default::default()
            }))
            .with_context(|| format!("cannot create volume {volume}"))?;
            host_config.binds = Some(vec![format!("{volume}:/var/lib/docker")]);
        }
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            hostname: Some(self.name.chars().take(63).collect()),
            env: Some(env),
            labels: Some(HashMap::from([
                (LABEL_BOX.to_string(), self.name.clone()),
                (LABEL_HOME.to_string(), self.home_label.clone()),
            ])),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        };
        let options = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(&container)
            .build();
        rt.block_on(docker.create_container(Some(options), body))
            .with_context(|| format!("cannot create container {container} from {image}"))?;
        let _ = self.found.set(container);
        self.put_private_files("/run/agentbox", &[("bridge.token", token.as_bytes())])
            .context("cannot put the bridge token into the container")
    }

    /// Writes files into directory `dir` of the container (running or not), each owned by
    /// the agent user (uid 1000) and mode 0600. Names may contain `/` below `dir`.
    pub fn put_private_files(&self, dir: &str, files: &[(&str, &[u8])]) -> anyhow::Result<()> {
        let (rt, docker) = connect()?;
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_uid(1000);
            h.set_gid(1000);
            h.set_cksum();
            tar.append_data(&mut h, name, *data)?;
        }
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path(dir)
            .build();
        let container = self.container(&rt, &docker)?;
        rt.block_on(docker.upload_to_container(
            &container,
            Some(options),
            bollard::body_full(bytes::Bytes::from(tar.into_inner()?)),
        ))
        .with_context(|| format!("cannot write into {dir} of container {container}"))?;
        Ok(())
    }

    /// Copies the host's agent credential files into this box (its own copy; nothing is
    /// copied back); returns the agents whose credentials went.
    pub fn resync(&self, host_home: &std::path::Path) -> anyhow::Result<Vec<&'static str>> {
        let found = crate::credentials::read(host_home)?;
        let names: Vec<String> = found
            .iter()
            .map(|c| format!("{}/{}", c.agent, c.file))
            .collect();
        let files: Vec<(&str, &[u8])> = names
            .iter()
            .zip(&found)
            .map(|(n, c)| (n.as_str(), c.bytes.as_slice()))
            .collect();
        if !files.is_empty() {
            self.put_private_files("/home/agent/.agentbox-creds", &files)?;
        }
        Ok(found.iter().map(|c| c.agent).collect())
    }

    /// Starts the container if needed; returns the bridge URL once the relay and the ctl
    /// daemon answer.
    pub fn start(&self) -> anyhow::Result<String> {
        let (rt, docker) = connect()?;
        let container = self.container(&rt, &docker)?;
        rt.block_on(docker.start_container(
            &container,
            None::<bollard::query_parameters::StartContainerOptions>,
        ))
        .or_else(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            } => Ok(()),
            e => Err(e),
        })
        .with_context(|| format!("cannot start container {container}"))?;
        let url = format!("http://127.0.0.1:{}", self.host_port(&rt, &docker, 8788)?);
        let deadline = Instant::now() + Duration::from_secs(30);
        let health = format!("{url}/healthz");
        let client = reqwest::Client::new();
        loop {
            let up = rt.block_on(async {
                client
                    .get(&health)
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            });
            if up
                && self
                    .ctl_within(&["status"], Duration::from_secs(5))
                    .is_ok_and(|o| o.status.success())
            {
                return Ok(url);
            }
            if Instant::now() > deadline {
                bail!(
                    "box {} did not come up within 30 s; see `docker logs {container}`",
                    self.name,
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn host_port(
        &self,
        rt: &tokio::runtime::Runtime,
        docker: &Docker,
        port: u16,
    ) -> anyhow::Result<u16> {
        let container = self.container(rt, docker)?;
        let info = rt.block_on(docker.inspect_container(
            &container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        ))?;
        info.network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get(&format!("{port}/tcp")).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port?.parse().ok()))
            .with_context(|| format!("port {port} of {container} is not published"))
    }

    /// The host URL of the WebProxy, or of an exposed box port (published ports only).
    pub fn url(&self, port: Option<u16>) -> anyhow::Result<String> {
        let (rt, docker) = connect()?;
        let p = self.host_port(&rt, &docker, port.unwrap_or(8080))?;
        Ok(format!("http://127.0.0.1:{p}"))
    }

    /// Runs `agentbox-ctl ARGS` in the container, capturing its output, within
    /// [`CAPTURE_LIMIT`].
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        self.ctl_within(args, CAPTURE_LIMIT)
    }

    /// [`ctl`](Self::ctl) with a time limit of its own.
    fn ctl_within(&self, args: &[&str], limit: Duration) -> anyhow::Result<std::process::Output> {
        let mut argv = vec!["agentbox-ctl"];
        argv.extend_from_slice(args);
        self.capture_within(&argv, limit)
    }

    /// Runs `argv` in the container (as the agent user, in /workspace), capturing output:
    /// at most [`CAPTURE_CAP`] bytes of it, past which the box is reported and nothing is
    /// returned; within [`CAPTURE_LIMIT`].
    pub fn capture(&self, argv: &[&str]) -> anyhow::Result<std::process::Output> {
        self.capture_within(argv, CAPTURE_LIMIT)
    }

    /// [`capture`](Self::capture) within `limit`: a box whose command does not end (a
    /// wedged daemon, or one made to hang) costs the host that long, never more.
    fn capture_within(
        &self,
        argv: &[&str],
        limit: Duration,
    ) -> anyhow::Result<std::process::Output> {
        let (rt, docker) = connect()?;
        let container = self.container(&rt, &docker)?;
        let run = self.capture_in(&docker, &container, argv);
        match rt.block_on(async { tokio::time::timeout(limit, run).await }) {
            Ok(done) => done,
            Err(_) => bail!(
                "box {} did not finish `{}` within {} s; it may be wedged (`agentbox stop {}` and start it again, or destroy it)",
                self.name,
                argv.join(" "),
                limit.as_secs(),
                self.name,
            ),
        }
    }

    async fn capture_in(
        &self,
        docker: &Docker,
        container: &str,
        argv: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        use std::os::unix::process::ExitStatusExt;
        let exec = docker
            .create_exec(
                container,
                bollard::models::ExecConfig {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(argv.iter().map(ToString::to_string).collect()),
                    ..Default::default()
                },
            )
            .await?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        if let bollard::exec::StartExecResults::Attached { mut output, .. } =
            docker.start_exec(&exec.id, None).await?
        {
            while let Some(chunk) = output.next().await {
                let chunk = chunk?;
                if stdout.len() + stderr.len() + chunk.as_ref().len() > CAPTURE_CAP {
                    bail!(
                            "box {} printed more than {CAPTURE_CAP} bytes for `{}`, the most the host reads; the output was dropped (the box is not behaving: check it, or destroy it)",
                            self.name,
                            argv.join(" ")
                        );
                }
                match chunk {
                    bollard::container::LogOutput::StdOut { message } => {
                        stdout.extend_from_slice(&message);
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.extend_from_slice(&message);
                    }
                    _ => {}
                }
            }
        }
        let code = docker.inspect_exec(&exec.id).await?.exit_code.unwrap_or(1);
        Ok(std::process::Output {
            status: std::process::ExitStatus::from_raw(((code as i32) & 0xff) << 8),
            stdout,
            stderr,
        })
    }

    /// Whether the container runs.
    pub fn running(&self) -> bool {
        let Ok((rt, docker)) = connect() else {
            return false;
        };
        let Ok(container) = self.container(&rt, &docker) else {
            return false;
        };
        rt.block_on(docker.inspect_container(
            &container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        ))
        .ok()
        .and_then(|i| i.state?.running)
        .unwrap_or(false)
    }

    /// Stops the container (its units stop with the ctl daemon); the workspace stays.
    pub fn stop(&self) -> anyhow::Result<()> {
        // The engine stops the container after its own grace period whatever the box does.
        let _ = self.ctl_within(&["shutdown"], Duration::from_secs(20));
        let (rt, docker) = connect()?;
        let options = bollard::query_parameters::StopContainerOptionsBuilder::new()
            .t(10)
            .build();
        let container = self.container(&rt, &docker)?;
        match rt.block_on(docker.stop_container(&container, Some(options))) {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot stop {container}")),
        }
    }

    /// Runs `request` with this terminal's stdio through `docker exec` (its `-d`, `-i`,
    /// `-t`, `-u` and `-w`; variables pass by name, their values in the docker CLI's
    /// environment, not its argv); returns the exit code. The engine's own refusals are
    /// said in agentbox's words, with `docker exec`'s codes: 127 for no such program, 126
    /// for what cannot be executed (no such directory or user).
    pub fn exec(&self, request: &agentbox_protocol::exec::ExecRequest) -> anyhow::Result<i32> {
        let container = self.container_name()?;
        let program = request.argv.first().context("no command given")?;
        let workdir = match request.cwd.as_deref() {
            Some(dir) if dir.starts_with('/') => dir.to_string(),
            Some(dir) => format!("/workspace/{dir}"),
            None => "/workspace".to_string(),
        };
        if let Some(user) = request.user.as_deref() {
            if !self.has_user(user) {
                eprintln!(
                    "agentbox: cannot run `{program}` as `{}` in box {}: no such user in the box",
                    crate::text::shown(user),
                    self.name
                );
                return Ok(126);
            }
        }
        let mut cmd = Command::new("docker");
        cmd.arg("exec");
        for (flag, on) in [
            ("-d", request.detach),
            ("-i", request.stdin),
            ("-t", request.tty.is_some()),
        ] {
            if on {
                cmd.arg(flag);
            }
        }
        if let Some(user) = &request.user {
            cmd.args(["-u", user]);
        }
        for (k, v) in &request.env {
            cmd.args(["-e", k]).env(k, v);
        }
        if request.tty.is_some() && !request.env.contains_key("TERM") {
            cmd.args(["-e", "TERM"]).env(
                "TERM",
                std::env::var("TERM").unwrap_or_else(|_| "xterm-256color".into()),
            );
        }
        cmd.args(["-w", &workdir, &container]);
        match request.tty.filter(|size| size.is_valid()) {
            // The docker CLI resizes the exec's terminal only after it started (API 1.41
            // takes no size at creation), so a command that asks at once sees `0 0`: the
            // box's terminal gets this terminal's size before the command runs. Later
            // changes (SIGWINCH) the CLI passes on itself.
            Some(size) => cmd.args([
                "sh",
                "-c",
                SIZED_EXEC,
                "agentbox-exec",
                &size.rows.to_string(),
                &size.cols.to_string(),
                &self.name,
            ]),
            None => &mut cmd,
        }
        .args(&request.argv)
        .stderr(Stdio::piped());
        // Without a terminal this engine writes its refusals (no program, no directory) on
        // the command's stdout; with one they reach the terminal as they are.
        if request.tty.is_none() {
            cmd.stdout(Stdio::piped());
        }
        if !request.stdin {
            cmd.stdin(Stdio::null());
        }
        let mut child = cmd.spawn().context("cannot run the docker CLI")?;
        let on_stderr = child.stderr.take().map(|err| sift(err, false));
        let on_stdout = child.stdout.take().map(|out| sift(out, true));
        let status = child.wait().context("cannot wait for the docker CLI")?;
        let mut refusal = on_stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        let from_stdout = on_stdout.and_then(|t| t.join().ok()).unwrap_or_default();
        if !from_stdout.is_empty() {
            if refusal.is_empty() && status.code() == Some(126) {
                refusal = from_stdout;
            } else {
                // The command's own output after all: it goes where it was going.
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&from_stdout);
                let _ = out.flush();
            }
        }
        let code = status.code().unwrap_or(1);
        if refusal.is_empty() {
            return Ok(code);
        }
        let said = String::from_utf8_lossy(&refusal);
        let (code, why) = if said.contains("is not running") {
            bail!(
                "box `{0}` is stopped: start it with `agentbox start {0}`",
                self.name
            );
        } else if said.contains("chdir") {
            (126, format!("no directory {workdir} in the box"))
        } else if said.contains("unable to find user") {
            (126, "no such user in the box".to_string())
        } else if said.contains("executable file not found")
            || said.contains("no such file or directory")
        {
            (127, "no such program in the box's PATH".to_string())
        } else if said.contains("permission denied") {
            (126, "permission denied".to_string())
        } else {
            (code, crate::text::shown(said.trim()))
        };
        let as_user = request
            .user
            .as_ref()
            .map(|u| format!(" as `{u}`"))
            .unwrap_or_default();
        eprintln!(
            "agentbox: cannot run `{program}`{as_user} in box {}: {why}",
            self.name
        );
        Ok(code)
    }

    /// Whether `-u USER` names someone the box knows. The engine's own refusal of an
    /// unknown name comes on the command's stdout, mixed with what the command prints, so
    /// it is asked first. A number (`UID[:GID]`) needs no entry, as in docker; a box that
    /// cannot be asked goes on to the engine, which says why.
    fn has_user(&self, user: &str) -> bool {
        let name = user.split(':').next().unwrap_or(user);
        if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
            return true;
        }
        match self.capture_within(&["id", "-u", "--", name], Duration::from_secs(10)) {
            Ok(out) => out.status.success(),
            Err(_) => true,
        }
    }

    /// Removes the box's containers (found by their labels, so a stray one too), their
    /// anonymous volumes and the engine's volume (`--dind`).
    pub fn remove(&self) -> anyhow::Result<()> {
        let (rt, docker) = connect()?;
        let options = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        for container in self.labelled(&rt, &docker)? {
            match rt.block_on(docker.remove_container(&container, Some(options.clone()))) {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {container}")),
            }
        }
        self.remove_engine_volumes(&rt, &docker)
    }

    /// Removes the volumes carrying this box's labels (its engine's storage, `--dind`).
    fn remove_engine_volumes(
        &self,
        rt: &tokio::runtime::Runtime,
        docker: &Docker,
    ) -> anyhow::Result<()> {
        let filters = self.label_filters();
        let options = bollard::query_parameters::ListVolumesOptionsBuilder::new()
            .filters(&filters)
            .build();
        let list = rt
            .block_on(docker.list_volumes(Some(options)))
            .with_context(|| format!("cannot list the volumes of box {}", self.name))?;
        for volume in list.volumes.unwrap_or_default() {
            match rt.block_on(docker.remove_volume(
                &volume.name,
                None::<bollard::query_parameters::RemoveVolumeOptions>,
            )) {
                Ok(())
                | Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove volume {}", volume.name))
                }
            }
        }
        Ok(())
    }
}

/// The volume of the Docker engine of a `--dind` box whose container is `container`.
pub fn engine_volume(container: &str) -> String {
    format!("{container}-docker")
}

/// Label `key` of image `image`, if it has one.
pub fn image_label(image: &str, key: &str) -> anyhow::Result<Option<String>> {
    let (rt, docker) = connect()?;
    let inspected = rt
        .block_on(docker.inspect_image(image))
        .with_context(|| format!("cannot inspect image {image}"))?;
    Ok(inspected
        .config
        .and_then(|c| c.labels)
        .and_then(|mut l| l.remove(key)))
}

/// The agents image `image` carries, from its label; `None` when it has no such label
/// (made by an older agentbox) or the engine cannot tell.
pub fn image_agents(image: &str) -> Option<Vec<String>> {
    let list = image_label(image, LABEL_AGENTS).ok()??;
    Some(
        list.split(',')
            .filter(|a| !a.is_empty() && *a != "none")
            .map(str::to_string)
            .collect(),
    )
}

/// A container that may run a Docker engine inside: the capabilities dockerd needs
/// (mounts, namespaces and cgroups: SYS_ADMIN; bridges and iptables: NET_ADMIN), no seccomp
/// or AppArmor profile (they refuse the mounts), and a cgroup namespace of its own so
/// that `box/dind` can mount the cgroup hierarchies writable. Not `--privileged`: that asks
/// for every capability, which engines that lack one (CAP_SYS_RESOURCE, on some hosts)
/// cannot grant, and adds the host's devices, which a nested engine does not need.
fn dind_host_config(base: HostConfig) -> HostConfig {
    HostConfig {
        cap_add: Some(vec!["SYS_ADMIN".into(), "NET_ADMIN".into()]),
        security_opt: Some(vec![
            "seccomp=unconfined".into(),
            "apparmor=unconfined".into(),
        ]),
        cgroupns_mode: Some(bollard::models::HostConfigCgroupnsModeEnum::PRIVATE),
        ..base
    }
}

/// Our containers (by the home label): `(container name, box name)`.
pub fn containers(home_label: &str) -> anyhow::Result<Vec<(String, String)>> {
    let (rt, docker) = connect()?;
    let filters = HashMap::from([("label", vec![format!("{LABEL_HOME}={home_label}")])]);
    let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let list = rt.block_on(docker.list_containers(Some(options)))?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let name = c.names?.first()?.trim_start_matches('/').to_string();
            let boxed = c.labels?.get(LABEL_BOX)?.clone();
            Some((name, boxed))
        })
        .collect())
}

/// Our volumes (by the home label): `(volume name, box name)`.
pub fn volumes(home_label: &str) -> anyhow::Result<Vec<(String, String)>> {
    let (rt, docker) = connect()?;
    let filters = HashMap::from([("label", vec![format!("{LABEL_HOME}={home_label}")])]);
    let options = bollard::query_parameters::ListVolumesOptionsBuilder::new()
        .filters(&filters)
        .build();
    let list = rt.block_on(docker.list_volumes(Some(options)))?;
    Ok(list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| {
            let boxed = v.labels.get(LABEL_BOX)?.clone();
            Some((v.name, boxed))
        })
        .collect())
}

/// Whether what `docker exec` wrote first is the engine's refusal, not the command's.
/// Copies a `docker exec` output stream to ours as it comes (stdout or stderr), except
/// an engine refusal at its start, which is kept from there on and returned.
fn sift<R: std::io::Read + Send + 'static>(
    mut stream: R,
    is_stdout: bool,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut refusal = Vec::new();
        let mut first = true;
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if (first && engine_refusal(chunk)) || !refusal.is_empty() {
                refusal.extend_from_slice(chunk);
            } else if is_stdout {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(chunk);
                let _ = out.flush();
            } else {
                let mut out = std::io::stderr().lock();
                let _ = out.write_all(chunk);
                let _ = out.flush();
            }
            first = false;
        }
        refusal
    })
}

fn engine_refusal(chunk: &[u8]) -> bool {
    [
        "OCI runtime exec failed",
        "Error response from daemon",
        "unable to find user",
    ]
    .iter()
    .any(|p| chunk.starts_with(p.as_bytes()))
}

/// Writes a line to stderr now (progress during long steps).
pub fn note(line: &str) {
    crate::transfer::progress::step(line);
}
