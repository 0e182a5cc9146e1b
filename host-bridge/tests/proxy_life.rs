//! The HTTPS proxy's life on this machine: it never outlives its home, and a proxy that
//! cannot listen costs `agentbox url` nothing but the https form.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{free_port, pid_alive, web_service, Host, TimedOutput, AGENTBOX};

/// `agentbox ARGS` in `host`'s home with the proxy on `proxy_port`.
fn run_on(host: &Host, cwd: &Path, proxy_port: u16, args: &[&str]) -> Output {
    Command::new(AGENTBOX)
        .args(args)
        .current_dir(cwd)
        .env("AGENTBOX_HOME", host.home())
        .env("AGENTBOX_PROXY_PORT", proxy_port.to_string())
        .env("PATH", host.path())
        .timed_output()
        .expect("run agentbox")
}

#[test]
fn a_proxy_ends_when_its_home_is_deleted() {
    let host = Host::new();
    std::fs::create_dir_all(host.home()).expect("mkdir home");
    let port = free_port();
    let here = host.dir.path();
    let out = run_on(&host, here, port, &["proxy", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = run_on(&host, here, port, &["proxy", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let pid = v["pid"].as_u64().expect("a pid");
    assert_eq!(v["port"].as_u64(), Some(u64::from(port)), "{v}");
    assert!(pid_alive(pid));

    // A temporary home removed (as every test's is, or `rm -rf ~/.agentbox`): the proxy
    // lets the machine's port go instead of holding it for ever.
    std::fs::remove_dir_all(host.home()).expect("rm home");
    let t0 = Instant::now();
    while pid_alive(pid) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_alive(pid), "the proxy of a deleted home still runs");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "port {port} still held"
    );
}

#[test]
fn url_gives_the_direct_address_when_the_proxy_cannot_listen() {
    let host = Host::new();
    let port = free_port();
    let repo = host.repo("web", &web_service(port));
    host.ok(&repo, &["create", "--name", "w1"]);
    // Another program holds the proxy's port.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy_port = taken.local_addr().expect("addr").port();

    // A port no service exposes has no https name: its address is the box's own.
    let out = run_on(
        &host,
        &repo,
        proxy_port,
        &["url", "w1", "--port", &port.to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("http://127.0.0.1:{port}")
    );

    // The default service needs the proxy, which cannot listen: the direct address, said so.
    let direct = host.ok(&repo, &["url", "w1", "--direct"]);
    let out = run_on(&host, &repo, proxy_port, &["url", "w1"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), direct.trim(), "{stderr}");
    assert!(
        stderr.contains("the HTTPS proxy is not available")
            && stderr.contains(&format!("127.0.0.1:{proxy_port}"))
            && stderr.contains("--direct"),
        "{stderr}"
    );
    drop(taken);
}

/// `agentbox ARGS` in `host`'s home, `AGENTBOX_PROXY_PORT` set to `env_port` or unset.
fn run_env(host: &Host, env_port: Option<u16>, args: &[&str]) -> Output {
    let mut c = Command::new(AGENTBOX);
    c.args(args)
        .current_dir(host.dir.path())
        .env("AGENTBOX_HOME", host.home())
        .env("PATH", host.path())
        .env_remove("AGENTBOX_PROXY_PORT");
    if let Some(p) = env_port {
        c.env("AGENTBOX_PROXY_PORT", p.to_string());
    }
    c.timed_output().expect("run agentbox")
}

/// The port a proxy started with `env_port` serves on (it is stopped again).
fn served_port(host: &Host, env_port: Option<u16>) -> Option<u64> {
    let out = run_env(host, env_port, &["proxy", "start"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = run_env(host, env_port, &["proxy", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status json");
    let stopped = run_env(host, env_port, &["proxy", "stop"]);
    assert!(stopped.status.success(), "{stopped:?}");
    v["port"].as_u64()
}

#[test]
fn the_port_is_the_environments_else_the_global_configs() {
    let host = Host::new();
    std::fs::create_dir_all(host.home()).expect("mkdir home");
    let (configured, asked) = (free_port(), free_port());
    assert_ne!(configured, asked);
    let set = run_env(
        &host,
        None,
        &["config", "set", "proxy.port", &configured.to_string()],
    );
    assert!(set.status.success(), "{set:?}");
    assert_eq!(served_port(&host, None), Some(u64::from(configured)));
    assert_eq!(served_port(&host, Some(asked)), Some(u64::from(asked)));

    // A bad value is refused where it is, and no proxy starts.
    let config = host.home().join("config.yaml");
    std::fs::write(&config, "proxy:\n  port: 70000\n").expect("write");
    let out = run_env(&host, None, &["proxy", "start"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "{}:2:9: proxy.port: `70000` is not a port (1-65535)",
            config.display()
        )),
        "{said}"
    );
}
