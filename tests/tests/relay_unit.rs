//! The ctl daemon runs the relay as its built-in unit (`AGENTBOX_RELAY`): supervised,
//! restarted, kept across reloads, and the only unit that sees the bridge token.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentbox_tests::bin_path;
use agentbox_tests::run::TimedOutput;

const TOKEN: &str = "feedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedfacefeedface";

fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn the_relay_is_a_supervised_builtin_unit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).expect("ws");
    std::fs::write(
        ws.join("agentbox.yaml"),
        "services:\n  app: {command: 'env > app.env; exec sleep 100'}\n",
    )
    .expect("config");
    let env = |cmd: &mut Command| {
        cmd.env("AGENTBOX_WORKSPACE", &ws)
            .env("AGENTBOX_RUN_DIR", dir.path().join("run"))
            .env("AGENTBOX_LOG_DIR", dir.path().join("log"))
            .env("AGENTBOX_STATE_DIR", dir.path().join("state"))
            .env("AGENTBOX_WEB_PORT", "0")
            .env("AGENTBOX_BRIDGE_PORT", "0")
            .env("AGENTBOX_BIND_ADDR", "127.0.0.1");
    };
    let ctl = |args: &[&str]| {
        let mut cmd = Command::new(bin_path("agentbox-ctl"));
        cmd.args(args);
        env(&mut cmd);
        cmd.timed_output().expect("ctl")
    };
    let mut daemon = Command::new(bin_path("agentbox-ctl"));
    daemon
        .arg("daemon")
        .env("AGENTBOX_RELAY", bin_path("agentbox-relay"))
        .env("AGENTBOX_BRIDGE_TOKEN", TOKEN);
    env(&mut daemon);
    let mut daemon = daemon
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("daemon");
    let status = || -> serde_json::Value {
        serde_json::from_slice(&ctl(&["status", "--json"]).stdout).unwrap_or_default()
    };
    let relay_pid = || -> Option<u64> {
        status()["units"]
            .as_array()?
            .iter()
            .find(|u| u["name"] == "agentbox-relay" && u["state"] == "running")?["pid"]
            .as_u64()
    };
    assert!(
        eventually(|| relay_pid().is_some()),
        "the relay unit never ran: {}",
        status()
    );
    let info = dir.path().join("run/relay.json");
    assert!(
        eventually(|| info.exists()),
        "the relay never announced its ports"
    );
    let first = relay_pid().expect("pid");

    // The token reaches the relay (it answers 401 to a wrong one, not to the right one)…
    let port =
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&info).expect("relay.json"))
            .expect("json")["bridge_port"]
            .as_u64()
            .expect("port");
    let put = |token: &str| -> u16 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            reqwest::Client::new()
                .put(format!(
                    "http://127.0.0.1:{port}/v1/uploads/0123456789abcdef"
                ))
                .bearer_auth(token)
                .send()
                .await
                .expect("put")
                .status()
                .as_u16()
        })
    };
    assert_eq!(put("wrong"), 401);
    assert_eq!(
        put(TOKEN),
        400,
        "the relay did not get the token from the daemon"
    );
    // … and no other unit.
    let app_env = ws.join("app.env");
    assert!(eventually(
        || std::fs::read_to_string(&app_env).is_ok_and(|s| s.contains("AGENTBOX_UNIT=app"))
    ));
    assert!(
        !std::fs::read_to_string(&app_env)
            .expect("env")
            .contains(TOKEN),
        "the token leaked to a service"
    );

    // Killed, it comes back; a reload keeps it.
    let _ = Command::new("kill")
        .arg("-9")
        .arg(first.to_string())
        .status();
    assert!(
        eventually(|| relay_pid().is_some_and(|p| p != first)),
        "the relay was not restarted"
    );
    let reload = ctl(&["reload"]);
    assert!(reload.status.success());
    assert!(
        !String::from_utf8_lossy(&reload.stdout).contains("agentbox-relay"),
        "reload touched the built-in unit"
    );
    assert!(relay_pid().is_some());

    let _ = ctl(&["shutdown"]);
    assert!(eventually(|| matches!(daemon.try_wait(), Ok(Some(_)))));
}

#[test]
fn configs_cannot_take_reserved_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("agentbox.yaml"),
        "services:\n  agentbox-relay: {command: x}\n",
    )
    .expect("config");
    let out = Command::new(bin_path("agentbox-ctl"))
        .arg("validate")
        .arg(dir.path().join("agentbox.yaml"))
        .timed_output()
        .expect("ctl");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("names starting with `agentbox-` are reserved"));
}
