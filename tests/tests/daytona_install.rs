//! `agentbox install -y --provider daytona` and `agentbox daytona resync -a AGENT` against
//! `daytona-fake` over HTTPS, in an isolated HOME and AGENTBOX_HOME: install signs in with
//! the key from stdin and bakes the base snapshot (pinned in the global config), a second
//! run keeps the accepted key and bakes nothing; resync, with no box at all, writes only
//! the named agent's credentials into the organization's volume through a short-lived
//! sandbox, which is gone afterwards, and a resync interrupted (SIGINT, SIGTERM) while
//! its sandbox exists deletes it before exiting. Login chooses among the organizations the
//! key reaches (`--organization ID|NAME`; one taken silently; none refused), an API key
//! bound to one organization reaching only that one, as Daytona's do; a user's login token
//! (a JWT) is checked and always sent with the organization chosen, which Daytona needs.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use agentbox_tests::bin_path;
use agentbox_tests::fake_tls::DaytonaFake;
use agentbox_tests::run::{finish_within, TimedOutput, BUILD_LIMIT};

const KEY: &str = "dtn_install0123456789abcdef";

struct Host {
    dir: tempfile::TempDir,
    fake: DaytonaFake,
    data: tempfile::TempDir,
}

impl Host {
    /// A fake over HTTPS with fast state changes, and an empty user, home and work dir.
    fn start() -> Self {
        Self::start_with(KEY)
    }

    /// [`Host::start`] with the fake taking `key` (a JWT-shaped one is a user's token).
    fn start_with(key: &str) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let data_dir = data.path().to_string_lossy().into_owned();
        let fake = DaytonaFake::start(
            &["--port", "0", "--api-key", key],
            &[
                ("DAYTONA_FAKE_TRANSITION_MS", "100"),
                ("DAYTONA_FAKE_DATA", &data_dir),
            ],
        );
        let host = Host {
            dir: tempfile::tempdir().expect("tempdir"),
            fake,
            data,
        };
        for d in ["home", "user", "work"] {
            std::fs::create_dir_all(host.path(d)).expect("mkdir");
        }
        host
    }

    /// `POST /_fake/PATH BODY` (a test control of the fake).
    fn control(&self, path: &str, body: &str) {
        let ok = Command::new("curl")
            .args(["-fsS", "-X", "POST", "-H", "content-type: application/json"])
            .args(["-d", body])
            .arg(format!("{}/_fake/{path}", self.fake.root))
            .timed_output()
            .expect("curl")
            .status
            .success();
        assert!(ok, "{path} {body}");
    }

    /// `agentbox daytona login --api-url API EXTRA…` with `key` on stdin (no terminal).
    fn login(&self, key: &str, extra: &[&str]) -> (bool, String) {
        let api = self.fake.api();
        let args = [&["daytona", "login", "--api-url", &api][..], extra].concat();
        let out = self.run_with_input(&args, &format!("{key}\n"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// What `secrets.env` holds (empty when there is none).
    fn secrets(&self) -> String {
        std::fs::read_to_string(self.path("home/secrets.env")).unwrap_or_default()
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin_path("agentbox"));
        c.args(args)
            .current_dir(self.path("work"))
            .env("AGENTBOX_HOME", self.path("home"))
            .env("HOME", self.path("user"))
            .env_remove("DAYTONA_API_KEY")
            .env_remove("DAYTONA_API_URL")
            .env_remove("DAYTONA_ORGANIZATION_ID");
        c
    }

    /// `agentbox ARGS` with `input` on stdin.
    fn run_with_input(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agentbox");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("stdin");
        finish_within(child, &format!("agentbox {args:?}"), BUILD_LIMIT).expect("agentbox")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output_within(BUILD_LIMIT)
            .expect("agentbox")
    }

    fn global(&self, key: &str) -> String {
        let args = ["config", "get", key];
        agentbox_tests::succeeded(&args, &self.run(&args))
            .trim()
            .to_string()
    }

    fn get(&self, path: &str) -> serde_json::Value {
        let out = Command::new("curl")
            .args(["-fsS", "-H", &format!("Authorization: Bearer {KEY}")])
            .arg(format!("{}{path}", self.fake.api()))
            .timed_output()
            .expect("curl");
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    /// Sandboxes the fake has that are not deleted.
    fn live_sandboxes(&self) -> Vec<serde_json::Value> {
        self.get("/sandbox")["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s["state"] != "destroyed")
            .collect()
    }

    /// Where the fake keeps the files of the credentials volume.
    fn volume_dir(&self) -> PathBuf {
        let volumes = self.get("/volumes");
        let id = volumes
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == "agentbox-credentials")
            .and_then(|v| v["id"].as_str())
            .unwrap_or_else(|| panic!("no credentials volume: {volumes}"))
            .to_string();
        self.data.path().join("volumes").join(id)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // What this fake made: its ids carry its pid (containers, snapshot images).
        let mark = format!("-{:x}-", self.fake.child.id());
        let _ = self.fake.child.kill();
        let _ = self.fake.child.wait();
        for (list, remove) in [
            (vec!["ps", "-a", "--format", "{{.Names}}"], vec!["rm", "-f"]),
            (
                vec![
                    "images",
                    "daytona-fake-build",
                    "--format",
                    "{{.Repository}}:{{.Tag}}",
                ],
                vec!["rmi", "-f"],
            ),
        ] {
            let Ok(out) = Command::new("docker").args(&list).timed_output() else {
                continue;
            };
            let compact = mark.replace('-', "");
            for name in String::from_utf8_lossy(&out.stdout).lines() {
                if name.contains(&mark) || (list[0] == "images" && name.contains(&compact)) {
                    let _ = Command::new("docker")
                        .args(&remove)
                        .arg(name)
                        .timed_output();
                }
            }
        }
    }
}

#[test]
fn install_y_signs_in_to_daytona_and_bakes_then_resync_needs_no_box() {
    let base = agentbox_tests::docker_base_image();
    let host = Host::start();
    let api = host.fake.api();
    let install = [
        "install",
        "-y",
        "--provider",
        "daytona",
        "--api-key",
        "-",
        "--api-url",
        &api,
        "--base-image",
        &base,
        "--agents",
        "none",
    ];

    // A wrong key is refused and nothing is saved.
    let out = host.run_with_input(&install, "dtn_wrong\n");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("nothing was saved"), "{said}");
    assert!(!host.path("home/secrets.env").exists());

    let out = host.run_with_input(&install, &format!("{KEY}\n"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("logged in to Daytona"), "{said}");
    assert!(
        said.contains("==> ready: new boxes run on daytona"),
        "{said}"
    );
    assert_eq!(host.global("box.provider"), "daytona");
    let snapshot = host.global("box.imageDaytona");
    assert!(snapshot.starts_with("agentbox-base-"), "{snapshot}");
    let baked = host.get(&format!("/snapshots/{snapshot}"));
    assert_eq!(baked["state"], "active");
    // The snapshot carries the box binaries of Daytona's architecture (x86_64), static,
    // whatever this host is: read from the image the fake built for it.
    let image = format!(
        "daytona-fake-build:{}",
        baked["id"].as_str().expect("id").replace('-', "")
    );
    for bin in ["agentbox-ctl", "agentbox-relay"] {
        let read = Command::new("docker")
            .args(["run", "--rm", "--entrypoint", "head", &image, "-c", "16384"])
            .arg(format!("/usr/local/bin/{bin}"))
            .timed_output()
            .expect("docker run");
        assert!(read.status.success(), "{read:?}");
        let facts = agentbox::image::binaries::elf_facts(&read.stdout)
            .unwrap_or_else(|e| panic!("{bin} {e}"));
        assert_eq!(
            facts.machine,
            agentbox::image::BoxArch::X86_64.elf_machine(),
            "{bin}"
        );
        assert_eq!(facts.interpreter, None, "{bin} is dynamically linked");
    }

    // Again, without a key: the saved one is accepted and kept; nothing is baked again.
    let again = host.run(&[
        "install",
        "-y",
        "--provider",
        "daytona",
        "--base-image",
        &base,
        "--agents",
        "none",
    ]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{said}");
    assert!(said.contains("which Daytona accepts"), "{said}");
    assert!(said.contains("box.provider is daytona already"), "{said}");
    assert_eq!(host.global("box.imageDaytona"), snapshot);

    // `daytona login` says what to run next.
    let out = host.run_with_input(
        &["daytona", "login", "--api-url", &api],
        &format!("{KEY}\n"),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("next: `agentbox prepare --provider daytona`"),
        "{said}"
    );

    // Resync with no box anywhere: only Claude's credentials, through a short-lived
    // sandbox that is deleted afterwards.
    let user = host.path("user");
    std::fs::create_dir_all(user.join(".claude")).expect("mkdir");
    std::fs::create_dir_all(user.join(".codex")).expect("mkdir");
    let claude = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat-install","expiresAt":1}}"#;
    let codex = r#"{"OPENAI_API_KEY":"sk-install"}"#;
    std::fs::write(user.join(".claude/.credentials.json"), claude).expect("write");
    std::fs::write(user.join(".codex/auth.json"), codex).expect("write");
    let out = host.run(&["daytona", "resync", "-a", "claude"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("short-lived sandbox"), "{said}");
    assert!(said.contains("sent the credentials of: claude"), "{said}");
    let volume = host.volume_dir();
    assert_eq!(
        std::fs::read_to_string(volume.join("claude/.credentials.json")).expect("claude's"),
        claude
    );
    assert!(!volume.join("codex/auth.json").exists());
    assert_eq!(host.live_sandboxes(), Vec::<serde_json::Value>::new());

    // An upload that breaks off halfway leaves the credential as it was, never half of
    // the new one; the next resync lands it whole, 0600, and nothing partial is left.
    let renewed = r#"{"claudeAiOauth":{"accessToken":"sk-ant-oat-renewed","expiresAt":2}}"#;
    std::fs::write(user.join(".claude/.credentials.json"), renewed).expect("write");
    host.control("faults", r#"{"cutUploadsNext": 1}"#);
    let out = host.run(&["daytona", "resync", "-a", "claude"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("cannot write the claude credentials"),
        "{said}"
    );
    assert_eq!(
        std::fs::read_to_string(volume.join("claude/.credentials.json")).expect("claude's"),
        claude
    );
    assert_eq!(host.live_sandboxes(), Vec::<serde_json::Value>::new());
    let out = host.run(&["daytona", "resync", "-a", "claude"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    let landed = volume.join("claude/.credentials.json");
    assert_eq!(std::fs::read_to_string(&landed).expect("claude's"), renewed);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&landed)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let left: Vec<_> = std::fs::read_dir(volume.join("claude"))
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(left, [std::ffi::OsString::from(".credentials.json")]);

    // Then Codex's, and Claude's is left as it was.
    let out = host.run(&["daytona", "resync", "--agent", "codex"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("sent the credentials of: codex"), "{said}");
    assert_eq!(
        std::fs::read_to_string(volume.join("codex/auth.json")).expect("codex's"),
        codex
    );
    assert_eq!(host.live_sandboxes(), Vec::<serde_json::Value>::new());

    // An agent this machine has no credentials of is refused before anything is made.
    let out = host.run(&["daytona", "resync", "-a", "opencode"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("no credentials of opencode"), "{said}");
}

/// A key of the user's (the fake's `--api-key`, as a JWT reaches all of them) and an API key
/// bound to one organization; and a user with none.
const BOUND: &str = "dtn_bound_to_acme_0123456789";
const ORGS: &str = r#"{"organizations": [{"id": "org-p", "name": "Personal"},
    {"id": "org-acme", "name": "Acme"}], "keys": {"dtn_bound_to_acme_0123456789": "org-acme"}}"#;

#[test]
fn login_chooses_among_the_organizations_the_key_reaches() {
    let host = Host::start();
    host.control("organizations", ORGS);

    // Several, no terminal, no --organization: refused with the list, nothing saved.
    let (ok, said) = host.login(KEY, &[]);
    assert!(!ok, "{said}");
    assert!(said.contains("--organization"), "{said}");
    assert!(said.contains("Personal (org-p), Acme (org-acme)"), "{said}");
    assert!(said.contains("nothing was saved"), "{said}");
    assert_eq!(host.secrets(), "");

    // One that is none of them: refused with the list.
    let (ok, said) = host.login(KEY, &["--organization", "Globex"]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("`Globex` is none of the Daytona organizations"),
        "{said}"
    );
    assert!(said.contains("Personal (org-p), Acme (org-acme)"), "{said}");
    assert_eq!(host.secrets(), "");

    // By name (any case) or id: kept where the organization is kept.
    let (ok, said) = host.login(KEY, &["--organization", "acme"]);
    assert!(ok, "{said}");
    assert!(said.contains("(organization Acme (org-acme))"), "{said}");
    assert!(host.secrets().contains("DAYTONA_ORGANIZATION_ID=org-acme"));
    let status = host.run(&["daytona", "login", "--status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(v["organization_id"], "org-acme");
    assert_eq!(v["accepted"], true);

    // Again without --organization: the saved one is one of them, and kept.
    let (ok, said) = host.login(KEY, &[]);
    assert!(ok, "{said}");
    assert!(said.contains("(organization Acme (org-acme))"), "{said}");

    // An API key bound to Acme reaches only Acme, as Daytona's do: taken silently, and
    // another one it cannot act in is refused.
    let (ok, said) = host.login(BOUND, &["--organization", "org-p"]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("none of the Daytona organizations this key reaches: Acme (org-acme)"),
        "{said}"
    );
    let (ok, said) = host.login(BOUND, &[]);
    assert!(ok, "{said}");
    assert!(said.contains("(organization Acme (org-acme))"), "{said}");
    assert!(host.secrets().contains(&format!("DAYTONA_API_KEY={BOUND}")));

    // A user in no organization: a clear error.
    host.control("organizations", r#"{"organizations": []}"#);
    let (ok, said) = host.login(KEY, &[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("Daytona lists no organization this key can act in"),
        "{said}"
    );
}

/// A user's login token (a JWT), which Daytona takes in an organization only with
/// `X-Daytona-Organization-ID`.
const USER_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLWZha2UifQ.c2lnbmF0dXJl";

#[test]
fn a_users_token_signs_in_and_is_always_sent_with_its_organization() {
    let host = Host::start_with(USER_TOKEN);
    host.control("organizations", ORGS);
    // Login lists the organizations without one, then checks the token in the chosen one.
    let (ok, said) = host.login(USER_TOKEN, &["--organization", "acme"]);
    assert!(ok, "{said}");
    assert!(said.contains("(organization Acme (org-acme))"), "{said}");
    assert!(host.secrets().contains("DAYTONA_ORGANIZATION_ID=org-acme"));
    // What is saved is used with its organization: Daytona accepts it.
    let status = host.run(&["daytona", "login", "--status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        (&v["accepted"], &v["problem"]),
        (&serde_json::json!(true), &serde_json::json!(null)),
        "{v}"
    );
    // The token from the environment with no organization anywhere: refused before any
    // call, saying what to do.
    let out = host
        .command(&["daytona", "login", "--status", "--json"])
        .env("AGENTBOX_HOME", host.path("elsewhere"))
        .env("DAYTONA_API_KEY", USER_TOKEN)
        .env("DAYTONA_API_URL", host.fake.api())
        .output_within(BUILD_LIMIT)
        .expect("agentbox");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["accepted"], false, "{v}");
    let problem = v["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("user's login token") && problem.contains("DAYTONA_ORGANIZATION_ID"),
        "{v}"
    );
}

#[test]
fn the_fake_acts_in_the_organization_a_key_is_bound_to() {
    let host = Host::start();
    host.control("organizations", ORGS);
    let call = |key: &str, org: &str, path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .args(["-H", &format!("X-Daytona-Organization-ID: {org}")])
            .arg(format!("{}{path}", host.fake.api()))
            .timed_output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Every organization of the user is listed, whatever the key; only the bound one is
    // answered to a bound key, whose header is ignored.
    assert_eq!(call(BOUND, "org-p", "/organizations"), "200");
    assert_eq!(call(BOUND, "org-p", "/organizations/org-acme"), "200");
    assert_eq!(call(BOUND, "org-p", "/organizations/org-p"), "403");
    assert_eq!(call(BOUND, "org-nope", "/sandbox"), "200");
    assert_eq!(call(KEY, "org-p", "/organizations/org-p"), "200");
    assert_eq!(call(KEY, "org-nope", "/sandbox"), "403");
    // What a bound key makes is its organization's, whatever the header says.
    let made = Command::new("curl")
        .args(["-fsS", "-H", &format!("Authorization: Bearer {BOUND}")])
        .args(["-H", "X-Daytona-Organization-ID: org-p"])
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"name": "bound"}"#,
        ])
        .arg(format!("{}/sandbox", host.fake.api()))
        .timed_output()
        .expect("curl");
    let sandbox: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap_or_default();
    assert_eq!(sandbox["organizationId"], "org-acme", "{made:?}");
}

#[test]
fn resync_interrupted_deletes_its_short_lived_sandbox_before_exiting() {
    let host = Host::start();
    let (ok, said) = host.login(KEY, &[]);
    assert!(ok, "{said}");
    // A base snapshot that is only a record (its image is in no engine): the sandbox is
    // never run, and creates are held so that the signal comes while it exists.
    let made = Command::new("curl")
        .args(["-fsS", "-H", &format!("Authorization: Bearer {KEY}")])
        .args(["-H", "content-type: application/json"])
        .args([
            "-d",
            r#"{"name": "resync-base", "imageName": "agentbox-nowhere:1"}"#,
        ])
        .arg(format!("{}/snapshots", host.fake.api()))
        .timed_output()
        .expect("curl");
    assert!(made.status.success(), "{made:?}");
    let set = [
        "config",
        "set",
        "--global",
        "box.imageDaytona",
        "resync-base",
    ];
    agentbox_tests::succeeded(&set, &host.run(&set));
    let user = host.path("user");
    std::fs::create_dir_all(user.join(".claude")).expect("mkdir");
    std::fs::write(user.join(".claude/.credentials.json"), "{}").expect("write");
    host.control("faults", r#"{"slowCreateMs": 60000}"#);

    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let child = host
            .command(&["daytona", "resync", "-a", "claude"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("resync");
        // The create has reached the fake: its sandbox exists.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while host.live_sandboxes().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no sandbox was made");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let kill = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .timed_output()
            .expect("kill");
        assert!(kill.status.success(), "{kill:?}");
        let out = finish_within(child, "resync", BUILD_LIMIT).expect("resync");
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{said}");
        assert!(said.contains("deleting short-lived sandbox"), "{said}");
        assert!(said.contains("deleted short-lived sandbox"), "{said}");
        assert_eq!(
            host.live_sandboxes(),
            Vec::<serde_json::Value>::new(),
            "{said}"
        );
    }
}
