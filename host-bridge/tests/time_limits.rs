//! Every command a test of this package runs has a time limit. `Command::output`,
//! `Child::wait` and `Child::wait_with_output` wait for ever: one command that hangs then
//! hangs its suite until CI gives up, saying nothing of where (the kill -9 test of
//! bridge.rs once hung for 15 minutes). The suites use `common::TimedOutput` and
//! `common::finish_within` (tests/src/run.rs) instead; this test finds the bare forms.

use std::path::{Path, PathBuf};

/// The calls that wait without a limit (`.status()` too, but that is also an HTTP
/// answer's, so it is not looked for).
const UNTIMED: [&str; 3] = [".output()", ".wait()", ".wait_with_output()"];

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read the tests directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found.sort();
    found
}

#[test]
fn no_test_waits_on_a_command_without_a_time_limit() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let me = dir.join("time_limits.rs");
    let files = sources(&dir);
    assert!(
        files.len() > 10,
        "the suites are where they were: {files:?}"
    );
    let mut bare = Vec::new();
    for file in files.iter().filter(|f| **f != me) {
        let text = std::fs::read_to_string(file).expect("read a test source");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if let Some(call) = UNTIMED.iter().find(|c| code.contains(*c)) {
                bare.push(format!(
                    "{}:{}: {call} — use timed_output()/output_within() or finish_within()",
                    file.strip_prefix(&dir).unwrap_or(file).display(),
                    n + 1
                ));
            }
        }
    }
    assert!(
        bare.is_empty(),
        "commands waited on without a time limit:\n{}",
        bare.join("\n")
    );
}
