//! `AGENTBOX_HOME` [~/.agentbox]: the host's files.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The layout of `AGENTBOX_HOME`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// From `AGENTBOX_HOME`, else `~/.agentbox`. Created 0700 if missing.
    pub fn from_env() -> anyhow::Result<Self> {
        let root = match std::env::var_os("AGENTBOX_HOME").filter(|v| !v.is_empty()) {
            Some(v) => PathBuf::from(v),
            None => {
                let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).ok_or_else(|| {
                    anyhow::anyhow!("neither AGENTBOX_HOME nor HOME is set: set AGENTBOX_HOME to a directory for agentbox's state")
                })?;
                PathBuf::from(home).join(".agentbox")
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)?;
        Ok(Self { root })
    }

    /// The layout under `root`, an existing home (nothing is created).
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Global config.
    pub fn config(&self) -> PathBuf {
        self.root.join("config.yaml")
    }

    /// Box records.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// Directory of a `local` box.
    pub fn box_dir(&self, name: &str) -> PathBuf {
        self.root.join("boxes").join(name)
    }

    /// What the host knows of a box's agents (from their reports through the bridge).
    pub fn agent_states(&self, name: &str) -> PathBuf {
        self.root.join("agents").join(format!("{name}.json"))
    }

    /// Per-project host config (not in the repo: pins like `box.image` are per machine).
    pub fn project_config(&self, project_id: &str) -> PathBuf {
        self.root
            .join("projects")
            .join(project_id)
            .join("config.yaml")
    }
}

/// Where the host keeps its own records of the box whose directory is `box_dir`
/// (`sync.json`, `downloaded.json`, `ports.json`): `AGENTBOX_HOME/records/<name>` for a
/// box in `AGENTBOX_HOME/boxes/<name>`, outside the directory a local box works in (and
/// out of reach of every path its relay's APIs take); `box_dir` itself for any other.
pub fn host_records(box_dir: &Path) -> PathBuf {
    match (box_dir.parent(), box_dir.file_name()) {
        (Some(boxes), Some(name)) if boxes.file_name().is_some_and(|n| n == "boxes") => {
            boxes.parent().map_or_else(
                || box_dir.to_path_buf(),
                |home| home.join("records").join(name),
            )
        }
        _ => box_dir.to_path_buf(),
    }
}

/// The host record `name` of the box in `box_dir`: where it is written
/// ([`host_records`]), and where it is read — there, else (a box made before the records
/// moved) the box directory, with no migration step.
pub fn host_record(box_dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let write = host_records(box_dir).join(name);
    let read = if write.exists() {
        write.clone()
    } else {
        let old = box_dir.join(name);
        if old.exists() {
            old
        } else {
            write.clone()
        }
    };
    (write, read)
}

/// The project's id in `AGENTBOX_HOME/projects/`: readable name + hash of the root path.
pub fn project_id(root: &Path) -> String {
    let hash = blake3::hash(root.as_os_str().as_encoded_bytes()).to_hex();
    format!("{}-{}", slug(root, 40), &hash[..12])
}

/// The last component of `path`, lowercased, with anything but letters, digits and `-`
/// turned into `-`, trimmed, at most `max` characters.
pub fn slug(path: &Path, max: usize) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(max)
        .collect();
    s.trim_matches('-').to_string()
}

#[cfg(test)]
mod records_tests {
    use super::{host_record, host_records};

    #[test]
    fn records_move_out_of_the_box_dir_and_old_ones_are_still_read() {
        let home = tempfile::tempdir().expect("tempdir");
        let box_dir = home.path().join("boxes").join("b");
        std::fs::create_dir_all(&box_dir).expect("mkdir");
        let records = home.path().join("records").join("b");
        assert_eq!(host_records(&box_dir), records);
        // A box made before the move: its record is read where it is, written anew.
        std::fs::write(box_dir.join("sync.json"), "{}").expect("write");
        let (write, read) = host_record(&box_dir, "sync.json");
        assert_eq!(
            (write.clone(), read),
            (records.join("sync.json"), box_dir.join("sync.json"))
        );
        std::fs::create_dir_all(&records).expect("mkdir");
        std::fs::write(&write, "{}").expect("write");
        assert_eq!(host_record(&box_dir, "sync.json").1, write);
        // A directory elsewhere keeps its records in itself.
        let other = home.path().join("elsewhere");
        assert_eq!(host_records(&other), other);
    }
}
