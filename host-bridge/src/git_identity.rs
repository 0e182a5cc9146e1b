//! The user's git identity carried into a box, as devcontainers do: `user.name` and
//! `user.email` as git resolves them in the project (the repository's config, then the
//! global one), set in the box's workspace repository so that a commit there has an
//! author. Only those two keys go; nothing else of the host's git config (credential
//! helpers, tokens, URL rewrites, includes) is read or sent.

use std::path::Path;

use crate::transfer::client::Relay;

/// The two keys carried, and nothing else.
const KEYS: [&str; 2] = ["user.name", "user.email"];

/// `user.name` / `user.email` of the project, each when set and plain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `(key, value)` for each key that is set.
    pub values: Vec<(&'static str, String)>,
}

impl Identity {
    /// What git uses in `repo` (its config, then the global and system ones). A value that
    /// is not one plain line (control characters, a leading `-`, over 256 bytes) is left out.
    pub fn of_project(repo: &Path) -> Self {
        let values = KEYS
            .iter()
            .filter_map(|key| {
                let value = crate::git::run(repo, &["config", "--get", key]).ok()?;
                plain(&value).then_some((*key, value))
            })
            .collect();
        Self { values }
    }

    /// Sets the identity in the box's workspace repository (`git config --local`), through
    /// its relay's command API: the same on every provider.
    pub async fn apply(&self, relay: &Relay) -> anyhow::Result<()> {
        use crate::relay_exec::Ended;
        for (key, value) in &self.values {
            let argv = ["git", "config", "--local", key, value.as_str()]
                .map(str::to_string)
                .to_vec();
            let request = agentbox_protocol::exec::ExecRequest::new(argv);
            let (ended, _, stderr) = crate::relay_exec::capture(relay, &request).await?;
            let ok = matches!(&ended, Ended::Exited(e) if e.code == Some(0));
            if !ok {
                anyhow::bail!(
                    "git config {key} in the box failed: {}",
                    crate::text::shown(String::from_utf8_lossy(&stderr).trim())
                );
            }
        }
        Ok(())
    }
}

/// One plain line a git config value can be: non-empty, at most 256 bytes, no control
/// characters, not starting with `-` (never read as an option).
fn plain(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && !value.starts_with('-')
        && !value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        crate::git::run(dir, args).expect("git");
    }

    #[test]
    fn the_repos_identity_and_nothing_else_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path();
        git(repo, &["init", "-q"]);
        git(repo, &["config", "user.name", "Repo Name"]);
        git(repo, &["config", "user.email", "repo@example.com"]);
        git(repo, &["config", "credential.helper", "store"]);
        git(
            repo,
            &["config", "http.extraHeader", "Authorization: token SECRET"],
        );
        assert_eq!(
            Identity::of_project(repo).values,
            vec![
                ("user.name", "Repo Name".to_string()),
                ("user.email", "repo@example.com".to_string())
            ]
        );
        git(repo, &["config", "user.name", "-rm"]);
        assert_eq!(
            Identity::of_project(repo).values,
            vec![("user.email", "repo@example.com".to_string())],
            "a value that reads as an option is left out"
        );
    }

    #[test]
    fn plain_values_only() {
        assert!(plain("Ada Lovelace"));
        assert!(plain("ada@example.com"));
        for bad in ["", "-c", "a\nb", "a\x1b[31m", &"x".repeat(257)] {
            assert!(!plain(bad), "{bad:?}");
        }
    }
}
