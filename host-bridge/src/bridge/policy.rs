//! The host's policy (DESIGN.md §4): which box requests run unasked, which wait for
//! `agentbox approve`, which are refused. Read from host config only — the global and the
//! project config under `AGENTBOX_HOME`, never the repository's `agentbox.yaml`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use agentbox_protocol::bridge::{BlobRef, GhRequest, GitFlag, GitOp, GitRequest, HostRequest};

use crate::config::Resolved;
use crate::home::Home;
use crate::text::capped;

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

    /// Whether `policy.notify` is `allow`: the one case a box's agent-state report may
    /// raise a desktop notification (a report is never held for an approval).
    pub fn notify_allowed(&self) -> bool {
        self.get("policy.notify") == Verdict::Allow
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
                    // Allowing the box its own branch is not allowing it to overwrite
                    // history or publish tags: those ask (unless the policy denies).
                    let forces_or_tags = !g.tags.is_empty()
                        || g.flags
                            .iter()
                            .any(|f| matches!(f, GitFlag::ForceWithLease | GitFlag::Tags));
                    let key = "policy.pushOwnBranch";
                    if forces_or_tags && self.get(key) == Verdict::Allow {
                        return (Verdict::Ask, "policy.pushOwnBranch (force or tags)");
                    }
                    key
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

/// The digest an approval and a recorded outcome are bound to: blake3 of the box's name
/// and the canonical serialisation (serde JSON of the typed value, fields in declaration
/// order) of the exact request. Another request under the same id has another digest.
pub fn digest(box_name: &str, request: &HostRequest) -> Result<String, serde_json::Error> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"agentbox host request v1\0");
    hasher.update(&(box_name.len() as u64).to_le_bytes());
    hasher.update(box_name.as_bytes());
    serde_json::to_writer(&mut hasher, request)?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// The first 12 hex digits of a blob's digest, enough to tell two blobs apart on screen.
fn short(blob: &BlobRef) -> String {
    blob.blake3.chars().take(12).collect()
}

/// What a git request would do, every flag included.
fn git_summary(g: &GitRequest, box_name: &str, own_branch: &str) -> String {
    let remote = capped(g.remote.as_deref().unwrap_or("origin"), 60);
    let branch = g.branch.as_deref().unwrap_or(own_branch);
    let mut out = match g.op {
        GitOp::Push => {
            let whose = if branch == own_branch {
                "the box's own branch"
            } else {
                "NOT the box's own branch"
            };
            let bundle = g.bundle.as_ref().map_or_else(
                || "no bundle".to_string(),
                |b| format!("bundle of {} bytes, blake3 {}", b.size, short(b)),
            );
            format!(
                "git push to remote `{remote}`: refs/agentbox/{box_name}/head (the box's commits, {bundle}) → refs/heads/{} ({whose})",
                capped(branch, 100)
            )
        }
        GitOp::Fetch | GitOp::Pull => {
            let what = match &g.branch {
                Some(b) => {
                    let b = capped(b, 100);
                    format!("refs/heads/{b} → refs/remotes/{remote}/{b}")
                }
                None => format!("refs/heads/* → refs/remotes/{remote}/*"),
            };
            let then = if g.op == GitOp::Pull {
                "merged into the box's checkout"
            } else {
                "sent to the box"
            };
            format!(
                "git {} from remote `{remote}`: {what} on the host, {then}",
                if g.op == GitOp::Pull { "pull" } else { "fetch" }
            )
        }
    };
    for flag in &g.flags {
        if (g.op, *flag) == (GitOp::Push, GitFlag::Tags) {
            // The box's own tags, each by name at its object; never the host's.
            let names: Vec<String> = g
                .tags
                .iter()
                .take(20)
                .map(|t| format!("{} at {}", capped(&t.name, 60), capped(&t.object, 12)))
                .collect();
            let more = g.tags.len().saturating_sub(names.len());
            let _ = std::fmt::Write::write_fmt(
                &mut out,
                format_args!(
                    "; --tags: also refs/tags/… for the box's {} tag(s): {}{}",
                    g.tags.len(),
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    },
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ),
            );
            continue;
        }
        out.push_str(match (g.op, flag) {
            (GitOp::Push, GitFlag::ForceWithLease) => {
                "; FORCED (--force-with-lease): may overwrite the remote branch's history"
            }
            (GitOp::Push, GitFlag::Tags) => "",
            (_, GitFlag::DryRun) => "; --dry-run: a dry run, nothing is changed",
            (_, GitFlag::ForceWithLease) => "; --force-with-lease",
            (_, GitFlag::Tags) => "; --tags",
            (_, GitFlag::Quiet) => "; -q",
            (_, GitFlag::Verbose) => "; -v",
        });
    }
    out
}

/// One line saying what a request would do, for `agentbox approvals`: everything that
/// decides its effect (flags, remote and exact ref update of a push; title, body, base of
/// a pull request; sizes, digests and destinations of copies). Strings from the box are
/// kept as they are (capped): whoever prints the line escapes it with
/// [`crate::text::shown`].
pub fn summary(request: &HostRequest, box_name: &str, own_branch: &str, project: &Path) -> String {
    match request {
        HostRequest::Notify { message } => format!("notify: {}", capped(message, 200)),
        HostRequest::AgentState(s) => format!(
            "agent {} in session {}: {}",
            capped(&s.agent, 40),
            capped(&s.session, 70),
            s.state
        ),
        HostRequest::Open { url } => format!("open {}", capped(url, 400)),
        HostRequest::Git(g) => git_summary(g, box_name, own_branch),
        HostRequest::Gh(GhRequest::PrCreate {
            title,
            body,
            base,
            draft,
        }) => format!(
            "gh pr create{} from {own_branch} into {}: title `{}`, body ({} characters) `{}`",
            if *draft { " (draft)" } else { "" },
            base.as_deref().map_or_else(
                || "the repository's default branch".to_string(),
                |b| capped(b, 100)
            ),
            capped(title, 256),
            body.chars().count(),
            capped(body, 2000)
        ),
        HostRequest::Gh(GhRequest::PrView { number }) => match number {
            Some(n) => format!("gh pr view #{n}"),
            None => format!("gh pr view of {own_branch}"),
        },
        HostRequest::Gh(GhRequest::PrList { state, limit }) => format!(
            "gh pr list --state={} --limit={}",
            capped(state.as_deref().unwrap_or("open"), 40),
            limit.unwrap_or(30).min(200)
        ),
        HostRequest::CopyToHost { name, dest, blob } => format!(
            "write `{}` (a tar of {} bytes, blake3 {}) from box {box_name} into {}",
            capped(name, 200),
            blob.size,
            short(blob),
            in_project(project, dest)
        ),
        HostRequest::CopyFromHost { src, dest } => format!(
            "send {} to box {box_name} at {}",
            in_project(project, src),
            capped(dest, 400)
        ),
    }
}

/// Project path `rel` from the box as the copy resolves it: `.` components and repeated
/// slashes dropped (a box's `./././…` pushed the real place, `.github/workflows/`, past
/// the 400 characters an approval shows), a trailing `/` (into) kept.
fn in_project(project: &Path, rel: &str) -> String {
    let resolved: std::path::PathBuf = Path::new(rel)
        .components()
        .filter(|c| *c != std::path::Component::CurDir)
        .collect();
    let mut shown = capped(&resolved.display().to_string(), 400);
    if rel.ends_with('/') && !resolved.as_os_str().is_empty() {
        shown.push('/');
    }
    project.join(shown).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentbox_protocol::bridge::{GhRequest, TagRef};

    fn push(branch: Option<&str>, flags: Vec<GitFlag>) -> HostRequest {
        HostRequest::Git(GitRequest {
            op: GitOp::Push,
            remote: Some("origin".into()),
            branch: branch.map(str::to_string),
            flags,
            bundle: Some(BlobRef {
                blake3: "ab".repeat(32),
                size: 1234,
            }),
            tags: Vec::new(),
        })
    }

    fn shown(r: &HostRequest) -> String {
        summary(r, "b1", "agentbox/b1", Path::new("/p"))
    }

    #[test]
    fn a_forced_push_to_main_shows_the_force_and_the_exact_ref_update() {
        let s = shown(&push(Some("main"), vec![GitFlag::ForceWithLease]));
        for part in [
            "FORCED",
            "--force-with-lease",
            "remote `origin`",
            "refs/agentbox/b1/head",
            "→ refs/heads/main",
            "NOT the box's own branch",
            "1234 bytes",
            "abababababab",
        ] {
            assert!(s.contains(part), "{part}: {s}");
        }
        let own = shown(&push(None, Vec::new()));
        assert!(
            own.contains("→ refs/heads/agentbox/b1 (the box's own branch)"),
            "{own}"
        );
        assert!(!own.contains("FORCE") && !own.contains("--"), "{own}");
    }

    /// The policy with `config` (YAML) as the global file, and nothing else.
    fn policy_of(config: &str) -> Policy {
        let dir = tempfile::tempdir().expect("tempdir");
        let global = dir.path().join("config.yaml");
        std::fs::write(&global, config).expect("write");
        Policy {
            resolved: Resolved::load(&global, None, None, BTreeMap::new()).expect("load"),
        }
    }

    #[test]
    fn a_push_of_its_own_branch_asks_when_it_forces_or_sends_tags() {
        let own = "agentbox/b";
        let allow = policy_of("");
        let with_tags = |flags: Vec<GitFlag>| {
            let mut r = push(None, flags);
            if let HostRequest::Git(g) = &mut r {
                g.tags = vec![TagRef {
                    name: "v1".into(),
                    object: "ab".repeat(20),
                }];
            }
            r
        };
        // By default the box's own branch goes without asking...
        assert_eq!(allow.verdict(&push(None, vec![]), own).0, Verdict::Allow);
        assert_eq!(
            allow.verdict(&push(Some(own), vec![GitFlag::Quiet]), own).0,
            Verdict::Allow
        );
        // ...but not a forced push, `--tags`, or tags without the flag.
        for hostile in [
            push(None, vec![GitFlag::ForceWithLease]),
            push(Some(own), vec![GitFlag::ForceWithLease, GitFlag::Quiet]),
            push(None, vec![GitFlag::Tags]),
            push(None, vec![GitFlag::DryRun, GitFlag::ForceWithLease]),
            with_tags(vec![GitFlag::Tags]),
            with_tags(vec![]),
        ] {
            assert_eq!(allow.verdict(&hostile, own).0, Verdict::Ask, "{hostile:?}");
        }
        // A policy that denies pushes still denies them; one that asks still asks.
        let deny = policy_of("policy:\n  pushOwnBranch: deny\n");
        assert_eq!(
            deny.verdict(&push(None, vec![GitFlag::ForceWithLease]), own)
                .0,
            Verdict::Deny
        );
    }

    #[test]
    fn every_flag_changes_the_summary() {
        let flags = [
            GitFlag::ForceWithLease,
            GitFlag::Tags,
            GitFlag::DryRun,
            GitFlag::Quiet,
            GitFlag::Verbose,
        ];
        for op in [GitOp::Push, GitOp::Fetch, GitOp::Pull] {
            let with = |flags: Vec<GitFlag>| {
                shown(&HostRequest::Git(GitRequest {
                    op,
                    remote: None,
                    branch: Some("main".into()),
                    flags,
                    bundle: None,
                    tags: Vec::new(),
                }))
            };
            let bare = with(Vec::new());
            for f in flags {
                let s = with(vec![f]);
                assert!(s != bare && s.contains(f.as_arg()), "{op:?} {f:?}: {s}");
            }
        }
        let HostRequest::Git(mut g) = push(None, vec![GitFlag::Tags]) else {
            unreachable!("push() makes a git request")
        };
        g.tags = vec![agentbox_protocol::bridge::TagRef {
            name: "v9".into(),
            object: "c0ffee".repeat(7).chars().take(40).collect(),
        }];
        let tags = shown(&HostRequest::Git(g));
        assert!(tags.contains("1 tag(s): v9 at c0ffeec0ffee"), "{tags}");
    }

    #[test]
    fn a_pull_request_shows_title_body_base_and_draft() {
        let s = shown(&HostRequest::Gh(GhRequest::PrCreate {
            title: "Fix it".into(),
            body: "Also deletes CI".into(),
            base: Some("release".into()),
            draft: true,
        }));
        for part in [
            "(draft)",
            "from agentbox/b1 into release",
            "`Fix it`",
            "`Also deletes CI`",
            "15 characters",
        ] {
            assert!(s.contains(part), "{part}: {s}");
        }
        let long = shown(&HostRequest::Gh(GhRequest::PrCreate {
            title: "t".into(),
            body: "x".repeat(5000),
            base: None,
            draft: false,
        }));
        assert!(
            long.contains("5000 characters") && long.contains("3000 more characters"),
            "a long body says how much is not shown"
        );
    }

    #[test]
    fn copies_show_sizes_digests_and_destinations() {
        let s = shown(&HostRequest::CopyToHost {
            blob: BlobRef {
                blake3: "cd".repeat(32),
                size: 99,
            },
            name: "r.txt".into(),
            dest: "docs/".into(),
        });
        for part in ["`r.txt`", "99 bytes", "cdcdcdcdcdcd", "/p/docs/"] {
            assert!(s.contains(part), "{part}: {s}");
        }
    }

    #[test]
    fn the_digest_binds_the_box_and_every_part_of_the_request() {
        let base = push(Some("main"), vec![GitFlag::Quiet]);
        let d = |name: &str, r: &HostRequest| digest(name, r).expect("digest");
        assert_eq!(d("b1", &base), d("b1", &base.clone()));
        assert_eq!(d("b1", &base).len(), 64);
        let mut others = vec![
            push(Some("main"), vec![GitFlag::Quiet, GitFlag::ForceWithLease]),
            push(Some("main"), Vec::new()),
            push(Some("mai"), vec![GitFlag::Quiet]),
            push(None, vec![GitFlag::Quiet]),
        ];
        let HostRequest::Git(g) = &base else {
            unreachable!("a push")
        };
        let mut other_remote = g.clone();
        other_remote.remote = Some("upstream".into());
        let mut other_bundle = g.clone();
        other_bundle.bundle = Some(BlobRef {
            blake3: "ab".repeat(32),
            size: 1235,
        });
        let mut fetch = g.clone();
        fetch.op = GitOp::Fetch;
        others.extend([other_remote, other_bundle, fetch].map(HostRequest::Git));
        others.push(HostRequest::Notify {
            message: "main".into(),
        });
        let mut seen = std::collections::HashSet::new();
        assert!(seen.insert(d("b1", &base)));
        assert!(seen.insert(d("b2", &base)), "another box, another digest");
        // The box name and the request cannot be shifted into each other.
        assert!(seen.insert(d("b", &base)));
        for o in &others {
            assert!(seen.insert(d("b1", o)), "{o:?}");
        }
    }
}
