//! `run_once` markers: a task that succeeded is not run again while its command, working
//! directory and environment are unchanged.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::process;
use crate::config::{Command, RunOnce};
use crate::logs::UnitLog;

/// The marker content: blake3 of the canonical JSON of command, resolved cwd and env.
pub fn fingerprint(command: &Command, cwd: &Path, env: &BTreeMap<String, String>) -> String {
    let canonical = serde_json::json!({
        "command": command,
        "cwd": cwd.to_string_lossy(),
        "env": env,
    });
    blake3::hash(canonical.to_string().as_bytes())
        .to_hex()
        .to_string()
}

/// Whether `marker` holds `fingerprint`.
pub fn matches(marker: &Path, fingerprint: &str) -> bool {
    std::fs::read_to_string(marker).is_ok_and(|s| s.trim() == fingerprint)
}

/// Writes the marker atomically (temp file + rename).
pub fn write(marker: &Path, fingerprint: &str) -> std::io::Result<()> {
    if let Some(dir) = marker.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = marker.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, format!("{fingerprint}\n"))?;
    std::fs::rename(&tmp, marker)
}

/// Why a task with the `run_once` rule `rule` is skipped this time, or `None` to run it: its
/// marker holds `fingerprint`, or its check command (run in `cwd` with `env`, its output
/// in `log`) exits 0.
pub async fn skip_reason(
    rule: RunOnce,
    marker: &Path,
    fingerprint: &str,
    cwd: &Path,
    env: &[(String, String)],
    log: &UnitLog,
) -> Option<String> {
    match rule {
        RunOnce::Marker => matches(marker, fingerprint)
            .then(|| "already ran with this command, cwd and env (run_once marker)".to_string()),
        RunOnce::Check(check) => {
            let argv = vec!["bash".to_string(), "-c".to_string(), check.clone()];
            let ok = match process::command(&argv, cwd, env).map(|c| process::spawn_logged(c, log))
            {
                Some(Ok((child, copier))) => {
                    process::wait_run(child, copier, Duration::from_secs(1))
                        .await
                        .success()
                }
                _ => false,
            };
            ok.then(|| format!("run_once check `{check}` passed"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_each_input() {
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let cmd = Command::Shell("make".into());
        let base = fingerprint(&cmd, Path::new("/w"), &env);
        assert_eq!(base, fingerprint(&cmd, Path::new("/w"), &env));
        assert_ne!(
            base,
            fingerprint(&Command::Shell("make all".into()), Path::new("/w"), &env)
        );
        assert_ne!(base, fingerprint(&cmd, Path::new("/w/sub"), &env));
        assert_ne!(base, fingerprint(&cmd, Path::new("/w"), &BTreeMap::new()));
    }

    #[test]
    fn marker_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("tasks/setup");
        assert!(!matches(&marker, "abc"));
        write(&marker, "abc").expect("write");
        assert!(matches(&marker, "abc"));
        assert!(!matches(&marker, "abd"));
    }
}
