//! `agentbox download`: the box workspace back into the host tree.
//!
//! The box lists the files git does not ignore there, with digests; the host compares them
//! with its tree and shows what is new or modified before writing anything. `.git/` is
//! never written. Files the host executes or that configure what it runs (`.envrc`,
//! editor tasks, hook directories, …) are held back unless the user approves them
//! explicitly. The files travel as one verified download and land one `rename` each.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agentbox_protocol::files::DownloadRequest;
use agentbox_protocol::land::Cleanup;
use agentbox_protocol::sync::{entry_digest, is_sync_path, Listing, ListingRequest};
use agentbox_protocol::transfer::unpack;
use anyhow::{bail, Context};
use serde::Serialize;

use crate::transfer::client::{Progress, Relay};

/// Files the host runs, or that make the host run something, matched exactly.
const HOST_EXECUTED_FILES: &[&str] = &[
    ".envrc",
    ".env.sh",
    ".vscode/tasks.json",
    ".vscode/launch.json",
    ".vscode/settings.json",
    ".pre-commit-config.yaml",
    ".gitmodules",
    ".lefthook.yml",
    "lefthook.yml",
    ".tool-versions",
    ".mise.toml",
    "mise.toml",
];

/// Directories whose files the host runs.
const HOST_EXECUTED_DIRS: &[&str] = &[".git/", ".githooks/", ".husky/", ".devcontainer/", ".idea/"];

/// Whether the host would run `path` (or be configured by it to run something).
pub fn is_host_executed(path: &str) -> bool {
    HOST_EXECUTED_FILES.contains(&path) || HOST_EXECUTED_DIRS.iter().any(|d| path.starts_with(d))
}

/// How a file differs from the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// The host does not have it.
    New,
    /// The host has another version.
    Modified,
}

/// One file to bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    /// Relative to the project root.
    pub path: String,
    /// New or modified.
    pub change: Change,
    /// Whether the host executes it (held back without approval).
    pub host_executed: bool,
}

/// The change list.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// Files that differ, sorted by path.
    pub files: Vec<Planned>,
    /// Box files left out for a name that is not UTF-8.
    pub skipped_names: u64,
}

/// Compares the box workspace with the host tree at `repo`.
pub async fn plan(relay: &Relay, repo: &Path, with_env: bool) -> anyhow::Result<Plan> {
    let listing: Listing = relay
        .post_json("/v1/workspace/listing", &ListingRequest { with_env })
        .await?;
    let mut files = Vec::new();
    for f in listing.files {
        if !is_sync_path(&f.path) {
            bail!("the box listed `{}`, which is not a workspace path", f.path);
        }
        let ours = entry_digest(&repo.join(&f.path))
            .with_context(|| format!("cannot read {}", repo.join(&f.path).display()))?;
        let change = match ours {
            Some(d) if d == f.digest => continue,
            Some(_) => Change::Modified,
            None => Change::New,
        };
        files.push(Planned {
            host_executed: is_host_executed(&f.path),
            path: f.path,
            change,
        });
    }
    Ok(Plan {
        files,
        skipped_names: listing.skipped_names,
    })
}

/// Downloads `paths` (from a [`Plan`]) from the box workspace into `repo`. Returns the
/// paths written.
pub async fn apply(
    relay: &Relay,
    repo: &Path,
    paths: Vec<String>,
    max: u64,
    progress: Progress<'_>,
) -> anyhow::Result<Vec<String>> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(bad) = paths.iter().find(|p| !is_sync_path(p)) {
        bail!("refusing to download `{bad}`");
    }
    let req = DownloadRequest {
        path: ".".into(),
        files: Some(paths.clone()),
    };
    let info = relay.start_download(&req).await?;
    let part = Cleanup(repo.join(format!(".agentbox-tmp-{}.part", info.id)));
    let info = relay.download(&req, info, &part.0, max, progress).await?;
    relay.finish_download(&info.id).await;
    let repo = repo.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let staged = Cleanup(repo.join(format!(".agentbox-tmp-{}", info.id)));
        std::fs::create_dir(&staged.0)?;
        let file = std::fs::File::open(&part.0)?;
        unpack(std::io::BufReader::new(file), &staged.0, max).map_err(|e| {
            anyhow::anyhow!("the box sent an archive that was refused, nothing was written: {e}")
        })?;
        let wanted: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
        check_only_wanted(&staged.0, &staged.0, &wanted)?;
        let mut written = Vec::new();
        for path in &paths {
            if place(&repo, &staged.0.join(path), path)? {
                written.push(path.clone());
            }
        }
        Ok(written)
    })
    .await?
}

/// Every file in the staged tree must be one that was asked for.
fn check_only_wanted(root: &Path, dir: &Path, wanted: &BTreeSet<&str>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            check_only_wanted(root, &path, wanted)?;
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if !wanted.contains(rel.as_str()) {
            bail!("the box sent `{rel}`, which was not asked for; nothing was written");
        }
    }
    Ok(())
}

/// Moves staged `src` to `repo/rel`; never through a symlinked directory of the host, never
/// over a directory. Returns whether it was written.
fn place(repo: &Path, src: &Path, rel: &str) -> anyhow::Result<bool> {
    if std::fs::symlink_metadata(src).is_err() {
        return Ok(false); // gone from the box between listing and download
    }
    let mut cur = PathBuf::from(repo);
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        cur.push(part);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "{}: a file or symlink on the host is in the way; nothing more was written",
                cur.display()
            ),
            Err(_) => std::fs::create_dir(&cur)?,
        }
    }
    let dst = repo.join(rel);
    if std::fs::symlink_metadata(&dst).is_ok_and(|m| m.is_dir()) {
        bail!("{}: a directory on the host is in the way", dst.display());
    }
    std::fs::rename(src, &dst)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_executed_files_are_recognised() {
        for p in [
            ".envrc",
            ".vscode/tasks.json",
            ".husky/pre-commit",
            ".git/hooks/x",
            ".devcontainer/devcontainer.json",
        ] {
            assert!(is_host_executed(p), "{p}");
        }
        for p in [
            "src/main.rs",
            ".vscode/extensions.json.bak",
            "docs/.envrc.md",
            "README.md",
        ] {
            assert!(!is_host_executed(p), "{p}");
        }
    }

    #[test]
    fn a_box_cannot_slip_in_other_files_or_write_through_host_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let staged = dir.path().join("staged");
        std::fs::create_dir_all(staged.join("src")).expect("mkdir");
        std::fs::write(staged.join("src/a.rs"), "a").expect("write");
        std::fs::write(staged.join("src/evil.sh"), "evil").expect("write");
        let wanted = BTreeSet::from(["src/a.rs"]);
        let err = check_only_wanted(&staged, &staged, &wanted).expect_err("extra file");
        assert!(err.to_string().contains("src/evil.sh"), "{err}");

        let repo = dir.path().join("repo");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&repo).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, repo.join("src")).expect("symlink");
        let err = place(&repo, &staged.join("src/a.rs"), "src/a.rs").expect_err("symlink parent");
        assert!(err.to_string().contains("in the way"), "{err}");
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
    }
}
