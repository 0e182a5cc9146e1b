//! Checkpoints of daytona boxes: a box's disk captured as a Daytona snapshot that new
//! boxes of the project start from, without seeding. The host keeps a manifest per
//! checkpoint in `$AGENTBOX_HOME/checkpoints/<project id>/<NAME>.json`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// What the host records of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// The user's name for it.
    pub name: String,
    /// The Daytona snapshot.
    pub snapshot: String,
    /// The box it was taken from.
    pub source_box: String,
    /// When (ms since the epoch).
    pub created_at_ms: u64,
}

/// Whether `name` can name a checkpoint: 1–40 of `[a-z0-9-]`, starting with a letter or
/// digit (it becomes part of a snapshot name).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn dir(home: &Path, project_id: &str) -> PathBuf {
    home.join("checkpoints").join(project_id)
}

/// The snapshot name of checkpoint `name`: unique per project and moment (Daytona
/// misbehaves when a recently deleted snapshot name is reused).
pub fn snapshot_name(project_id: &str, name: &str) -> String {
    let short: String = project_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!(
        "agentbox-ckpt-{short}-{name}-{:x}",
        agentbox_protocol::now_millis() / 1000
    )
}

/// Every checkpoint of the project, oldest first.
pub fn list(home: &Path, project_id: &str) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir(home, project_id)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read(&path)?;
            out.push(
                serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not a checkpoint manifest", path.display()))?,
            );
        }
    }
    out.sort_by_key(|m: &Manifest| m.created_at_ms);
    Ok(out)
}

/// Checkpoint `name` of the project.
pub fn find(home: &Path, project_id: &str, name: &str) -> anyhow::Result<Manifest> {
    if !valid_name(name) {
        bail!("`{name}` is not a checkpoint name (1-40 of a-z, 0-9, -)");
    }
    let path = dir(home, project_id).join(format!("{name}.json"));
    let text = std::fs::read(&path).map_err(|_| {
        anyhow::anyhow!(
            "no checkpoint named `{name}` in this project (see `agentbox checkpoint list`)"
        )
    })?;
    Ok(serde_json::from_slice(&text)?)
}

/// Records `manifest` (atomically).
pub fn save(home: &Path, project_id: &str, manifest: &Manifest) -> anyhow::Result<()> {
    let dir = dir(home, project_id);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{}.tmp", manifest.name));
    std::fs::write(&tmp, serde_json::to_vec_pretty(manifest)?)?;
    std::fs::rename(&tmp, dir.join(format!("{}.json", manifest.name)))?;
    Ok(())
}

/// Forgets checkpoint `name`.
pub fn forget(home: &Path, project_id: &str, name: &str) -> anyhow::Result<()> {
    std::fs::remove_file(dir(home, project_id).join(format!("{name}.json")))?;
    Ok(())
}
