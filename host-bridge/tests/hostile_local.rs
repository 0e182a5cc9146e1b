//! A local box that stops answering cannot hang the host's commands.
//!
//! A local box owns its run directory: a listener of its own can take the ctl daemon's
//! socket (and tmux's), pass the daemon's hello and then say nothing. `agentbox stop`
//! used to wait for the answer to `shutdown` for ever; now the request is bounded, the
//! daemon is signalled instead, and the box's processes are swept as always.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, Host};

/// Run in the box: moves the daemon's socket aside and listens in its place; each
/// client's hello goes to the real daemon and the daemon's hello comes back, then the
/// connection is held open with nothing more said.
const HIJACK: &str = r#"
use IO::Socket::UNIX; use Socket;
my $p = "$ENV{AGENTBOX_RUN_DIR}/ctl.sock";
rename($p, "$p.real") or die "rename: $!";
my $l = IO::Socket::UNIX->new(Type => SOCK_STREAM, Local => $p, Listen => 16) or die "listen: $!";
my @held;
while (my $c = $l->accept) {
  my ($h, $b, $x, $r) = ("", "", "", "");
  next unless sysread($c, $h, 4) == 4;
  my $n = unpack("N", $h);
  while (length($b) < $n) { sysread($c, $x, $n - length $b) or last; $b .= $x }
  my $d = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => "$p.real") or next;
  syswrite($d, $h . $b);
  sysread($d, $r, 65536);
  syswrite($c, $r);
  push @held, $c, $d;
}
"#;

#[test]
fn a_local_box_that_never_answers_cannot_hang_stop() {
    let host = Host::new();
    let repo = host.repo("proj", "");
    host.ok(&repo, &["create", "--name", "wg"]);
    let run_dir = host.home().join("boxes/wg/run");
    host.ok(&repo, &["exec", "-d", "wg", "--", "perl", "-e", HIJACK]);
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
