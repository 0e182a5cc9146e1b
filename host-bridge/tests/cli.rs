//! The host binary's command line.

use std::process::Command;

const AGENTBOX: &str = env!("CARGO_BIN_EXE_agentbox");

#[test]
fn help_version_and_completions() {
    let help = Command::new(AGENTBOX).arg("--help").output().expect("run");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("completions"));
    let version = Command::new(AGENTBOX)
        .arg("--version")
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        concat!("agentbox ", env!("CARGO_PKG_VERSION"))
    );
    let bash = Command::new(AGENTBOX)
        .args(["completions", "bash"])
        .output()
        .expect("run");
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("_agentbox()"));
}

#[test]
fn bad_usage_exits_2() {
    let out = Command::new(AGENTBOX)
        .arg("no-such-command")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
