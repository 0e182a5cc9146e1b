//! Re-syncing a seeded box with the host tree (`agentbox sync`): only new commits (as a git
//! bundle), the host's uncommitted changes (a stash commit) and changed untracked files
//! travel, and the box wins every conflict.
//!
//! The host asks `POST /v1/workspace/digests` ([`DigestsRequest`] → [`DigestsResponse`])
//! what the box has at the paths it wants to send, decides per path, uploads a sync
//! archive (`sync.json` = [`SyncManifest`], `bundle`, `files/…`) through the upload API and
//! hands it to `POST /v1/sync/{upload id}`, which answers a [`SyncReport`].

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The refs a sync bundle carries (the box fetches them into `refs/agentbox/host*`).
pub const BUNDLE_HEAD_REF: &str = "refs/agentbox-sync/head";
/// The ref of the host's uncommitted changes in a sync bundle.
pub const BUNDLE_STASH_REF: &str = "refs/agentbox-sync/stash";

/// What a sync archive holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SyncManifest {
    /// The host's HEAD, when it moved since the last sync (it is in `bundle`).
    pub head: Option<String>,
    /// A `git stash create` commit of the host's uncommitted changes (in `bundle`).
    pub stash: Option<String>,
    /// The tree of the host's uncommitted changes as the seed or last sync gave them
    /// (`None`: there were none; the box compares with the stash's parent, the host's
    /// HEAD). A file the box still has as given takes the host's new version; one the box
    /// changed too is a conflict and stays as the box has it.
    #[serde(default)]
    pub base: Option<String>,
    /// Untracked files under `files/`, each replacing what the box has only if that is
    /// still what the host saw.
    pub files: Vec<SyncFile>,
}

/// One untracked file of a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SyncFile {
    /// Relative to the workspace.
    pub path: String,
    /// The box's digest of the path when the host looked ([`entry_digest`]); `None`: it
    /// did not exist.
    pub expect: Option<String>,
}

/// `POST /v1/workspace/digests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DigestsRequest {
    /// Paths relative to the workspace.
    pub paths: Vec<String>,
}

/// The digests, in the order asked; `None` where nothing (or no file or link) is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DigestsResponse {
    /// One per path.
    pub digests: Vec<Option<String>>,
}

/// What a sync did in the box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SyncReport {
    /// What happened to the host's commits, in a sentence.
    pub commits: String,
    /// Whether the box branch now contains the host's HEAD.
    pub merged: bool,
    /// What happened to the host's uncommitted changes, in a sentence.
    pub changes: String,
    /// Untracked files written.
    pub written: Vec<String>,
    /// Paths where the box had its own changes and kept them.
    pub kept_box_version: Vec<String>,
}

/// Whether `path` is a workspace-relative path a sync may touch: relative, no `.` or
/// `..` parts, not inside `.git`.
pub fn is_sync_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && path.split('/').next() != Some(".git")
        && !path.contains('\0')
}

/// The digest both sides compare: blake3 of a regular file's bytes, or of `link:` and the
/// target of a symlink; `None` when nothing (or something else) is there.
pub fn entry_digest(path: &Path) -> io::Result<Option<String>> {
    use std::os::unix::ffi::OsStrExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut hasher = blake3::Hasher::new();
    if meta.file_type().is_symlink() {
        hasher.update(b"link:");
        hasher.update(std::fs::read_link(path)?.as_os_str().as_bytes());
    } else if meta.is_file() {
        io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    } else {
        return Ok(None);
    }
    Ok(Some(hasher.finalize().to_hex().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_paths_stay_in_the_workspace_and_out_of_git() {
        assert!(is_sync_path("notes/todo.md"));
        assert!(is_sync_path(".env.local"));
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            ".git/hooks/pre-commit",
            ".git",
            "a//b",
            "./a",
        ] {
            assert!(!is_sync_path(bad), "{bad}");
        }
    }

    #[test]
    fn files_and_links_have_distinct_digests() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), "a").expect("write");
        std::os::unix::fs::symlink("a", dir.path().join("l")).expect("link");
        let f = entry_digest(&dir.path().join("f")).expect("f");
        let l = entry_digest(&dir.path().join("l")).expect("l");
        assert!(f.is_some() && l.is_some() && f != l);
        assert_eq!(entry_digest(&dir.path().join("none")).expect("none"), None);
        assert_eq!(entry_digest(dir.path()).expect("dir"), None);
    }
}

/// `POST /v1/workspace/listing`: the files of the box workspace that git does not ignore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListingRequest {
    /// Also list ignored `.env*` files.
    pub with_env: bool,
}

/// One file of a [`Listing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListedFile {
    /// Relative to the workspace.
    pub path: String,
    /// [`entry_digest`] of it.
    pub digest: String,
}

/// The answer to a [`ListingRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Listing {
    /// Tracked and untracked, non-ignored files (regular files and symlinks).
    pub files: Vec<ListedFile>,
    /// Files left out because their names are not UTF-8.
    pub skipped_names: u64,
}
