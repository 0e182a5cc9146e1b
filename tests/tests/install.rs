//! `agentbox install` end to end, in an isolated HOME and AGENTBOX_HOME: driven through a
//! pseudo-terminal it asks for the provider, stores `box.provider` and builds the docker
//! box image (pinned in the global config); run again with `-y` it changes nothing; the
//! doctor (`--check --json`) reports; without a terminal and without `-y` it refuses with
//! the flags to use instead. Through a pseudo-terminal too, it chooses daytona against
//! `daytona-fake` over HTTPS: the key typed without echo, an organization picked among
//! several, the bake accepted and its progress shown.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentbox_tests::bin_path;
use agentbox_tests::run::{TimedOutput, BUILD_LIMIT};
use portable_pty::{CommandBuilder, PtySize};

/// An isolated user: `user/` is HOME, `home/` is AGENTBOX_HOME, `work/` a directory that is
/// no repository.
struct User {
    dir: tempfile::TempDir,
}

impl User {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for d in ["user", "home", "work"] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        Self { dir }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin_path("agentbox"));
        c.args(args)
            .current_dir(self.path("work"))
            .env("HOME", self.path("user"))
            .env("AGENTBOX_HOME", self.path("home"))
            .env_remove("DAYTONA_API_KEY")
            .env_remove("DAYTONA_API_URL")
            .env_remove("DAYTONA_ORGANIZATION_ID");
        c
    }

    /// The global config's value of `key`.
    fn global(&self, key: &str) -> String {
        let out = self
            .command(&["config", "get", key])
            .timed_output()
            .expect("config get");
        agentbox_tests::succeeded(&["config", "get", key], &out)
            .trim()
            .to_string()
    }
}

/// `agentbox …` in a pseudo-terminal; everything it printed, kept as text.
struct Terminal {
    child: Box<dyn portable_pty::Child + Send + Sync>,
    writer: Box<dyn Write + Send>,
    seen: Arc<Mutex<Vec<u8>>>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl Terminal {
    fn start(user: &User, args: &[&str]) -> Self {
        let pty = portable_pty::native_pty_system()
            .openpty(PtySize {
                rows: 50,
                cols: 200,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("openpty");
        let mut command = CommandBuilder::new(bin_path("agentbox"));
        command.args(args);
        command.cwd(user.path("work"));
        command.env("HOME", user.path("user"));
        command.env("AGENTBOX_HOME", user.path("home"));
        command.env("TERM", "dumb");
        command.env_remove("DAYTONA_API_KEY");
        let child = pty.slave.spawn_command(command).expect("spawn agentbox");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("reader");
        let writer = pty.master.take_writer().expect("writer");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().expect("seen").extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            writer,
            seen,
            _master: pty.master,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().expect("seen")).into_owned()
    }

    /// Waits until the output shows `text` (the question being asked).
    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "install never showed {text:?}:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answer(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r").as_bytes())
            .expect("type");
        self.writer.flush().expect("flush");
    }

    /// Waits (up to `limit`) for it to exit; whether it succeeded.
    fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("install did not end within {limit:?}:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn image_exists(tag: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", tag])
        .timed_output()
        .expect("docker image inspect")
        .status
        .success()
}

#[test]
fn install_on_a_terminal_chooses_docker_and_prepares_then_again_with_y_changes_nothing() {
    let base = agentbox_tests::docker_base_image();
    let user = User::new();

    let mut term = Terminal::start(
        &user,
        &["install", "--base-image", &base, "--agents", "none"],
    );
    term.wait_for("Where should new boxes run?");
    term.wait_for("choose 1-3 [local]:");
    // An answer that is none of them is asked again.
    term.answer("kubernetes");
    term.wait_for("`kubernetes` is not one of them");
    term.answer("2");
    term.wait_for("Build the box image now");
    term.answer("y");
    assert!(term.wait_exit(BUILD_LIMIT), "{}", term.text());
    let said = term.text();
    assert!(
        said.contains("==> agentbox prepare --provider docker"),
        "{said}"
    );
    assert!(said.contains("box.provider = docker"), "{said}");
    assert!(
        said.contains("==> ready: new boxes run on docker"),
        "{said}"
    );

    // What it stored: the provider and the image, in the global config (install sets the
    // machine up, whatever directory it runs in).
    assert_eq!(user.global("box.provider"), "docker");
    let image = user.global("box.image");
    assert!(image_exists(&image), "{image} was not built");
    let global = std::fs::read_to_string(user.path("home/config.yaml")).expect("config.yaml");
    assert!(global.contains(&image), "{global}");

    // Again, without a terminal, answers from flags: nothing changes.
    let args = [
        "install",
        "-y",
        "--provider",
        "docker",
        "--base-image",
        &base,
        "--agents",
        "none",
    ];
    let again = user
        .command(&args)
        .output_within(BUILD_LIMIT)
        .expect("install -y");
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{said}");
    assert!(said.contains("box.provider is docker already"), "{said}");
    assert_eq!(user.global("box.image"), image);
    assert_eq!(
        std::fs::read_to_string(user.path("home/config.yaml")).expect("config.yaml"),
        global
    );
}

#[test]
fn install_check_reports_as_json_and_changes_nothing() {
    let user = User::new();
    let out = user
        .command(&["install", "--check", "--json"])
        .timed_output()
        .expect("install --check");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let names: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["tmux", "git", "docker", "daytona", "box-binaries"]);
    // This machine has tmux and git (the suite needs them): the local provider can run.
    assert!(out.status.success());
    let daytona = &report["checks"][3];
    assert_eq!(daytona["ok"], false);
    assert!(daytona["fix"]
        .as_str()
        .expect("fix")
        .contains("agentbox daytona login"));
    assert!(!user.path("home/config.yaml").exists());

    // Box binaries that are not there are said, with where to get them (a docker engine
    // answering was no promise that `prepare` could build an image).
    let empty = user.path("no-binaries");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = user
        .command(&["install", "--check", "--json"])
        .env("AGENTBOX_BOX_BINARIES", &empty)
        .timed_output()
        .expect("install --check");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let binaries = &report["checks"][4];
    assert_eq!(binaries["ok"], false, "{report}");
    assert!(
        binaries["fix"]
            .as_str()
            .is_some_and(|f| f.contains("scripts/box-binaries")),
        "{report}"
    );
    assert!(
        out.status.success(),
        "the local provider still runs without them"
    );
}

#[test]
fn install_without_a_terminal_or_y_refuses_and_names_the_flags() {
    let user = User::new();
    let out = user.command(&["install"]).timed_output().expect("install");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("agentbox install -y --provider"), "{said}");
    assert!(!user.path("home/config.yaml").exists());

    // -y for daytona without a key says where to put one, and saves nothing.
    let out = user
        .command(&["install", "-y", "--provider", "daytona", "--no-prepare"])
        .timed_output()
        .expect("install");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("--api-key"), "{said}");
    assert!(!user.path("home/secrets.env").exists());
}

#[test]
fn install_y_local_stores_the_provider_once() {
    let user = User::new();
    let run = || {
        user.command(&["install", "-y", "--provider", "local"])
            .timed_output()
            .expect("install")
    };
    let first = run();
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{said}");
    assert!(said.contains("box.provider = local"), "{said}");
    assert_eq!(user.global("box.provider"), "local");
    let second = run();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{said}");
    assert!(said.contains("box.provider is local already"), "{said}");
}

/// The fake's organizations for the terminal test (the fake's `--api-key` reaches both).
const TWO_ORGS: &str = r#"{"organizations": [{"id": "org-p", "name": "Personal"},
    {"id": "org-acme", "name": "Acme"}]}"#;

/// Removes what the fake made in Docker when the test ends, whatever happened.
struct FakeDocker(u32);

impl Drop for FakeDocker {
    fn drop(&mut self) {
        agentbox_tests::daytona_host::remove_fake_docker(self.0);
    }
}

#[test]
fn install_on_a_terminal_chooses_daytona_signs_in_picks_an_organization_and_bakes() {
    const KEY: &str = "dtn_terminal0123456789abcdef";
    let base = agentbox_tests::docker_base_image();
    let user = User::new();
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let fake = agentbox_tests::fake_tls::DaytonaFake::start(
        &["--port", "0", "--api-key", KEY],
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "100"),
            ("DAYTONA_FAKE_DATA", &data_dir),
        ],
    );
    let _cleanup = FakeDocker(fake.child.id());
    let api = fake.api();
    let control = Command::new("curl")
        .args(["-fsS", "-X", "POST", "-H", "content-type: application/json"])
        .args(["-d", TWO_ORGS])
        .arg(format!("{}/_fake/organizations", fake.root))
        .timed_output()
        .expect("curl");
    assert!(control.status.success(), "{control:?}");

    let mut term = Terminal::start(
        &user,
        &[
            "install",
            "--api-url",
            &api,
            "--base-image",
            &base,
            "--agents",
            "none",
        ],
    );
    term.wait_for("choose 1-3 [local]:");
    term.answer("daytona");
    term.wait_for("Daytona API key (from the dashboard");
    term.answer(KEY);
    term.wait_for("This key reaches several Daytona organizations");
    term.wait_for("2) Acme (org-acme)");
    term.wait_for("choose 1-2 [Personal]:");
    term.answer("2");
    term.wait_for("Bake the base snapshot now");
    term.answer("y");
    assert!(term.wait_exit(BUILD_LIMIT), "{}", term.text());
    let said = term.text();
    assert!(!said.contains(KEY), "the key was echoed:\n{said}");
    assert!(said.contains("(organization Acme (org-acme))"), "{said}");
    // The bake's progress, as it went.
    assert!(
        said.contains("==> agentbox prepare --provider daytona"),
        "{said}"
    );
    assert!(said.contains("==> baking snapshot"), "{said}");
    assert!(said.contains(": active"), "{said}");
    assert!(
        said.contains("==> ready: new boxes run on daytona"),
        "{said}"
    );

    assert_eq!(user.global("box.provider"), "daytona");
    let secrets = std::fs::read_to_string(user.path("home/secrets.env")).expect("secrets.env");
    assert!(
        secrets.contains("DAYTONA_ORGANIZATION_ID=org-acme"),
        "{secrets}"
    );
    // The snapshot was baked in the organization chosen.
    let snapshot = user.global("box.imageDaytona");
    let out = Command::new("curl")
        .args(["-fsS", "-H", &format!("Authorization: Bearer {KEY}")])
        .args(["-H", "X-Daytona-Organization-ID: org-acme"])
        .arg(format!("{api}/snapshots/{snapshot}"))
        .timed_output()
        .expect("curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["state"], "active", "{v}");
    assert_eq!(v["organizationId"], "org-acme", "{v}");
}

#[test]
fn install_y_docker_without_an_engine_says_so_and_stores_nothing() {
    let user = User::new();
    let out = user
        .command(&["install", "-y", "--provider", "docker", "--no-prepare"])
        .env(
            "DOCKER_HOST",
            format!("unix://{}", user.path("no-engine.sock").display()),
        )
        .timed_output()
        .expect("install");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("needs a running Docker engine"), "{said}");
    assert!(said.contains("`docker info` fails"), "{said}");
    assert!(!user.path("home/config.yaml").exists());
}
