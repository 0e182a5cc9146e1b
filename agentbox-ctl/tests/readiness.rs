//! Readiness as `create` relies on it: a service that dies before it is ready ends the
//! wait at once (not after the wait's timeout), a starting service says what it waits for,
//! and in a box sharing the machine's ports (a local box: `AGENTBOX_SHARED_PORTS=1`) only
//! the box's own listener makes a service ready, and a port another process holds fails
//! the service at start, naming the holder and its box.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_service_that_dies_before_it_is_ready_fails_the_wait_at_once() {
    let port = free_port();
    let mut b = TestBox::new(&format!(
        "services:
  web:
    command: 'no-such-program-agentbox-test'
    ready_when: {{port: {port}}}
"
    ));
    b.start();
    let t0 = Instant::now();
    let out = b.ctl(&["wait-ready", "--timeout", "30000", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "wait-ready waited {:?} for a service that had exited",
        t0.elapsed()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let failed = &report["failed"][0];
    assert_eq!(failed["name"], "web", "{report}");
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exited with code 127")),
        "{report}"
    );
}

#[test]
fn a_starting_service_says_what_it_waits_for_and_a_probe_timeout_says_the_last_try() {
    let port = free_port();
    let mut b = TestBox::new(&format!(
        "services:
  web:
    command: 'exec sleep 100'
    ready_when: {{port: {port}, timeout_ms: 1500, interval_ms: 50}}
    restart: never
"
    ));
    b.start();
    let web = b.unit("web");
    assert_eq!(web["state"], "starting", "{web}");
    assert_eq!(
        web["detail"],
        format!("waiting for port {port} (timeout 1500ms)"),
        "{web}"
    );
    let out = b.ctl(&["wait-ready", "--timeout", "30000", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let reason = report["failed"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("readiness probe timed out after 1500ms (last try: "),
        "{report}"
    );
}

/// A process outside the box listening on `port`, with `AGENTBOX_BOX_NAME=other` when
/// `box_name` is given (as every process of a local box has); killed on drop.
struct Outsider(std::process::Child);

impl Outsider {
    fn listen(port: u16, box_name: Option<&str>) -> Self {
        let mut cmd = Command::new("python3");
        cmd.args([
            "-c",
            &format!(
                "import socket,sys\ns=socket.socket()\ns.bind(('127.0.0.1',{port}))\ns.listen()\nprint('up',flush=True)\nsys.stdin.read()"
            ),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .env_remove("AGENTBOX_BOX_NAME");
        if let Some(name) = box_name {
            cmd.env("AGENTBOX_BOX_NAME", name);
        }
        let mut child = cmd.spawn().expect("python3");
        let mut up = [0u8; 3];
        child
            .stdout
            .as_mut()
            .expect("stdout")
            .read_exact(&mut up)
            .expect("the outsider listens");
        Self(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Outsider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sharing_ports_a_port_held_by_another_box_fails_the_service_naming_that_box() {
    let (held, free) = (free_port(), free_port());
    let other = Outsider::listen(held, Some("other-box"));
    let mut b = TestBox::new(&format!(
        "services:
  web:
    command: 'exec python3 -m http.server {held} --bind 127.0.0.1'
    ready_when: {{port: {held}}}
  api:
    command: 'exec python3 -m http.server {free} --bind 127.0.0.1'
    ready_when: {{port: {free}}}
"
    ))
    .with_env("AGENTBOX_SHARED_PORTS", "1");
    b.start();
    let out = b.ctl(&["wait-ready", "--timeout", "20000", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let web = b.unit("web");
    // Not started, and tried again after its backoff: the holder may be on its way out
    // (a leftover of this box's own killed daemon is, once `start` ends it).
    assert_eq!(web["state"], "exited", "{web}");
    let detail = web["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!(
            "port {held} is in use by box `other-box` (pid {}",
            other.pid()
        )) && detail.contains("`agentbox stop other-box`")
            && detail.contains("trying again in"),
        "{web}"
    );
    assert!(
        web["pid"].is_null(),
        "the service was started anyway: {web}"
    );
    // The box's own listener on a free port is ready as before.
    b.ok(&["wait-ready", "api", "--timeout", "20000"]);
}

#[test]
fn sharing_ports_another_processs_listener_never_makes_a_service_ready() {
    let port = free_port();
    let config = format!(
        "services:
  web:
    command: 'exec sleep 100'
    ready_when: {{port: {port}, timeout_ms: 1500, interval_ms: 50}}
    restart: never
"
    );
    // Without shared ports (a container), whatever answers on the port is the box's.
    let mut plain = TestBox::new(&config);
    plain.start();
    let outsider = Outsider::listen(port, None);
    plain.ok(&["wait-ready", "--timeout", "20000"]);
    drop(plain);
    drop(outsider);

    // Sharing them, a listener that came up after the service started is not its.
    let mut b = TestBox::new(&config).with_env("AGENTBOX_SHARED_PORTS", "1");
    b.start();
    let outsider = Outsider::listen(port, None);
    let out = b.ctl(&["wait-ready", "--timeout", "20000", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let reason = report["failed"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!(
            "port {port} is in use by pid {} (python3) on this machine",
            outsider.pid()
        )),
        "{report}"
    );
}
