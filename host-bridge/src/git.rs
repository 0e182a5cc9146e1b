//! Running the host's git: always with `GIT_TERMINAL_PROMPT=0`, arguments as a vector.

use std::path::Path;
use std::process::Command;

/// Runs `git -C dir ARGS`, returning trimmed stdout or an error with git's message.
pub fn run(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run git: {e} (is git installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        anyhow::bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }
}

/// The root of the repository containing `dir`, or a clear error.
pub fn repo_root(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    match run(dir, &["rev-parse", "--show-toplevel"]) {
        Ok(root) => Ok(root.into()),
        Err(_) => anyhow::bail!(
            "{} is not inside a git repository: run agentbox from the repo the box should start from",
            dir.display()
        ),
    }
}
