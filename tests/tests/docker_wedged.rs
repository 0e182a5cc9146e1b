//! A box that stops answering cannot hang the host's commands.
//!
//! The box is the agent's: it can put anything at its control socket. Here a listener
//! takes the socket's place, passes the daemon's hello (so the host's `agentbox-ctl`
//! client is past its connect timeout) and then never answers. `agentbox stop` used to
//! wait for the answer to `shutdown` for ever; now it gives the box a bounded time and
//! stops the container through the engine regardless.
//!
//! Needs a running Docker engine and the offline base image (`scripts/test`).

#[allow(dead_code)]
mod docker_common;

use std::time::{Duration, Instant};

use docker_common::{docker, Host};

/// The compromised box's listener (see the script's head).
const HIJACK: &str = include_str!("../scripts/hijack-ctl-socket.pl");

#[test]
fn a_box_that_never_answers_cannot_hang_stop() {
    let host = Host::new();
    let repo = host.project("proj");
    host.prepare(&repo);
    let name = format!("wg{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    let container = host.container_of(&name);

    let hijack = docker(&[
        "exec",
        "-d",
        "-u",
        "agent",
        &container,
        "perl",
        "-e",
        HIJACK,
        "/run/agentbox/ctl.sock",
    ]);
    assert!(hijack.status.success(), "{hijack:?}");
    // In place once a client's request goes unanswered (`timeout` exits 124).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let probe = docker(&[
            "exec",
            "-u",
            "agent",
            &container,
            "timeout",
            "2",
            "agentbox-ctl",
            "status",
        ]);
        if probe.status.code() == Some(124) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the socket was never taken over: {probe:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let started = Instant::now();
    let stopped = host.run(&repo, &["stop", &name]);
    let took = started.elapsed();
    assert!(stopped.status.success(), "{stopped:?}");
    // 20 s for the box to answer `shutdown`, then the engine's own 10 s grace period.
    assert!(took < Duration::from_secs(90), "stop took {took:?}");
    let running = docker(&["inspect", "-f", "{{.State.Running}}", &container]);
    assert_eq!(String::from_utf8_lossy(&running.stdout).trim(), "false");
}
