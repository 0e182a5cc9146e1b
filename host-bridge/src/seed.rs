//! Packing a workspace seed on the host (DESIGN.md §3): a shallow clone of the current
//! commit, the uncommitted changes as a `git stash create` commit, and the untracked,
//! non-ignored files — one tar, hashed with blake3 while it is written to a temp file.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use agentbox_protocol::transfer::{append_path, append_tree, HashingWriter, SeedManifest};

use crate::git;

/// A seed ready to upload.
pub struct Seed {
    /// The archive (deleted with `_dir`).
    pub archive: PathBuf,
    /// blake3 of the archive, hex.
    pub blake3: String,
    /// Its size.
    pub size: u64,
    /// What it holds.
    pub manifest: SeedManifest,
    /// Untracked files packed.
    pub untracked: usize,
    /// The digest of each untracked file packed (UTF-8 names), for later syncs.
    pub digests: std::collections::BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

/// Removes the temporary refs made in the user's repo, however packing ends.
struct TempRefs<'a> {
    repo: &'a Path,
    refs: Vec<String>,
}

impl Drop for TempRefs<'_> {
    fn drop(&mut self) {
        for r in &self.refs {
            let _ = git::run(self.repo, &["update-ref", "-d", r]);
        }
    }
}

/// What to seed from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The current checkout: HEAD, uncommitted changes and untracked files.
    Worktree,
    /// A branch of the host repo, as committed.
    Branch(String),
}

/// Packs a seed of `repo` for a box whose branch will be `branch`.
pub fn pack(repo: &Path, branch: &str, depth: u32, source: &Source) -> anyhow::Result<Seed> {
    let rev = match source {
        Source::Worktree => "HEAD^{commit}".to_string(),
        Source::Branch(b) => format!("refs/heads/{b}^{{commit}}"),
    };
    let head = git::run(repo, &["rev-parse", "--verify", "-q", &rev]).map_err(|_| {
        anyhow::anyhow!(
            "the repository at {} has no commits yet: commit something first",
            repo.display()
        )
    })?;
    let stash = match source {
        Source::Worktree => git::run(repo, &["stash", "create"])?,
        Source::Branch(_) => String::new(),
    };
    let stash = (!stash.is_empty()).then_some(stash);

    // The clone fetches through temporary refs, so a detached HEAD and the (unreferenced)
    // stash commit travel the same way as a branch would.
    let tag = format!(
        "refs/agentbox-seed/{}-{}",
        std::process::id(),
        agentbox_protocol::now_millis()
    );
    let mut temp = TempRefs {
        repo,
        refs: Vec::new(),
    };
    git::run(repo, &["update-ref", &format!("{tag}/head"), &head])?;
    temp.refs.push(format!("{tag}/head"));
    if let Some(s) = &stash {
        git::run(repo, &["update-ref", &format!("{tag}/stash"), s])?;
        temp.refs.push(format!("{tag}/stash"));
    }

    let dir = tempfile::tempdir()?;
    let clone = dir.path().join("clone");
    git::run(dir.path(), &["init", "-q", "clone"])?;
    let url = format!("file://{}", repo.display());
    let mut refspecs = vec![format!("+{tag}/head:refs/heads/{branch}")];
    if stash.is_some() {
        refspecs.push(format!("+{tag}/stash:refs/agentbox/stash"));
    }
    // A stash commit needs its parents: at depth 1 it would arrive as a shallow boundary
    // and no longer be a stash, so a seed with uncommitted changes has at least depth 2.
    let depth = if stash.is_some() && depth == 1 {
        2
    } else {
        depth
    };
    let depth_arg = format!("--depth={depth}");
    let mut args: Vec<&str> = vec!["fetch", "-q", "--no-tags"];
    if depth > 0 {
        args.push(&depth_arg);
    }
    args.push(&url);
    args.extend(refspecs.iter().map(String::as_str));
    git::run(&clone, &args)?;
    drop(temp);

    let untracked_list = match source {
        Source::Worktree => git::run(repo, &["ls-files", "-z", "--others", "--exclude-standard"])?,
        Source::Branch(_) => String::new(),
    };
    let untracked: Vec<&str> = untracked_list
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect();

    let manifest = SeedManifest {
        branch: branch.to_string(),
        head,
        stash,
    };
    let archive = dir.path().join("seed.tar");
    let file = std::fs::File::create(&archive)?;
    let mut builder = tar::Builder::new(HashingWriter::new(BufWriter::new(file)));
    builder.follow_symlinks(false);
    let json = serde_json::to_vec(&manifest)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    builder.append_data(&mut header, "seed.json", &json[..])?;
    append_tree(&mut builder, &clone.join(".git"), Path::new("git"))?;
    let mut packed = 0;
    let mut digests = std::collections::BTreeMap::new();
    for rel in &untracked {
        if let Some(d) = agentbox_protocol::sync::entry_digest(&repo.join(rel))? {
            digests.insert((*rel).to_string(), d);
        }
        if append_path(&mut builder, &repo.join(rel), &Path::new("files").join(rel))? {
            packed += 1;
        }
    }
    let hashing = builder.into_inner()?;
    let (blake3, size, mut inner) = hashing.finish();
    inner.flush()?;
    Ok(Seed {
        archive,
        blake3,
        size,
        manifest,
        untracked: packed,
        digests,
        _dir: dir,
    })
}
