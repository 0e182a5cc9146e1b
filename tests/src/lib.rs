//! Helpers for the end-to-end tests: finding the workspace's binaries.
//!
//! The tests in `tests/tests/` drive the real binaries as separate processes, the way a
//! user or the host does. `cargo test --workspace` builds them into the same target
//! directory as this crate's test executables, which is where [`bin_path`] looks.

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
