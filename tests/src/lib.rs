//! Helpers for the end-to-end tests: finding the workspace's binaries.
//!
//! The tests in `tests/tests/` drive the real binaries as separate processes, the way a
//! user or the host does. `cargo test --workspace` builds them into the same target
//! directory as this crate's test executables, which is where [`bin_path`] looks.

pub mod daytona_host;
pub mod dev_machine;
pub mod fake_tls;
pub mod fault_proxy;
pub mod run;
#[cfg(test)]
mod run_tests;

use std::path::PathBuf;

/// The path of a workspace binary (`agentbox`, `agentbox-ctl`, `agentbox-relay`) next to
/// the running test executable.
///
/// # Panics
/// When the binary has not been built: run the tests with `cargo test --workspace`.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // target/<profile>/deps/<test-exe> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile> directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

/// The bridge token the tests' relays use.
pub const TEST_TOKEN: &str = "0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de0badc0de";

/// Starts `agentbox-relay` alone on free loopback ports, with `dir/run`, `dir/state` and
/// `dir/ws` as its directories and [`TEST_TOKEN`], plus `env`. Returns the child and its
/// bridge port.
///
/// # Panics
/// When the relay does not start within 10 s.
pub fn spawn_relay(dir: &std::path::Path, env: &[(&str, &str)]) -> (std::process::Child, u16) {
    use std::time::{Duration, Instant};
    let _ = std::fs::remove_file(dir.join("run/relay.json"));
    let mut cmd = std::process::Command::new(bin_path("agentbox-relay"));
    cmd.env("AGENTBOX_RUN_DIR", dir.join("run"))
        .env("AGENTBOX_STATE_DIR", dir.join("state"))
        .env("AGENTBOX_WORKSPACE", dir.join("ws"))
        .env("AGENTBOX_WEB_PORT", "0")
        .env("AGENTBOX_BRIDGE_PORT", "0")
        .env("AGENTBOX_BIND_ADDR", "127.0.0.1")
        .env("AGENTBOX_BRIDGE_TOKEN", TEST_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("relay");
    let info = dir.join("run/relay.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    let port = loop {
        let v = std::fs::read(&info)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if let Some(p) = v.and_then(|v| v["bridge_port"].as_u64()) {
            break u16::try_from(p).expect("port");
        }
        assert!(Instant::now() < deadline, "relay did not start");
        std::thread::sleep(Duration::from_millis(10));
    };
    (child, port)
}

/// The stdout of an `agentbox ARGS` run that must have succeeded; on failure, both
/// streams in the panic message.
///
/// # Panics
/// When the run failed.
pub fn succeeded(args: &[&str], out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "agentbox {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The base image the Docker tests build the box image on (`AGENTBOX_TEST_BASE_IMAGE`,
/// default the offline `agentbox-base:bookworm` that `scripts/test` makes), after checking
/// that a Docker engine answers.
pub fn docker_base_image() -> String {
    let up = std::process::Command::new("docker")
        .arg("info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        up,
        "this test needs a running Docker engine: run `scripts/test`, which starts one"
    );
    std::env::var("AGENTBOX_TEST_BASE_IMAGE")
        .unwrap_or_else(|_| "agentbox-base:bookworm".to_string())
}
