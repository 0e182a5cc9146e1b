//! What both ends of a file transfer need: blake3 while streaming, the seed manifest, and
//! a hardened tar extractor.
//!
//! [`unpack`] is the only way a tar from the other side is written to disk. It refuses
//! absolute paths, `..`, device files and FIFOs, symlinks that point outside the target
//! (alone or through other links: a link may climb with `..` only at the start of its
//! target), hard links, and writing through a symlink; it caps the total size; and it never keeps
//! set-uid, set-gid or sticky bits. Extract into a fresh staging directory, verify, then
//! rename into place: a refused archive leaves the real target untouched.
//!
//! Past 600 lines only with its tests (the code is ~400): the extractor's property tests
//! (random link chains, hostile entries) stay beside the rules they check.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Describes a workspace seed: what the host packed, for the box to check out.
///
/// The seed archive holds `seed.json` (this), `git/` (a shallow `.git`) and `files/` (the
/// untracked, non-ignored files of the host tree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SeedManifest {
    /// The branch to create in the box (`agentbox/<box>`), already a ref in `git/`.
    pub branch: String,
    /// The commit the branch points at.
    pub head: String,
    /// A `git stash create` commit with the host's uncommitted changes, fetched as
    /// `refs/agentbox/stash`.
    pub stash: Option<String>,
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: blake3::Hasher::new(),
            written: 0,
        }
    }

    /// The digest (hex) and byte count so far, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            self.hasher.finalize().to_hex().to_string(),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether `s` looks like a blake3 digest in lowercase hex.
pub fn is_blake3_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Why an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry's path or type is not allowed.
    #[error("refused `{path}`: {reason}")]
    Refused {
        /// The entry as named in the archive.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// The archive is larger than allowed.
    #[error("the archive holds more than {max} bytes")]
    TooLarge {
        /// The cap.
        max: u64,
    },
    /// Reading the archive or writing a file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What was extracted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnpackReport {
    /// Regular files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Checks an archive path: relative, no `..`, not empty. Returns it without `./` parts.
fn clean_path(raw: &[u8]) -> Result<PathBuf, UnpackError> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(UnpackError::Refused {
                    path: shown(),
                    reason: "`..` in path",
                })
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::Refused {
                    path: shown(),
                    reason: "absolute path",
                })
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(UnpackError::Refused {
            path: shown(),
            reason: "empty path",
        });
    }
    Ok(out)
}

/// Why symlink `target`, placed at `link` (relative to the root), is refused, if it is.
///
/// A target may climb with `..` only at its start, through the link's own parents (real
/// directories: nothing is ever written through a symlink, and a directory is never
/// replaced), and never above the root; after that it only descends. Checking it lexically
/// is then exact, and it stays true whatever is written later, here or by a later
/// transfer into the same tree: a `..` after a name would climb from wherever that name
/// resolves, and a link there (`x/y -> ..`, then `z -> x/y/x/y/../../../etc`) could take
/// it out of the root. Descending through links cannot leave the root, since every link
/// made here obeys the same rule.
fn link_refusal(link: &Path, target: &Path) -> Option<&'static str> {
    let mut depth = link.components().count().saturating_sub(1);
    let mut descended = false;
    for c in target.components() {
        match c {
            Component::Normal(_) => descended = true,
            Component::CurDir => {}
            Component::ParentDir if descended => {
                return Some(
                    "symlink points outside the target: `..` after a name could climb out \
                     through another link",
                )
            }
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return Some("symlink points outside the target"),
            },
            Component::RootDir | Component::Prefix(_) => {
                return Some("symlink points outside the target")
            }
        }
    }
    None
}

/// Refuses to write through a symlink: no parent of `rel` under `root` may be one.
fn check_parents(root: &Path, rel: &Path, shown: &str) -> Result<(), UnpackError> {
    let mut cur = root.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for c in &parents[..parents.len().saturating_sub(1)] {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::Refused {
                    path: shown.to_string(),
                    reason: "path goes through a symlink",
                })
            }
            Ok(m) if !m.is_dir() => {
                return Err(UnpackError::Refused {
                    path: shown.to_string(),
                    reason: "a parent is not a directory",
                })
            }
            _ => {}
        }
    }
    Ok(())
}

fn remove_existing(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Extracts a tar stream into `dest` (which must exist), refusing anything unsafe.
/// `max_bytes` caps the total content size.
pub fn unpack(reader: impl Read, dest: &Path, max_bytes: u64) -> Result<UnpackReport, UnpackError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let mut archive = tar::Archive::new(reader);
    let mut report = UnpackReport::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let rel = clean_path(&raw)?;
        let kind = entry.header().entry_type();
        // The box chose the mode: no setuid/setgid/sticky, no write for group or others
        // (a umask of 022); the owner's bits, its x bit included, are kept.
        let mode = entry.header().mode().unwrap_or(0o644) & 0o755;
        check_parents(dest, &rel, &shown)?;
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        match kind {
            tar::EntryType::Directory => {
                match std::fs::symlink_metadata(&target) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        return Err(UnpackError::Refused {
                            path: shown,
                            reason: "a directory replaces a file",
                        })
                    }
                    Err(_) => std::fs::DirBuilder::new().mode(0o700).create(&target)?,
                }
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o700))?;
                report.dirs += 1;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.header().size()?;
                if report.bytes + size > max_bytes {
                    return Err(UnpackError::TooLarge { max: max_bytes });
                }
                remove_existing(&target)?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)?;
                let copied = io::copy(&mut (&mut entry).take(size), &mut file)?;
                file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                report.bytes += copied;
                report.files += 1;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(std::borrow::Cow::into_owned)
                    .unwrap_or_default();
                let link_path = PathBuf::from(OsStr::from_bytes(&link));
                let refusal = if link.is_empty() {
                    Some("symlink has an empty target")
                } else {
                    link_refusal(&rel, &link_path)
                };
                if let Some(reason) = refusal {
                    return Err(UnpackError::Refused {
                        path: shown,
                        reason,
                    });
                }
                remove_existing(&target)?;
                std::os::unix::fs::symlink(&link_path, &target)?;
                report.symlinks += 1;
            }
            tar::EntryType::Link => {
                return Err(UnpackError::Refused {
                    path: shown,
                    reason: "hard links are not accepted",
                })
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(UnpackError::Refused {
                    path: shown,
                    reason: "device files and FIFOs are not accepted",
                })
            }
            // PAX and GNU long-name headers are consumed by the tar reader itself.
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            _ => {
                return Err(UnpackError::Refused {
                    path: shown,
                    reason: "unknown entry type",
                })
            }
        }
    }
    Ok(report)
}

/// Appends `path` (on disk) to `builder` as `name`, without following symlinks. Only
/// regular files, directories and symlinks are packed; anything else is skipped.
pub fn append_path<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
) -> io::Result<bool> {
    let meta = std::fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    if ft.is_file() || ft.is_dir() || ft.is_symlink() {
        builder.append_path_with_name(path, name)?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// Appends `path` as the top-level entry `name`, and everything under it if it is a
/// directory (symlinks kept as links).
pub fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
) -> io::Result<()> {
    append_entry_except(builder, path, name, &|_| false)
}

/// Like [`append_entry`], leaving out every file or directory whose name `skip` matches
/// (and all under it).
pub fn append_entry_except<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    name: &Path,
    skip: &dyn Fn(&OsStr) -> bool,
) -> io::Result<()> {
    builder.follow_symlinks(false);
    if append_path(builder, path, name)? && std::fs::symlink_metadata(path)?.is_dir() {
        append_children(builder, path, name, skip)?;
    }
    Ok(())
}

/// Appends a whole directory tree (symlinks kept as links), under `prefix`.
pub fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    prefix: &Path,
) -> io::Result<()> {
    builder.follow_symlinks(false);
    append_children(builder, root, prefix, &|_| false)
}

/// Appends everything under directory `root` (not `root` itself) under `prefix`, in name
/// order, leaving out names `skip` matches.
fn append_children<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Path,
    prefix: &Path,
    skip: &dyn Fn(&OsStr) -> bool,
) -> io::Result<()> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        if !rel.as_os_str().is_empty() {
            append_path(builder, &full, &prefix.join(&rel))?;
        }
        if std::fs::symlink_metadata(&full)?.is_dir() {
            let mut children: Vec<_> = std::fs::read_dir(&full)?.collect::<Result<_, _>>()?;
            children.retain(|c| !skip(&c.file_name()));
            children.sort_by_key(std::fs::DirEntry::file_name);
            for child in children.into_iter().rev() {
                stack.push(rel.join(child.file_name()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().expect("finish")
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h
    }

    /// Writes a raw name into the header (bypassing the tar crate's own checks).
    fn raw_entry(
        b: &mut tar::Builder<Vec<u8>>,
        kind: tar::EntryType,
        name: &[u8],
        link: Option<&[u8]>,
        data: &[u8],
    ) {
        let mut h = header(kind, data.len() as u64);
        {
            let gnu = h.as_gnu_mut().expect("gnu");
            gnu.name[..name.len()].copy_from_slice(name);
            if let Some(link) = link {
                gnu.linkname[..link.len()].copy_from_slice(link);
            }
        }
        h.set_cksum();
        b.append(&h, data).expect("append");
    }

    fn refused(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).expect("mkdir");
        let err = unpack(bytes, &dest, 1 << 20)
            .expect_err("must refuse")
            .to_string();
        assert!(
            std::fs::read_dir(&outside).expect("read").next().is_none(),
            "something escaped"
        );
        err
    }

    #[test]
    fn round_trip_keeps_modes_links_and_odd_names() {
        let src = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(src.path().join("d/empty")).expect("mkdir");
        std::fs::write(src.path().join("d/run.sh"), "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(
            src.path().join("d/run.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::write(src.path().join(OsStr::from_bytes(b"caf\xe9")), "").expect("write");
        std::os::unix::fs::symlink("run.sh", src.path().join("d/link")).expect("symlink");
        let bytes = archive(|b| append_tree(b, src.path(), Path::new("x")).expect("pack"));
        let dest = tempfile::tempdir().expect("tempdir");
        let report = unpack(&bytes[..], dest.path(), 1 << 20).expect("unpack");
        assert_eq!((report.files, report.symlinks), (2, 1));
        let mode = std::fs::metadata(dest.path().join("x/d/run.sh"))
            .expect("meta")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o755
        );
        assert!(dest.path().join("x/d/empty").is_dir());
        assert_eq!(
            std::fs::read_link(dest.path().join("x/d/link")).expect("link"),
            Path::new("run.sh")
        );
        assert!(dest
            .path()
            .join("x")
            .join(OsStr::from_bytes(b"caf\xe9"))
            .exists());
    }

    #[test]
    fn absolute_paths_are_refused() {
        let bytes = archive(|b| raw_entry(b, tar::EntryType::Regular, b"/tmp/evil", None, b"x"));
        assert!(refused(&bytes).contains("absolute path"));
    }

    #[test]
    fn parent_dirs_are_refused() {
        let bytes =
            archive(|b| raw_entry(b, tar::EntryType::Regular, b"a/../../outside/x", None, b"x"));
        assert!(refused(&bytes).contains("`..`"));
    }

    #[test]
    fn escaping_symlinks_are_refused() {
        for link in [&b"../outside"[..], b"/etc", b"a/../../outside"] {
            let bytes = archive(|b| raw_entry(b, tar::EntryType::Symlink, b"l", Some(link), b""));
            assert!(
                refused(&bytes).contains("symlink points outside"),
                "{link:?}"
            );
        }
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let bytes = archive(|b| {
            raw_entry(b, tar::EntryType::Symlink, b"l", Some(b"."), b"");
            raw_entry(b, tar::EntryType::Regular, b"l/x", None, b"x");
        });
        assert!(refused(&bytes).contains("through a symlink"));
    }

    #[test]
    fn hard_links_and_devices_are_refused() {
        let bytes =
            archive(|b| raw_entry(b, tar::EntryType::Link, b"h", Some(b"../outside/x"), b""));
        assert!(refused(&bytes).contains("hard links"));
        for kind in [
            tar::EntryType::Char,
            tar::EntryType::Block,
            tar::EntryType::Fifo,
        ] {
            let bytes = archive(|b| raw_entry(b, kind, b"dev", None, b""));
            assert!(refused(&bytes).contains("device files"));
        }
    }

    #[test]
    fn size_cap_is_enforced() {
        let bytes = archive(|b| raw_entry(b, tar::EntryType::Regular, b"big", None, &[7u8; 2000]));
        let dest = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            unpack(&bytes[..], dest.path(), 1000),
            Err(UnpackError::TooLarge { max: 1000 })
        ));
    }

    #[test]
    fn setuid_bits_are_dropped() {
        let bytes = archive(|b| {
            let mut h = header(tar::EntryType::Regular, 1);
            h.set_mode(0o4755);
            h.set_path("suid").expect("path");
            h.set_cksum();
            b.append(&h, &b"x"[..]).expect("append");
        });
        let dest = tempfile::tempdir().expect("tempdir");
        unpack(&bytes[..], dest.path(), 100).expect("unpack");
        let mode = std::fs::metadata(dest.path().join("suid"))
            .expect("meta")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
            0o755
        );
    }

    #[test]
    fn group_and_other_write_and_special_bits_are_masked_owner_bits_kept() {
        // (mode in the archive, the mode on disk): files keep the owner's bits (x too) and
        // lose group/other write and setuid/setgid/sticky; directories stay usable.
        let files = [
            (0o777, 0o755),
            (0o666, 0o644),
            (0o6777, 0o755),
            (0o1777, 0o755),
            (0o2775, 0o755),
            (0o4777, 0o755),
            (0o622, 0o600),
            (0o600, 0o600),
            (0o744, 0o744),
        ];
        let dirs = [
            (0o777, 0o755),
            (0o1777, 0o755),
            (0o2770, 0o750),
            (0o000, 0o700),
        ];
        let bytes = archive(|b| {
            for (i, (mode, _)) in files.iter().enumerate() {
                let mut h = header(tar::EntryType::Regular, 1);
                h.set_mode(*mode);
                h.set_path(format!("f{i}")).expect("path");
                h.set_cksum();
                b.append(&h, &b"x"[..]).expect("append");
            }
            for (i, (mode, _)) in dirs.iter().enumerate() {
                let mut h = header(tar::EntryType::Directory, 0);
                h.set_mode(*mode);
                h.set_path(format!("d{i}")).expect("path");
                h.set_cksum();
                b.append(&h, &[][..]).expect("append");
            }
        });
        let dest = tempfile::tempdir().expect("tempdir");
        unpack(&bytes[..], dest.path(), 100).expect("unpack");
        let mode_of = |name: String| {
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(dest.path().join(&name))
                    .expect("meta")
                    .permissions(),
            ) & 0o7777
        };
        for (i, (given, want)) in files.iter().enumerate() {
            assert_eq!(mode_of(format!("f{i}")), *want, "file given {given:o}");
        }
        for (i, (given, want)) in dirs.iter().enumerate() {
            assert_eq!(mode_of(format!("d{i}")), *want, "dir given {given:o}");
        }
    }

    /// Every path under `dest` that resolves at all resolves inside it: each entry on disk,
    /// and every path of plain names (through the links) up to four deep.
    fn assert_nothing_resolves_outside(dest: &Path) {
        let root = dest.canonicalize().expect("canonical dest");
        let mut stack = vec![dest.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).expect("ls").flatten() {
                let path = entry.path();
                if let Ok(real) = path.canonicalize() {
                    assert!(
                        real.starts_with(&root),
                        "{} resolves to {}",
                        path.display(),
                        real.display()
                    );
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                }
            }
        }
        let names = ["x", "y", "z", "w"];
        let mut paths = vec![PathBuf::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in &paths {
                for n in names {
                    let q = p.join(n);
                    if let Ok(real) = dest.join(&q).canonicalize() {
                        assert!(
                            real.starts_with(&root),
                            "{} resolves to {}",
                            q.display(),
                            real.display()
                        );
                    }
                    next.push(q);
                }
            }
            paths = next;
        }
    }

    /// Issue 20, hole 7: `x/y -> ..` is inside, and so is `z` read lexically, but through
    /// the link `x/y/x/y/…/../..` climbs out of the destination to `/etc/passwd`.
    #[test]
    fn a_symlink_chain_cannot_reach_outside() {
        let mut target = "x/y/".repeat(8);
        target.push_str(&"../".repeat(16));
        target.push_str("etc/passwd");
        let bytes = archive(|b| {
            raw_entry(b, tar::EntryType::Symlink, b"x/y", Some(b".."), b"");
            raw_entry(
                b,
                tar::EntryType::Symlink,
                b"z",
                Some(target.as_bytes()),
                b"",
            );
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).expect("mkdir");
        let result = unpack(&bytes[..], &dest, 1 << 20);
        assert_nothing_resolves_outside(&dest);
        let err = result.expect_err("the chain must be refused").to_string();
        assert!(err.contains("symlink"), "{err}");
    }

    /// One entry of a random archive: a directory, a file, or a symlink.
    #[derive(Debug, Clone)]
    enum Random {
        Dir(Vec<&'static str>),
        File(Vec<&'static str>),
        Link(Vec<&'static str>, Vec<&'static str>),
    }

    fn random_entry() -> impl proptest::strategy::Strategy<Value = Random> {
        use proptest::prelude::*;
        // Few names and many `..`, so that links often pass through each other.
        let name = prop::sample::select(vec!["x", "y", "z"]);
        let part = prop::sample::select(vec!["x", "y", "z", "..", "..", "..", ".", "etc"]);
        let path = prop::collection::vec(name, 1..3);
        prop_oneof![
            1 => path.clone().prop_map(Random::Dir),
            1 => path.clone().prop_map(Random::File),
            2 => (path, prop::collection::vec(part, 1..7)).prop_map(|(p, t)| Random::Link(p, t)),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Issue 20, hole 7: whatever chain of links an archive builds, nothing under the
        /// destination resolves outside it afterwards (refused archives included: what was
        /// extracted before the refusal must be safe too).
        #[test]
        fn no_link_chain_resolves_outside(entries in proptest::collection::vec(random_entry(), 1..12)) {
            let bytes = archive(|b| {
                for e in &entries {
                    match e {
                        Random::Dir(p) => raw_entry(b, tar::EntryType::Directory, p.join("/").as_bytes(), None, b""),
                        Random::File(p) => raw_entry(b, tar::EntryType::Regular, p.join("/").as_bytes(), None, b"f"),
                        Random::Link(p, t) => raw_entry(
                            b,
                            tar::EntryType::Symlink,
                            p.join("/").as_bytes(),
                            Some(t.join("/").as_bytes()),
                            b"",
                        ),
                    }
                }
            });
            let dir = tempfile::tempdir().expect("tempdir");
            // Deep enough below the temp dir that climbing out lands somewhere real.
            let dest = dir.path().join("a/b/c/dest");
            std::fs::create_dir_all(&dest).expect("mkdir");
            for outside in ["a/etc", "a/b/etc", "a/b/c/etc", "a/b/c/x/y/z", "a/b/c/y/x/z", "a/b/c/z/x/y", "a/x/y/z", "a/b/x/y/z"] {
                std::fs::create_dir_all(dir.path().join(outside)).expect("mkdir");
            }
            let _ = unpack(&bytes[..], &dest, 1 << 20);
            assert_nothing_resolves_outside(&dest);
        }
    }

    #[test]
    fn hashing_writer_matches_blake3() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").expect("write");
        w.write_all(b"world").expect("write");
        let (hex, n, inner) = w.finish();
        assert_eq!(hex, blake3::hash(b"hello world").to_hex().to_string());
        assert_eq!((n, inner.len()), (11, 11));
        assert!(is_blake3_hex(&hex));
        assert!(!is_blake3_hex("xyz"));
    }
}
