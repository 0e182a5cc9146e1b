//! The `docker` provider end to end, with a real Docker engine and the image built from
//! `Dockerfile.box`: prepare → create → a commit pushed from inside the box lands in the
//! host's remote → cp both ways → the WebProxy answers through the published port →
//! stop/start keeps the workspace → destroy leaves no container behind.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up;
//! `AGENTBOX_TEST_BASE_IMAGE` names another base).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use agentbox_tests::bin_path;
use agentbox_tests::run::{limit_for, TimedOutput};

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.run_env(cwd, args, &[])
    }

    fn run_env(&self, cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(bin_path("agentbox"))
            .args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.home())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output_within(limit_for(args))
            .expect("run agentbox")
    }

    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        agentbox_tests::succeeded(args, &self.run(cwd, args))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Whatever failed above, no container of this test survives it.
        let _ = Command::new(bin_path("agentbox"))
            .args(["bridge", "stop"])
            .env("AGENTBOX_HOME", self.home())
            .timed_output();
        let label = format!(
            "label=agentbox.home={}",
            agentbox::provider::docker::home_label(&self.home())
        );
        if let Ok(out) = Command::new("docker")
            .args(["ps", "-aq", "--filter", &label])
            .timed_output()
        {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker")
                    .args(["rm", "-f", "-v", id])
                    .timed_output();
            }
        }
        if let Ok(out) = Command::new("docker")
            .args(["volume", "ls", "-q", "--filter", &label])
            .timed_output()
        {
            for name in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker")
                    .args(["volume", "rm", name])
                    .timed_output();
            }
        }
    }
}

/// `agentbox attach` with pipes (no terminal): reads the session's screen, detaches.
fn attach_and_detach(host: &Host, repo: &Path, name: &str) {
    use std::io::{Read, Write};
    let mut child = Command::new(bin_path("agentbox"))
        .args(["attach", name, "--session", "demo", "--no-tty"])
        .current_dir(repo)
        .env("AGENTBOX_HOME", host.home())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentbox attach");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("hi-from-42") {
                let _ = tx.send(());
            }
        }
    });
    assert!(
        rx.recv_timeout(std::time::Duration::from_secs(30)).is_ok(),
        "attach never showed the session's output"
    );
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"\x01d").expect("detach keys");
    let out = agentbox_tests::run::finish_within(child, "wait", agentbox_tests::run::COMMAND_LIMIT)
        .expect("wait");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("detached from session `demo`"),
        "{out:?}"
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .timed_output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `agentbox prepare` of a docker image on `base` with `agents`.
fn prepare_args<'a>(base: &'a str, agents: &'a str) -> Vec<&'a str> {
    vec![
        "prepare",
        "--provider",
        "docker",
        "--base-image",
        base,
        "--agents",
        agents,
    ]
}

/// A repository `proj` in the host's directory with one commit (`a.txt`).
fn project(host: &Host) -> PathBuf {
    let repo = host.dir.path().join("proj");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "t@example.com"]);
    git(&repo, &["config", "user.name", "T"]);
    std::fs::write(repo.join("a.txt"), "hello\n").expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "first"]);
    repo
}

#[test]
fn a_docker_box_from_prepare_to_destroy() {
    let base = agentbox_tests::docker_base_image();
    let host = Host::new();
    let repo = project(&host);
    let remote = host.dir.path().join("remote.git");
    git(host.dir.path(), &["init", "-q", "--bare", "remote.git"]);
    git(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );

    let tag = host.ok(&repo, &prepare_args(&base, "none"));
    assert!(tag.trim().starts_with("agentbox-box:"), "{tag}");
    // Unchanged inputs: nothing to build, the same tag.
    assert_eq!(host.ok(&repo, &prepare_args(&base, "none")), tag);

    // An agent the image was built without is refused before a box is made for nothing.
    let refused = host.run(
        &repo,
        &["codex", "--provider", "docker", "--name", "nocodex"],
    );
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("has no codex (it has no agents)")
            && why.contains("prepare --provider docker --agents codex"),
        "{why}"
    );
    assert!(container_ids(&host, "nocodex").is_empty(), "a box was made");

    // The user's git credentials on this machine: a token in a remote URL, a credential
    // store, gh's config and the usual environment variables.
    let secret = format!("ghp_agentboxtest{}", std::process::id() * 7);
    let marker = format!("marker-{}", std::process::id() * 13);
    let user_home = host.dir.path().join("user");
    std::fs::create_dir_all(user_home.join(".config/gh")).expect("mkdir");
    std::fs::write(
        user_home.join(".git-credentials"),
        format!("https://agentbox:{secret}@github.com\n"),
    )
    .expect("write");
    std::fs::write(
        user_home.join(".config/gh/hosts.yml"),
        format!("github.com:\n    oauth_token: {secret}\n"),
    )
    .expect("write");
    git(&repo, &["config", "credential.helper", "store"]);
    git(
        &repo,
        &[
            "remote",
            "add",
            "upstream",
            &format!("https://agentbox:{secret}@github.com/o/r.git"),
        ],
    );
    std::fs::write(repo.join("marker.txt"), format!("{marker}\n")).expect("write");
    git(&repo, &["add", "marker.txt"]);
    git(&repo, &["commit", "-qm", "marker"]);
    let home_s = user_home.to_str().expect("utf-8").to_string();
    let name = format!("dk{}", std::process::id());
    let made = host.run_env(
        &repo,
        &["create", "--provider", "docker", "--name", &name],
        &[
            ("HOME", home_s.as_str()),
            ("GH_TOKEN", secret.as_str()),
            ("GITHUB_TOKEN", secret.as_str()),
            ("GIT_PASSWORD", secret.as_str()),
        ],
    );
    agentbox_tests::succeeded(&["create"], &made);
    let container = container_of(&host, &name);
    let inspect = |fmt: &str| docker_inspect(&container, fmt);
    assert_eq!(inspect("{{.Config.User}}"), "agent");
    assert!(
        !inspect("{{.Config.Env}}").contains("TOKEN"),
        "the token is in the environment"
    );
    assert_eq!(
        inspect("{{(index (index .NetworkSettings.Ports \"8788/tcp\") 0).HostIp}}"),
        "127.0.0.1"
    );
    assert_loopback_only(&container);
    // The box's run dir (sockets, the bridge token) is the agent's alone.
    assert_eq!(
        in_box(&container, "stat -c '%a %U' /run/agentbox"),
        "700 agent\n"
    );
    // None of the host's git credentials is anywhere in the box: not in a file (as root,
    // the whole file system), not in any process's environment. Each search first finds
    // a marker the box must hold, so that a search that sees nothing cannot pass.
    let everywhere = |needle: &str| {
        in_box_as(
            &container,
            "root",
            &format!("grep -rlsF -e '{needle}' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev; true"),
        )
    };
    let files = everywhere(&marker);
    assert!(
        files.lines().any(|f| f.ends_with("/marker.txt")),
        "the search did not see the workspace: {files}"
    );
    assert_eq!(
        everywhere(&secret),
        "",
        "git credentials in the box's files"
    );
    let environments = in_box_as(
        &container,
        "root",
        "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; echo; done",
    );
    assert!(
        environments.contains(&format!("AGENTBOX_BOX_NAME={name}")),
        "the environments were not seen: {environments}"
    );
    assert!(
        !environments.contains(&secret),
        "git credentials in an environment in the box"
    );
    assert!(!inspect("{{json .Config.Env}}").contains(&secret));

    // A commit pushed from inside the box lands in the host's remote.
    host.ok(
        &repo,
        &["exec", &name, "--", "sh", "-c", "echo more >> a.txt && git -c user.email=b@b -c user.name=b commit -qam from-the-box && git push -q"],
    );
    let branch = format!("agentbox/{name}");
    assert_eq!(
        git(&remote, &["log", "-1", "--format=%s", &branch]).trim(),
        "from-the-box"
    );

    // cp both ways; the service binary goes in that way too.
    host.ok(
        &repo,
        &[
            "cp",
            bin_path("test-backend").to_str().expect("utf-8"),
            &format!("{name}:backend"),
        ],
    );
    host.ok(
        &repo,
        &["exec", &name, "--", "sh", "-c",
          "printf 'services:\\n  web:\\n    command: [\"./backend\", \"3000\", \"0\"]\\n    ready_when: {port: 3000}\\n    expose: {port: 3000}\\n' > agentbox.yaml && agentbox-ctl reload >/dev/null && agentbox-ctl wait-ready --timeout 20000"],
    );
    host.ok(
        &repo,
        &["cp", &format!("{name}:agentbox.yaml"), "from-box.yaml"],
    );
    assert!(std::fs::read_to_string(repo.join("from-box.yaml"))
        .expect("copied")
        .contains("backend"));

    // The WebProxy through the published port (`--direct`: the provider's own address;
    // the proxy's https://…localhost form is https_proxy's).
    let url = host
        .ok(&repo, &["url", &name, "--direct"])
        .trim()
        .to_string();
    let body = Command::new("curl")
        .args(["-fsS", &format!("{url}/")])
        .timed_output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&body.stdout), "backend\n", "{url}");
    // A service by the port it exposes: through the WebProxy, by its name.
    let by_port = host
        .ok(&repo, &["url", &name, "--port", "3000", "--direct"])
        .trim()
        .to_string();
    assert!(by_port.starts_with("http://web.localhost:"), "{by_port}");
    let body = Command::new("curl")
        .args(["-fsS", &format!("{by_port}/")])
        .timed_output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&body.stdout),
        "backend\n",
        "{by_port}"
    );

    // Attach goes through the relay in the container, like on every provider.
    host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "agentbox-ctl",
            "session",
            "start",
            "demo",
            "--",
            "sh",
            "-c",
            "echo hi-from-$((6*7)); exec sleep 60",
        ],
    );
    attach_and_detach(&host, &repo, &name);

    // Stop and start keep the workspace.
    host.ok(&repo, &["stop", &name]);
    host.ok(&repo, &["start", &name]);
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "cat", "a.txt"]),
        "hello\nmore\n"
    );

    // prune knows the box; destroy leaves nothing of ours.
    assert_eq!(host.ok(&repo, &["prune", "--dry-run"]), "");
    // The box holds work the host lacks (`backend`, its agentbox.yaml): -y alone refuses.
    let refused = host.run(&repo, &["destroy", "-y", &name]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("changed files not brought back"),
        "{said}"
    );
    host.ok(&repo, &["destroy", "-y", "--force", &name]);
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^{container}$")])
        .timed_output()
        .expect("docker ps");
    assert!(left.stdout.is_empty(), "the container survived destroy");
}

/// `create --dind`: refused on an image without an engine; on one made with
/// `prepare --dind` the box's own engine starts with the box (a ctl unit), runs a
/// container of an image made inside the box, comes back after stop/start with its
/// images kept, and destroy removes its storage volume.
#[test]
fn a_dind_box_runs_containers_of_its_own() {
    let base = agentbox_tests::docker_base_image();
    let host = Host::new();
    let repo = project(&host);
    let plain = prepare_args(&base, "none");
    host.ok(&repo, &plain);
    let name = format!("dind{}", std::process::id());
    let refused = host.run(
        &repo,
        &["create", "--provider", "docker", "--dind", "--name", &name],
    );
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("has no Docker engine") && why.contains("prepare --provider docker --dind"),
        "{why}"
    );
    let local = host.run(&repo, &["create", "--provider", "local", "--dind"]);
    assert!(
        String::from_utf8_lossy(&local.stderr).contains("--dind is for docker and daytona boxes")
    );
    let cloud = host.run(&repo, &["create", "--provider", "daytona", "--dind"]);
    assert!(String::from_utf8_lossy(&cloud.stderr).contains("prepare --provider daytona --dind"));

    let tag = host.ok(&repo, &[&plain[..], &["--dind"]].concat());
    assert!(tag.trim().starts_with("agentbox-box:"), "{tag}");
    let name = format!("dind{}b", std::process::id());
    let created = host.run(
        &repo,
        &["create", "--provider", "docker", "--dind", "--name", &name],
    );
    agentbox_tests::succeeded(&["create", "--dind"], &created);
    assert!(
        String::from_utf8_lossy(&created.stderr).contains("can act as root on this machine"),
        "create --dind does not warn"
    );
    let container = container_of(&host, &name);
    let inspect = |fmt: &str| docker_inspect(&container, fmt);
    assert_eq!(inspect("{{.HostConfig.Privileged}}"), "false");
    // Exactly two capabilities added, none dropped.
    assert_eq!(
        added_capabilities(&container),
        ["NET_ADMIN", "SYS_ADMIN"],
        "capabilities added"
    );
    assert_eq!(inspect("{{json .HostConfig.CapDrop}}"), "null");
    assert_loopback_only(&container);
    let volume = inspect(
        "{{range .Mounts}}{{if eq .Destination \"/var/lib/docker\"}}{{.Name}}{{end}}{{end}}",
    );
    assert_eq!(
        volume,
        format!("{container}-docker"),
        "the engine's storage"
    );
    assert_eq!(
        docker_inspect(&volume, "{{index .Labels \"agentbox.box\"}}"),
        name
    );

    // The engine is a ctl unit: ready once it listens; the agent may use it.
    let engine_up = |what: &str| {
        let waited = host.run(
            &repo,
            &[
                "exec",
                &name,
                "--",
                "agentbox-ctl",
                "wait-ready",
                "agentbox-dockerd",
                "--timeout",
                "60000",
            ],
        );
        assert!(
            waited.status.success(),
            "{what}: the engine is not ready: {}{}",
            String::from_utf8_lossy(&waited.stdout),
            String::from_utf8_lossy(&waited.stderr)
        );
    };
    engine_up("after create");
    // An image made in the box (no registry needed): `echo` and the libraries it loads.
    let made = "tar -ch $(ldd /usr/bin/echo | grep -o '/[^ ]*') /usr/bin/echo 2>/dev/null | docker import - tiny:1 >/dev/null && docker run --rm tiny:1 /usr/bin/echo nested-ok";
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "sh", "-c", made])
            .trim(),
        "nested-ok"
    );

    // Stop and start: the engine starts again and still has the image.
    host.ok(&repo, &["stop", &name]);
    host.ok(&repo, &["start", &name]);
    engine_up("after start");
    assert_eq!(
        host.ok(
            &repo,
            &[
                "exec",
                &name,
                "--",
                "docker",
                "run",
                "--rm",
                "tiny:1",
                "/usr/bin/echo",
                "again"
            ]
        )
        .trim(),
        "again"
    );

    host.ok(&repo, &["destroy", "-y", &name]);
    assert!(!volume_exists(&volume), "volume {volume} survived destroy");

    // An engine volume whose container was removed by hand is ours: prune finds it.
    let stray = format!("agentbox-{name}x-docker");
    let home_label = agentbox::provider::docker::home_label(&host.home());
    let made = Command::new("docker")
        .args([
            "volume",
            "create",
            "--label",
            &format!("agentbox.box={name}x"),
        ])
        .args(["--label", &format!("agentbox.home={home_label}"), &stray])
        .timed_output()
        .expect("docker volume create");
    assert!(made.status.success());
    assert_eq!(host.ok(&repo, &["prune", "--dry-run"]).trim(), stray);
    assert_eq!(
        host.ok(&repo, &["prune"]).trim(),
        format!("removed {stray}")
    );
    assert!(!volume_exists(&stray), "prune left {stray}");
}

/// The containers of box `name` of `host`'s home, by their labels (the labels, not the
/// name, say whose a container is).
fn container_ids(host: &Host, name: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}", "--filter"])
        .arg(format!(
            "label=agentbox.home={}",
            agentbox::provider::docker::home_label(&host.home())
        ))
        .args(["--filter", &format!("label=agentbox.box={name}")])
        .timed_output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The one container of box `name` of `host`'s home.
fn container_of(host: &Host, name: &str) -> String {
    let found = container_ids(host, name);
    assert_eq!(found.len(), 1, "containers of box {name}: {found:?}");
    found[0].clone()
}

/// `docker inspect -f FMT OBJECT`, trimmed.
fn docker_inspect(object: &str, fmt: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "-f", fmt, object])
        .timed_output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every published port of `container` (from `docker inspect`): `(container port, host
/// address)` for each binding; the test fails if inspect does not answer.
fn published_ports(container: &str) -> Vec<(String, String)> {
    let text = docker_inspect(container, "{{json .HostConfig.PortBindings}}");
    let configured: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("PortBindings of {container}: {e}: {text:?}"));
    let text = docker_inspect(container, "{{json .NetworkSettings.Ports}}");
    let live: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("Ports of {container}: {e}: {text:?}"));
    let mut out = Vec::new();
    for table in [configured, live] {
        let table = table.as_object().cloned().unwrap_or_default();
        for (port, bindings) in table {
            for b in bindings.as_array().into_iter().flatten() {
                let ip = b["HostIp"].as_str().unwrap_or("(none)").to_string();
                out.push((port.clone(), ip));
            }
        }
    }
    out
}

/// The capabilities `container` was given beyond the default set, without `CAP_`,
/// sorted (from `docker inspect`; the test fails if it does not answer a list).
fn added_capabilities(container: &str) -> Vec<String> {
    let text = docker_inspect(container, "{{json .HostConfig.CapAdd}}");
    let added: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("CapAdd of {container}: {e}: {text:?}"));
    let mut added: Vec<String> = added
        .as_array()
        .unwrap_or_else(|| panic!("CapAdd of {container} is no list: {text}"))
        .iter()
        .map(|c| {
            let c = c.as_str().unwrap_or_default();
            c.strip_prefix("CAP_").unwrap_or(c).to_string()
        })
        .collect();
    added.sort();
    added
}

/// Asserts that `container` publishes 8080 and 8788, and every port it publishes only on
/// 127.0.0.1.
fn assert_loopback_only(container: &str) {
    let ports = published_ports(container);
    for wanted in ["8080/tcp", "8788/tcp"] {
        assert!(
            ports.iter().any(|(p, _)| p == wanted),
            "{wanted} is not published: {ports:?}"
        );
    }
    assert!(
        ports.iter().all(|(_, ip)| ip == "127.0.0.1"),
        "a port is published beyond loopback: {ports:?}"
    );
}

/// Whether the engine has a volume of this name.
fn volume_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["volume", "inspect", name])
        .timed_output()
        .expect("docker volume inspect")
        .status
        .success()
}

/// `docker exec` in a container as the agent user; stdout. The script must succeed: an
/// empty answer from a command that failed proves nothing.
fn in_box(container: &str, script: &str) -> String {
    in_box_as(container, "agent", script)
}

/// `in_box` as `user`.
fn in_box_as(container: &str, user: &str, script: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", "-u", user, container, "sh", "-c", script])
        .timed_output()
        .expect("docker exec");
    assert!(
        out.status.success(),
        "`{script}` failed in {container} ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker exec` that may fail (a poll); stdout when it succeeded.
fn try_in_box(container: &str, script: &str) -> Option<String> {
    let out = Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .timed_output()
        .expect("docker exec");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An image with `AGENTS=claude`: the real Claude Code answers `--version`, the host's
/// static agent config is baked and its credentials are not; a box gets its own copy of
/// the credentials (`resync` renews it, nothing flows back); a forwarded API key is in
/// the agent's environment only; Claude's own hooks report its state to the host.
#[test]
fn an_agent_image_with_claude_credentials_and_keys() {
    let base = agentbox_tests::docker_base_image();
    let host = Host::new();
    // The user's home on this machine: agent config, and credentials.
    let home = host.dir.path().join("user");
    let write = |rel: &str, text: &str| {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        ".claude/settings.json",
        "{\"alwaysThinkingEnabled\": false}\n",
    );
    write(".claude/CLAUDE.md", "Use short sentences.\n");
    write(".claude/.credentials.json", "{\"token\": \"host-1\"}\n");
    let home_s = home.to_str().expect("utf-8").to_string();
    let secret = format!("sk-ant-test-{}", std::process::id() * 31);
    let env = [
        ("HOME", home_s.as_str()),
        ("ANTHROPIC_API_KEY", secret.as_str()),
    ];

    let repo = host.dir.path().join("proj");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(
        &repo,
        &[
            "-c",
            "user.email=t@e",
            "-c",
            "user.name=T",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
    );

    let prepare = host.run_env(&repo, &prepare_args(&base, "claude"), &env);
    let tag = agentbox_tests::succeeded(&["prepare"], &prepare);
    let tag = tag.trim();
    let image_run = |script: &str| {
        let out = Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "sh", tag, "-c", script])
            .timed_output()
            .expect("docker run");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        image_run("claude --version").contains("(Claude Code)"),
        "claude does not answer --version"
    );
    let baked = image_run(
        "cat ~/.claude/settings.json ~/.claude/CLAUDE.md; test -e ~/.claude/.credentials.json || echo no-credentials; grep -c agent-state /etc/claude-code/managed-settings.json",
    );
    assert!(baked.contains("alwaysThinkingEnabled"), "{baked}");
    assert!(baked.contains("Use short sentences."), "{baked}");
    assert!(
        baked.contains("no-credentials"),
        "credentials were baked: {baked}"
    );
    assert!(baked.trim_end().ends_with('7'), "hooks missing: {baked}");

    host.ok(
        &repo,
        &[
            "config",
            "set",
            "--global",
            "agents.forwardEnv",
            "ANTHROPIC_API_KEY",
        ],
    );
    let name = format!("ag{}", std::process::id());
    let made = host.run_env(
        &repo,
        &["create", "--provider", "docker", "--name", &name],
        &env,
    );
    let said = agentbox_tests::succeeded(&["create"], &made);
    let container = container_of(&host, &name);
    assert!(
        String::from_utf8_lossy(&made.stderr).contains("agent credentials copied in: claude"),
        "{said}"
    );
    assert_eq!(
        in_box(&container, "cat ~/.claude/.credentials.json; stat -c '%a %U' ~/.agentbox-creds/claude/.credentials.json"),
        "{\"token\": \"host-1\"}\n600 agent\n"
    );
    // The box renews its token: the host's file stays as it was.
    in_box(
        &container,
        "echo '{\"token\": \"box\"}' > ~/.claude/.credentials.json",
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".claude/.credentials.json")).expect("read"),
        "{\"token\": \"host-1\"}\n"
    );
    // The host's token is renewed: `resync` copies it in again.
    write(".claude/.credentials.json", "{\"token\": \"host-2\"}\n");
    host.run_env(&repo, &["resync", &name], &env);
    assert_eq!(
        in_box(&container, "cat ~/.claude/.credentials.json"),
        "{\"token\": \"host-2\"}\n"
    );

    // The real Claude Code in its session: the key in its environment only, and its
    // SessionStart hook reaches the host.
    let started = host.run_env(&repo, &["claude", &name, "-d"], &env);
    agentbox_tests::succeeded(&["claude", &name], &started);
    let environ = || {
        try_in_box(
            &container,
            "pid=$(pgrep -x claude | head -n1); [ -n \"$pid\" ] && tr '\\0' '\\n' < /proc/$pid/environ",
        )
    };
    let mut seen = String::new();
    for _ in 0..100 {
        if let Some(env) = environ() {
            seen = env;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        seen.contains(&format!("ANTHROPIC_API_KEY={secret}")),
        "agent env: {seen}"
    );
    assert!(
        seen.contains("AGENTBOX_SESSION=claude"),
        "agent env: {seen}"
    );
    let elsewhere = in_box(
        &container,
        "ps -eo args; for p in $(pgrep -f 'agentbox-ctl daemon|agentbox-relay'); do tr '\\0' '\\n' < /proc/$p/environ; done",
    );
    // What was read holds the daemon and the relay and their environments …
    assert!(
        elsewhere.contains("agentbox-ctl daemon")
            && elsewhere.contains("agentbox-relay")
            && elsewhere.lines().filter(|l| l.starts_with("PATH=")).count() >= 2,
        "the processes were not seen: {elsewhere}"
    );
    // … and not the key.
    assert!(!elsewhere.contains(&secret), "the key leaked: {elsewhere}");
    let inspect = Command::new("docker")
        .args(["inspect", &container])
        .timed_output()
        .expect("inspect");
    let inspected = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspect.status.success() && inspected.contains(&format!("AGENTBOX_BOX_NAME={name}")),
        "the container's environment was not seen: {inspected}"
    );
    assert!(
        !inspected.contains(&secret),
        "the key is in the container's config"
    );
    let mut state = String::new();
    for _ in 0..150 {
        let list = host.ok(&repo, &["list", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&list).expect("json");
        state = v[0]["agents"][0]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !state.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        ["idle", "working", "waiting"].contains(&state.as_str()),
        "Claude's hooks never reached the host (state {state:?})"
    );
    host.ok(&repo, &["destroy", "-y", &name]);
}
