//! Links the `agentbox-ctl` executable as non-PIE.
//!
//! The CLI is started by hooks and shims many times a second, and on the VMs it runs on a
//! position-independent executable spends a third of its start-up applying ~15,000
//! relocations (one page fault per touched page). A fixed-address executable has none of
//! that: `agentbox-ctl status` is about 0.4 ms faster per call. The code is still compiled
//! position-independent; only the final link changes.
fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
    println!("cargo:rerun-if-changed=build.rs");
}
