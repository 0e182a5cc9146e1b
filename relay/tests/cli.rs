//! The relay binary's command line.

use std::process::Command;

const RELAY: &str = env!("CARGO_BIN_EXE_agentbox-relay");

#[test]
fn help_and_version() {
    let help = Command::new(RELAY).arg("--help").output().expect("run");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("AGENTBOX_WEB_PORT") && text.contains("--log-format"),
        "{text}"
    );
    let version = Command::new(RELAY).arg("--version").output().expect("run");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        concat!("agentbox-relay ", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_port_is_named() {
    let out = Command::new(RELAY)
        .env("AGENTBOX_WEB_PORT", "eighty")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("AGENTBOX_WEB_PORT=\"eighty\" is not a port number"));
}

#[test]
fn a_bad_thread_count_is_named() {
    for bad in ["0", "65", "many"] {
        let out = Command::new(RELAY)
            .env("AGENTBOX_PROXY_THREADS", bad)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("AGENTBOX_PROXY_THREADS"),
            "{bad}"
        );
    }
}
