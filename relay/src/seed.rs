//! Turning an uploaded seed into a workspace: `.git` moved into place, the box branch
//! checked out, the host's uncommitted changes re-applied, untracked files copied in.

use std::path::{Path, PathBuf};
use std::process::Command;

use agentbox_protocol::transfer::SeedManifest;

/// Why a seed could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The workspace already has a repository.
    #[error("the workspace is already seeded ({} exists)", .0.display())]
    AlreadySeeded(PathBuf),
    /// The archive lacks a part or its manifest is bad.
    #[error("malformed seed: {0}")]
    Malformed(String),
    /// A git step failed.
    #[error("`git {args}` failed: {stderr}")]
    Git {
        /// The git arguments.
        args: String,
        /// What git said.
        stderr: String,
    },
    /// The filesystem failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn git(workspace: &Path, args: &[&str]) -> Result<(), SeedError> {
    let out = Command::new(crate::real_git())
        .arg("-C")
        .arg(workspace)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("AGENTBOX_BRIDGE_TOKEN")
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SeedError::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Whether `s` is a full hex object id.
fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Whether `s` is an acceptable branch name for the box (`agentbox/…`, no tricks).
pub fn valid_branch(s: &str) -> bool {
    s.starts_with("agentbox/")
        && s.len() < 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b))
        && !s.contains("..")
        && !s.ends_with('/')
        && !s.to_ascii_lowercase().ends_with(".lock")
}

/// Applies an unpacked seed (`tree` holds `seed.json`, `git/`, `files/`) to `workspace`.
pub fn apply(workspace: &Path, tree: &Path) -> Result<SeedManifest, SeedError> {
    let manifest: SeedManifest = serde_json::from_slice(&std::fs::read(tree.join("seed.json"))?)
        .map_err(|e| SeedError::Malformed(format!("seed.json: {e}")))?;
    if !valid_branch(&manifest.branch) {
        return Err(SeedError::Malformed(format!(
            "branch `{}` is not an agentbox/… branch",
            manifest.branch
        )));
    }
    if !is_object_id(&manifest.head) || manifest.stash.as_deref().is_some_and(|s| !is_object_id(s))
    {
        return Err(SeedError::Malformed(
            "head and stash must be object ids".into(),
        ));
    }
    let dot_git = workspace.join(".git");
    if dot_git.exists() {
        return Err(SeedError::AlreadySeeded(dot_git));
    }
    let git_dir = tree.join("git");
    if !git_dir.join("HEAD").is_file() {
        return Err(SeedError::Malformed("no git/ repository".into()));
    }
    std::fs::rename(&git_dir, &dot_git)?;
    git(
        workspace,
        &[
            "checkout",
            "-q",
            "-f",
            "-B",
            &manifest.branch,
            &manifest.head,
        ],
    )?;
    // What the host already has: a push sends only the commits after it.
    git(
        workspace,
        &["update-ref", "refs/agentbox/seed", &manifest.head],
    )?;
    if let Some(stash) = &manifest.stash {
        if git(workspace, &["stash", "apply", "--index", "-q", stash]).is_err() {
            git(workspace, &["stash", "apply", "-q", stash])?;
        }
    }
    let files = tree.join("files");
    if files.is_dir() {
        move_tree(&files, workspace)?;
    }
    let _ = git(workspace, &["remote", "remove", "origin"]);
    Ok(manifest)
}

/// Moves every entry under `from` into `to`, merging directories.
fn move_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let is_dir = entry.file_type()?.is_dir();
        match std::fs::symlink_metadata(&dst) {
            Ok(m) if is_dir && m.is_dir() => move_tree(&src, &dst)?,
            Ok(m) if m.is_dir() => {} // never replace a directory with a file
            _ => std::fs::rename(&src, &dst)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branches_must_be_ours_and_plain() {
        assert!(valid_branch("agentbox/box-1"));
        for bad in [
            "main",
            "agentbox/../main",
            "agentbox/x.lock",
            "agentbox/",
            "agentbox/a b",
            "-agentbox/x",
            "agentbox/$(x)",
        ] {
            assert!(!valid_branch(bad), "{bad}");
        }
    }
}
