//! A teammate attaches to your box (`agentbox share` / `agentbox join`), against a real
//! docker box and a box of the Daytona fake: the invite joins a second `AGENTBOX_HOME`;
//! the owner's typing shows live on the teammate's read-only screen while the teammate's
//! keys are refused; `--revoke` cuts the attached teammate within seconds; an expired
//! token is refused; a share token opens none of the owner's routes (bridge poll, files,
//! exec, tunnel, seed, shares); a joined box refuses push/cp/exec/stop, and its box's own
//! `git push` is never served by the joiner's host, nor reaches the owner's remote. And,
//! without Docker, a share token's refusal reaches an HTTP/2 client whole through the
//! Daytona fake's preview when the request's body comes after its headers.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).
//!
//! Over 600 lines on purpose: one teammate's story per provider, each a single test on one
//! box (a box per step would multiply the minutes), sharing the viewer and teammate helpers
//! at the top.

#[path = "docker_common/mod.rs"]
mod docker_common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use agentbox_protocol::share::Invite;
use agentbox_tests::bin_path;
use agentbox_tests::run::{finish_within, TimedOutput, COMMAND_LIMIT};
use docker_common::{git, Host};

/// What an attached viewer has printed so far, and a way to wait for more.
#[derive(Clone, Default)]
struct Screen(Arc<(Mutex<Vec<u8>>, Condvar)>);

impl Screen {
    fn follow(mut from: impl Read + Send + 'static) -> Self {
        let screen = Self::default();
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let (lock, cv) = &*feed.0;
                lock.lock().expect("lock").extend_from_slice(&buf[..n]);
                cv.notify_all();
            }
        });
        screen
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0 .0.lock().expect("lock")).into_owned()
    }

    /// Waits until `wanted` is on the screen (an event: no fixed sleep).
    fn wait_for(&self, wanted: &str, within: Duration) -> bool {
        let (lock, cv) = &*self.0;
        let deadline = Instant::now() + within;
        let mut seen = lock.lock().expect("lock");
        loop {
            if String::from_utf8_lossy(&seen).contains(wanted) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            seen = cv.wait_timeout(seen, left).expect("wait").0;
        }
    }
}

/// `agentbox attach BOX --session demo --no-tty` under `home`.
struct Viewer {
    child: Child,
    stdin: ChildStdin,
    screen: Screen,
    errors: Screen,
}

impl Viewer {
    fn start(home: &Path, cwd: &Path, name: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(bin_path("agentbox"))
            .args(["attach", name, "--session", "demo", "--no-tty"])
            .current_dir(cwd)
            .env("AGENTBOX_HOME", home)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agentbox attach");
        let screen = Screen::follow(child.stdout.take().expect("stdout"));
        let errors = Screen::follow(child.stderr.take().expect("stderr"));
        let stdin = child.stdin.take().expect("stdin");
        Self {
            child,
            stdin,
            screen,
            errors,
        }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        self.stdin.write_all(keys).expect("keys");
        self.stdin.flush().expect("flush");
    }

    /// Detaches (Ctrl-a d) and waits for the end; its stderr.
    fn detach(mut self) -> String {
        let _ = self.stdin.write_all(b"\x01d");
        drop(self.stdin);
        let out = finish_within(self.child, "attach", COMMAND_LIMIT).expect("attach ends");
        assert!(out.status.success(), "{}", self.errors.text());
        self.errors.text()
    }
}

/// `curl` to the relay with `token` in `x-agentbox-token`; the HTTP status.
///
/// # Panics
/// When curl got no HTTP answer at all (refused, reset, TLS, a stream reset): with
/// curl's exit code and its error text, so such a failure says what happened.
fn status_with(token: &str, method: &str, url: &str, body: Option<&str>) -> u16 {
    let mut c = Command::new("curl");
    c.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", method])
        .args(["-H", &format!("x-agentbox-token: {token}")])
        .args(["-H", "content-type: application/json"]);
    if let Some(b) = body {
        c.args(["--data-binary", b]);
    }
    let out = c.arg(url).timed_output().expect("curl");
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_ne!(
        status,
        0,
        "curl {method} {url} got no HTTP answer ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    status
}

/// A second `AGENTBOX_HOME`: the teammate's machine.
struct Mate {
    dir: tempfile::TempDir,
}

impl Mate {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin_path("agentbox"))
            .args(args)
            .current_dir(self.dir.path())
            .env("AGENTBOX_HOME", self.home())
            .stdin(Stdio::null())
            .timed_output()
            .expect("agentbox")
    }
}

impl Drop for Mate {
    fn drop(&mut self) {
        let _ = self.run(&["bridge", "stop"]);
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The session `demo`: an interactive shell that says it is ready.
fn start_demo(host: &Host, repo: &Path, name: &str) {
    host.ok(
        repo,
        &[
            "exec",
            name,
            "--",
            "agentbox-ctl",
            "session",
            "start",
            "demo",
            "--",
            "sh",
            "-c",
            "echo demo-$((20+1)); exec sh",
        ],
    );
}

#[test]
fn a_teammate_joins_a_docker_box_watches_read_only_and_is_cut_by_revoke() {
    let host = Host::new();
    let repo = host.project("proj");
    let remote = host.dir.path().join("remote.git");
    git(host.dir.path(), &["init", "-q", "--bare", "remote.git"]);
    git(
        &repo,
        &["remote", "add", "origin", remote.to_str().expect("utf-8")],
    );
    host.prepare(&repo);
    let name = format!("sh{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    start_demo(&host, &repo, &name);

    // The owner shares it read-only; the invite is one string, without the bridge token.
    let invite = host.ok(&repo, &["share", &name]).trim().to_string();
    let parsed = Invite::decode(&invite).expect("an invite");
    let container = host.container_of(&name);
    let bridge_token =
        docker_common::docker(&["exec", &container, "cat", "/run/agentbox/bridge.token"]);
    let bridge_token = String::from_utf8_lossy(&bridge_token.stdout)
        .trim()
        .to_string();
    assert_eq!(bridge_token.len(), 64, "the box's bridge token");
    let decoded = serde_json::to_string(&parsed).expect("json");
    assert!(!decoded.contains(&bridge_token) && !invite.contains(&bridge_token));
    assert!(parsed.token.expose().starts_with("abxs_"));
    let relay = parsed.relay.url().to_string();

    let mate = Mate::new();
    let joined = mate.run(&["join", &invite, "--name", "theirs"]);
    assert!(joined.status.success(), "{}", stderr(&joined));
    let listed = String::from_utf8_lossy(&mate.run(&["list"]).stdout).into_owned();
    assert!(
        listed
            .lines()
            .any(|l| l.contains("theirs") && l.contains("joined")),
        "{listed}"
    );

    // Both attached to one tmux session: the owner's typing shows on the teammate's
    // screen, live.
    let mut owner = Viewer::start(&host.home(), &repo, &name, &[]);
    let mut teammate = Viewer::start(&mate.home(), mate.dir.path(), "theirs", &[]);
    assert!(
        owner.screen.wait_for("demo-21", Duration::from_secs(30)),
        "owner: {}",
        owner.errors.text()
    );
    assert!(
        teammate.screen.wait_for("demo-21", Duration::from_secs(30)),
        "teammate: {}",
        teammate.errors.text()
    );
    owner.type_keys(b"echo owner-$((40+2))\r");
    assert!(owner.screen.wait_for("owner-42", Duration::from_secs(20)));
    assert!(
        teammate
            .screen
            .wait_for("owner-42", Duration::from_secs(20)),
        "the owner's typing never reached the teammate: {}",
        teammate.errors.text()
    );

    // The read-only teammate's keys are refused with a sentence and never reach the
    // session: the owner's next line comes out, the teammate's never did.
    teammate.type_keys(b"echo mate-$((50+5))\r");
    assert!(
        teammate
            .errors
            .wait_for("shared with you read-only", Duration::from_secs(10)),
        "{}",
        teammate.errors.text()
    );
    owner.type_keys(b"echo after-$((1+1))\r");
    assert!(owner.screen.wait_for("after-2", Duration::from_secs(20)));
    assert!(
        !owner.screen.text().contains("mate-$((50+5))"),
        "the teammate typed into the session"
    );
    assert!(!owner.screen.text().contains("mate-55"));

    // Even with the token in hand, the relay takes no input from a read-only share.
    let token = parsed.token.expose();
    let terms: serde_json::Value = serde_json::from_slice(
        &Command::new("curl")
            .args(["-sf", "-H", &format!("x-agentbox-token: {token}")])
            .arg(format!("{relay}/v1/terms"))
            .timed_output()
            .expect("curl")
            .stdout,
    )
    .expect("the teammate's terms");
    let term = terms[0]["id"]
        .as_str()
        .expect("the teammate's term")
        .to_string();
    assert_eq!(
        terms.as_array().map(Vec::len),
        Some(1),
        "a share sees only its own terms"
    );
    assert_eq!(
        status_with(
            token,
            "POST",
            &format!("{relay}/v1/terms/{term}/input?offset=0"),
            Some("x")
        ),
        403
    );

    // A joined box is not the teammate's to push, copy, exec in, stop or start.
    for args in [
        vec!["exec", "theirs", "--", "true"],
        vec!["cp", "theirs:a.txt", "."],
        vec!["stop", "theirs"],
        vec!["start", "theirs"],
        vec!["git", "theirs", "push"],
        vec!["share", "theirs"],
    ] {
        let out = mate.run(&args);
        assert!(!out.status.success(), "{args:?} worked on a joined box");
        let said = stderr(&out);
        assert!(
            said.contains("teammate's box you joined"),
            "{args:?}: {said}"
        );
    }
    // What the share allows works: the web address and the logs.
    let url = mate.run(&["url", "theirs"]);
    assert!(url.status.success(), "{}", stderr(&url));
    assert!(String::from_utf8_lossy(&url.stdout).starts_with("http://127.0.0.1:"));
    let logs = mate.run(&["logs", "theirs"]);
    assert!(logs.status.success(), "{}", stderr(&logs));

    // Revoking cuts the attached teammate within seconds; the owner stays.
    let list = host.ok(&repo, &["share", "--list", &name, "--json"]);
    assert!(list.contains(parsed.share_id.as_str()), "{list}");
    let cut_from = Instant::now();
    host.ok(
        &repo,
        &["share", "--revoke", parsed.share_id.as_str(), &name],
    );
    let out = finish_within(
        teammate.child,
        "the teammate's attach",
        Duration::from_secs(10),
    )
    .expect("the revoked teammate's attach ended within seconds");
    assert!(cut_from.elapsed() < Duration::from_secs(10));
    assert!(!out.status.success());
    assert!(
        teammate.errors.wait_for("revoked", Duration::from_secs(5)),
        "{}",
        teammate.errors.text()
    );
    assert_eq!(
        status_with(token, "GET", &format!("{relay}/v1/terms"), None),
        401
    );
    owner.type_keys(b"echo still-$((3+4))\r");
    assert!(owner.screen.wait_for("still-7", Duration::from_secs(20)));
    assert!(owner.detach().contains("detached from session `demo`"));

    // A share token, even one that may type, opens none of the owner's routes.
    let writer = host.ok(&repo, &["share", &name, "--write", "--json"]);
    let writer: serde_json::Value = serde_json::from_str(&writer).expect("json");
    let writer = Invite::decode(writer["invite"].as_str().expect("invite")).expect("invite");
    let wt = writer.token.expose();
    assert_eq!(
        status_with(wt, "GET", &format!("{relay}/v1/terms"), None),
        200
    );
    assert_eq!(
        status_with(
            wt,
            "POST",
            &format!("{relay}/v1/logs"),
            Some(r#"{"tail":1}"#)
        ),
        200
    );
    // A share holds at most 4 terminals at once: a teammate cannot take all of the box's.
    let open = r#"{"session":"demo","size":{"cols":80,"rows":24}}"#;
    for _ in 0..4 {
        assert_eq!(
            status_with(wt, "POST", &format!("{relay}/v1/terms"), Some(open)),
            201
        );
    }
    assert_eq!(
        status_with(wt, "POST", &format!("{relay}/v1/terms"), Some(open)),
        429
    );
    for (method, path, body) in [
        ("GET", "/v1/bridge/poll", None),
        ("POST", "/v1/bridge/result", Some("{}")),
        ("POST", "/v1/exec", Some(r#"{"argv":["id"]}"#)),
        ("POST", "/v1/tunnel", Some(r#"{"port":8080}"#)),
        ("POST", "/v1/downloads", Some(r#"{"paths":["a.txt"]}"#)),
        ("PUT", "/v1/uploads/u1", Some("x")),
        ("POST", "/v1/seed/u1", Some("{}")),
        ("POST", "/v1/sync/u1", Some("{}")),
        ("POST", "/v1/workspace/listing", Some("{}")),
        ("GET", "/v1/shares", None),
        (
            "POST",
            "/v1/shares",
            Some(r#"{"scopes":["attach:write"],"ttl_ms":60000}"#),
        ),
        ("DELETE", &format!("/v1/shares/{}", writer.share_id), None),
    ] {
        assert_eq!(
            status_with(wt, method, &format!("{relay}{path}"), body),
            403,
            "{method} {path} took a share token"
        );
    }

    // An expired token is refused, by `join` and by the relay.
    let short = host.ok(&repo, &["share", &name, "--ttl", "1s"]);
    let short_invite = Invite::decode(&short).expect("invite");
    let until = short_invite.expires_at_ms;
    while agentbox_protocol::now_millis() <= until + 50 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let late = mate.run(&["join", short.trim(), "--name", "late"]);
    assert!(!late.status.success());
    assert!(stderr(&late).contains("expired"), "{}", stderr(&late));
    assert_eq!(
        status_with(
            short_invite.token.expose(),
            "GET",
            &format!("{relay}/v1/terms"),
            None
        ),
        401
    );

    // The box's own `git push` is never served by the joiner's host: with the owner's
    // bridge down and the teammate's running, the push waits unanswered (the box says no
    // host polls it) and nothing reaches the owner's remote.
    let rejoined = mate.run(&["join", writer.encode().as_str(), "--name", "again"]);
    assert!(rejoined.status.success(), "{}", stderr(&rejoined));
    host.ok(&repo, &["bridge", "stop"]);
    let started = mate.run(&["bridge", "start"]);
    assert!(started.status.success(), "{}", stderr(&started));
    let mut push = Command::new("docker")
        .args(["exec", "-u", "agent", "-w", "/workspace", &container, "sh", "-c"])
        .arg("git -c user.email=b@b -c user.name=b commit -q --allow-empty -m from-the-box && git push 2>&1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git push in the box");
    let said = Screen::follow(push.stdout.take().expect("stdout"));
    assert!(
        said.wait_for("host bridge is not running", Duration::from_secs(60)),
        "the push was answered: {}",
        said.text()
    );
    let _ = push.kill();
    let _ = push.wait();
    let branches = git(&remote, &["branch", "--list"]);
    assert!(
        branches.trim().is_empty(),
        "the box's push reached the remote: {branches}"
    );

    // An invite written to a file (0600: it holds the token) joins from the file.
    let file = host.dir.path().join("invite.txt");
    host.ok(
        &repo,
        &["share", &name, "--output", file.to_str().expect("utf-8")],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("the invite file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let from_file = mate.run(&["join", &format!("@{}", file.display()), "--name", "filed"]);
    assert!(from_file.status.success(), "{}", stderr(&from_file));

    // `destroy` of a joined box forgets it here; the box goes on.
    let gone = mate.run(&["destroy", "again", "-y"]);
    assert!(gone.status.success(), "{}", stderr(&gone));
    assert!(!String::from_utf8_lossy(&mate.run(&["list"]).stdout).contains("again"));
    assert_eq!(host.containers_of(&name).len(), 1);
}

#[test]
fn a_teammate_joins_a_daytona_box_without_its_credentials() {
    use agentbox_tests::daytona_host::{git_repo, DaytonaHost};
    let base = agentbox_tests::docker_base_image();
    let host = DaytonaHost::start(
        "dtn_share0123456789abcdef",
        &[("DAYTONA_FAKE_TRANSITION_MS", "100")],
    );
    let repo = git_repo(&host.dir.path().join("proj"), "shared\n");
    host.login(&repo);
    host.ok(
        &repo,
        &[
            "prepare",
            "--provider",
            "daytona",
            "--base-image",
            &base,
            "--agents",
            "none",
        ],
    );
    let name = format!("dsh{}", std::process::id());
    host.ok(&repo, &["daytona", "create", "--name", &name]);
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
            "echo demo-$((20+1)); exec sh",
        ],
    );

    // The invite carries a signed preview link and the share token: no API key, no
    // preview token of the sandbox, no bridge token.
    let invite = host.ok(&repo, &["share", &name]).trim().to_string();
    let parsed = Invite::decode(&invite).expect("an invite");
    let json = serde_json::to_string(&parsed).expect("json");
    assert!(
        !json.contains(&host.key),
        "the Daytona key is in the invite"
    );
    assert!(
        matches!(&parsed.relay, agentbox_protocol::share::RelayAddress::Daytona { preview_token: None, url, .. } if url.contains("/8788-")),
        "{json}"
    );

    // The teammate has no Daytona sign-in at all.
    let mate = Mate::new();
    let joined = mate.run(&["join", &invite]);
    assert!(joined.status.success(), "{}", stderr(&joined));
    let env = [("DAYTONA_API_KEY", ""), ("DAYTONA_API_URL", "")];
    let mut owner = Viewer::start(
        &host.home(),
        &repo,
        &name,
        &[("HOME", host.user().to_str().expect("utf-8"))],
    );
    let mut teammate = Viewer::start(&mate.home(), mate.dir.path(), &name, &env);
    assert!(
        owner.screen.wait_for("demo-21", Duration::from_secs(30)),
        "owner: {}",
        owner.errors.text()
    );
    assert!(
        teammate.screen.wait_for("demo-21", Duration::from_secs(30)),
        "teammate: {}",
        teammate.errors.text()
    );
    owner.type_keys(b"echo owner-$((40+2))\r");
    assert!(
        teammate
            .screen
            .wait_for("owner-42", Duration::from_secs(30)),
        "the owner's typing never reached the teammate: {}",
        teammate.errors.text()
    );
    teammate.type_keys(b"echo mate-$((50+5))\r");
    assert!(teammate
        .errors
        .wait_for("shared with you read-only", Duration::from_secs(10)));
    let logs = mate.run(&["logs", &name]);
    assert!(logs.status.success(), "{}", stderr(&logs));
    let token = parsed.token.expose();
    let relay = parsed.relay.url();
    assert_eq!(
        status_with(token, "GET", &format!("{relay}/v1/bridge/poll"), None),
        403
    );
    assert_eq!(
        status_with(
            token,
            "POST",
            &format!("{relay}/v1/exec"),
            Some(r#"{"argv":["id"]}"#)
        ),
        403
    );

    // Revoked: the teammate's view (through the preview proxy) ends within
    // seconds.
    let cut_from = Instant::now();
    host.ok(
        &repo,
        &["share", "--revoke", parsed.share_id.as_str(), &name],
    );
    let out = finish_within(
        teammate.child,
        "the teammate's attach",
        Duration::from_secs(15),
    )
    .expect("the revoked teammate's attach ended within seconds");
    assert!(cut_from.elapsed() < Duration::from_secs(15));
    assert!(!out.status.success());
    assert!(
        teammate.errors.wait_for("revoked", Duration::from_secs(5)),
        "{}",
        teammate.errors.text()
    );
    owner.type_keys(b"echo after-$((1+1))\r");
    assert!(owner.screen.wait_for("after-2", Duration::from_secs(30)));
    assert!(
        !owner.screen.text().contains("mate-55"),
        "the teammate typed into the session"
    );
    owner.detach();
    host.ok(&repo, &["destroy", &name, "-y", "--force"]);
}

/// A teammate's share token refused at an owner route reaches the teammate as that
/// refusal through the Daytona fake's preview proxy, over HTTP/2 as curl and browsers
/// speak it: headers first, the body in a frame of its own. The relay refuses by the token
/// alone, and used to answer (and close) before the body had come: the fake hands the head
/// on alone, as Daytona's proxy may, so the stream was ended under the client (curl 7.88:
/// exit 92 and no status, once in four runs of the test above) or a pooled connection the
/// relay had closed gave a `502`. The relay now reads a refused request's small body first.
/// No Docker: a relay process behind a sandbox that is only a record of the fake.
#[test]
fn a_share_token_refused_before_its_body_comes_gets_the_refusal_through_the_preview() {
    use agentbox::daytona::{CreateSandbox, Daytona};
    use agentbox_tests::fake_tls::DaytonaFake;
    use futures_util::StreamExt;
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["run", "state", "ws"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    let fake = DaytonaFake::start(
        &["--port", "0", "--api-key", "test-key"],
        &[("DAYTONA_FAKE_TRANSITION_MS", "20")],
    );
    let (mut relay, relay_port) = agentbox_tests::spawn_relay(dir.path(), &[]);
    let token = format!(
        "{}{}",
        agentbox_protocol::share::TOKEN_PREFIX,
        "0".repeat(64)
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // One POST to /v1/exec whose body comes `delay` after its headers: the status, the
    // protocol, the answer (or the error) and whether it came before the body had gone.
    let post = |http: reqwest::Client, url: String, delay: Duration| {
        let token = token.clone();
        async move {
            let sent = Arc::new(Mutex::new(None));
            let sent_at = sent.clone();
            let body = futures_util::stream::once(async move {
                tokio::time::sleep(delay).await;
                *sent_at.lock().expect("lock") = Some(Instant::now());
                Ok::<_, std::io::Error>(br#"{"argv":["id"]}"#.to_vec())
            });
            let answer = http
                .post(&url)
                .header("x-agentbox-token", &token)
                .header("content-type", "application/json")
                .header("content-length", 15)
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await;
            let early = sent.lock().expect("lock").is_none();
            match answer {
                Ok(r) => {
                    let (status, version) = (r.status().as_u16(), r.version());
                    let text = r
                        .text()
                        .await
                        .unwrap_or_else(|e| format!("body cut: {e:?}"));
                    (status, version, text, early)
                }
                Err(e) => (0, reqwest::Version::HTTP_09, format!("{e:?}"), early),
            }
        }
    };
    let (slow, burst) = rt.block_on(async {
        let d = Daytona::new(&fake.api(), "test-key", None);
        let sandbox = d
            .create_sandbox(CreateSandbox::default())
            .await
            .expect("create");
        d.wait_for_state(&sandbox.id, "started", Duration::from_secs(10))
            .await
            .expect("started");
        let http = agentbox_tests::fake_tls::http_client();
        let target = format!("127.0.0.1:{relay_port}");
        http.post(format!("{}/_fake/upstream", fake.root))
            .json(&serde_json::json!({"sandbox": sandbox.id, "port": 8788, "target": target}))
            .send()
            .await
            .expect("upstream");
        let link = d
            .signed_preview_link(&sandbox.id, 8788, Duration::from_secs(600))
            .await
            .expect("signed link");
        let url = format!("{}/v1/exec", link.url);
        // A body that comes 300 ms late is waited for: the answer is to the whole request.
        let slow = post(http.clone(), url.clone(), Duration::from_millis(300)).await;
        // Bodies a moment after their headers (0–1 ms), some of them while the relay
        // answers: every one gets the whole refusal.
        let tries = (0..300u64).map(|i| {
            post(
                http.clone(),
                url.clone(),
                Duration::from_micros(i * 3 % 1000),
            )
        });
        let burst: Vec<_> = futures_util::stream::iter(tries)
            .buffer_unordered(16)
            .collect()
            .await;
        (slow, burst)
    });
    let _ = relay.kill();
    let _ = relay.wait();
    let refused = |(status, version, text, _): &(u16, reqwest::Version, String, bool)| {
        *status == 403
            && *version == reqwest::Version::HTTP_2
            && text.contains("a share token opens only terminal viewing and logs")
    };
    assert!(refused(&slow), "{slow:?}");
    assert!(
        !slow.3,
        "the answer came before the body had gone: {slow:?}"
    );
    let bad: Vec<_> = burst.iter().filter(|o| !refused(o)).collect();
    assert!(
        bad.is_empty(),
        "{} of {} refusals did not reach the client whole, e.g. {:?}",
        bad.len(),
        burst.len(),
        &bad[..bad.len().min(3)]
    );
}
