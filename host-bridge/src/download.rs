//! `agentbox download`: the box workspace back into the host tree.
//!
//! The box lists the files git does not ignore there, with digests; the host compares them
//! with its tree and shows what is new or modified before writing anything. `.git/` is
//! never written, at any depth or in any case ([`refused_in_host_tree`]). Files the host
//! executes or that configure what it runs (`.envrc`, editor tasks, `.cargo/config.toml`,
//! `.npmrc`, hook directories, …, at any depth: [`is_host_executed`]) are held back unless
//! the user approves them explicitly. The files travel as one verified download and land one `rename` each.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use agentbox_protocol::files::{new_transfer_id, DownloadRequest};
use agentbox_protocol::land::Cleanup;
use agentbox_protocol::sync::{entry_digest, is_sync_path, Listing, ListingRequest};
use agentbox_protocol::transfer::unpack;
use anyhow::{bail, Context};
use serde::Serialize;

use crate::transfer::client::{Progress, Relay};

// What the box may write into the host's project tree, for every write the box starts or
// shapes (`agentbox download`, `cp --to-host` through the bridge): one predicate for both.
// `agentbox cp BOX:… HOST-PATH` is the user's own `docker cp` (they chose source and
// destination), so it lands what they asked for; it still goes through the hardened
// extractor.
//
// Names are compared as a case-insensitive host would see them: Unicode lowercase of the
// whole name, code points HFS+ ignores removed, trailing dots and spaces dropped (Windows),
// so `.GIT`, `.Git`, `.git.`, `.git ` and `.g\u{200c}it` are all `.git`.

/// File names the host runs, or that make it run something, at any depth.
const HOST_EXECUTED_NAMES: &[&str] = &[
    // Its services run on this machine in a local box (`create` starts them).
    "agentbox.yaml",
    ".envrc",
    ".env.sh",
    ".pre-commit-config.yaml",
    ".gitmodules",
    ".lefthook.yml",
    "lefthook.yml",
    ".tool-versions",
    ".mise.toml",
    "mise.toml",
    ".npmrc",
    ".pnpmfile.cjs",
    "rust-toolchain",
    "rust-toolchain.toml",
];

/// File names that make the host run something when they sit in one of these directories.
const HOST_EXECUTED_IN: &[(&str, &[&str])] = &[
    (".vscode", &["tasks.json", "launch.json", "settings.json"]),
    (".cargo", &["config", "config.toml"]),
];

/// Directories whose every file the host may run, at any depth.
const HOST_EXECUTED_DIRS: &[&str] = &[".githooks", ".husky", ".devcontainer", ".idea", ".lefthook"];

/// A name as a case-insensitive host (macOS, Windows) compares it.
fn folded(name: &str) -> String {
    const HFS_IGNORED: &[char] = &[
        '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}',
        '\u{202d}', '\u{202e}', '\u{206a}', '\u{206b}', '\u{206c}', '\u{206d}', '\u{206e}',
        '\u{206f}', '\u{feff}',
    ];
    let kept: String = name.chars().filter(|c| !HFS_IGNORED.contains(c)).collect();
    kept.to_lowercase().trim_end_matches(['.', ' ']).to_string()
}

/// Whether a path component is `.git` on some host: any case, trailing dots or spaces,
/// ignorable code points, an NTFS stream (`.git::$INDEX_ALLOCATION`) or its 8.3 short
/// name `GIT~1`.
pub fn is_git_name(name: &str) -> bool {
    let f = folded(name);
    f == ".git" || f == "git~1" || f.starts_with(".git:")
}

/// Why the box may never write `path` (relative, `/`-separated) into the host tree: `.git`
/// at any depth, or agentbox's own staging names. `None` when it may.
pub fn refused_in_host_tree(path: &str) -> Option<&'static str> {
    for part in path.split('/') {
        if is_git_name(part) {
            return Some("`.git` is never written by a box, at any depth or in any case");
        }
        if folded(part).starts_with(".agentbox-tmp-") {
            return Some("`.agentbox-tmp-*` names are agentbox's staging; a box never writes them");
        }
    }
    None
}

/// Whether the host would run `path` (relative, `/`-separated), or be configured by it to
/// run something, at any depth: held back unless the user asks for it. Paths under `.git`
/// count too (they are refused outright by [`refused_in_host_tree`]).
pub fn is_host_executed(path: &str) -> bool {
    let parts: Vec<String> = path.split('/').map(folded).collect();
    let file = parts.last().map_or("", String::as_str);
    let dir = parts.len().checked_sub(2).map_or("", |i| parts[i].as_str());
    refused_in_host_tree(path).is_some()
        || HOST_EXECUTED_NAMES.contains(&file)
        || file.starts_with(".yarnrc")
        || HOST_EXECUTED_IN
            .iter()
            .any(|(d, files)| dir == *d && files.contains(&file))
        || parts[..parts.len().saturating_sub(1)]
            .iter()
            .any(|p| HOST_EXECUTED_DIRS.contains(&p.as_str()))
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
    /// Changed on the host too since the seed or last sync: held back unless the user
    /// takes the box's version (`--theirs`).
    pub conflict: bool,
    /// The box's [`entry_digest`] of it.
    #[serde(skip)]
    pub digest: String,
}

/// The change list.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// Files that differ, sorted by path.
    pub files: Vec<Planned>,
    /// Box files left out for a name that is not UTF-8.
    pub skipped_names: u64,
    /// Box files never written, whatever the user allows ([`refused_in_host_tree`]).
    pub refused: Vec<String>,
    /// Files changed on both sides since the seed or last sync (also in `files`, marked
    /// `conflict`): the host's stay unless the user takes the box's.
    pub conflicts: Vec<String>,
    /// Files only the host changed since (the box still has what it was given): never
    /// written, the host's edit stays.
    pub host_newer: Vec<String>,
}

/// Compares the box workspace with the host tree at `repo`, three ways: against `base`,
/// what both last had in common (the seed or last sync, and earlier downloads).
pub async fn plan(
    relay: &Relay,
    repo: &Path,
    base: &crate::unsaved::Base,
    with_env: bool,
) -> anyhow::Result<Plan> {
    let listing: Listing = relay
        .post_json("/v1/workspace/listing", &ListingRequest { with_env })
        .await?;
    let mut files = Vec::new();
    let mut refused = Vec::new();
    let mut conflicts = Vec::new();
    let mut host_newer = Vec::new();
    for f in listing.files {
        if !is_sync_path(&f.path) {
            bail!(
                "the box listed `{}`, which is not a workspace path",
                crate::text::shown(&f.path)
            );
        }
        if refused_in_host_tree(&f.path).is_some() {
            refused.push(f.path);
            continue;
        }
        let ours = entry_digest(&repo.join(&f.path))
            .with_context(|| format!("cannot read {}", repo.join(&f.path).display()))?;
        if ours.as_deref() == Some(f.digest.as_str()) {
            continue;
        }
        let mut conflict = false;
        if base.known() {
            let common = base.digest(repo, &f.path)?;
            if common.as_deref() == Some(f.digest.as_str()) {
                // Only the host changed it since: its edit stays.
                host_newer.push(f.path);
                continue;
            }
            conflict = common != ours;
        }
        if conflict {
            conflicts.push(f.path.clone());
        }
        files.push(Planned {
            host_executed: is_host_executed(&f.path),
            change: if ours.is_some() {
                Change::Modified
            } else {
                Change::New
            },
            path: f.path,
            conflict,
            digest: f.digest,
        });
    }
    Ok(Plan {
        files,
        skipped_names: listing.skipped_names,
        refused,
        conflicts,
        host_newer,
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
        bail!("refusing to download `{bad}`: it is not a relative path inside the workspace");
    }
    if let Some((bad, why)) = paths
        .iter()
        .find_map(|p| refused_in_host_tree(p).map(|why| (p, why)))
    {
        bail!("refusing to download `{bad}`: {why}");
    }
    let req = DownloadRequest {
        path: ".".into(),
        files: Some(paths.clone()),
    };
    let info = relay.start_download(&req).await?;
    // Staging names are the host's own: nothing the box sends names a host path.
    let staging = new_transfer_id()?;
    let part = Cleanup::create_file(repo.join(format!(".agentbox-tmp-{staging}.part")))?;
    let info = relay
        .download(&req, info, part.path(), max, progress)
        .await?;
    relay.finish_download(info.id.as_str()).await;
    let repo = repo.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let staged = Cleanup::create_dir(repo.join(format!(".agentbox-tmp-{staging}")))?;
        let file = std::fs::File::open(part.path())?;
        unpack(std::io::BufReader::new(file), staged.path(), max).map_err(|e| {
            anyhow::anyhow!("the box sent an archive that was refused, nothing was written: {e}; change or remove that path in the box, then download again")
        })?;
        let wanted: BTreeSet<&str> = paths.iter().map(String::as_str).collect();
        check_only_wanted(staged.path(), staged.path(), &wanted)?;
        let mut written = Vec::new();
        for path in &paths {
            if place(&repo, &staged.path().join(path), path)? {
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

    /// Issue 20, hole 6: the predicate holds at any depth and in any case.
    #[test]
    fn host_executed_files_are_recognised_at_any_depth_and_case() {
        for p in [
            "nested/.envrc",
            // A local box runs its services on this machine.
            "agentbox.yaml",
            "AgentBox.YAML",
            ".ENVRC",
            "a/b/.vscode/tasks.json",
            ".VSCode/settings.json",
            ".cargo/config.toml",
            "crate/.cargo/config",
            ".npmrc",
            "web/.npmrc",
            ".yarnrc",
            ".yarnrc.yml",
            "sub/.husky/pre-commit",
            "nested/.git/config",
            ".GIT/config",
            ".Git/hooks/post-checkout",
            ".git./config",
            ".git /config",
            "a/.g\u{200c}it/config",
            "GIT~1/config",
            ".agentbox-tmp-0123456789abcdef/x",
        ] {
            assert!(is_host_executed(p), "{p}");
        }
        for p in [
            "a/.git/config",
            ".GIT/x",
            "x/.Git./y",
            ".agentbox-tmp-x.part",
        ] {
            assert!(refused_in_host_tree(p).is_some(), "{p}");
        }
        for p in [
            "src/main.rs",
            ".vscode/extensions.json",
            ".github/workflows/ci.yml",
            ".gitignore",
            "docs/.envrc.md",
        ] {
            assert!(refused_in_host_tree(p).is_none(), "{p}");
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
