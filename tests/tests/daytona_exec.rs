//! `agentbox exec` on a Daytona box runs through the box's relay, not Daytona's toolbox:
//! the fake's toolbox ends a command after 3 s (`DAYTONA_FAKE_TOOLBOX_TIMEOUT_MS`, as
//! Daytona's daemon does at its `timeout`) and merges its output, while through the relay a
//! longer command finishes, stdout and stderr stay apart, exit codes are kept, output
//! arrives while the command runs, stdin reaches it, and a killed `agentbox exec` ends the
//! command in the box. `create`'s wait-ready and `destroy`'s check go the same way.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test` sets both up).

use std::io::{BufRead, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agentbox_tests::daytona_host::{git_repo, DaytonaHost};

const KEY: &str = "dtn_exec0123456789abcdef";

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
    let host = DaytonaHost::start(
        KEY,
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "100"),
            ("DAYTONA_FAKE_TOOLBOX_TIMEOUT_MS", "3000"),
        ],
    );
    let repo = git_repo(&host.dir.path().join("proj"), "seeded\n");
    host.login(&repo);
    host.prepare(&repo);
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
        .command(
            &repo,
            &["exec", "-i", &name, "--", "sh", "-c", "tr a-z A-Z"],
        )
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
