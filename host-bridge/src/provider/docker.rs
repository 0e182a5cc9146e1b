//! The `docker` provider: a box is a container of the image built from `Dockerfile.box`
//! (`agentbox prepare --provider docker`), talked to through the Docker API (bollard).
//!
//! The container is named `agentbox-<box>` and labelled `agentbox.box` and `agentbox.home`
//! (so `prune` finds ours and nobody else's); it runs with an init that reaps orphans; the
//! WebProxy (8080) and the bridge (8788) are published on 127.0.0.1 only, on free ports.
//! The bridge token is written into the container as `/run/agentbox/bridge.token` (0600)
//! before it starts — never in its environment, which every `docker exec` would inherit.
//! Interactive `exec` and `attach` use the `docker` CLI, which owns terminal handling.
//! A `--dind` box runs a Docker engine of its own: see `dind_host_config` for what its
//! container is given, and `box/dind` for how the engine starts inside.

use std::collections::HashMap;
use std::io::Write;
use std::process::Command;
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
        eprintln!("==> {tag} is up to date");
        return Ok(tag);
    }
    eprintln!(
        "==> building {tag} from Dockerfile.box on {} with agents {}{}",
        inputs.base(),
        inputs.agents_text(),
        if inputs.dind() {
            " and a Docker engine"
        } else {
            ""
        }
    );
    let context = inputs.context_tar(true)?;
    let options = bollard::query_parameters::BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .build();
    rt.block_on(async {
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
                    eprintln!("    {line}");
                }
            }
        }
        anyhow::Ok(())
    })?;
    Ok(tag)
}

/// One docker box.
#[derive(Debug, Clone)]
pub struct DockerBox {
    /// Box name.
    pub name: String,
    /// Container name, `agentbox-<name>`.
    pub container: String,
}

impl DockerBox {
    /// The box called `name`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            container: format!("agentbox-{name}"),
        }
    }

    /// Creates the container (not started) with the token file in place. With `dind`, the
    /// container may run a Docker engine of its own (see `dind_host_config`).
    pub fn create(
        &self,
        image: &str,
        token: &str,
        home_label: &str,
        size: Option<Size>,
        dind: bool,
    ) -> anyhow::Result<()> {
        let (rt, docker) = connect()?;
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
            let volume = self.engine_volume();
            // A volume of this name left by an earlier box must not hand its images on.
            self.remove_engine_volume(&rt, &docker)?;
            rt.block_on(docker.create_volume(bollard::models::VolumeCreateOptions {
                name: Some(volume.clone()),
                labels: Some(HashMap::from([
                    (LABEL_BOX.to_string(), self.name.clone()),
                    (LABEL_HOME.to_string(), home_label.to_string()),
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
                (LABEL_HOME.to_string(), home_label.to_string()),
            ])),
            host_config: Some(host_config),
            ..ContainerCreateBody::default()
        };
        let options = bollard::query_parameters::CreateContainerOptionsBuilder::new()
            .name(&self.container)
            .build();
        rt.block_on(docker.create_container(Some(options), body))
            .with_context(|| format!("cannot create container {} from {image}", self.container))?;
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
        rt.block_on(docker.upload_to_container(
            &self.container,
            Some(options),
            bollard::body_full(bytes::Bytes::from(tar.into_inner()?)),
        ))
        .with_context(|| format!("cannot write into {dir} of container {}", self.container))?;
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
        rt.block_on(docker.start_container(
            &self.container,
            None::<bollard::query_parameters::StartContainerOptions>,
        ))
        .or_else(|e| match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            } => Ok(()),
            e => Err(e),
        })
        .with_context(|| format!("cannot start container {}", self.container))?;
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
            if up && self.ctl(&["status"]).is_ok_and(|o| o.status.success()) {
                return Ok(url);
            }
            if Instant::now() > deadline {
                bail!(
                    "box {} did not come up within 30 s; see `docker logs {}`",
                    self.name,
                    self.container
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
        let info = rt.block_on(docker.inspect_container(
            &self.container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        ))?;
        info.network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get(&format!("{port}/tcp")).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port?.parse().ok()))
            .with_context(|| format!("port {port} of {} is not published", self.container))
    }

    /// The host URL of the WebProxy, or of an exposed box port (published ports only).
    pub fn url(&self, port: Option<u16>) -> anyhow::Result<String> {
        let (rt, docker) = connect()?;
        let p = self.host_port(&rt, &docker, port.unwrap_or(8080))?;
        Ok(format!("http://127.0.0.1:{p}"))
    }

    /// Runs `agentbox-ctl ARGS` in the container, capturing its output.
    pub fn ctl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut argv = vec!["agentbox-ctl"];
        argv.extend_from_slice(args);
        self.capture(&argv)
    }

    /// Runs `argv` in the container (as the agent user, in /workspace), capturing output.
    pub fn capture(&self, argv: &[&str]) -> anyhow::Result<std::process::Output> {
        use std::os::unix::process::ExitStatusExt;
        let (rt, docker) = connect()?;
        rt.block_on(async {
            let exec = docker
                .create_exec(
                    &self.container,
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
                    match chunk? {
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
        })
    }

    /// Whether the container runs.
    pub fn running(&self) -> bool {
        let Ok((rt, docker)) = connect() else {
            return false;
        };
        rt.block_on(docker.inspect_container(
            &self.container,
            None::<bollard::query_parameters::InspectContainerOptions>,
        ))
        .ok()
        .and_then(|i| i.state?.running)
        .unwrap_or(false)
    }

    /// Stops the container (its units stop with the ctl daemon); the workspace stays.
    pub fn stop(&self) -> anyhow::Result<()> {
        let _ = self.ctl(&["shutdown"]);
        let (rt, docker) = connect()?;
        let options = bollard::query_parameters::StopContainerOptionsBuilder::new()
            .t(10)
            .build();
        match rt.block_on(docker.stop_container(&self.container, Some(options))) {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot stop {}", self.container)),
        }
    }

    /// Runs a command with the terminal's stdio (`docker exec`); returns its exit code.
    pub fn exec(&self, argv: &[String]) -> anyhow::Result<i32> {
        use std::io::IsTerminal;
        let mut cmd = Command::new("docker");
        cmd.arg("exec").arg("-i");
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            cmd.arg("-t");
        }
        let status = cmd
            .args(["-w", "/workspace", &self.container])
            .args(argv)
            .status()
            .context("cannot run the docker CLI")?;
        Ok(status.code().unwrap_or(1))
    }

    /// Removes the container, its anonymous volumes and its engine's volume (`--dind`).
    pub fn remove(&self) -> anyhow::Result<()> {
        let (rt, docker) = connect()?;
        let options = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match rt.block_on(docker.remove_container(&self.container, Some(options))) {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", self.container)),
        }
        self.remove_engine_volume(&rt, &docker)
    }

    /// The volume of the box's own Docker engine (`--dind`): `agentbox-<box>-docker`.
    pub fn engine_volume(&self) -> String {
        format!("{}-docker", self.container)
    }

    fn remove_engine_volume(
        &self,
        rt: &tokio::runtime::Runtime,
        docker: &Docker,
    ) -> anyhow::Result<()> {
        let volume = self.engine_volume();
        match rt.block_on(docker.remove_volume(
            &volume,
            None::<bollard::query_parameters::RemoveVolumeOptions>,
        )) {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove volume {volume}")),
        }
    }
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

/// Writes a line to stderr now (progress during long steps).
pub fn note(line: &str) {
    let mut err = std::io::stderr();
    let _ = writeln!(err, "==> {line}");
}
