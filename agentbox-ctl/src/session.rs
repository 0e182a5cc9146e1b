//! Agent sessions in tmux, on a private tmux server under `AGENTBOX_RUN_DIR`.
//!
//! Sessions are always addressed with tmux's exact-match syntax (`-t =NAME`), never by
//! prefix, so a `claude-dash` session can never stand in for `claude`. The session's
//! command runs through `agentbox-ctl session-exec`, which reads its extra environment
//! from a 0600 file and deletes it: values never appear in any process's argv.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use agentbox_protocol::ctl::{SessionInfo, SessionSpec};
use agentbox_protocol::term::SessionName;
use agentbox_protocol::{ErrorCode, ErrorReply};

use crate::paths::{Paths, SECRET_VARS};

/// The tmux settings of every agent session: `C-a` prefix (`C-b` still works), `d` to
/// detach, panes kept after their command exits so that its last output stays visible.
///
/// `assume-paste-time 0`: tmux takes keys that come less than 1 ms apart for a paste and
/// sends them to the pane, bindings unread. Keys reach tmux through the relay in batches
/// (whatever the viewer's link carried in one message), so `Ctrl-a d` typed after other
/// keys, or soon after the attach, arrived "pasted" and the `d` went to the program: the
/// viewer could not detach.
const TMUX_CONF: &str = "\
set -g prefix C-a
set -g prefix2 C-b
bind-key C-a send-prefix
bind-key d detach-client
set -g remain-on-exit on
set -g history-limit 50000
set -g escape-time 10
set -g assume-paste-time 0
set -g status off
";

/// A handle on the box's private tmux server.
#[derive(Debug, Clone)]
pub struct Tmux {
    socket: PathBuf,
    conf: PathBuf,
    env_dir: PathBuf,
    workspace: PathBuf,
}

/// Whether `name` can be a session name (tmux forbids `.` and `:`; we keep it simple).
pub use agentbox_protocol::term::valid_session_name as valid_name;

fn bad(msg: impl Into<String>) -> ErrorReply {
    ErrorReply::new(ErrorCode::BadRequest, msg)
}

impl Tmux {
    /// The tmux server of `paths`; writes its config file.
    pub fn new(paths: &Paths) -> std::io::Result<Self> {
        let conf = paths.run_dir.join("tmux.conf");
        std::fs::write(&conf, TMUX_CONF)?;
        Ok(Self {
            socket: paths.tmux_socket(),
            conf,
            env_dir: paths.run_dir.join("session-env"),
            workspace: paths.workspace.clone(),
        })
    }

    async fn tmux(&self, args: &[&str]) -> Result<Output, ErrorReply> {
        let mut cmd = tokio::process::Command::new("tmux");
        cmd.arg("-S")
            .arg(&self.socket)
            .arg("-f")
            .arg(&self.conf)
            .args(args);
        for var in SECRET_VARS {
            cmd.env_remove(var);
        }
        cmd.stdin(std::process::Stdio::null());
        cmd.output().await.map_err(|e| {
            ErrorReply::new(
                ErrorCode::Internal,
                format!("cannot run tmux: {e} (is tmux installed?)"),
            )
        })
    }

    /// Whether session `name` exists (exact name).
    pub async fn exists(&self, name: &str) -> Result<bool, ErrorReply> {
        let target = format!("={name}");
        Ok(self
            .tmux(&["has-session", "-t", &target])
            .await?
            .status
            .success())
    }

    /// Starts a detached session running `spec.argv`.
    pub async fn start(&self, spec: &SessionSpec) -> Result<SessionInfo, ErrorReply> {
        if !valid_name(&spec.name) {
            return Err(bad(format!(
                "invalid session name `{}`: use letters, digits, `_` and `-`",
                spec.name
            )));
        }
        if spec.argv.is_empty() || spec.argv[0].is_empty() {
            return Err(bad("a session needs a command"));
        }
        if !spec.argv[0].contains('/') && find_program(&spec.argv[0]).is_none() {
            return Err(ErrorReply::new(
                ErrorCode::NotFound,
                format!(
                    "`{}` is not installed in the box (not on its PATH)",
                    spec.argv[0]
                ),
            ));
        }
        if let Some((k, _)) = spec
            .env
            .iter()
            .find(|(k, _)| k.is_empty() || k.contains('=') || k.contains('\0'))
        {
            return Err(bad(format!("invalid environment variable name `{k}`")));
        }
        let cwd = spec
            .cwd
            .as_ref()
            .map_or_else(|| self.workspace.clone(), |c| self.workspace.join(c));
        if !cwd.is_dir() {
            return Err(bad(format!(
                "working directory {} does not exist",
                cwd.display()
            )));
        }
        if self.exists(&spec.name).await? {
            return Err(ErrorReply::new(
                ErrorCode::Conflict,
                format!("session `{}` already exists", spec.name),
            ));
        }
        if spec.agent.as_deref() == Some("claude") {
            approve_forwarded_claude_key(&spec.env);
        }
        let env_file = self.write_env(&spec.name, &spec.env).map_err(|e| {
            ErrorReply::new(
                ErrorCode::Internal,
                format!("cannot write the session environment: {e}"),
            )
        })?;
        let exe = std::env::current_exe().map_err(|e| {
            ErrorReply::new(
                ErrorCode::Internal,
                format!("cannot find agentbox-ctl: {e}"),
            )
        })?;
        let mut args: Vec<String> = vec![
            "new-session".into(),
            "-d".into(),
            "-s".into(),
            spec.name.to_string(),
            "-c".into(),
            cwd.display().to_string(),
            "-x".into(),
            "200".into(),
            "-y".into(),
            "50".into(),
            exe.display().to_string(),
            "session-exec".into(),
            "--env-file".into(),
            env_file.display().to_string(),
            "--".into(),
        ];
        args.extend(spec.argv.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.tmux(&refs).await?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&env_file);
            return Err(ErrorReply::new(
                ErrorCode::Internal,
                format!(
                    "tmux new-session failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        if spec.ends_with_command {
            let target = format!("={}:", spec.name);
            // Best effort: a shell that already exited leaves its pane as with an agent.
            let _ = self
                .tmux(&["set-option", "-w", "-t", &target, "remain-on-exit", "off"])
                .await;
        }
        let sessions = self.list().await?;
        sessions
            .into_iter()
            .find(|s| s.name == spec.name)
            .ok_or_else(|| {
                ErrorReply::new(
                    ErrorCode::Internal,
                    format!("session `{}` ended right after it started", spec.name),
                )
            })
    }

    fn write_env(&self, name: &str, env: &[(String, String)]) -> std::io::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.env_dir)?;
        let mut map: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // Which session this is, for the agent's hooks (`agentbox-ctl agent-state`).
        map.insert("AGENTBOX_SESSION", name);
        let path = self.env_dir.join(format!(
            "{name}-{}-{}",
            std::process::id(),
            agentbox_protocol::now_millis()
        ));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(serde_json::to_string(&map).unwrap_or_default().as_bytes())?;
        Ok(path)
    }

    /// Every session on the server (none when the server is not running).
    pub async fn list(&self) -> Result<Vec<SessionInfo>, ErrorReply> {
        let out = self
            .tmux(&[
                "list-sessions",
                "-F",
                "#{session_name}\t#{session_created}\t#{session_attached}\t#{pane_dead}",
            ])
            .await?;
        if !out.status.success() {
            return Ok(Vec::new()); // "no server running" and friends
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(parse_session_line)
            .collect())
    }

    /// The text on the screen of session `name`'s active pane.
    pub async fn capture(&self, name: &str) -> Result<String, ErrorReply> {
        let target = format!("={name}:");
        let out = self.tmux(&["capture-pane", "-p", "-t", &target]).await?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(ErrorReply::new(
                ErrorCode::NotFound,
                format!("no session named `{name}`"),
            ))
        }
    }

    /// Kills a session by exact name.
    pub async fn kill(&self, name: &str) -> Result<(), ErrorReply> {
        if !valid_name(name) || !self.exists(name).await? {
            return Err(ErrorReply::new(
                ErrorCode::NotFound,
                format!("no session named `{name}`"),
            ));
        }
        let target = format!("={name}");
        let out = self.tmux(&["kill-session", "-t", &target]).await?;
        if out.status.success() {
            Ok(())
        } else {
            Err(ErrorReply::new(
                ErrorCode::Internal,
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }
}

/// One line of `list-sessions`; a session whose name is no [`SessionName`] was not made
/// by agentbox (nothing here names one so) and is left out.
fn parse_session_line(line: &str) -> Option<SessionInfo> {
    let mut f = line.split('\t');
    let name = SessionName::try_from(f.next()?).ok()?;
    let created: u64 = f.next()?.parse().ok()?;
    let attached: u32 = f.next()?.parse().unwrap_or(0);
    let dead = f.next().unwrap_or("0") == "1";
    Some(SessionInfo {
        name,
        running: !dead,
        started_at_ms: Some(created * 1000),
        attached,
        agent: None,
    })
}

/// `agentbox-ctl session-exec --env-file F -- CMD…`: load and delete the env file, then
/// replace this process with the command. Returns only on failure.
pub fn exec_with_env_file(env_file: &Path, argv: &[String]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let env: BTreeMap<String, String> = match std::fs::read_to_string(env_file) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(env) => env,
            Err(e) => {
                return std::io::Error::other(format!("bad env file {}: {e}", env_file.display()))
            }
        },
        Err(e) => return e,
    };
    let _ = std::fs::remove_file(env_file);
    let Some((program, args)) = argv.split_first() else {
        return std::io::Error::other("no command given");
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).envs(&env);
    for var in SECRET_VARS {
        cmd.env_remove(var);
    }
    cmd.exec()
}

/// `program` on this process's PATH (the daemon's, which sessions inherit), if it is there.
pub fn find_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A Claude session given `ANTHROPIC_API_KEY` (forwarded by the host on purpose) need not
/// ask whether to use it: the key is marked approved in `~/.claude.json` first.
fn approve_forwarded_claude_key(env: &[(String, String)]) {
    let key = env.iter().find(|(k, _)| k == "ANTHROPIC_API_KEY");
    if let (Some((_, key)), Some(home)) = (key, std::env::var_os("HOME")) {
        if let Err(e) = approve_claude_key(&Path::new(&home).join(".claude.json"), key) {
            tracing::warn!("cannot mark the forwarded API key as approved for Claude Code: {e}");
        }
    }
}

/// Adds `key` to Claude Code's approved custom API keys in `path` (`~/.claude.json`),
/// which it records as the key's last 20 characters, so that it does not stop at "Detected
/// a custom API key … use it?" for a key the user forwarded on purpose.
fn approve_claude_key(path: &Path, key: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let suffix: String = {
        let chars: Vec<char> = key.chars().collect();
        chars[chars.len().saturating_sub(20)..].iter().collect()
    };
    let mut config: serde_json::Value = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(e),
    };
    let Some(root) = config.as_object_mut() else {
        return Err(std::io::Error::other("it is not a JSON object"));
    };
    let responses = root
        .entry("customApiKeyResponses")
        .or_insert_with(|| serde_json::json!({"approved": [], "rejected": []}));
    let Some(approved) = responses
        .as_object_mut()
        .map(|r| r.entry("approved").or_insert_with(|| serde_json::json!([])))
        .and_then(serde_json::Value::as_array_mut)
    else {
        return Err(std::io::Error::other(
            "customApiKeyResponses is not an object",
        ));
    };
    if approved.iter().any(|v| v.as_str() == Some(&suffix)) {
        return Ok(());
    }
    approved.push(serde_json::Value::String(suffix));
    let tmp = path.with_extension("json.agentbox-tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec_pretty(&config).map_err(std::io::Error::other)?,
    )?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forwarded_key_is_approved_for_claude_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".claude.json");
        std::fs::write(&path, r#"{"hasCompletedOnboarding":true}"#).expect("write");
        let key = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz";
        approve_claude_key(&path, key).expect("approve");
        approve_claude_key(&path, key).expect("approve again");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(v["hasCompletedOnboarding"], true);
        assert_eq!(
            v["customApiKeyResponses"]["approved"],
            serde_json::json!(["ghijklmnopqrstuvwxyz"])
        );
        std::fs::write(&path, "[1]").expect("write");
        assert!(approve_claude_key(&path, key).is_err());
    }

    #[test]
    fn names_are_strict() {
        assert!(valid_name("claude"));
        assert!(valid_name("agent-2_x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a.b"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name("=a"));
        assert!(!valid_name(&"x".repeat(65)));
    }

    #[test]
    fn session_lines_parse() {
        let s = parse_session_line("claude\t1700000000\t2\t0").expect("parse");
        assert_eq!(
            s,
            SessionInfo {
                name: "claude".parse().expect("session name"),
                running: true,
                started_at_ms: Some(1_700_000_000_000),
                attached: 2,
                agent: None,
            }
        );
        assert!(!parse_session_line("x\t1\t0\t1").expect("parse").running);
        assert!(parse_session_line("garbage").is_none());
        // A session made outside agentbox (`tmux new -s 'a.b'`) under a name that is no
        // session name is left out of the list rather than sent on to the host.
        assert!(parse_session_line("a.b\t1\t0\t0").is_none());
        assert!(parse_session_line("x\u{1b}[2J\t1\t0\t0").is_none());
    }
}
