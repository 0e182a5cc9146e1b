//! The `daytona` provider end to end against `daytona-fake`, which builds snapshots with
//! Docker from the uploaded context, runs sandboxes as Docker containers of the snapshot's
//! image and serves Daytona's preview proxy: login → prepare (Dockerfile.box and its build
//! context sent; the fake builds the snapshot) → create (seeded through the preview URL) → exec
//! through the toolbox → cp both ways → attach (the fake told to refuse WebSocket, so
//! HTTP streaming) → stop/start (the preview token rotates, the host renews it) → destroy
//! leaves no sandbox and no container.
//!
//! Past 600 lines on purpose: it is one box's life, step after step on the same sandbox
//! (each step needs the state the last one left); split into tests, each would bake a
//! snapshot and boot a sandbox of its own.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use agentbox_tests::bin_path;
use agentbox_tests::daytona_host::{git, git_repo, DaytonaHost as Host};
use agentbox_tests::run::TimedOutput;

const KEY: &str = "dtn_e2e0123456789abcdef";

/// `agentbox attach` with pipes: waits for `text` on the screen, detaches.
fn attach_and_detach(host: &Host, repo: &Path, name: &str, text: &str) {
    let mut child = host
        .command(repo, &["attach", name, "--session", "demo", "--no-tty"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentbox attach");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = text.to_string();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains(&wanted) {
                let _ = tx.send(());
            }
        }
    });
    let shown = rx.recv_timeout(Duration::from_secs(30)).is_ok();
    let mut stdin = child.stdin.take().expect("stdin");
    let _ = stdin.write_all(b"\x01d");
    drop(stdin);
    let out = agentbox_tests::run::finish_within(child, "wait", agentbox_tests::run::COMMAND_LIMIT)
        .expect("wait");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(shown, "attach never showed {text:?}: {said}");
    assert!(out.status.success(), "{said}");
    assert!(said.contains("refused WebSocket"), "{said}");
    assert!(said.contains("detached from session `demo`"), "{said}");
}

#[test]
fn a_daytona_box_from_login_to_destroy() {
    // Over HTTPS, as Daytona is: this process and every `agentbox` it starts trust the
    // fake's CA through SSL_CERT_FILE (curl through CURL_CA_BUNDLE).
    let host = Host::start(KEY, &[("DAYTONA_FAKE_TRANSITION_MS", "100")]);
    // A proxy on the way that does not carry WebSockets: attach falls back to HTTP.
    host.faults(r#"{"passWebSockets": false}"#);
    let repo = git_repo(
        &host.dir.path().join("proj"),
        "seeded through the preview URL\n",
    );
    let remote = host.dir.path().join("remote.git");
    git(host.dir.path(), &["init", "-q", "--bare", "remote.git"]);
    git(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );

    // Login: the key from stdin, checked against the fake.
    host.login(&repo);

    // Without a snapshot, create says what to do.
    let early = host.run(&repo, &["create", "--provider", "daytona"]);
    assert!(String::from_utf8_lossy(&early.stderr)
        .contains("run `agentbox prepare --provider daytona` first"));

    let snapshot = host.prepare(&repo);
    assert!(snapshot.trim().starts_with("agentbox-base-"), "{snapshot}");
    // Unchanged inputs: the same snapshot, not baked again.
    assert_eq!(host.prepare(&repo), snapshot);

    let name = format!("dy{}", std::process::id());
    // `agentbox daytona create` is `agentbox create --provider daytona`.
    let made = host.run(&repo, &["daytona", "create", "--name", &name]);
    let said = String::from_utf8_lossy(&made.stderr);
    assert!(made.status.success(), "{said}");
    assert!(!said.contains("WARNING"), "{said}");
    assert_eq!(host.sandboxes().len(), 1);
    assert_eq!(host.sandboxes()[0]["labels"]["agentbox.box"], name.as_str());
    // Daytona stops it after box.autoStopMinutes (default 30) without activity.
    assert_eq!(host.sandboxes()[0]["autoStopInterval"], 30);
    // A signed link to the WebProxy, and prune leaves a known box alone.
    let link = host.ok(&repo, &["url", &name, "--ttl", "2h"]);
    assert!(link.contains("/8080-"), "{link}");
    host.ok(
        &repo,
        &["exec", &name, "--", "agentbox-ctl", "port-open", "8788"],
    );
    let screen = host.run(&repo, &["screen", &name]);
    assert!(
        String::from_utf8_lossy(&screen.stderr)
            .contains("has no screen: its image was made without the browser"),
        "{}",
        String::from_utf8_lossy(&screen.stderr)
    );
    // Any port of the box has a link: a second relay listening on 3001 answers through one.
    host.ok(
        &repo,
        &["exec", &name, "--", "sh", "-c", "mkdir -p /tmp/r2/run /tmp/r2/state && AGENTBOX_RUN_DIR=/tmp/r2/run AGENTBOX_STATE_DIR=/tmp/r2/state AGENTBOX_BRIDGE_PORT=3001 AGENTBOX_WEB_PORT=3002 AGENTBOX_BIND_ADDR=0.0.0.0 nohup agentbox-relay >/dev/null 2>&1 & for i in $(seq 100); do agentbox-ctl port-open 3001 2>/dev/null && exit 0; sleep 0.05; done; exit 1"],
    );
    let other = host.ok(&repo, &["url", &name, "--port", "3001", "--direct"]);
    let health = Command::new("curl")
        .args(["-fsS", &format!("{}/healthz", other.trim())])
        .timed_output()
        .expect("curl");
    assert!(
        String::from_utf8_lossy(&health.stdout).contains("agentbox-relay"),
        "{other}: {}",
        String::from_utf8_lossy(&health.stderr)
    );
    let out = host.run(&repo, &["url", &name, "--ttl", "25h"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("from 1h to 24h"));
    assert_eq!(
        host.ok(&repo, &["prune", "--provider", "daytona", "--dry-run"]),
        ""
    );
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "cat", "README"]),
        "seeded through the preview URL\n"
    );

    // The toolbox's files API both ways (what works before the relay is up).
    let client = agentbox::daytona::Daytona::new(&host.api, KEY, None);
    let toolbox = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let id = host.sandboxes()[0]["id"].as_str().expect("id").to_string();
            let sandbox = client.get_sandbox(&id).await.expect("sandbox");
            client
                .upload_file(&sandbox, "/tmp/tb/up.bin", vec![0, 1, 2, 255])
                .await
                .expect("upload");
            let back = client
                .download_file(&sandbox, "/tmp/tb/up.bin")
                .await
                .expect("download");
            let missing = client.download_file(&sandbox, "/tmp/tb/none").await;
            (back, missing.is_err())
        });
    assert_eq!(toolbox, (vec![0, 1, 2, 255], true));

    // A service that listens on 127.0.0.1 only (as dev servers do by default): its
    // `expose.port` still has a preview link, the relay carrying it from the sandbox's
    // address.
    std::fs::copy(bin_path("test-backend"), repo.join("backend")).expect("copy");
    std::fs::write(
        repo.join("box.yaml"),
        "services:\n  web:\n    command: ./backend 3005\n    expose:\n      port: 3005\n    ready_when:\n      port: 3005\n",
    )
    .expect("write");
    host.ok(&repo, &["cp", "backend", &format!("{name}:backend")]);
    host.ok(&repo, &["cp", "box.yaml", &format!("{name}:agentbox.yaml")]);
    host.ok(&repo, &["exec", &name, "--", "chmod", "+x", "backend"]);
    host.ok(&repo, &["exec", &name, "--", "agentbox-ctl", "reload"]);
    host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "agentbox-ctl",
            "wait-ready",
            "--timeout",
            "20000",
        ],
    );
    let web = host.ok(&repo, &["url", &name, "--port", "3005", "--direct"]);
    let mut answer = String::new();
    for _ in 0..50 {
        let out = Command::new("curl")
            .args([
                "-fsS",
                &format!("{}/host", web.trim().trim_end_matches('/')),
            ])
            .timed_output()
            .expect("curl");
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        answer.contains(r#""backend-port":"3005""#),
        "{answer}\n{}",
        String::from_utf8_lossy(
            &host
                .run(
                    &repo,
                    &[
                        "exec",
                        &name,
                        "--",
                        "sh",
                        "-c",
                        "tail -5 /var/log/agentbox/agentbox-relay.log; agentbox-ctl status"
                    ],
                )
                .stdout
        )
    );

    // The host's agent credentials go into the organization's volume, which the box
    // mounts where the agents look; nothing of the box's comes back.
    let user = host.dir.path().join("user");
    std::fs::create_dir_all(user.join(".claude")).expect("mkdir");
    std::fs::create_dir_all(user.join(".codex")).expect("mkdir");
    let claude = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat-test","expiresAt":1}}"#;
    std::fs::write(user.join(".claude/.credentials.json"), claude).expect("write");
    std::fs::write(
        user.join(".codex/auth.json"),
        r#"{"OPENAI_API_KEY":"sk-test"}"#,
    )
    .expect("write");
    let in_box = || {
        host.ok(
            &repo,
            &[
                "exec",
                &name,
                "--",
                "cat",
                "/home/agent/.claude/.credentials.json",
            ],
        )
    };
    let synced = host.run(&repo, &["daytona", "resync", &name]);
    let said = String::from_utf8_lossy(&synced.stderr);
    assert!(synced.status.success(), "{said}");
    assert!(said.contains("claude, codex"), "{said}");
    assert_eq!(in_box(), claude);
    // `agentbox resync BOX` lands each file whole too: an upload that breaks off halfway
    // leaves the credential the box had, never half of the new one; the next one lands it.
    let renewed = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat-renewed","expiresAt":2}}"#;
    std::fs::write(user.join(".claude/.credentials.json"), renewed).expect("write");
    host.faults(r#"{"cutUploadsNext": 1}"#);
    let cut = host.run(&repo, &["resync", &name]);
    let said = String::from_utf8_lossy(&cut.stderr);
    assert!(!cut.status.success(), "{said}");
    assert!(
        said.contains("cannot send the claude credentials"),
        "{said}"
    );
    assert_eq!(in_box(), claude);
    let synced = host.run(&repo, &["resync", &name]);
    let said = String::from_utf8_lossy(&synced.stderr);
    assert!(synced.status.success(), "{said}");
    assert_eq!(in_box(), renewed);

    // A commit pushed from inside the sandbox lands in the host's remote: the host bridge
    // polls the relay through the preview proxy.
    let push = |message: &str| {
        host.ok(
            &repo,
            &["exec", &name, "--", "sh", "-c", &format!("echo {message} >> README && git -c user.email=b@b -c user.name=b commit -qam {message} && git push -q")],
        );
        let branch = format!("agentbox/{name}");
        let out = Command::new("git")
            .arg("-C")
            .arg(&remote)
            .args(["log", "-1", "--format=%s", &branch])
            .timed_output()
            .expect("git log");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), message);
    };
    push("pushed-from-daytona");

    // cp both ways through the preview proxy.
    std::fs::write(repo.join("in.txt"), "to the box\n").expect("write");
    host.ok(&repo, &["cp", "in.txt", &format!("{name}:in.txt")]);
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "cat", "in.txt"]),
        "to the box\n"
    );
    host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo from the box > out.txt",
        ],
    );
    host.ok(&repo, &["cp", &format!("{name}:out.txt"), "out.txt"]);
    assert_eq!(
        std::fs::read_to_string(repo.join("out.txt")).expect("copied"),
        "from the box\n"
    );

    // Attach: the private preview refuses WebSocket; HTTP streaming carries it.
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
            "echo hi-from-$((6*7)); exec sleep 600",
        ],
    );
    attach_and_detach(&host, &repo, &name, "hi-from-42");

    // The agent: this image has none, so `daytona claude` says so; a stand-in installed in
    // the box then runs in the `claude` session, and its reports reach the host through
    // the preview proxy.
    let none = host.run(&repo, &["daytona", "claude", &name, "-d"]);
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("`claude` is not installed in the box"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    std::fs::write(
        repo.join("standin"),
        "#!/bin/sh
agentbox-ctl agent-state working --agent claude
agentbox-ctl agent-state waiting --agent claude --detail 'may I?'
exec sleep 600
",
    )
    .expect("write");
    host.ok(&repo, &["cp", "standin", &format!("{name}:standin")]);
    host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "sudo",
            "install",
            "-m",
            "755",
            "standin",
            "/usr/local/bin/claude",
        ],
    );
    host.ok(&repo, &["daytona", "claude", &name, "-d"]);
    let agent_state = || -> Option<(String, String)> {
        let list: serde_json::Value =
            serde_json::from_str(&host.ok(&repo, &["list", "--json"])).ok()?;
        let a = list
            .as_array()?
            .iter()
            .find(|b| b["name"] == name.as_str())?["agents"][0]
            .clone();
        Some((a["state"].as_str()?.into(), a["detail"].as_str()?.into()))
    };
    let mut seen = None;
    for _ in 0..100 {
        seen = agent_state();
        if seen.as_ref().is_some_and(|(s, _)| s == "waiting") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(seen, Some(("waiting".into(), "may I?".into())));

    // From here on the edge answers 504 to any request without an answer after 2 s, as
    // Daytona's does after ~25 s: the bridge's held polls are cut again and again.
    host.faults(r#"{"gatewayTimeoutMs": 2000}"#);
    // Stop and start: the workspace stays; the new preview token is fetched.
    host.ok(&repo, &["stop", &name]);
    host.ok(&repo, &["start", &name]);
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "cat", "in.txt"]),
        "to the box\n"
    );
    host.ok(&repo, &["cp", &format!("{name}:README"), "readme-back"]);
    // The box workspace comes back with `download`, through the preview URL too.
    host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo made in the box > made.txt",
        ],
    );
    host.ok(&repo, &["download", &name, "-y"]);
    let env = host.run(&repo, &["download", "env"]);
    assert!(String::from_utf8_lossy(&env.stderr).contains("`agentbox download env`"));
    assert_eq!(
        std::fs::read_to_string(repo.join("made.txt")).expect("downloaded"),
        "made in the box\n"
    );
    // The bridge's poller renews its preview token after the rotation and carries on
    // through the 504s. Its polls (several in these seconds) do not count as the box's
    // activity, so they never keep an idle box from its auto-stop.
    // `lastActivityAt` is an ISO 8601 time (Daytona's spec): the same width always, so
    // later is greater as text too. It is there (the proxy saw this box's requests).
    let activity = || {
        let sandbox = host.sandboxes()[0].clone();
        let at = sandbox["lastActivityAt"]
            .as_str()
            .unwrap_or_else(|| panic!("no lastActivityAt: {sandbox}"))
            .to_string();
        assert!(at.len() == 24 && at.ends_with('Z'), "not an ISO time: {at}");
        at
    };
    let idle_since = activity();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        activity(),
        idle_since,
        "the host's polling kept the box awake"
    );
    // A copy through the preview proxy is activity: the check above can see one.
    host.ok(&repo, &["cp", &format!("{name}:README"), "readme-again"]);
    let after_copy = activity();
    assert!(after_copy > idle_since, "{after_copy} !> {idle_since}");
    push("pushed-after-restart");
    host.faults(r#"{"gatewayTimeoutMs": 0}"#);

    // A push queued in the box while no host takes it, then the box stopped (its caller
    // dies with it) and started again with a new preview token: the relay's journal keeps
    // the request, the bridge renews its token and delivers it, and it lands once.
    let pushes_done = || -> usize {
        let audit: serde_json::Value =
            serde_json::from_str(&host.ok(&repo, &["audit", "--json"])).expect("audit json");
        audit
            .as_array()
            .expect("audit is a list")
            .iter()
            .filter(|e| {
                e["box_name"] == name.as_str() && e["kind"] == "git push" && e["decision"] == "done"
            })
            .count()
    };
    let done_before = pushes_done();
    assert!(done_before >= 2, "the pushes above were not audited");
    host.ok(&repo, &["bridge", "stop"]);
    host.ok(
        &repo,
        &["exec", &name, "--", "sh", "-c", "echo queued >> README && git -c user.email=b@b -c user.name=b commit -qam queued-while-stopped && setsid -f sh -c 'git push -q >/tmp/queued-push.log 2>&1'"],
    );
    // The push is journalled at once; give the shim a moment to submit it.
    std::thread::sleep(Duration::from_secs(2));
    let preview_token = || {
        let id = host.sandboxes()[0]["id"].as_str().expect("id").to_string();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(client.preview_link(&id, 8788))
            .expect("preview link")
            .token
    };
    let token_before = preview_token();
    // box.autoStopMinutes changed since the box was made: its next start applies it.
    host.ok(&repo, &["config", "set", "box.autoStopMinutes", "12"]);
    host.ok(&repo, &["stop", &name]);
    host.ok(&repo, &["start", &name]);
    assert_eq!(
        host.sandboxes()[0]["autoStopInterval"],
        12,
        "the changed box.autoStopMinutes was not applied on start"
    );
    assert_ne!(
        preview_token(),
        token_before,
        "the preview token did not change"
    );
    let _ = host.run(&repo, &["bridge", "start"]);
    let branch = format!("agentbox/{name}");
    let mut landed = String::new();
    for _ in 0..300 {
        let out = Command::new("git")
            .arg("-C")
            .arg(&remote)
            .args(["log", "-1", "--format=%s", &branch])
            .timed_output()
            .expect("git log");
        landed = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if landed == "queued-while-stopped" {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        landed, "queued-while-stopped",
        "the queued push never landed"
    );
    // Exactly once, and not again a while later (a re-delivery would run it again).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pushes_done(),
        done_before + 1,
        "the queued push ran other than once"
    );

    // A checkpoint: new boxes start from the box's disk, without seeding.
    let merged = host.run(&repo, &["checkpoint", "create", "x", "--merged"]);
    assert!(String::from_utf8_lossy(&merged.stderr).contains("there is no --merged or --replace"));
    assert_eq!(
        host.ok(
            &repo,
            &[
                "checkpoint",
                "create",
                "ck1",
                "--box",
                &name,
                "--set-default"
            ]
        )
        .trim(),
        "ck1"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["checkpoint", "list", "--json"])).expect("json");
    assert_eq!(listed[0]["name"], "ck1");
    assert_eq!(listed[0]["source_box"], name.as_str());
    let from = host.run(&repo, &["daytona", "create", "--name", "fromck"]);
    let said = String::from_utf8_lossy(&from.stderr);
    assert!(from.status.success(), "{said}");
    assert!(
        said.contains("from checkpoint ck1") && !said.contains("packing the seed"),
        "{said}"
    );
    assert_eq!(
        host.ok(&repo, &["exec", "fromck", "--", "cat", "in.txt"]),
        "to the box\n"
    );
    // These boxes hold work the host lacks (in.txt, copied in): `-y` alone refuses them
    // (issue 20 #16, tested in host-bridge's work.rs and the docker e2e); --force goes.
    host.ok(&repo, &["destroy", "-y", "--force", "fromck"]);
    let missing = host.run(&repo, &["daytona", "create", "--checkpoint", "nope"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no checkpoint named `nope`"));
    host.ok(&repo, &["checkpoint", "rm", "ck1"]);
    host.ok(&repo, &["config", "unset", "box.defaultCheckpointDaytona"]);
    assert_eq!(host.ok(&repo, &["checkpoint", "list"]), "");

    host.ok(&repo, &["destroy", "-y", "--force", &name]);

    // `daytona claude` does not look for `claude` on this machine (the snapshot has to
    // have it, and this one was baked with `--agents none`): refused before a sandbox is
    // made for nothing, saying how to bake one with it.
    let claude = host.run(&repo, &["daytona", "claude", "-d", "--name", "cl"]);
    let said = String::from_utf8_lossy(&claude.stderr);
    assert!(!claude.status.success());
    assert!(
        !said.contains("is not installed in the box (the local provider"),
        "{said}"
    );
    assert!(
        said.contains("has no claude (it has no agents)")
            && said.contains("prepare --provider daytona --agents claude"),
        "{said}"
    );
    let boxes: serde_json::Value =
        serde_json::from_str(&host.ok(&repo, &["list", "--json"])).expect("list --json");
    assert!(
        !boxes.to_string().contains("\"cl\""),
        "a box was made: {boxes}"
    );

    // A snapshot baked from other inputs: with -y (or without a terminal), a loud warning,
    // then it boots.
    host.ok(
        &repo,
        &["config", "set", "box.baseImage", "debian:trixie-slim"],
    );
    host.ok(&repo, &["config", "set", "box.autoStopMinutes", "7"]);
    let stale = host.run(&repo, &["daytona", "create", "-y", "--name", "stale"]);
    let said = String::from_utf8_lossy(&stale.stderr);
    assert!(stale.status.success(), "{said}");
    let made = host
        .sandboxes()
        .into_iter()
        .find(|s| s["labels"]["agentbox.box"] == "stale")
        .expect("the stale box's sandbox");
    assert_eq!(
        made["autoStopInterval"], 7,
        "box.autoStopMinutes was not applied"
    );
    assert!(
        said.contains("WARNING: snapshot agentbox-base-") && said.contains("booting it anyway"),
        "{said}"
    );
    host.ok(&repo, &["destroy", "-y", "--force", "stale"]);
    assert!(host.sandboxes().is_empty(), "the sandbox survived destroy");
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", "label=daytona-fake=1", "--filter"])
        .arg(format!("name=daytona-fake-sbx-{:x}-", host.fake.child.id()))
        .timed_output()
        .expect("docker ps");
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "a container survived destroy"
    );
}
