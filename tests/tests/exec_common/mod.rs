//! What the `exec` suites of the docker and Daytona providers share: the checks of
//! `docker exec`'s options and exit codes against a running box, and an interactive
//! `exec -it … bash` driven through a real PTY.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use portable_pty::{CommandBuilder, PtySize};

/// Runs `agentbox ARGS` in the project (stdin: nothing) with the extra environment given.
pub type Run<'a> = &'a dyn Fn(&[&str], &[(&str, &str)]) -> Output;

/// The exit code and stderr of a run.
pub fn code_and_stderr(out: &Output) -> (Option<i32>, String) {
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks `exec`'s options and exit codes on the running box `name`; `run` runs
/// `agentbox ARGS` in the project (stdin: nothing) with the extra environment given.
pub fn check_options_and_codes(name: &str, run: Run<'_>) {
    let ok = |args: &[&str]| {
        let out = run(args, &[]);
        agentbox_tests::succeeded(args, &out)
    };
    // The command right after the box, or after `--`.
    assert_eq!(ok(&["exec", name, "echo", "-n", "hi"]), "hi");
    assert_eq!(ok(&["exec", name, "--", "echo", "-n", "hi"]), "hi");

    // -e (KEY=VALUE, and KEY from here), -w relative to the workspace.
    ok(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "mkdir -p sub; echo 'echo no' > not-exec.sh",
    ]);
    let out = run(
        &[
            "exec",
            "-e",
            "A=1",
            "-e",
            "EXEC_FROM_HOST",
            "-w",
            "sub",
            name,
            "--",
            "sh",
            "-c",
            "echo $A $EXEC_FROM_HOST $(basename $PWD)",
        ],
        &[("EXEC_FROM_HOST", "carried")],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 carried sub\n",
        "{out:?}"
    );

    // -u: another user of the box.
    assert_eq!(
        ok(&["exec", "-u", "root", name, "--", "id", "-un"]),
        "root\n"
    );
    let (code, err) = code_and_stderr(&run(&["exec", "-u", "nobodyx", name, "--", "true"], &[]));
    assert_eq!(code, Some(126), "{err}");
    assert!(err.contains("no such user"), "{err}");

    // Exit codes: the command's, 126, 127 — in agentbox's words, not the engine's.
    let (code, _) = code_and_stderr(&run(&["exec", name, "--", "sh", "-c", "exit 3"], &[]));
    assert_eq!(code, Some(3));
    let (code, err) = code_and_stderr(&run(&["exec", name, "--", "no-such-program-x"], &[]));
    assert_eq!(code, Some(127), "{err}");
    assert!(err.contains("no such program"), "{err}");
    assert!(!err.contains("OCI runtime"), "{err}");
    let (code, err) = code_and_stderr(&run(&["exec", name, "--", "./not-exec.sh"], &[]));
    assert_eq!(code, Some(126), "{err}");
    let (code, err) = code_and_stderr(&run(&["exec", "-w", "/nope", name, "--", "true"], &[]));
    assert_eq!(code, Some(126), "{err}");
    assert!(err.contains("no directory"), "{err}");

    // -d returns at once; the command goes on.
    let started = Instant::now();
    ok(&[
        "exec",
        "-d",
        name,
        "--",
        "sh",
        "-c",
        "sleep 2; echo done > detached.txt",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !run(&["exec", name, "--", "test", "-e", "detached.txt"], &[])
        .status
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the detached command did not run"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Checks that a stopped box is refused with the way out and 125.
pub fn check_stopped(name: &str, run: Run<'_>) {
    let (code, err) = code_and_stderr(&run(&["exec", name, "--", "true"], &[]));
    assert_eq!(code, Some(125), "{err}");
    assert!(
        err.contains(&format!(
            "box `{name}` is stopped: start it with `agentbox start {name}`"
        )),
        "{err}"
    );
}

/// Runs `agentbox exec -it NAME -- bash` on a real terminal (`env`: its environment, `cwd`
/// its directory): types into it, and checks bash sees a terminal of the size given,
/// that a resize reaches it, and the exit code comes back.
pub fn check_interactive_tty(agentbox: &Path, cwd: &Path, env: &[(&str, String)], name: &str) {
    let pty = portable_pty::native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("openpty");
    let mut command = CommandBuilder::new(agentbox);
    command.args(["exec", "-it", name, "--", "bash", "--norc", "--noprofile"]);
    command.cwd(cwd);
    command.env("TERM", "xterm-256color");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = pty.slave.spawn_command(command).expect("spawn agentbox");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let mut writer = pty.master.take_writer().expect("writer");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock().expect("seen").extend_from_slice(&buf[..n]);
        }
    });
    let wait_for = |text: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = String::from_utf8_lossy(&seen.lock().expect("seen")).into_owned();
            if now.contains(text) {
                return;
            }
            assert!(Instant::now() < deadline, "never saw {text:?} in:\n{now}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut type_keys = |keys: &str| {
        writer.write_all(keys.as_bytes()).expect("type");
        writer.flush().expect("flush");
    };
    type_keys("test -t 0 && echo on-a-tty-$((6*7)); stty size | tr ' ' x\r");
    wait_for("on-a-tty-42");
    wait_for("30x100");
    pty.master
        .resize(PtySize {
            rows: 40,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("resize");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        type_keys("stty size | tr ' ' y\r");
        std::thread::sleep(Duration::from_millis(300));
        if String::from_utf8_lossy(&seen.lock().expect("seen")).contains("40y120") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new size never reached the command"
        );
    }
    type_keys("exit 7\r");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "agentbox exec -it did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.exit_code(), 7);
}

/// Runs `agentbox exec -t NAME -- stty size` on a real terminal of 30 rows and 100
/// columns, three times: the command, asking at once, must see that size each time (not
/// `0 0`, which a terminal resized only after the command started gives — a race, which
/// one run may win).
pub fn check_tty_size_at_start(agentbox: &Path, cwd: &Path, env: &[(&str, String)], name: &str) {
    for _ in 0..3 {
        tty_size_at_start(agentbox, cwd, env, name);
    }
}

fn tty_size_at_start(agentbox: &Path, cwd: &Path, env: &[(&str, String)], name: &str) {
    let (code, seen) = on_a_terminal(
        agentbox,
        cwd,
        env,
        &["exec", "-t", name, "--", "stty", "size"],
    );
    assert_eq!(code, 0, "exec -t stty size:\n{seen}");
    assert!(
        seen.lines()
            .any(|l| l.trim_matches(['\r', '\0', ' ']) == "30 100"),
        "the command saw another size than its terminal's (30 100):\n{seen:?}"
    );
}

/// `agentbox exec -t NAME -- PROGRAM` of a program the box does not have, on a real
/// terminal: 127, said in agentbox's words as without a terminal.
pub fn check_tty_missing_program(agentbox: &Path, cwd: &Path, env: &[(&str, String)], name: &str) {
    let args = ["exec", "-t", name, "--", "no-such-program-xyz", "arg"];
    let (code, seen) = on_a_terminal(agentbox, cwd, env, &args);
    assert_eq!(code, 127, "{seen}");
    assert!(
        seen.contains(&format!(
            "agentbox: cannot run `no-such-program-xyz` in box {name}: no such program in the box's PATH"
        )),
        "{seen:?}"
    );
}

/// Runs `agentbox ARGS` on a real terminal of 30 rows and 100 columns until it ends; its
/// exit code and everything the terminal showed.
fn on_a_terminal(
    agentbox: &Path,
    cwd: &Path,
    env: &[(&str, String)],
    args: &[&str],
) -> (u32, String) {
    let pty = portable_pty::native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("openpty");
    let mut command = CommandBuilder::new(agentbox);
    command.args(args);
    command.cwd(cwd);
    command.env("TERM", "xterm-256color");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = pty.slave.spawn_command(command).expect("spawn agentbox");
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().expect("reader");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        // Ends at EOF, or EIO once the last holder of the terminal is gone.
        let _ = reader.read_to_end(&mut seen);
        let _ = tx.send(seen);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "agentbox {args:?} did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(pty.master);
    let seen = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the terminal's output");
    (
        status.exit_code(),
        String::from_utf8_lossy(&seen).into_owned(),
    )
}
