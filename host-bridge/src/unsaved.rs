//! The box's work the host does not have yet: what `agentbox destroy` names before it
//! deletes it, and the base `agentbox download` compares both sides with.
//!
//! A box file is the box's own work when it differs both from the host's tree now (it was
//! not brought back) and from what the host gave the box at the seed or last sync
//! ([`host_gave`]: the per-file digests of `sync.json` for untracked files, the seeded
//! head and changes tree in the host repository for tracked ones).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use agentbox_protocol::sync::{entry_digest, is_sync_path, Listing, ListingRequest};
use anyhow::{bail, Context};

use crate::sync::{SyncRecord, DOWNLOADED};
use crate::transfer::client::Relay;

/// What both sides last had in common: what the host gave the box (seed or last sync,
/// `sync.json`) and the files `agentbox download` wrote since (`downloaded.json`).
#[derive(Debug, Default)]
pub struct Base {
    record: Option<SyncRecord>,
    downloaded: BTreeMap<String, String>,
}

impl Base {
    /// The base of box directory `dir` (empty when the box was never seeded by this host).
    pub fn load(dir: &Path) -> Self {
        let downloaded = std::fs::read(crate::home::host_record(dir, DOWNLOADED).1)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            record: SyncRecord::load(dir).ok(),
            downloaded,
        }
    }

    /// Records that `download` wrote these `(path, digest)`s into the host tree: both
    /// sides have them now.
    pub fn save_downloaded(
        dir: &Path,
        written: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<()> {
        let mut all = Self::load(dir).downloaded;
        all.extend(written);
        let records = crate::home::host_records(dir);
        std::fs::create_dir_all(&records)?;
        let tmp = records.join(".downloaded.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)?;
        std::fs::rename(&tmp, records.join(DOWNLOADED))?;
        Ok(())
    }

    /// Whether there is anything to compare with.
    pub fn known(&self) -> bool {
        self.record.is_some()
    }

    /// The [`entry_digest`] both sides last had at `path`; `None` when that was nothing
    /// (or is unknown: see [`Base::known`]).
    pub fn digest(&self, repo: &Path, path: &str) -> anyhow::Result<Option<String>> {
        if let Some(d) = self.downloaded.get(path) {
            return Ok(Some(d.clone()));
        }
        host_gave(repo, self.record.as_ref(), path)
    }
}

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

/// How many of `ids` (commit ids a box reports as unpushed) the repository at `repo`
/// holds as commits: those the host has received whatever the box recorded. An id that is
/// not plain hex counts as not held, and an id the box repeats counts once (a box cannot
/// hide its unpushed commits behind copies of one the host has). Any number of ids is
/// answered without deadlock: git's answers are read while the ids are still written.
pub fn commits_host_has(repo: &Path, ids: &[&str]) -> anyhow::Result<usize> {
    use std::io::Write as _;
    let plain: std::collections::BTreeSet<String> = ids
        .iter()
        .filter(|id| matches!(id.len(), 40 | 64) && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|id| id.to_ascii_lowercase())
        .collect();
    if plain.is_empty() {
        return Ok(0);
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "--batch-check=%(objecttype)"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("cannot run git")?;
    let mut input = String::new();
    for id in &plain {
        input.push_str(id);
        input.push('\n');
    }
    // Written from a thread: git answers as it reads, and an answer larger than the pipe
    // would block it while this thread still writes.
    let writer = child
        .stdin
        .take()
        .map(|mut stdin| std::thread::spawn(move || stdin.write_all(input.as_bytes())));
    let out = child.wait_with_output().context("cannot run git")?;
    if let Some(writer) = writer {
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the thread asking git panicked"))?
            .context("cannot ask git")?;
    }
    if !out.status.success() {
        bail!("git cat-file failed in {}", repo.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "commit")
        .count())
}

/// The box files (sorted) that the host has neither now nor gave the box: changed in the
/// box and not brought back.
pub async fn changed_in_box(relay: &Relay, repo: &Path, dir: &Path) -> anyhow::Result<Vec<String>> {
    let base = Base::load(dir);
    let listing: Listing = relay
        .post_json("/v1/workspace/listing", &ListingRequest { with_env: false })
        .await?;
    let mut changed = Vec::new();
    for f in listing.files {
        if !is_sync_path(&f.path) {
            bail!(
                "the box listed `{}`, which is not a workspace path",
                crate::text::shown(&f.path)
            );
        }
        let ours = entry_digest(&repo.join(&f.path))
            .with_context(|| format!("cannot read {}", repo.join(&f.path).display()))?;
        if ours.as_deref() == Some(f.digest.as_str()) {
            continue;
        }
        if base.digest(repo, &f.path)?.as_deref() == Some(f.digest.as_str()) {
            continue;
        }
        changed.push(f.path);
    }
    Ok(changed)
}
