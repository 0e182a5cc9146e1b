//! `$AGENTBOX_HOME/secrets.env`: the Daytona credentials `agentbox daytona login` keeps,
//! as `KEY=VALUE` lines in a 0600 file written atomically. The process environment wins
//! over the file; a project's `.env` files are never read.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The keys this file may hold.
pub const KEYS: [&str; 4] = [
    "DAYTONA_API_KEY",
    "DAYTONA_ORGANIZATION_ID",
    "DAYTONA_API_URL",
    // `agentbox daytona login --insecure`: plain HTTP to another machine accepted.
    "DAYTONA_INSECURE",
];

/// Daytona's API when none is configured.
pub const DEFAULT_API_URL: &str = "https://app.daytona.io/api";

/// Where the file lives.
pub fn path(home: &Path) -> PathBuf {
    home.join("secrets.env")
}

/// The file's entries (empty when it does not exist). Lines that are blank, comments or
/// not `KEY=VALUE` with a known key are an error naming the line, not silently skipped.
pub fn read(home: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let file = path(home);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            anyhow::bail!("{}:{}: expected KEY=VALUE", file.display(), n + 1);
        };
        if !KEYS.contains(&key) {
            anyhow::bail!(
                "{}:{}: unknown key `{key}` (known: {})",
                file.display(),
                n + 1,
                KEYS.join(", ")
            );
        }
        out.insert(key.to_string(), value.to_string());
    }
    Ok(out)
}

/// Replaces the file with `entries`, 0600, through a temporary file and a rename.
pub fn write(home: &Path, entries: &BTreeMap<String, String>) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(home).with_context(|| format!("cannot create {}", home.display()))?;
    let file = path(home);
    let tmp = home.join(".secrets.env.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    let mut text = String::from("# written by `agentbox daytona login`\n");
    for (k, v) in entries {
        text.push_str(k);
        text.push('=');
        text.push_str(v);
        text.push('\n');
    }
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&tmp, &file).with_context(|| format!("cannot replace {}", file.display()))?;
    Ok(())
}

/// `dtn_…9f3a`: enough to tell keys apart, never enough to use one.
pub fn mask(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 12 {
        return "****".into();
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

/// Where a Daytona setting came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The process environment.
    Environment,
    /// `secrets.env`.
    SecretsFile,
}

/// One Daytona setting and its source: the environment first, then the file.
pub fn lookup(home: &Path, key: &str) -> anyhow::Result<Option<(String, Source)>> {
    if let Some(v) = std::env::var(key).ok().filter(|v| !v.is_empty()) {
        return Ok(Some((v, Source::Environment)));
    }
    Ok(read(home)?
        .remove(key)
        .filter(|v| !v.is_empty())
        .map(|v| (v, Source::SecretsFile)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_0600_read_back_and_bad_lines_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let entries = BTreeMap::from([
            (
                "DAYTONA_API_KEY".to_string(),
                "dtn_0123456789abcdef".to_string(),
            ),
            ("DAYTONA_ORGANIZATION_ID".to_string(), "org-1".to_string()),
        ]);
        write(dir.path(), &entries).expect("write");
        let mode = std::fs::metadata(path(dir.path()))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read(dir.path()).expect("read"), entries);
        std::fs::write(path(dir.path()), "# c\n\nOTHER=1\n").expect("write");
        let e = read(dir.path()).expect_err("unknown key").to_string();
        assert!(e.ends_with("secrets.env:3: unknown key `OTHER` (known: DAYTONA_API_KEY, DAYTONA_ORGANIZATION_ID, DAYTONA_API_URL, DAYTONA_INSECURE)"), "{e}");
        assert_eq!(mask("dtn_0123456789abcdef"), "dtn_…cdef");
        assert_eq!(mask("short"), "****");
    }
}
