//! The bridge token: 256 random bits, hex, in `AGENTBOX_RUN_DIR/bridge.token` (0600).
//! `AGENTBOX_BRIDGE_TOKEN` wins when set; the provider hands the same value to the host.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// A loaded token. `Debug` never shows it.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

impl Token {
    /// Whether `presented` is the token, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq::constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

pub use agentbox_protocol::bridge::new_bridge_token as generate;

/// The token from `AGENTBOX_BRIDGE_TOKEN`, else from `bridge.token`, else a new one
/// written there (0600, created exclusively).
pub fn load_or_create(run_dir: &Path) -> std::io::Result<Token> {
    let path = run_dir.join("bridge.token");
    if let Some(v) = std::env::var("AGENTBOX_BRIDGE_TOKEN")
        .ok()
        .filter(|v| !v.is_empty())
    {
        if !path.exists() {
            write_new(&path, &v)?;
        }
        return Ok(Token(v));
    }
    match std::fs::read_to_string(&path) {
        Ok(v) if !v.trim().is_empty() => return Ok(Token(v.trim().to_string())),
        Ok(_) => std::fs::remove_file(&path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let value = generate()?;
    write_new(&path, &value)?;
    Ok(Token(value))
}

fn write_new(path: &Path, value: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.as_bytes())
}
