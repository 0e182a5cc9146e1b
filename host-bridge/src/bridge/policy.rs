//! The host's policy (DESIGN.md §4): which box requests run unasked, which wait for
//! `agentbox approve`, which are refused. Read from host config only — the global and the
//! project config under `AGENTBOX_HOME`, never the repository's `agentbox.yaml`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use agentbox_protocol::bridge::{GitOp, HostRequest};

use crate::config::Resolved;
use crate::home::Home;

/// What the policy says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Run it.
    Allow,
    /// Wait for `agentbox approve`.
    Ask,
    /// Refuse it.
    Deny,
}

/// Policies by project, re-read only when one of their config files changed (two `stat`
/// calls per request instead of parsing YAML).
#[derive(Default)]
pub struct Cache {
    entries: std::sync::Mutex<BTreeMap<std::path::PathBuf, (Stamp, Arc<Policy>)>>,
}

/// The modification times of the global and the project config file.
type Stamp = (Option<std::time::SystemTime>, Option<std::time::SystemTime>);

impl Cache {
    /// The policy of `project`.
    pub fn get(&self, home: &Home, project: &Path) -> anyhow::Result<Arc<Policy>> {
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let project_file = home.project_config(&crate::home::project_id(project));
        let stamp = (mtime(&home.config()), mtime(&project_file));
        if let Ok(entries) = self.entries.lock() {
            if let Some((_, p)) = entries.get(project).filter(|(s, _)| *s == stamp) {
                return Ok(Arc::clone(p));
            }
        }
        let policy = Arc::new(Policy::load(home, project)?);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(project.to_path_buf(), (stamp, Arc::clone(&policy)));
        }
        Ok(policy)
    }
}

/// The policy for one project.
pub struct Policy {
    resolved: Resolved,
}

impl Policy {
    /// Loads the policy that applies to boxes of `project`.
    pub fn load(home: &Home, project: &Path) -> anyhow::Result<Self> {
        let project_file = home.project_config(&crate::home::project_id(project));
        let resolved = Resolved::load(&home.config(), Some(&project_file), None, BTreeMap::new())
            .map_err(anyhow::Error::msg)?;
        Ok(Self { resolved })
    }

    fn get(&self, key: &str) -> Verdict {
        match self.resolved.get(key).map(|(v, _)| v) {
            Some("allow") => Verdict::Allow,
            Some("deny") => Verdict::Deny,
            // Unknown or missing: the careful answer.
            _ => Verdict::Ask,
        }
    }

    /// How long an approval waits, in milliseconds.
    pub fn approval_ttl_ms(&self) -> u64 {
        self.resolved
            .get("approvals.ttlSeconds")
            .and_then(|(v, _)| v.parse::<u64>().ok())
            .unwrap_or(900)
            .saturating_mul(1000)
    }

    /// The verdict on `request` from the box whose branch is `own_branch`, and the key
    /// that decided it.
    pub fn verdict(&self, request: &HostRequest, own_branch: &str) -> (Verdict, &'static str) {
        let key = match request {
            // Only recorded (and maybe shown as a notification): nothing to decide.
            HostRequest::AgentState(_) => return (Verdict::Allow, "agent state"),
            HostRequest::Notify { .. } => "policy.notify",
            HostRequest::Open { .. } => "policy.open",
            HostRequest::Git(g) if g.op == GitOp::Push => {
                if g.branch.as_deref().is_none_or(|b| b == own_branch) {
                    "policy.pushOwnBranch"
                } else {
                    "policy.pushOtherBranch"
                }
            }
            HostRequest::Git(_) => "policy.fetch",
            HostRequest::CopyToHost { .. } => "policy.copyToHost",
            HostRequest::CopyFromHost { .. } => "policy.copyFromHost",
            // Not carried out by this host yet: the executor refuses them with a reason.
            HostRequest::Gh(agentbox_protocol::bridge::GhRequest::PrCreate { .. }) => {
                "policy.prCreate"
            }
            HostRequest::Gh(_) => "policy.prRead",
        };
        (self.get(key), key)
    }
}

/// One line saying what a request would do, for `agentbox approvals`.
pub fn summary(request: &HostRequest, box_name: &str, own_branch: &str, project: &Path) -> String {
    use crate::text::clean_text;
    match request {
        HostRequest::Notify { message } => format!("notify: {}", clean_text(message, 120)),
        HostRequest::AgentState(s) => format!(
            "agent {} in session {}: {}",
            clean_text(&s.agent, 40),
            clean_text(&s.session, 70),
            s.state
        ),
        HostRequest::Open { url } => format!("open {}", clean_text(url, 200)),
        HostRequest::Git(g) => format!(
            "git {:?} of {} to remote {}",
            g.op,
            clean_text(g.branch.as_deref().unwrap_or(own_branch), 100),
            clean_text(g.remote.as_deref().unwrap_or("origin"), 60)
        )
        .to_lowercase(),
        HostRequest::Gh(_) => format!("{} for box {box_name}", request.kind()),
        HostRequest::CopyToHost {
            name, dest, blob, ..
        } => format!(
            "write `{}` ({} bytes) from box {box_name} into {}",
            clean_text(name, 100),
            blob.size,
            project.join(clean_text(dest, 200)).display()
        ),
        HostRequest::CopyFromHost { src, dest } => format!(
            "send {} to box {box_name} at {}",
            project.join(clean_text(src, 200)).display(),
            clean_text(dest, 200)
        ),
    }
}
