//! The tests of [`crate::run`], apart from it: host-bridge's suites compile run.rs by path
//! and would otherwise run these in each of them.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::run::TimedOutput;

#[test]
fn a_command_that_ends_gives_its_output() {
    let out = Command::new("sh")
        .args(["-c", "echo out; echo err >&2; exit 3"])
        .timed_output()
        .expect("ran");
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_command_that_hangs_is_killed_and_named() {
    let started = Instant::now();
    let err = Command::new("sh")
        .args(["-c", "echo before; sleep 30"])
        .output_within(Duration::from_millis(500))
        .expect_err("timed out");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let said = err.to_string();
    assert!(
        said.contains("`sh -c echo before; sleep 30` did not finish within 500ms"),
        "{said}"
    );
    assert!(said.contains("stdout so far:\nbefore\n"), "{said}");
}

#[test]
fn a_daemon_left_holding_the_output_is_named_and_killed() {
    let err = Command::new("sh")
        .args(["-c", "sleep 30 & echo started"])
        .output_within(Duration::from_millis(500))
        .expect_err("timed out");
    let said = err.to_string();
    assert!(
        said.contains("ended (exit status: 0) but something it started still holds"),
        "{said}"
    );
}
