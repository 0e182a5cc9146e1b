//! Putting a verified transfer in place, with `docker cp` semantics, on either side.
//!
//! The rules are `docker cp`'s, cell by cell (`tests/tests/docker_cp_table.rs` checks
//! each against `docker cp` itself): a destination that is an existing directory receives
//! the entries under their own names; any other destination *is* the copy, and its parent
//! must exist. A destination written with a trailing `/` must be a directory: a directory
//! source creates it, a file source needs it to exist; one written with a trailing `/.`
//! must exist. A source written `DIR/.` copies DIR's contents into an existing directory
//! (and makes a missing destination from DIR, like `DIR`). Files land by `rename(2)` from a staging name in the same
//! directory, so a reader sees the old file or the new one, never half of one. A tree is
//! extracted into a staging directory next to its target first; existing directories are
//! merged into, and a symlink already at a target is replaced, never followed.
//!
//! Landing is atomic against a crash of either process, not against a power loss: like
//! `docker cp` and `rsync`, nothing is `fsync`ed (that would make a 1 GiB copy wait for
//! the disk instead of the page cache, ~1.3 s here), and the source is still on the other
//! side.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

/// Why a transfer could not land.
#[derive(Debug, thiserror::Error)]
pub enum LandError {
    /// The destination cannot take the entry.
    #[error("{path}: {reason}")]
    Refused {
        /// The destination path concerned.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// The filesystem failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn refused(path: &Path, reason: &'static str) -> LandError {
    LandError::Refused {
        path: path.display().to_string(),
        reason,
    }
}

/// Whether a path as the user wrote it names a directory's contents: `.` or `…/.`
/// (`docker cp SRC/. DEST` copies what is in SRC, not SRC).
pub fn names_contents(raw: &OsStr) -> bool {
    let raw = raw.as_encoded_bytes();
    raw == b"." || raw.ends_with(b"/.")
}

/// Where an entry called `name` (`is_dir`: a directory) lands for destination `dest`
/// (`dest_slash`: the user wrote a trailing `/`; one in `dest` itself counts too). Errors
/// name what is missing and what to do.
pub fn target_for(
    dest: &Path,
    dest_slash: bool,
    name: &OsStr,
    is_dir: bool,
) -> Result<PathBuf, LandError> {
    if dest.is_dir() {
        return Ok(dest.join(name));
    }
    if names_contents(dest.as_os_str()) {
        return Err(refused(
            dest,
            "the destination directory does not exist: create it first, or leave out the trailing `/.`",
        ));
    }
    let dest_slash = dest_slash || dest.as_os_str().as_encoded_bytes().ends_with(b"/");
    if dest_slash && !is_dir {
        return Err(refused(
            dest,
            "the destination directory does not exist: create it first, or leave out the trailing `/` to copy the file under that name",
        ));
    }
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() && !p.is_dir() => Err(refused(
            dest,
            "the parent directory does not exist: create it first",
        )),
        _ => Ok(dest.to_path_buf()),
    }
}

/// The staging name for transfer `id` next to `target`.
pub fn staging_next_to(target: &Path, id: &str) -> PathBuf {
    let mut name = std::ffi::OsString::from(".agentbox-tmp-");
    name.push(id);
    target.with_file_name(name)
}

/// Moves the finished staging file `part` to `target` with `mode`, atomically. `part` may
/// be on another filesystem: it is then copied to a staging name next to the target first.
pub fn land_file(part: &Path, target: &Path, mode: u32, id: &str) -> Result<(), LandError> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_dir()) {
        return Err(refused(
            target,
            "a directory is in the way of the file: copy into it (a trailing `/`) or remove it first",
        ));
    }
    let perms = std::fs::Permissions::from_mode(mode & 0o777);
    std::fs::set_permissions(part, perms.clone())?;
    match std::fs::rename(part, target) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(18) => {
            // EXDEV: copy next to the target, then rename there.
            let staged = staging_next_to(target, id);
            let copied = std::fs::copy(part, &staged)
                .and_then(|_| std::fs::set_permissions(&staged, perms))
                .and_then(|()| std::fs::rename(&staged, target));
            if copied.is_err() {
                let _ = std::fs::remove_file(&staged);
            }
            copied?;
            std::fs::remove_file(part)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks that `src` (staged) can be merged into `dst` without replacing a directory by a
/// file or the reverse.
fn check_merge(src: &Path, dst: &Path) -> Result<(), LandError> {
    let Ok(existing) = std::fs::symlink_metadata(dst) else {
        return Ok(());
    };
    let incoming = std::fs::symlink_metadata(src)?;
    match (incoming.is_dir(), existing.is_dir()) {
        (true, true) => {
            for entry in std::fs::read_dir(src)? {
                let entry = entry?;
                check_merge(&entry.path(), &dst.join(entry.file_name()))?;
            }
            Ok(())
        }
        (false, true) => Err(refused(
            dst,
            "a directory is in the way of a file: remove it first, or copy elsewhere",
        )),
        (true, false) => Err(refused(
            dst,
            "a file is in the way of a directory: remove it first, or copy elsewhere",
        )),
        (false, false) => Ok(()),
    }
}

/// Moves `src` to `dst`, merging into an existing directory; counts nothing.
fn merge(src: &Path, dst: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() && std::fs::symlink_metadata(src)?.is_dir() => {
            for entry in std::fs::read_dir(src)? {
                let entry = entry?;
                merge(&entry.path(), &dst.join(entry.file_name()))?;
            }
            Ok(())
        }
        _ => std::fs::rename(src, dst),
    }
}

/// Lands the extracted tree `staged` for destination `dest` like [`land_tree`]; with
/// `contents` (the source was written `DIR/.`) and an existing directory at `dest`, what
/// is inside `staged`'s one top-level directory lands in `dest` instead of that directory.
pub fn land_tree_of(
    staged: &Path,
    dest: &Path,
    dest_slash: bool,
    contents: bool,
) -> Result<Vec<PathBuf>, LandError> {
    if contents && dest.is_dir() {
        let mut top = std::fs::read_dir(staged)?.collect::<Result<Vec<_>, _>>()?;
        match top.pop() {
            Some(dir) if top.is_empty() && dir.file_type()?.is_dir() => {
                return land_tree(&dir.path(), dest, true);
            }
            _ => {
                return Err(refused(
                    dest,
                    "`SRC/.` copies the contents of one directory: name a single directory",
                ))
            }
        }
    }
    land_tree(staged, dest, dest_slash)
}

/// Lands every top-level entry of the extracted tree `staged` for destination `dest`,
/// returning the top-level targets. Conflicts are found before anything moves.
pub fn land_tree(staged: &Path, dest: &Path, dest_slash: bool) -> Result<Vec<PathBuf>, LandError> {
    let mut moves = Vec::new();
    for entry in std::fs::read_dir(staged)? {
        let entry = entry?;
        moves.push((entry.path(), entry.file_name()));
    }
    moves.sort();
    if moves.len() > 1 && !dest.is_dir() {
        return Err(refused(
            dest,
            "several entries need an existing destination directory: create it first",
        ));
    }
    let mut targets = Vec::new();
    for (src, name) in &moves {
        let is_dir = std::fs::symlink_metadata(src)?.is_dir();
        let target = target_for(dest, dest_slash, name, is_dir)?;
        check_merge(src, &target)?;
        targets.push(target);
    }
    for ((src, _), target) in moves.iter().zip(&targets) {
        merge(src, target)?;
    }
    Ok(targets)
}

/// A staging directory or file this process made, removed however the landing ends.
///
/// It is armed only by creating the path ([`Cleanup::create_dir`], [`Cleanup::create_file`]),
/// never by naming one: a path that already existed (whatever chose its name) makes the
/// constructor fail and is left alone.
pub struct Cleanup(PathBuf);

impl Cleanup {
    /// Creates the directory `path` (its parent must exist; `path` must not) and arms the
    /// guard for it.
    pub fn create_dir(path: PathBuf) -> io::Result<Self> {
        std::fs::create_dir(&path).map_err(|e| staging_error(&path, &e))?;
        Ok(Self(path))
    }

    /// Creates the empty file `path` (mode 0600; `path` must not exist) and arms the guard
    /// for it.
    pub fn create_file(path: PathBuf) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| staging_error(&path, &e))?;
        Ok(Self(path))
    }

    /// The staging path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

fn staging_error(path: &Path, e: &io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!("cannot create the staging path {}: {e}", path.display()),
    )
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.0) {
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir_all(&self.0);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&self.0);
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path, files: &[(&str, &str)]) {
        for (p, content) in files {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, content).expect("write");
        }
    }

    /// Issue 20, hole 1: a staging path that already exists (a box-chosen id made it name
    /// a host directory) must survive the guard.
    #[test]
    fn a_cleanup_guard_removes_only_what_it_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        tree(&victim, &[("keep.txt", "precious")]);
        let err = Cleanup::create_dir(victim.clone())
            .err()
            .expect("it exists");
        assert!(err.to_string().contains("staging path"), "{err}");
        assert!(Cleanup::create_file(victim.join("keep.txt")).is_err());
        assert!(
            victim.join("keep.txt").exists(),
            "the guard deleted what it did not make"
        );
        let made = dir.path().join("made");
        {
            let guard = Cleanup::create_dir(made.clone()).expect("create");
            tree(guard.path(), &[("a/b", "x")]);
        }
        assert!(!made.exists(), "what the guard made stays behind");
    }

    #[test]
    fn docker_cp_targets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).expect("mkdir");
        let a = OsStr::new("a");
        for is_dir in [false, true] {
            assert_eq!(
                target_for(&d.join("sub"), false, a, is_dir).expect("t"),
                d.join("sub/a")
            );
            assert_eq!(
                target_for(&d.join("sub/."), false, a, is_dir).expect("t"),
                d.join("sub/./a")
            );
            assert_eq!(
                target_for(&d.join("new"), false, a, is_dir).expect("t"),
                d.join("new")
            );
            assert!(target_for(&d.join("no/such"), false, a, is_dir).is_err());
            // `new/.` asserts an existing directory, whatever the source.
            assert!(target_for(&d.join("new/."), false, a, is_dir).is_err());
        }
        // `new/`: a directory source makes it (docker cp), a file source needs it.
        assert_eq!(
            target_for(&d.join("new"), true, a, true).expect("t"),
            d.join("new")
        );
        assert_eq!(
            target_for(&d.join("new/"), false, a, true).expect("t"),
            d.join("new/")
        );
        let err = target_for(&d.join("new"), true, a, false).expect_err("file into new/");
        assert!(err.to_string().contains("create it first"), "{err}");
        assert!(target_for(&d.join("new/"), false, a, false).is_err());
    }

    #[test]
    fn a_tree_merges_and_replaces_symlinks_instead_of_following_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        let dest = dir.path().join("dest");
        tree(&dest, &[("top/keep.txt", "old"), ("top/same.txt", "old")]);
        std::os::unix::fs::symlink(&outside, dest.join("top/link")).expect("symlink");
        let staged = dir.path().join("staged");
        tree(&staged, &[("top/same.txt", "new"), ("top/new/x.txt", "x")]);
        std::fs::write(staged.join("top/link"), "replaces the link").expect("write");
        let targets = land_tree(&staged, &dest, false).expect("land");
        assert_eq!(targets, [dest.join("top")]);
        let read = |p: &str| std::fs::read_to_string(dest.join(p)).expect(p);
        assert_eq!(read("top/keep.txt"), "old");
        assert_eq!(read("top/same.txt"), "new");
        assert_eq!(read("top/new/x.txt"), "x");
        assert_eq!(read("top/link"), "replaces the link");
        assert_eq!(std::fs::read_dir(&outside).expect("ls").count(), 0);
    }

    /// `DIR/.` into an existing directory lands DIR's entries there; into a missing one,
    /// DIR itself under the new name.
    #[test]
    fn contents_land_in_an_existing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("dest");
        tree(&dest, &[("keep", "k")]);
        let staged = dir.path().join("staged");
        tree(&staged, &[("d/a", "A"), ("d/sub/b", "B")]);
        let targets = land_tree_of(&staged, &dest, false, true).expect("land");
        assert_eq!(targets, [dest.join("a"), dest.join("sub")]);
        assert_eq!(std::fs::read_to_string(dest.join("sub/b")).expect("b"), "B");
        assert!(!dest.join("d").exists());
        let staged = dir.path().join("staged2");
        tree(&staged, &[("d/a", "A")]);
        let new = dir.path().join("new");
        let targets = land_tree_of(&staged, &new, true, true).expect("land");
        assert_eq!(targets, std::slice::from_ref(&new));
        assert_eq!(std::fs::read_to_string(new.join("a")).expect("a"), "A");
        assert!(names_contents(OsStr::new("x/.")) && names_contents(OsStr::new(".")));
        assert!(!names_contents(OsStr::new("x/..")) && !names_contents(OsStr::new("x.")));
    }

    #[test]
    fn a_conflict_moves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("dest");
        tree(&dest, &[("top/a", "old"), ("top/b/c", "old")]);
        let staged = dir.path().join("staged");
        tree(&staged, &[("top/a", "new"), ("top/b", "a file for a dir")]);
        let err = land_tree(&staged, &dest, false).expect_err("conflict");
        assert!(err.to_string().contains("in the way"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dest.join("top/a")).expect("a"),
            "old"
        );
    }

    #[test]
    fn a_file_lands_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let part = dir.path().join("part");
        std::fs::write(&part, "#!/bin/sh\n").expect("write");
        let target = dir.path().join("run.sh");
        land_file(&part, &target, 0o4755, "x").expect("land");
        let mode = std::fs::metadata(&target)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(!part.exists());
        std::fs::create_dir(dir.path().join("d")).expect("mkdir");
        std::fs::write(&part, "x").expect("write");
        assert!(land_file(&part, &dir.path().join("d"), 0o644, "x").is_err());
    }
}
