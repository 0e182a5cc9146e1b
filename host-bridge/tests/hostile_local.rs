//! A local box that stops answering cannot hang the host's commands.
//!
//! A local box owns its run directory: a listener of its own can take the ctl daemon's
//! socket (and tmux's), pass the daemon's hello and then say nothing. `agentbox stop`
//! used to wait for the answer to `shutdown` for ever; now the request is bounded, the
//! daemon is signalled instead, and the box's processes are swept as always.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, Host};

/// The compromised box's listener (see the script's head).
const HIJACK: &str = include_str!("../../tests/scripts/hijack-ctl-socket.pl");

#[test]
fn a_local_box_that_never_answers_cannot_hang_stop() {
    let host = Host::new();
    let repo = host.repo("proj", "");
    host.ok(&repo, &["create", "--name", "wg"]);
    let run_dir = host.home().join("boxes/wg/run");
    let socket = run_dir.join("ctl.sock");
    let socket = socket.to_str().expect("utf-8");
    host.ok(
        &repo,
        &["exec", "-d", "wg", "--", "perl", "-e", HIJACK, socket],
    );
    assert!(
        eventually(|| run_dir.join("ctl.sock.real").exists() && run_dir.join("ctl.sock").exists()),
        "the socket was never taken over"
    );

    let started = Instant::now();
    let mut stop = host.spawn(&repo, &["stop", "wg"]);
    let status = loop {
        if let Some(status) = stop.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(150) {
            let _ = stop.kill();
            panic!("agentbox stop still waits on the box after 150 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = started.elapsed();
    assert!(status.success(), "{status:?}");
    // 20 s for the box to answer `shutdown`, then the daemon is signalled.
    assert!(took < Duration::from_secs(60), "stop took {took:?}");
    let listed = host.ok(&repo, &["list", "--json"]);
    assert!(listed.contains("\"stopped\""), "{listed}");
}
