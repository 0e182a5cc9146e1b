//! `agentbox-ctl cp --to-host` / `--from-host` on the host side. Both stay inside the box's
//! project: a path from the box is relative to the project root, may not climb out with
//! `..`, go through a symlink, or touch `.git/`; nothing is written that the host would
//! execute (`.envrc`, editor tasks, hook directories).

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use agentbox_protocol::land::{self, Cleanup};
use agentbox_protocol::transfer::unpack;

use crate::download::is_host_executed;

/// The largest tree a box may write into the project.
pub const MAX_COPY: u64 = 1 << 30;

/// A project path named by the box, checked. Returns the host path and whether it was
/// written with a trailing `/`.
pub fn project_path(project: &Path, rel: &str) -> Result<(PathBuf, bool), String> {
    let slash = rel.ends_with('/');
    let trimmed = rel.trim_end_matches('/');
    let p = Path::new(trimmed);
    if p.is_absolute() {
        return Err(format!(
            "`{trimmed}` is absolute: name a path inside the project"
        ));
    }
    let mut out = project.to_path_buf();
    for c in p.components() {
        match c {
            Component::Normal(part) => {
                if part == OsStr::new(".git") {
                    return Err("`.git` is never read or written by a box".into());
                }
                out.push(part);
                if std::fs::symlink_metadata(&out).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(format!("`{trimmed}` goes through a symlink on the host"));
                }
            }
            Component::CurDir => {}
            _ => return Err(format!("`{trimmed}` leaves the project")),
        }
    }
    Ok((out, slash))
}

/// Whether any path in the extracted tree under `root`, landing at `landing` (relative to
/// the project), is one the host executes or is inside a `.git` directory.
fn forbidden_inside(root: &Path, landing: &Path) -> Option<String> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        // `join("")` would add a trailing `/` and hide the name from the checks.
        let (full, at) = if rel.as_os_str().is_empty() {
            (root.to_path_buf(), landing.to_path_buf())
        } else {
            (root.join(&rel), landing.join(&rel))
        };
        let shown = at.to_string_lossy().into_owned();
        if at.components().any(|c| c.as_os_str() == ".git") || is_host_executed(&shown) {
            return Some(shown);
        }
        if std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir()) {
            if let Ok(entries) = std::fs::read_dir(&full) {
                for e in entries.flatten() {
                    stack.push(rel.join(e.file_name()));
                }
            }
        }
    }
    None
}

/// Lands the verified tar `archive` (one top-level entry `name`) at project path `dest`.
/// Returns the host paths written.
pub fn to_host(
    project: &Path,
    archive: &Path,
    name: &str,
    dest: &str,
    id: &str,
) -> Result<Vec<PathBuf>, String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("`{name}` is not a plain name"));
    }
    let (dest, slash) = project_path(project, dest)?;
    let target = land::target_for(&dest, slash, OsStr::new(name)).map_err(|e| e.to_string())?;
    let landing = target
        .strip_prefix(project)
        .unwrap_or(&target)
        .to_path_buf();
    let staged = Cleanup(land::staging_next_to(&target, id));
    std::fs::create_dir(&staged.0).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    unpack(std::io::BufReader::new(file), &staged.0, MAX_COPY)
        .map_err(|e| format!("the archive was refused: {e}"))?;
    let entries: Vec<_> = std::fs::read_dir(&staged.0)
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if entries != [OsStr::new(name)] {
        return Err(format!("the archive holds other entries than `{name}`"));
    }
    if let Some(bad) = forbidden_inside(&staged.0.join(name), &landing) {
        return Err(format!(
            "`{bad}` would be run by the host; it is never written by a box"
        ));
    }
    land::land_tree(&staged.0, &dest, slash).map_err(|e| e.to_string())
}

/// Packs project path `src` (without any `.git` inside it) into a tar at `out`, as one
/// top-level entry named after it. Returns the entry name.
pub fn pack_from_host(project: &Path, src: &str, out: &Path) -> Result<String, String> {
    let (path, _) = project_path(project, src)?;
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(format!("the project has no `{src}`"));
    }
    let name = path
        .file_name()
        .or_else(|| project.file_name())
        .and_then(OsStr::to_str)
        .ok_or_else(|| format!("`{src}` has no UTF-8 name"))?
        .to_string();
    let pack = || -> std::io::Result<()> {
        let mut builder = tar::Builder::new(std::io::BufWriter::new(std::fs::File::create(out)?));
        agentbox_protocol::transfer::append_entry_except(
            &mut builder,
            &path,
            Path::new(&name),
            &|n| n == ".git",
        )?;
        std::io::Write::flush(&mut builder.into_inner()?)
    };
    pack().map_err(|e| format!("cannot pack `{src}`: {e}"))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_paths_stay_in_the_project() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("p");
        std::fs::create_dir_all(project.join("src")).expect("mkdir");
        std::os::unix::fs::symlink("/etc", project.join("etc")).expect("symlink");
        assert_eq!(
            project_path(&project, "src/").expect("ok"),
            (project.join("src"), true)
        );
        for bad in [
            "/etc/passwd",
            "../x",
            "src/../../x",
            ".git/hooks",
            "src/.git/config",
            "etc/passwd",
        ] {
            assert!(project_path(&project, bad).is_err(), "{bad}");
        }
    }
}
