//! `agentbox exec` as `docker exec` has it, on a local box: the command after the box or
//! after `--`, `-e`, `-w`, `-u`, `-i`, `-d`, exit codes 125/126/127, a stopped box named
//! with the way out; and `attach`/`shell` off a terminal refusing with a sentence.

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{eventually, finish_within, Host, TimedOutput, AGENTBOX};

/// How long an `agentbox exec` or `agentbox claude -d` of these tests may take.
const EXEC_LIMIT: Duration = Duration::from_secs(60);

fn code_and_stderr(out: &std::process::Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exec_takes_docker_exec_options_and_exit_codes() {
    let host = Host::new();
    let repo = host.repo("execs", "");
    let name = host.ok(&repo, &["create"]).trim().to_string();
    host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "mkdir sub; echo 'echo no' > not-exec.sh",
        ],
    );

    // The command right after the box, or after `--`.
    assert_eq!(host.ok(&repo, &["exec", &name, "echo", "-n", "hi"]), "hi");
    assert_eq!(
        host.ok(&repo, &["exec", &name, "--", "echo", "-n", "hi"]),
        "hi"
    );
    // A lone word that is no box: says to add `--`.
    let (code, err) = code_and_stderr(&host.run(&repo, &["exec", "ls"]));
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("`agentbox exec -- ls`"), "{err}");

    // -e (KEY=VALUE, and KEY from here), -w relative to the workspace.
    let out = Command::new(AGENTBOX)
        .args([
            "exec",
            "-e",
            "A=1",
            "-e",
            "EXEC_FROM_HOST",
            "-w",
            "sub",
            &name,
            "--",
            "sh",
            "-c",
            "echo $A $EXEC_FROM_HOST $(basename $PWD)",
        ])
        .current_dir(&repo)
        .env("AGENTBOX_HOME", host.home())
        .env("PATH", host.path())
        .env("EXEC_FROM_HOST", "carried")
        .output_within(EXEC_LIMIT)
        .expect("run agentbox exec");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 carried sub\n",
        "{out:?}"
    );
    let (code, err) = code_and_stderr(&host.run(&repo, &["exec", "-e", "1X=2", &name, "true"]));
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("`1X` is not a variable name"), "{err}");

    // -u: a local box runs as you.
    let me = String::from_utf8(
        Command::new("id")
            .arg("-un")
            .timed_output()
            .expect("id")
            .stdout,
    )
    .expect("utf8");
    assert_eq!(
        host.ok(&repo, &["exec", "-u", me.trim(), &name, "true"]),
        ""
    );
    let (code, err) =
        code_and_stderr(&host.run(&repo, &["exec", "-u", "nobody-else", &name, "true"]));
    assert_eq!(code, Some(125), "{err}");
    assert!(err.contains("can only name you"), "{err}");

    // Exit codes: the command's, 126, 127.
    assert_eq!(
        host.run(&repo, &["exec", &name, "--", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    let (code, err) =
        code_and_stderr(&host.run(&repo, &["exec", &name, "--", "no-such-program-x"]));
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("no such program"), "{err}");
    let (code, err) = code_and_stderr(&host.run(&repo, &["exec", &name, "--", "./not-exec.sh"]));
    assert_eq!(code, Some(126), "{err}");
    let (code, err) =
        code_and_stderr(&host.run(&repo, &["exec", "-w", "nope", &name, "--", "true"]));
    assert_eq!(code, Some(126), "{err}");
    assert!(err.contains("no directory"), "{err}");

    // Without -i the command reads nothing; with it, stdin.
    let piped = |args: &[&str]| {
        let mut child = Command::new(AGENTBOX)
            .args(args)
            .current_dir(&repo)
            .env("AGENTBOX_HOME", host.home())
            .env("PATH", host.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"typed\n")
            .expect("write");
        let out = finish_within(child, &format!("agentbox {args:?}"), EXEC_LIMIT)
            .expect("wait for agentbox exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(piped(&["exec", &name, "--", "cat"]), "");
    assert_eq!(piped(&["exec", "-i", &name, "--", "cat"]), "typed\n");

    // -d returns at once; the command goes on.
    let started = std::time::Instant::now();
    host.ok(
        &repo,
        &[
            "exec",
            "-d",
            &name,
            "--",
            "sh",
            "-c",
            "sleep 1; echo done > detached.txt",
        ],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert!(
        eventually(|| host
            .run(&repo, &["exec", &name, "--", "test", "-e", "detached.txt"])
            .status
            .success()),
        "the detached command did not run"
    );

    // A stopped box: the way out, 125.
    host.ok(&repo, &["stop", &name]);
    let (code, err) = code_and_stderr(&host.run(&repo, &["exec", &name, "--", "true"]));
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains(&format!(
            "box `{name}` is stopped: start it with `agentbox start {name}`"
        )),
        "{err}"
    );
}

#[test]
fn attach_and_shell_off_a_terminal_refuse_and_a_box_without_sessions_says_what_to_do() {
    let host = Host::new();
    let repo = host.repo("noterm", "");
    let name = host.ok(&repo, &["create"]).trim().to_string();
    for cmd in ["attach", "shell"] {
        host.fails(&repo, &[cmd, &name], "needs a terminal");
    }
    host.fails(
        &repo,
        &["attach", &name, "--no-tty"],
        &format!("open a shell in it with `agentbox shell {name}`"),
    );
}

#[test]
fn an_agent_without_credentials_is_warned_of_and_a_first_start_is_no_resume() {
    let host = Host::new();
    // A stand-in agent that waits (the local provider runs this machine's programs).
    host.program("claude", "#!/bin/sh\nexec sleep 300\n");
    let repo = host.repo("creds", "");
    let empty_home = host.dir.path().join("empty-home");
    std::fs::create_dir_all(&empty_home).expect("mkdir");
    let run = |args: &[&str], home: &std::path::Path| {
        Command::new(AGENTBOX)
            .args(args)
            .current_dir(&repo)
            .env("AGENTBOX_HOME", host.home())
            .env("PATH", host.path())
            .env("HOME", home)
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
            .output_within(EXEC_LIMIT)
            .expect("run agentbox")
    };
    let out = run(&["claude", "-d"], &empty_home);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: claude has no credentials on this machine"),
        "{err}"
    );

    // A box made without the agent: its first start is a start, not a resume.
    let name = host.ok(&repo, &["create"]).trim().to_string();
    let with_creds = host.dir.path().join("creds-home");
    std::fs::create_dir_all(with_creds.join(".claude")).expect("mkdir");
    std::fs::write(with_creds.join(".claude/.credentials.json"), "{}").expect("write");
    let out = run(&["claude", &name, "-d"], &with_creds);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("==> starting claude in box `{name}`")),
        "{err}"
    );
    assert!(!err.contains("resuming"), "{err}");
    assert!(!err.contains("no credentials"), "{err}");

    // An agent the box lacks: the box's refusal, without the daemon's jargon.
    std::fs::remove_file(host.bin().join("claude")).expect("rm");
    let other = host.ok(&repo, &["create"]).trim().to_string();
    let out = run(&["claude", &other, "-d"], &with_creds);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("`claude` is not installed in the box"),
        "{err}"
    );
    assert!(!err.contains("unexpected answer"), "{err}");
}
