//! `agentbox exec` on a Daytona box runs through the box's relay, not Daytona's toolbox:
//! the fake's toolbox ends a command after 3 s (`DAYTONA_FAKE_TOOLBOX_TIMEOUT_MS`, as
//! Daytona's daemon does at its `timeout`) and merges its output, while through the relay a
//! longer command finishes, stdout and stderr stay apart, exit codes are kept, output
//! arrives while the command runs, stdin reaches it, and a killed `agentbox exec` ends the
//! command in the box. `create`'s wait-ready and `destroy`'s check go the same way.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use agentbox_tests::fake_tls::DaytonaFake;
use agentbox_tests::run::{limit_for, TimedOutput};
use agentbox_tests::{bin_path, succeeded};

const KEY: &str = "dtn_exec0123456789abcdef";

struct Host {
    dir: tempfile::TempDir,
    fake: DaytonaFake,
    api: String,
    /// The containers of the fake's sandboxes this test made.
    containers: std::cell::RefCell<Vec<String>>,
}

impl Host {
    fn command(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin_path("agentbox"));
        c.args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", self.dir.path().join("home"))
            .env("HOME", self.dir.path().join("user"))
            .env_remove("DAYTONA_API_KEY")
            .env_remove("DAYTONA_API_URL")
            .env_remove("DAYTONA_ORGANIZATION_ID");
        c
    }

    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.command(cwd, args)
            .stdin(Stdio::null())
            .output_within(limit_for(args))
            .expect("run agentbox")
    }

    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        succeeded(args, &self.run(cwd, args))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self
            .command(self.dir.path(), &["bridge", "stop"])
            .timed_output();
        let _ = self.fake.child.kill();
        let _ = self.fake.child.wait();
        for c in self.containers.borrow().iter() {
            let _ = Command::new("docker").args(["rm", "-f", c]).timed_output();
        }
    }
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .status()
        .expect("git")
        .success();
    assert!(ok, "git {args:?}");
}

fn repo(host: &Host) -> PathBuf {
    let repo = host.dir.path().join("proj");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "t@example.com"]);
    git(&repo, &["config", "user.name", "T"]);
    std::fs::write(repo.join("README"), "seeded\n").expect("write");
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "first"]);
    repo
}

/// Lines of a running `agentbox exec`'s stdout with the time each arrived.
fn timed_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<(Instant, String)> {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn exec_on_daytona_goes_through_the_relay() {
    let base = agentbox_tests::docker_base_image();
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let fake = DaytonaFake::start(
        &["--port", "0", "--api-key", KEY],
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "100"),
            ("DAYTONA_FAKE_DATA", &data_dir),
            ("DAYTONA_FAKE_TOOLBOX_TIMEOUT_MS", "3000"),
        ],
    );
    let api = fake.api();
    let host = Host {
        dir: tempfile::tempdir().expect("tempdir"),
        fake,
        api,
        containers: std::cell::RefCell::default(),
    };
    let repo = repo(&host);
    let mut login = host
        .command(&repo, &["daytona", "login", "--api-url", &host.api])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("login");
    login
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{KEY}\n").as_bytes())
        .expect("key");
    let out =
        agentbox_tests::run::finish_within(login, "login", agentbox_tests::run::COMMAND_LIMIT)
            .expect("login");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    let name = format!("daytona-exec-{}", std::process::id());
    // create's `agentbox-ctl reload` and `wait-ready` go through the relay too.
    host.ok(&repo, &["create", "--provider", "daytona", "--name", &name]);

    // The fake's toolbox is capped as Daytona's is: a 5 s command there fails.
    let client = agentbox::daytona::Daytona::new(&host.api, KEY, None);
    let toolbox = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let listed = client
                .list_sandboxes(&std::collections::BTreeMap::from([(
                    "agentbox.box".to_string(),
                    name.clone(),
                )]))
                .await
                .expect("list");
            let sandbox = listed.into_iter().next().expect("our sandbox");
            host.containers
                .borrow_mut()
                .push(format!("daytona-fake-{}", sandbox.id));
            client
                .execute(&sandbox, "sleep 5; echo late", Some("/workspace"))
                .await
        });
    let refused = toolbox.expect_err("the toolbox ran past its cap");
    assert!(format!("{refused:#}").contains("timeout"), "{refused:#}");

    // Through the relay a longer command finishes.
    let began = Instant::now();
    assert_eq!(
        host.ok(
            &repo,
            &["exec", &name, "--", "sh", "-c", "sleep 5; echo done"]
        ),
        "done\n"
    );
    assert!(began.elapsed() >= Duration::from_secs(5));

    // stdout and stderr apart, the exit code kept, a missing program is 127.
    let out = host.run(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    let out = host.run(&repo, &["exec", &name, "--", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such program"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // stdin reaches the command.
    let mut cat = host
        .command(&repo, &["exec", &name, "--", "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("exec");
    cat.stdin
        .take()
        .expect("stdin")
        .write_all(b"through the relay\n")
        .expect("write");
    let out = agentbox_tests::run::finish_within(cat, "wait", agentbox_tests::run::COMMAND_LIMIT)
        .expect("wait");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "THROUGH THE RELAY\n");

    // Output streams: the first line is on the host while the command still runs.
    let mut slow = host
        .command(
            &repo,
            &[
                "exec",
                &name,
                "--",
                "sh",
                "-c",
                "echo first; sleep 4; echo second",
            ],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("exec");
    let lines = timed_lines(&mut slow);
    let (first_at, first) = lines.recv_timeout(Duration::from_secs(30)).expect("first");
    let (second_at, second) = lines.recv_timeout(Duration::from_secs(30)).expect("second");
    assert!(
        agentbox_tests::run::finish_within(slow, "slow", agentbox_tests::run::COMMAND_LIMIT)
            .expect("wait")
            .status
            .success()
    );
    assert_eq!((first.as_str(), second.as_str()), ("first", "second"));
    assert!(
        second_at.duration_since(first_at) >= Duration::from_secs(3),
        "the first line came only {:?} before the second",
        second_at.duration_since(first_at)
    );

    // A killed `agentbox exec` ends its command in the box.
    let mut long = host
        .command(
            &repo,
            &["exec", &name, "--", "sh", "-c", "echo $$; exec sleep 300"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("exec");
    let lines = timed_lines(&mut long);
    let (_, pid) = lines.recv_timeout(Duration::from_secs(30)).expect("pid");
    let pid: u32 = pid.trim().parse().expect("a pid");
    let probe = format!("kill -0 {pid}");
    assert!(host
        .run(&repo, &["exec", &name, "--", "sh", "-c", &probe])
        .status
        .success());
    long.kill().expect("kill");
    let _ = long.wait();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alive = host
            .run(&repo, &["exec", &name, "--", "sh", "-c", &probe])
            .status
            .success();
        if !alive {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the command still runs in the box 20 s after `agentbox exec` was killed"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // destroy's check of unsaved work (agentbox-ctl unpushed) runs through the relay.
    host.ok(&repo, &["destroy", &name, "-y", "--force"]);
}
