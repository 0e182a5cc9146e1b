//! `agentbox cp SRC… DST`: `docker cp` semantics between the host and a box.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use agentbox_protocol::files::{
    new_transfer_id, DownloadRequest, LandRequest, Landed, TransferKind,
};
use agentbox_protocol::land::{self, Cleanup};
use agentbox_protocol::transfer::{append_entry, unpack};
use anyhow::{bail, Context};

use super::client::{Progress, Relay};

/// One side of a copy as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on the host.
    Host(PathBuf),
    /// `BOX:path`.
    Box {
        /// The box name (or number).
        name: String,
        /// The path in the box.
        path: String,
    },
}

impl Location {
    /// `docker cp` rule: a `:` before any `/` makes a box path. Write `./a:b` for a host
    /// file whose name has a colon.
    pub fn parse(arg: &str) -> Self {
        match arg.split_once(':') {
            Some((name, path)) if !name.is_empty() && !name.contains('/') => Self::Box {
                name: name.to_string(),
                path: path.to_string(),
            },
            _ => Self::Host(PathBuf::from(arg)),
        }
    }
}

/// A copy, checked: which box, which way, what.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Host paths into a box.
    Upload {
        /// The box.
        name: String,
        /// Host sources.
        sources: Vec<PathBuf>,
        /// Box destination.
        dest: String,
    },
    /// Box paths onto the host.
    Download {
        /// The box.
        name: String,
        /// Box sources.
        sources: Vec<String>,
        /// Host destination.
        dest: PathBuf,
    },
}

/// Checks the arguments of `cp`: exactly one side is in a box, and all sources are on the
/// same side.
pub fn plan(args: &[String]) -> anyhow::Result<Plan> {
    let Some((last, sources)) = args.split_last() else {
        bail!("cp needs a source and a destination");
    };
    if sources.is_empty() {
        bail!("cp needs a source and a destination");
    }
    let sources: Vec<Location> = sources.iter().map(|s| Location::parse(s)).collect();
    match Location::parse(last) {
        Location::Box { name, path } => {
            let mut host = Vec::new();
            for s in sources {
                match s {
                    Location::Host(p) => host.push(p),
                    Location::Box { .. } => {
                        bail!(
                            "copying from a box into a box is not supported: copy through the host"
                        )
                    }
                }
            }
            Ok(Plan::Upload {
                name,
                sources: host,
                dest: path,
            })
        }
        Location::Host(dest) => {
            let mut boxed = Vec::new();
            let mut the_box: Option<String> = None;
            for s in sources {
                match s {
                    Location::Box { name, path } => {
                        if the_box.as_ref().is_some_and(|b| *b != name) {
                            bail!("all sources must be in the same box");
                        }
                        the_box = Some(name);
                        boxed.push(path);
                    }
                    Location::Host(p) => bail!(
                        "{}: one side of cp must be a box path (BOX:PATH)",
                        p.display()
                    ),
                }
            }
            Ok(Plan::Download {
                name: the_box.unwrap_or_default(),
                sources: boxed,
                dest,
            })
        }
    }
}

/// Uploads host `sources` to box path `dest`.
pub async fn upload(
    relay: &Relay,
    sources: &[PathBuf],
    dest: &str,
    progress: Progress<'_>,
) -> anyhow::Result<Landed> {
    use std::os::unix::fs::PermissionsExt;
    for s in sources {
        std::fs::symlink_metadata(s).with_context(|| format!("cannot read {}", s.display()))?;
    }
    let id = new_transfer_id()?;
    let single_file = match sources {
        [one] => std::fs::metadata(one)
            .ok()
            .filter(std::fs::Metadata::is_file),
        _ => None,
    };
    if let (Some(meta), [path]) = (single_file, sources) {
        let land = LandRequest {
            blake3: String::new(),
            size: 0,
            kind: TransferKind::File,
            dest: dest.to_string(),
            name: Some(
                file_name(path)?
                    .to_str()
                    .with_context(|| {
                        format!(
                            "{}: a file name must be UTF-8 (copy its directory instead)",
                            path.display()
                        )
                    })?
                    .to_string(),
            ),
            mode: Some(meta.permissions().mode() & 0o777),
        };
        return relay.upload(&id, path, land, progress).await;
    }
    // `DIR/.` alone copies DIR's contents (docker cp): DIR travels whole under its own
    // name and the box lands what is inside it.
    let contents = match sources {
        [one] => {
            land::names_contents(one.as_os_str())
                && std::fs::metadata(one).is_ok_and(|m| m.is_dir())
        }
        _ => false,
    };
    // Anything else travels as one tar, packed to a temporary file first so that it can
    // be resumed and verified like a file.
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("upload.tar");
    {
        let sources = sources.to_vec();
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&archive)?);
            let mut builder = tar::Builder::new(file);
            for s in &sources {
                let name = if contents {
                    // `./.` or `.` have no name of their own: the directory's real one.
                    let real = std::fs::canonicalize(s)
                        .with_context(|| format!("cannot read {}", s.display()))?;
                    real.file_name()
                        .unwrap_or(OsStr::new("root"))
                        .to_os_string()
                } else {
                    file_name(s)?.to_os_string()
                };
                append_entry(&mut builder, s, Path::new(&name))
                    .with_context(|| format!("cannot pack {}", s.display()))?;
            }
            builder.into_inner()?.flush()?;
            Ok(())
        })
        .await??;
    }
    let land = LandRequest {
        blake3: String::new(),
        size: 0,
        kind: TransferKind::Tar,
        dest: dest.to_string(),
        name: contents.then(|| ".".to_string()),
        mode: None,
    };
    relay.upload(&id, &archive, land, progress).await
}

/// The name a source is copied under: its last component (`.` and `..` resolved).
fn file_name(path: &Path) -> anyhow::Result<&OsStr> {
    path.file_name()
        .filter(|_| !path.ends_with(".."))
        .with_context(|| {
            format!(
                "{}: name the directory itself, not `.` or `..`",
                path.display()
            )
        })
}

/// The name a download may land under: the last component of the box path the user
/// named. Only when that has none (`.`, `/`) is the box's own name used, and then only a
/// plain one.
fn expected_name(box_path: &str, from_box: &str) -> anyhow::Result<String> {
    let ours = Path::new(box_path)
        .file_name()
        .filter(|_| !box_path.ends_with(".."))
        .and_then(OsStr::to_str);
    let name = ours.unwrap_or(from_box);
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("the box named the download `{from_box}`, which is not a plain name");
    }
    Ok(name.to_string())
}

/// Downloads box path `source` to host `dest`, landing only a verified copy.
///
/// The user chose both ends, as with `docker cp`, so the tree lands whole, `.git` and
/// host-executed files included (`agentbox download` and `cp --to-host`, which the box
/// starts or shapes, refuse those). It still goes through the hardened extractor: no
/// path or link in it leaves the destination's directory.
pub async fn download(
    relay: &Relay,
    source: &str,
    dest: &Path,
    dest_slash: bool,
    max: u64,
    progress: Progress<'_>,
) -> anyhow::Result<Vec<PathBuf>> {
    let req = DownloadRequest {
        path: source.to_string(),
        files: None,
    };
    let info = relay.start_download(&req).await?;
    let name = expected_name(source, &info.name)?;
    // `BOX:DIR/.` copies DIR's contents (docker cp).
    let contents = land::names_contents(OsStr::new(source));
    let target = land::target_for(
        dest,
        dest_slash,
        OsStr::new(&name),
        info.kind == TransferKind::Tar,
    )?;
    // Staging names are the host's own: nothing the box sends names a host path.
    let id = new_transfer_id()?;
    let part = Cleanup::create_file(land::staging_next_to(&target, &format!("{id}.part")))?;
    let info = relay
        .download(&req, info, part.path(), max, progress)
        .await?;
    relay.finish_download(info.id.as_str()).await;
    let part_path = part.path().to_path_buf();
    let dest = dest.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<PathBuf>> {
        let _part = part;
        if info.kind == TransferKind::File {
            // The box's mode bits, never set-id ones.
            land::land_file(&part_path, &target, info.mode & 0o777, &id)?;
            return Ok(vec![target]);
        }
        let parent = target.parent().map(Path::to_path_buf).unwrap_or_default();
        let staged = Cleanup::create_dir(land::staging_next_to(&parent.join("x"), &id))?;
        let file = std::fs::File::open(&part_path)?;
        unpack(std::io::BufReader::new(file), staged.path(), max).map_err(|e| {
            anyhow::anyhow!("the box sent an archive that was refused, nothing was written: {e}")
        })?;
        let entries: Vec<_> = std::fs::read_dir(staged.path())?.collect::<Result<_, _>>()?;
        if entries.len() != 1 || entries[0].file_name() != OsStr::new(&name) {
            bail!("the box sent other entries than `{name}`; nothing was written");
        }
        Ok(land::land_tree_of(
            staged.path(),
            &dest,
            dest_slash,
            contents,
        )?)
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn one_side_is_a_box() {
        assert_eq!(
            plan(&args(&["a", "./b:c", "box1:src/"])).expect("plan"),
            Plan::Upload {
                name: "box1".into(),
                sources: vec!["a".into(), "./b:c".into()],
                dest: "src/".into()
            }
        );
        assert_eq!(
            plan(&args(&["b:x", "b:/y", "out"])).expect("plan"),
            Plan::Download {
                name: "b".into(),
                sources: vec!["x".into(), "/y".into()],
                dest: "out".into()
            }
        );
        for bad in [
            &["a", "b"][..],
            &["b1:x", "b2:y"],
            &["b1:x", "b2:y", "out"],
            &["x"],
            &[],
        ] {
            assert!(plan(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_download_lands_under_the_name_the_user_asked_for() {
        assert_eq!(expected_name("src/lib", "evil").expect("name"), "lib");
        assert_eq!(expected_name(".", "workspace").expect("name"), "workspace");
        for bad in ["..", "", "a/b", "."] {
            assert!(expected_name("/", bad).is_err(), "{bad}");
        }
    }
}
