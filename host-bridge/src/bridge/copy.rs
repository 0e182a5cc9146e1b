//! `agentbox-ctl cp --to-host` / `--from-host` on the host side. Both stay inside the box's
//! project: a path from the box is relative to the project root, may not climb out with
//! `..`, go through a symlink, or touch `.git/` (in any case, at any depth); nothing is
//! written that the host would execute (`.envrc`, editor tasks, hook directories, at any
//! depth: the same predicates as `agentbox download`).

use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use agentbox_protocol::land::{self, Cleanup};
use agentbox_protocol::transfer::unpack;

use agentbox_protocol::files::new_transfer_id;

use crate::download::{is_git_name, is_host_executed, refused_in_host_tree};

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
                let shown = part.to_string_lossy();
                if is_git_name(&shown) {
                    return Err("`.git` is never read or written by a box, in any case".into());
                }
                if let Some(why) = refused_in_host_tree(&shown) {
                    return Err(format!("`{trimmed}`: {why}"));
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
/// the project), is one the box may not write ([`refused_in_host_tree`]: `.git`, staging
/// names) or one the host executes ([`is_host_executed`]), with the reason.
fn forbidden_inside(root: &Path, landing: &Path) -> Option<(String, &'static str)> {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        // `join("")` would add a trailing `/` and hide the name from the checks.
        let (full, at) = if rel.as_os_str().is_empty() {
            (root.to_path_buf(), landing.to_path_buf())
        } else {
            (root.join(&rel), landing.join(&rel))
        };
        let shown = at.to_string_lossy().into_owned();
        if let Some(why) = refused_in_host_tree(&shown) {
            return Some((shown, why));
        }
        if is_host_executed(&shown) {
            return Some((
                shown,
                "it would be run by the host, so a box never writes it",
            ));
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
/// Returns the host paths written. The staging directory is named by the host, never by
/// anything the box sent, and only removed if this call made it.
pub fn to_host(
    project: &Path,
    archive: &Path,
    name: &str,
    dest: &str,
) -> Result<Vec<PathBuf>, String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("`{name}` is not a plain name"));
    }
    let (dest, slash) = project_path(project, dest)?;
    // Checked per entry by its type when it lands; a directory here is the lenient case.
    let target =
        land::target_for(&dest, slash, OsStr::new(name), true).map_err(|e| e.to_string())?;
    let landing = target
        .strip_prefix(project)
        .unwrap_or(&target)
        .to_path_buf();
    let id = new_transfer_id().map_err(|e| format!("no staging name: {e}"))?;
    let staged =
        Cleanup::create_dir(land::staging_next_to(&target, &id)).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(archive).map_err(|e| e.to_string())?;
    unpack(std::io::BufReader::new(file), staged.path(), MAX_COPY)
        .map_err(|e| format!("the archive was refused: {e}"))?;
    let entries: Vec<_> = std::fs::read_dir(staged.path())
        .map_err(|e| e.to_string())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    if entries != [OsStr::new(name)] {
        return Err(format!("the archive holds other entries than `{name}`"));
    }
    if let Some((bad, why)) = forbidden_inside(&staged.path().join(name), &landing) {
        return Err(format!("`{bad}` was refused, nothing was written: {why}"));
    }
    land::land_tree(staged.path(), &dest, slash).map_err(|e| e.to_string())
}

/// Packs project path `src` (without any `.git` inside it, in any case) into a tar at `out`, as one
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
            &|n| is_git_name(&n.to_string_lossy()),
        )?;
        std::io::Write::flush(&mut builder.into_inner()?)
    };
    pack().map_err(|e| format!("cannot pack `{src}`: {e}"))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `files` (path, content) at `dir/archive.tar`.
    fn archive(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        let out = dir.join("archive.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&out).expect("create"));
        for (path, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_path(path).expect("path");
            h.set_cksum();
            b.append(&h, content.as_bytes()).expect("append");
        }
        b.finish().expect("finish");
        out
    }

    /// Issue 20, hole 1: the request id the box chose named a host directory outside the
    /// project through a staging directory that already existed; the failed `create_dir`
    /// made the guard delete it.
    #[test]
    fn a_box_chosen_request_id_cannot_delete_a_host_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let project = dir.path().join("p/q");
        std::fs::create_dir_all(project.join(".agentbox-tmp-a")).expect("mkdir");
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(&victim).expect("mkdir");
        std::fs::write(victim.join("keep.txt"), "precious").expect("write");
        let tar = archive(dir.path(), &[("f.txt", "x")]);
        // Today the id never reaches a path: the relay's `RequestId` refuses it when the
        // request is parsed, and the staging name is the host's own.
        let parsed: Result<agentbox_protocol::bridge::RequestId, _> =
            serde_json::from_value(serde_json::json!("a/../../../victim"));
        assert!(parsed.is_err(), "the hostile id parsed");
        to_host(&project, &tar, "f.txt", ".").expect("land");
        assert!(project.join("f.txt").exists());
        assert!(
            victim.join("keep.txt").exists(),
            "a host directory was deleted"
        );
    }

    /// Issue 20, hole 6: nothing under `.git` at any depth or in any case, and no file the
    /// host runs, lands from `cp --to-host`.
    #[test]
    fn git_and_host_executed_files_never_land_at_any_depth_or_case() {
        for bad in [
            "top/nested/.git/config",
            "top/.GIT/config",
            "top/.Git/hooks/pre-commit",
            "top/.git./config",
            "top/.git /config",
            "top/sub/.envrc",
            "top/sub/.vscode/tasks.json",
            "top/.cargo/config.toml",
            "top/.cargo/config",
            "top/.npmrc",
            "top/.yarnrc.yml",
            "top/.agentbox-tmp-0123456789abcdef/x",
            "top/.ENVRC",
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let project = dir.path().join("p");
            std::fs::create_dir_all(&project).expect("mkdir");
            let tar = archive(
                dir.path(),
                &[(bad, "[core]\n\tfsmonitor = touch /tmp/pwned\n")],
            );
            let result = to_host(&project, &tar, "top", ".");
            assert!(result.is_err(), "{bad} landed");
            assert!(!project.join("top").exists(), "{bad}: something landed");
        }
    }

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
