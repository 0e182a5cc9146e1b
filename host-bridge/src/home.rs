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
