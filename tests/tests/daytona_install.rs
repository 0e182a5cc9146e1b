//! `agentbox install -y --provider daytona` and `agentbox daytona resync -a AGENT` against
//! `daytona-fake` over HTTPS, in an isolated HOME and AGENTBOX_HOME: install signs in with
//! the key from stdin and bakes the base snapshot (pinned in the global config), a second
//! run keeps the accepted key and bakes nothing; resync, with no box at all, writes only
//! the named agent's credentials into the organization's volume through a short-lived
//! sandbox, which is gone afterwards.
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
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let fake = DaytonaFake::start(
        &["--port", "0", "--api-key", KEY],
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
    assert_eq!(
        host.get(&format!("/snapshots/{snapshot}"))["state"],
        "active"
    );

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
