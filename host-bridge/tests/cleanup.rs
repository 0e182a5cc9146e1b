//! A local box leaves no process behind: not after its ctl daemon is killed with
//! SIGKILL (issue 20 #12), not after `exec` backgrounds something, not after Ctrl-C
//! during `create` (issue 20 #18).

mod common;

use std::path::Path;

use common::{
    eventually, finish_within, free_port, pid_alive, web_service, Host, TimedOutput, COMMAND_LIMIT,
};

/// The pids of the processes whose environment points at `run_dir` (every process of a
/// local box has `AGENTBOX_RUN_DIR` in its environment).
fn box_processes(run_dir: &Path) -> Vec<u32> {
    let needle = format!("AGENTBOX_RUN_DIR={}", run_dir.display());
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == needle.as_bytes()) && pid_alive(u64::from(pid)) {
            found.push(pid);
        }
    }
    found
}

/// SIGKILLs what a failing test would otherwise leave running.
fn kill_all(pids: &[u32]) {
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .timed_output();
    }
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn ctl_pid(run_dir: &Path) -> i32 {
    std::fs::read_to_string(run_dir.join("ctl.lock"))
        .expect("ctl.lock")
        .trim()
        .parse()
        .expect("pid in ctl.lock")
}

fn kill9(pid: i32) {
    let ok = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .timed_output()
        .expect("kill")
        .status
        .success();
    assert!(ok, "kill -9 {pid}");
    assert!(
        eventually(|| !pid_alive(pid as u64)),
        "{pid} survived SIGKILL"
    );
}

#[test]
fn a_killed_ctl_daemon_does_not_wedge_the_box() {
    let host = Host::new();
    let port = free_port();
    let repo = host.repo("proj", &web_service(port));
    host.ok(&repo, &["create", "--name", "b1"]);
    let run_dir = host.home().join("boxes/b1/run");
    assert!(!port_free(port), "the service is not listening");

    // SIGKILL the daemon: `start` finds the relay and the service still holding their
    // ports and must end them, then come up.
    kill9(ctl_pid(&run_dir));
    let out = host.run(&repo, &["start", "b1"]);
    if !out.status.success() {
        kill_all(&box_processes(&run_dir));
        panic!(
            "start after kill -9 of the daemon failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        eventually(|| host
            .ok(&repo, &["exec", "--", "agentbox-ctl", "status"])
            .contains("ready")),
        "the service did not come back"
    );

    // SIGKILL it again: `stop` ends everything the dead daemon left.
    kill9(ctl_pid(&run_dir));
    host.ok(&repo, &["stop", "b1"]);
    let left = box_processes(&run_dir);
    kill_all(&left);
    assert!(left.is_empty(), "stop left box processes: {left:?}");
    assert!(
        port_free(port),
        "the service's port is still held after stop"
    );
}

#[test]
fn destroy_ends_what_exec_left_running() {
    let host = Host::new();
    let repo = host.repo("proj", "services: {}\n");
    host.ok(&repo, &["create", "--name", "b1"]);
    let pidfile = host.dir.path().join("sleep.pid");
    host.ok(
        &repo,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            &format!(
                "sleep 1000 >/dev/null 2>&1 </dev/null & echo $! > {}",
                pidfile.display()
            ),
        ],
    );
    let pid: u64 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(pid_alive(pid), "the backgrounded sleep is not running");
    host.ok(&repo, &["destroy", "-y", "b1"]);
    let gone = eventually(|| !pid_alive(pid));
    if !gone {
        kill_all(&[pid as u32]);
    }
    assert!(
        gone,
        "destroy left the exec's background process {pid} running"
    );
}

/// A box process that drops the box's environment (`env -i`) is still the box's: its
/// parent is (issue 20 #18's sibling). Each shape: a plain `env -i` child, one a level
/// further down, and one whose marked parent is an orphan by then.
#[test]
fn destroy_ends_box_processes_that_dropped_the_box_environment() {
    let host = Host::new();
    let repo = host.repo("envless", "services: {}\n");
    host.ok(&repo, &["create", "--name", "e1"]);
    let shapes = [
        "(env -i /bin/sleep 1001 & echo $! > {pid}; wait) >/dev/null 2>&1 </dev/null &",
        "(env -i /bin/sh -c '/bin/sleep 1002 & echo $! > {pid}; wait' ; wait) >/dev/null 2>&1 </dev/null &",
        "( (env -i /bin/sleep 1003 & echo $! > {pid}; wait) & ) >/dev/null 2>&1 </dev/null",
    ];
    let mut pids = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        let pidfile = host.dir.path().join(format!("envless{i}.pid"));
        let script = shape.replace("{pid}", &pidfile.display().to_string());
        host.ok(&repo, &["exec", "--", "sh", "-c", &script]);
        assert!(
            eventually(|| std::fs::read_to_string(&pidfile).is_ok_and(|p| !p.trim().is_empty())),
            "shape {i} never started"
        );
        let pid: u64 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        assert!(pid_alive(pid), "shape {i}: the sleep is not running");
        pids.push(pid);
    }
    host.ok(&repo, &["destroy", "-y", "e1"]);
    let left: Vec<u64> = pids
        .iter()
        .copied()
        .filter(|p| !eventually(|| !pid_alive(*p)))
        .collect();
    kill_all(&left.iter().map(|p| *p as u32).collect::<Vec<_>>());
    assert!(
        left.is_empty(),
        "destroy left {left:?} of {pids:?} running (box processes without the box's environment)"
    );
}

#[test]
fn ctrl_c_during_create_leaves_nothing() {
    let host = Host::new();
    let port = free_port();
    // A service that is never ready: create waits for it until interrupted.
    let repo = host.repo(
        "proj",
        &format!(
            "services:\n  slow:\n    command: exec sleep 1000\n    ready_when: {{port: {port}}}\n"
        ),
    );
    let box_dir = host.home().join("boxes/b1");
    let run_dir = box_dir.join("run");
    let mut child = host.spawn(&repo, &["create", "--name", "b1"]);
    let pid = child.id();
    // create says on stderr when it starts waiting for the services: the signal comes then.
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    let reader = {
        let said = std::sync::Arc::clone(&said);
        let mut stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            use std::io::Read;
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                said.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]);
            }
        })
    };
    let saying = |what: &str| {
        String::from_utf8_lossy(
            &said
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .contains(what)
    };
    let waiting = eventually(|| saying("waiting for services"));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .timed_output();
    let mut out = finish_within(child, "agentbox create", COMMAND_LIMIT).expect("wait for create");
    let _ = reader.join();
    out.stderr = said
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let left = box_processes(&run_dir);
    kill_all(&left);
    assert!(waiting, "create never got to the wait for services");
    assert_eq!(
        out.status.code(),
        Some(130),
        "create after SIGINT: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        left.is_empty(),
        "Ctrl-C during create left processes: {left:?}"
    );
    assert!(
        host.list(&repo).is_empty(),
        "Ctrl-C during create left a record"
    );
    assert!(
        !box_dir.exists(),
        "Ctrl-C during create left {}",
        box_dir.display()
    );

    // The name is free again (and this time the service listens, so it is ready at once;
    // a listener of another process would not do: a local box owns its ports).
    std::fs::write(
        repo.join("agentbox.yaml"),
        format!(
            "services:\n  slow:\n    command: [python3, -m, http.server, \"{port}\", --bind, 127.0.0.1]\n    ready_when: {{port: {port}}}\n"
        ),
    )
    .expect("write agentbox.yaml");
    host.ok(&repo, &["create", "--name", "b1"]);
}

#[test]
fn a_start_that_fails_leaves_no_daemon_behind() {
    let host = Host::new();
    let repo = host.repo("proj", "services: {}\n");
    host.ok(&repo, &["create", "--name", "b1"]);
    host.ok(&repo, &["stop", "b1"]);
    let box_dir = host.home().join("boxes/b1");
    let run_dir = box_dir.join("run");
    let ports: serde_json::Value = serde_json::from_slice(
        &std::fs::read(host.home().join("records/b1/ports.json")).expect("ports.json"),
    )
    .expect("json");
    let bridge = u16::try_from(ports["bridge"].as_u64().expect("bridge port")).expect("port");
    // Someone else holds the relay's port: the relay cannot come up.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", bridge)).expect("bind");
    let out = host.run(&repo, &["start", "b1"]);
    let left = box_processes(&run_dir);
    kill_all(&left);
    drop(squatter);
    assert!(!out.status.success(), "start succeeded without its port");
    assert!(
        left.is_empty(),
        "a failed start left a restart-looping daemon: {left:?}"
    );
}
