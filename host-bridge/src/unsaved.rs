//! The box's work the host does not have yet: what `agentbox destroy` names before it
//! deletes it, and the base `agentbox download` compares both sides with.
//!
//! A box file is the box's own work when it differs both from the host's tree now (it was
//! not brought back) and from what the host gave the box at the seed or last sync
//! ([`host_gave`]: the per-file digests of `sync.json` for untracked files, the seeded
//! head and changes tree in the host repository for tracked ones).

use std::path::Path;
use std::process::Command;

use agentbox_protocol::sync::{entry_digest, is_sync_path, Listing, ListingRequest};
use anyhow::{bail, Context};

use crate::sync::SyncRecord;
use crate::transfer::client::Relay;

/// The [`entry_digest`] of what the host gave the box at `path` (relative) at the seed or
/// last sync, per `record`; `None` when it gave nothing there (or there is no record).
pub fn host_gave(
    repo: &Path,
    record: Option<&SyncRecord>,
    path: &str,
) -> anyhow::Result<Option<String>> {
    let Some(record) = record else {
        return Ok(None);
    };
    if let Some(d) = record.files.get(path) {
        return Ok(Some(d.clone()));
    }
    let tree = if record.changes_tree.is_empty() {
        &record.head
    } else {
        &record.changes_tree
    };
    if tree.is_empty() {
        return Ok(None);
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .context("cannot run git")
    };
    let listed = git(&["ls-tree", "-z", tree, "--", path])?;
    if !listed.status.success() {
        // The recorded tree is gone from the host repository (gc): no base to compare.
        return Ok(None);
    }
    // `<mode> <type> <oid>\t<path>\0`
    let entry = String::from_utf8_lossy(&listed.stdout);
    let Some((meta, name)) = entry.trim_end_matches('\0').split_once('\t') else {
        return Ok(None);
    };
    let mut parts = meta.split(' ');
    let (Some(mode), Some("blob"), Some(oid)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(None);
    };
    if name != path {
        return Ok(None);
    }
    let blob = git(&["cat-file", "blob", oid])?;
    if !blob.status.success() {
        bail!(
            "git cat-file {oid} failed: {}",
            String::from_utf8_lossy(&blob.stderr).trim()
        );
    }
    let mut hasher = blake3::Hasher::new();
    if mode == "120000" {
        hasher.update(b"link:");
    }
    hasher.update(&blob.stdout);
    Ok(Some(hasher.finalize().to_hex().to_string()))
}

/// The box files (sorted) that the host has neither now nor gave the box: changed in the
/// box and not brought back.
pub async fn changed_in_box(relay: &Relay, repo: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
    let record = SyncRecord::load(dir).ok();
    let listing: Listing = relay
        .post_json("/v1/workspace/listing", &ListingRequest { with_env: false })
        .await?;
    let mut changed = Vec::new();
    for f in listing.files {
        if !is_sync_path(&f.path) {
            bail!("the box listed `{}`, which is not a workspace path", f.path);
        }
        let ours = entry_digest(&repo.join(&f.path))
            .with_context(|| format!("cannot read {}", repo.join(&f.path).display()))?;
        if ours.as_deref() == Some(f.digest.as_str()) {
            continue;
        }
        if host_gave(repo, record.as_ref(), &f.path)?.as_deref() == Some(f.digest.as_str()) {
            continue;
        }
        changed.push(f.path);
    }
    Ok(changed)
}
