//! `agentbox sync`: bring a box up to date with the host tree, sending only what changed.
//!
//! The host keeps, per box, what it last sent ([`SyncRecord`] in the box's directory under
//! `AGENTBOX_HOME`): the host commit and the digest of every untracked file. A sync sends a
//! git bundle of the commits since that commit, a stash commit of the uncommitted changes,
//! and the untracked files whose digest moved on the host — each only if the box did not
//! change it in the meantime (the box wins; the report says so).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use agentbox_protocol::files::new_transfer_id;
use agentbox_protocol::sync::{
    entry_digest, DigestsRequest, DigestsResponse, SyncFile, SyncManifest, SyncReport,
    BUNDLE_HEAD_REF, BUNDLE_STASH_REF,
};
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::git;
use crate::transfer::client::Relay;

/// The name, among the box's host records ([`crate::home::host_records`]), of the digests of the files `agentbox download`
/// wrote since the last sync (a sync removes it: its record then covers them).
pub const DOWNLOADED: &str = "downloaded.json";

/// What the host last sent a box.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// The host commit the box has.
    pub head: String,
    /// The tree of the uncommitted changes as last sent (empty: none).
    #[serde(default)]
    pub changes_tree: String,
    /// Digest of each untracked file as sent.
    pub files: BTreeMap<String, String>,
}

impl SyncRecord {
    /// The record of box directory `dir` (`sync.json`); a missing one is an error, since a
    /// sync without it would resend everything.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let (_, path) = crate::home::host_record(dir, "sync.json");
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "{} is missing: this box was not seeded by this host",
                path.display()
            )
        })?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display()))
    }

    /// Saves it atomically.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let (path, _) = crate::home::host_record(dir, "sync.json");
        let records = crate::home::host_records(dir);
        std::fs::create_dir_all(&records)?;
        let tmp = records.join(".sync.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

/// Forgets what `download` wrote since the last sync (in both places it may be kept).
pub fn forget_downloaded(dir: &Path) {
    let _ = std::fs::remove_file(crate::home::host_records(dir).join(DOWNLOADED));
    let _ = std::fs::remove_file(dir.join(DOWNLOADED));
}

/// The untracked, non-ignored files of `repo` with their digests. Names that are not
/// UTF-8 are left out (and counted).
pub fn untracked_digests(repo: &Path) -> anyhow::Result<(BTreeMap<String, String>, usize)> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["ls-files", "-z", "--others", "--exclude-standard"])
        .output()
        .context("cannot run git")?;
    if !out.status.success() {
        bail!(
            "git ls-files failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut digests = BTreeMap::new();
    let mut skipped = 0;
    for raw in out.stdout.split(|&b| b == 0).filter(|s| !s.is_empty()) {
        let Ok(rel) = std::str::from_utf8(raw) else {
            skipped += 1;
            continue;
        };
        if let Some(d) = entry_digest(&repo.join(rel))? {
            digests.insert(rel.to_string(), d);
        }
    }
    Ok((digests, skipped))
}

/// The outcome of a sync, for the user.
#[derive(Debug, Serialize)]
pub struct Outcome {
    /// What the box did (empty when nothing needed sending).
    pub report: SyncReport,
    /// Bytes uploaded.
    pub bytes_sent: u64,
    /// Untracked files the box changed itself, so the host's newer version stayed home.
    pub kept_in_box: Vec<String>,
    /// Untracked files skipped for a name that is not UTF-8.
    pub skipped_names: usize,
}

/// Removes the temporary bundle refs however the sync ends.
struct TempRefs<'a>(&'a Path, Vec<&'static str>);

impl Drop for TempRefs<'_> {
    fn drop(&mut self) {
        for r in &self.1 {
            let _ = git::run(self.0, &["update-ref", "-d", r]);
        }
    }
}

/// Syncs box `dir` (its record) through `relay` from `repo`.
pub async fn sync(relay: &Relay, repo: &Path, dir: &Path) -> anyhow::Result<Outcome> {
    let record = SyncRecord::load(dir)?;
    let head = git::run(repo, &["rev-parse", "--verify", "-q", "HEAD^{commit}"])
        .context("the repository has no commits")?;
    let stash = git::run(repo, &["stash", "create"])?;
    let stash = (!stash.is_empty()).then_some(stash);
    // `stash create` makes a new commit every time; its tree says whether the changes moved.
    let changes_tree = match &stash {
        Some(s) => git::run(repo, &["rev-parse", &format!("{s}^{{tree}}")])?,
        None => String::new(),
    };
    let stash = stash.filter(|_| changes_tree != record.changes_tree);
    let (host_files, skipped_names) = untracked_digests(repo)?;

    let candidates: Vec<String> = host_files
        .iter()
        .filter(|(p, d)| record.files.get(*p) != Some(*d))
        .map(|(p, _)| p.clone())
        .collect();
    let in_box = if candidates.is_empty() {
        Vec::new()
    } else {
        relay
            .post_json::<_, DigestsResponse>(
                "/v1/workspace/digests",
                &DigestsRequest {
                    paths: candidates.clone(),
                },
            )
            .await?
            .digests
    };
    if in_box.len() != candidates.len() {
        bail!(
            "the box answered {} digests for {} paths",
            in_box.len(),
            candidates.len()
        );
    }
    let mut next = SyncRecord {
        head: head.clone(),
        changes_tree: changes_tree.clone(),
        files: record.files.clone(),
    };
    let mut send = Vec::new();
    let mut kept_in_box = Vec::new();
    for (path, theirs) in candidates.iter().zip(in_box) {
        let ours = &host_files[path];
        if theirs.as_ref() == Some(ours) {
            next.files.insert(path.clone(), ours.clone());
        } else if theirs.as_ref() == record.files.get(path) {
            send.push(SyncFile {
                path: path.clone(),
                expect: theirs,
            });
        } else {
            kept_in_box.push(path.clone());
        }
    }
    let head_moved = head != record.head;
    if !head_moved && stash.is_none() && send.is_empty() {
        next.save(dir)?;
        forget_downloaded(dir);
        return Ok(Outcome {
            report: SyncReport {
                commits: "the host has no new commits".into(),
                merged: true,
                changes: "the host has no uncommitted changes".into(),
                ..SyncReport::default()
            },
            bytes_sent: 0,
            kept_in_box,
            skipped_names,
        });
    }

    let work = tempfile::tempdir()?;
    let bundle = work.path().join("bundle");
    if head_moved || stash.is_some() {
        let mut temp = TempRefs(repo, Vec::new());
        let mut args = vec!["bundle".to_string(), "create".into(), "-q".into()];
        args.push(bundle.display().to_string());
        if head_moved {
            git::run(repo, &["update-ref", BUNDLE_HEAD_REF, &head])?;
            temp.1.push(BUNDLE_HEAD_REF);
            args.push(BUNDLE_HEAD_REF.into());
        }
        if let Some(s) = &stash {
            git::run(repo, &["update-ref", BUNDLE_STASH_REF, s])?;
            temp.1.push(BUNDLE_STASH_REF);
            args.push(BUNDLE_STASH_REF.into());
        }
        if !record.head.is_empty() && git::run(repo, &["cat-file", "-e", &record.head]).is_ok() {
            args.push(format!("^{}", record.head));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        git::run(repo, &args)?;
    }
    let manifest = SyncManifest {
        head: head_moved.then(|| head.clone()),
        base: stash
            .as_ref()
            .and((!record.changes_tree.is_empty()).then(|| record.changes_tree.clone())),
        stash,
        files: send,
    };
    let archive = work.path().join("sync.tar");
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&archive)?);
        let mut builder = tar::Builder::new(file);
        builder.follow_symlinks(false);
        let json = serde_json::to_vec(&manifest)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, "sync.json", &json[..])?;
        if bundle.exists() {
            builder.append_path_with_name(&bundle, "bundle")?;
        }
        for f in &manifest.files {
            agentbox_protocol::transfer::append_path(
                &mut builder,
                &repo.join(&f.path),
                &PathBuf::from("files").join(&f.path),
            )?;
        }
        builder.into_inner()?.flush()?;
    }
    let bytes_sent = std::fs::metadata(&archive)?.len();
    let report: SyncReport = relay
        .upload_and_use(&new_transfer_id()?, &archive, "/v1/sync", &|_, _| {})
        .await?;
    for path in &report.written {
        if let Some(d) = host_files.get(path) {
            next.files.insert(path.clone(), d.clone());
        }
    }
    if !report.merged {
        // The box does not have the host's commits merged: keep offering them.
        next.head = record.head;
    }
    next.save(dir)?;
    // The record now covers what `download` wrote since the last sync.
    forget_downloaded(dir);
    Ok(Outcome {
        report,
        bytes_sent,
        kept_in_box,
        skipped_names,
    })
}
