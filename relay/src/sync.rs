//! Applying a sync archive to a seeded workspace (`agentbox sync`). The box wins every
//! conflict and nothing of the box's is lost: its uncommitted changes are stashed around
//! the merge and restored, a merge that conflicts is aborted (the host's commits stay at
//! `refs/agentbox/host`), and a file the box changed is kept.

use std::path::{Path, PathBuf};
use std::process::Command;

use agentbox_protocol::sync::{
    entry_digest, is_sync_path, SyncManifest, SyncReport, BUNDLE_HEAD_REF, BUNDLE_STASH_REF,
};

/// Why a sync could not be applied at all.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The workspace was never seeded.
    #[error("the workspace is not seeded yet")]
    NotSeeded,
    /// The archive lacks a part or its manifest is bad.
    #[error("malformed sync: {0}")]
    Malformed(String),
    /// A git step that must work failed.
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

struct Git<'a> {
    workspace: &'a Path,
}

impl Git<'_> {
    fn output(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new(crate::real_git())
            .arg("-C")
            .arg(self.workspace)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_MERGE_AUTOEDIT", "no")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .env_remove("AGENTBOX_BRIDGE_TOKEN")
            .output()
    }

    /// Runs git; stdout on success, the error (with stderr) otherwise.
    fn run(&self, args: &[&str]) -> Result<String, SyncError> {
        let out = self.output(args)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(SyncError::Git {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Whether git succeeds.
    fn ok(&self, args: &[&str]) -> bool {
        self.output(args).is_ok_and(|o| o.status.success())
    }

    /// Whether the working tree or index has tracked changes.
    fn dirty(&self) -> bool {
        !self.ok(&["diff", "--quiet", "HEAD"])
    }

    /// A committer identity for merge commits when the box has none configured.
    fn identity(&self) -> Vec<&'static str> {
        if self.ok(&["config", "user.email"]) {
            vec![]
        } else {
            vec![
                "-c",
                "user.name=agentbox",
                "-c",
                "user.email=agentbox@localhost",
            ]
        }
    }
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Applies the unpacked sync archive in `tree` to `workspace`.
pub fn apply(workspace: &Path, tree: &Path) -> Result<SyncReport, SyncError> {
    let manifest: SyncManifest = serde_json::from_slice(&std::fs::read(tree.join("sync.json"))?)
        .map_err(|e| SyncError::Malformed(format!("sync.json: {e}")))?;
    for id in manifest
        .head
        .iter()
        .chain(&manifest.stash)
        .chain(&manifest.base)
    {
        if !is_object_id(id) {
            return Err(SyncError::Malformed(format!("`{id}` is not an object id")));
        }
    }
    if let Some(bad) = manifest.files.iter().find(|f| !is_sync_path(&f.path)) {
        return Err(SyncError::Malformed(format!(
            "`{}` is not a workspace path a sync may write",
            bad.path
        )));
    }
    if !workspace.join(".git").is_dir() {
        return Err(SyncError::NotSeeded);
    }
    let git = Git { workspace };
    let mut report = SyncReport::default();
    if manifest.head.is_some() || manifest.stash.is_some() {
        fetch_bundle(&git, &tree.join("bundle"), &manifest)?;
    }
    match &manifest.head {
        Some(head) => merge_host_head(&git, head, &mut report)?,
        None => {
            report.commits = "the host has no new commits".into();
            report.merged = true;
        }
    }
    match &manifest.stash {
        Some(stash) => apply_host_changes(&git, stash, manifest.base.as_deref(), &mut report)?,
        None => report.changes = "the host has no uncommitted changes".into(),
    }
    for file in &manifest.files {
        let src = tree.join("files").join(&file.path);
        if std::fs::symlink_metadata(&src).is_err() {
            return Err(SyncError::Malformed(format!(
                "`{}` is listed but not sent",
                file.path
            )));
        }
        let dst = workspace.join(&file.path);
        if place_file(workspace, &src, &dst, file.expect.as_deref())? {
            report.written.push(file.path.clone());
        } else {
            report.kept_box_version.push(file.path.clone());
        }
    }
    Ok(report)
}

fn fetch_bundle(git: &Git<'_>, bundle: &Path, manifest: &SyncManifest) -> Result<(), SyncError> {
    if !bundle.is_file() {
        return Err(SyncError::Malformed("no bundle".into()));
    }
    let bundle = bundle.to_string_lossy();
    let mut args = vec!["fetch", "-q", "--no-tags", "--no-write-fetch-head", &bundle];
    let head_spec = format!("+{BUNDLE_HEAD_REF}:refs/agentbox/host");
    let stash_spec = format!("+{BUNDLE_STASH_REF}:refs/agentbox/host-stash");
    if manifest.head.is_some() {
        args.push(&head_spec);
    }
    if manifest.stash.is_some() {
        args.push(&stash_spec);
    }
    git.run(&args)?;
    let check = |r: &str, want: &str| -> Result<(), SyncError> {
        let got = git.run(&["rev-parse", "--verify", "-q", r])?;
        if got == want {
            Ok(())
        } else {
            Err(SyncError::Malformed(format!(
                "{r} is {got}, the manifest says {want}"
            )))
        }
    };
    if let Some(h) = &manifest.head {
        check("refs/agentbox/host", h)?;
    }
    if let Some(s) = &manifest.stash {
        check("refs/agentbox/host-stash", s)?;
    }
    Ok(())
}

/// Brings the host's HEAD into the box branch: fast-forward or merge, with the box's own
/// uncommitted changes stashed around it.
fn merge_host_head(git: &Git<'_>, head: &str, report: &mut SyncReport) -> Result<(), SyncError> {
    // Whatever happens below, the host has this commit: a push bundle need not carry it.
    let _ = git.run(&["update-ref", "refs/agentbox/seed", head]);
    if git.ok(&["merge-base", "--is-ancestor", head, "HEAD"]) {
        report.commits = "the box already has the host's commits".into();
        report.merged = true;
        return Ok(());
    }
    let stashed = git.dirty();
    if stashed {
        git.run(&[
            "stash",
            "push",
            "-q",
            "-m",
            "agentbox sync: the box's changes",
        ])?;
    }
    let mut args = git.identity();
    args.extend(["merge", "-q", "--no-edit", "refs/agentbox/host"]);
    match git.run(&args) {
        Ok(_) => {
            report.merged = true;
            report.commits = "merged the host's new commits".into();
        }
        Err(e) => {
            if git.ok(&["rev-parse", "-q", "--verify", "MERGE_HEAD"]) {
                let _ = git.run(&["merge", "--abort"]);
            }
            report.commits = format!(
                "not merged ({}): the host's commits are at refs/agentbox/host, merge them yourself",
                first_line(&e)
            );
        }
    }
    if stashed {
        restore_box_changes(git, report)?;
    }
    Ok(())
}

fn first_line(e: &SyncError) -> String {
    let s = e.to_string();
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Pops the box's stashed changes back; where they conflict with what was merged, the
/// box's version of the file wins.
fn restore_box_changes(git: &Git<'_>, report: &mut SyncReport) -> Result<(), SyncError> {
    if git.ok(&["stash", "pop", "-q", "--index"]) || git.ok(&["stash", "pop", "-q"]) {
        return Ok(());
    }
    let conflicted = git.run(&["diff", "--name-only", "--diff-filter=U"])?;
    for path in conflicted.lines().filter(|l| !l.is_empty()) {
        git.run(&["checkout", "--theirs", "--", path])?;
        report.kept_box_version.push(path.to_string());
    }
    git.run(&["reset", "-q"])?;
    git.run(&["stash", "drop", "-q"])?;
    Ok(())
}

/// Applies the host's uncommitted changes file by file. `base` is the tree of the changes
/// the host gave before (seed or last sync; `None`: none, so the host's HEAD, the stash's
/// parent). A file the box still has as given takes the host's new version; a file the box
/// changed too is a conflict: it stays as the box has it and is reported by name.
fn apply_host_changes(
    git: &Git<'_>,
    stash: &str,
    base: Option<&str>,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let parent = format!("{stash}^1");
    let base = match base {
        Some(b) if git.ok(&["cat-file", "-e", &format!("{b}^{{tree}}")]) => b.to_string(),
        // The box lost what it was given (gc): it cannot tell its changes apart.
        Some(_) => return refuse_host_changes(git, stash, report),
        None => parent.clone(),
    };
    let mut touched = std::collections::BTreeSet::new();
    for from in [parent.as_str(), base.as_str()] {
        let names = git.run(&["diff", "--no-renames", "--name-only", "-z", from, stash])?;
        touched.extend(
            names
                .split('\0')
                .filter(|l| !l.is_empty())
                .map(ToString::to_string),
        );
    }
    if touched.is_empty() {
        report.changes = "the host has no uncommitted changes".into();
        return Ok(());
    }
    let mut applied = 0;
    let mut conflicts = Vec::new();
    for path in &touched {
        if same_as(git, &base, path)? {
            // As the host gave it: the host's new version (or its deletion).
            let source = format!("--source={stash}");
            if git.ok(&["cat-file", "-e", &format!("{stash}:{path}")]) {
                git.run(&["restore", &source, "--worktree", "--", path])?;
                // A file new on the host is added, as `git stash apply` would.
                if !git.ok(&["ls-files", "--error-unmatch", "--", path]) {
                    git.run(&["add", "--", path])?;
                }
            } else if std::fs::symlink_metadata(git.workspace.join(path)).is_ok() {
                git.run(&["rm", "-q", "--cached", "--ignore-unmatch", "--", path])?;
                std::fs::remove_file(git.workspace.join(path))?;
            }
            applied += 1;
        } else if !same_as(git, stash, path)? {
            conflicts.push(path.clone());
        }
    }
    report.changes = if conflicts.is_empty() {
        format!("applied the host's uncommitted changes ({applied} file(s))")
    } else {
        format!(
            "applied the host's uncommitted changes to {applied} file(s); {} file(s) the box changed too kept as the box has them ({}); the host's are at refs/agentbox/host-stash",
            conflicts.len(),
            conflicts.join(", ")
        )
    };
    report.kept_box_version.extend(conflicts);
    Ok(())
}

/// Whether the box's working file at `path` is what `tree` has there (both absent
/// counts).
fn same_as(git: &Git<'_>, tree: &str, path: &str) -> Result<bool, SyncError> {
    let in_tree = git.ok(&["cat-file", "-e", &format!("{tree}:{path}")]);
    let on_disk = std::fs::symlink_metadata(git.workspace.join(path)).is_ok();
    if !in_tree {
        return Ok(!on_disk);
    }
    if !on_disk {
        return Ok(false);
    }
    // An untracked file is invisible to `git diff TREE`: compare the blobs.
    if !git.ok(&["ls-files", "--error-unmatch", "--", path]) {
        let ours = git.run(&["hash-object", "--", path])?;
        let theirs = git.run(&["rev-parse", &format!("{tree}:{path}")])?;
        return Ok(ours == theirs);
    }
    Ok(git.ok(&["diff", "--quiet", tree, "--", path]))
}

/// The host's changes left unapplied, every file they touch reported as kept.
fn refuse_host_changes(
    git: &Git<'_>,
    stash: &str,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let touched = git.run(&["diff", "--name-only", &format!("{stash}^1"), stash])?;
    report.changes = "not applied: the box no longer has what the host gave it, so it cannot tell its own changes apart; \
                      the host's are at refs/agentbox/host-stash"
        .into();
    report.kept_box_version.extend(
        touched
            .lines()
            .filter(|l| !l.is_empty())
            .map(ToString::to_string),
    );
    Ok(())
}

/// Moves `src` to `dst` if `dst` still has digest `expect`; refuses to write through a
/// symlinked directory. Returns whether it was written.
fn place_file(
    workspace: &Path,
    src: &Path,
    dst: &Path,
    expect: Option<&str>,
) -> Result<bool, SyncError> {
    if entry_digest(dst)?.as_deref() != expect {
        return Ok(false);
    }
    let rel = dst.strip_prefix(workspace).unwrap_or(dst);
    let mut cur = PathBuf::from(workspace);
    let parents: Vec<_> = rel.components().collect();
    for c in &parents[..parents.len().saturating_sub(1)] {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(_) => std::fs::create_dir(&cur)?,
        }
    }
    if std::fs::symlink_metadata(dst).is_ok_and(|m| m.is_dir()) {
        return Ok(false);
    }
    std::fs::rename(src, dst)?;
    Ok(true)
}

/// The files of `workspace` that git does not ignore (and ignored `.env*` files when
/// `with_env`), with their digests, sorted by path.
pub fn listing(
    workspace: &Path,
    with_env: bool,
) -> Result<agentbox_protocol::sync::Listing, SyncError> {
    use agentbox_protocol::sync::{ListedFile, Listing};
    let git = Git { workspace };
    let list = |args: &[&str]| -> Result<Vec<u8>, SyncError> {
        let out = git.output(args)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(SyncError::Git {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    };
    let mut raw = list(&["ls-files", "-z", "-c", "-o", "--exclude-standard"])?;
    if with_env {
        let ignored = list(&["ls-files", "-z", "-o", "-i", "--exclude-standard"])?;
        for name in ignored.split(|&b| b == 0) {
            let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
            if base.starts_with(b".env") {
                raw.extend_from_slice(name);
                raw.push(0);
            }
        }
    }
    let mut paths = std::collections::BTreeSet::new();
    let mut skipped_names = 0;
    for name in raw.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        match std::str::from_utf8(name) {
            Ok(p) if is_sync_path(p) && !p.starts_with(".agentbox-") => {
                paths.insert(p.to_string());
            }
            Ok(_) => {}
            Err(_) => skipped_names += 1,
        }
    }
    let mut files = Vec::new();
    for path in paths {
        if let Some(digest) = entry_digest(&workspace.join(&path))? {
            files.push(ListedFile { path, digest });
        }
    }
    Ok(Listing {
        files,
        skipped_names,
    })
}
