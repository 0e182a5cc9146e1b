//! The three binaries are built together and agree on their version.

use std::process::Command;

use agentbox_tests::bin_path;
use agentbox_tests::run::TimedOutput;

#[test]
fn every_binary_answers_help_and_the_same_version() {
    for name in ["agentbox", "agentbox-ctl", "agentbox-relay"] {
        let help = Command::new(bin_path(name))
            .arg("--help")
            .timed_output()
            .expect("run");
        assert!(help.status.success(), "{name} --help failed");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Usage:"),
            "{name}"
        );
        let version = Command::new(bin_path(name))
            .arg("--version")
            .timed_output()
            .expect("run");
        assert_eq!(
            String::from_utf8_lossy(&version.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}
