//! Carrying out a box's request on the host. Every command is built here from fixed
//! program names and validated values; nothing from the box is ever a command line, a
//! flag or a path.
//!
//! Just past 600 lines with its tests: each executor (notify, open, push, fetch, gh) is
//! small and they share the validators; splitting them would scatter the checks.

use agentbox_protocol::bridge::{GitFlag, HostRequest, Outcome};

use crate::text::clean_text;

/// The result of one request: what goes back to the box and into the audit log.
pub struct Done {
    /// Back to the box.
    pub outcome: Outcome,
    /// `done` or `refused`.
    pub decision: &'static str,
    /// For the audit log.
    pub detail: String,
}

fn outcome(exit_code: i32, stdout: String, stderr: String) -> Outcome {
    Outcome {
        exit_code,
        stdout,
        stderr,
        bundle: None,
    }
}

fn refused_box(why: String) -> Box<Done> {
    Box::new(refused(why))
}

fn refused(why: String) -> Done {
    Done {
        outcome: outcome(1, String::new(), format!("refused by the host: {why}\n")),
        decision: "refused",
        detail: why,
    }
}

/// An http(s) URL with nothing that could be read as a flag or escape a single argument.
pub fn valid_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| {
            format!(
                "only http:// and https:// URLs are opened, not `{}`",
                clean_text(url, 80)
            )
        })?;
    if rest.is_empty()
        || url.len() > 4096
        || url.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err("the URL is empty, too long, or contains spaces or control characters".into());
    }
    if url.chars().any(crate::text::invisible_format) {
        return Err("the URL contains invisible layout characters (bidirectional or zero-width), which make it read as another address: percent-encode them".into());
    }
    Ok(())
}

fn run(program: &std::path::Path, args: &[&str]) -> Result<(), String> {
    let status = std::process::Command::new(program)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed ({status})", program.display()))
    }
}

/// Shows `message` (the box's words) as a desktop notification from box `box_name`, as
/// plain text ([`crate::text::notification_text`]); false when this host has no notifier
/// (`notify-send`) or it failed.
pub fn desktop_notify(box_name: &str, message: &str) -> bool {
    // Looked up once: the daemon's PATH does not change, and every notify would walk it.
    static NOTIFIER: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    match NOTIFIER.get_or_init(|| crate::shell::which("notify-send")) {
        Some(p) => run(
            p,
            &[
                "--app-name=agentbox",
                "--",
                &format!("agentbox: {box_name}"),
                &crate::text::notification_text(message, 1000),
            ],
        )
        .is_ok(),
        None => false,
    }
}

/// Records an agent's report from box `box_name` in `path`; a change to `waiting` is
/// shown as a desktop notification, once, when `notify` (the host's `policy.notify` is
/// `allow`) and the box's notification budget ([`super::notices`]) allow it.
pub fn agent_state(
    box_name: &str,
    path: &std::path::Path,
    status: &agentbox_protocol::agent::AgentStatus,
    notify: bool,
) -> Done {
    use agentbox_protocol::agent::AgentState;
    let status = match crate::agents::check(status) {
        Ok(s) => s,
        Err(why) => return refused(why),
    };
    let applied = match crate::agents::apply(path, &status) {
        Ok(a) => a,
        Err(e) => {
            return Done {
                outcome: outcome(
                    1,
                    String::new(),
                    format!("the host cannot record it: {e}\n"),
                ),
                decision: "done",
                detail: format!("not recorded: {e}"),
            }
        }
    };
    let mut detail = format!(
        "{} in session {}: {}",
        status.agent, status.session, status.state
    );
    if !applied.recorded {
        detail.push_str(" (older than the record; ignored)");
    } else if status.state == AgentState::Waiting && applied.previous != Some(AgentState::Waiting) {
        let message = match &status.detail {
            Some(d) => format!("{} is waiting for you: {d}", status.agent),
            None => format!("{} is waiting for you", status.agent),
        };
        let how = if !notify {
            "not shown: policy.notify is not allow"
        } else if !super::notices::may_notify(box_name) {
            "not shown: too many notifications from this box"
        } else if desktop_notify(box_name, &message) {
            "desktop notification"
        } else {
            "no desktop notifier"
        };
        detail = format!("{detail} ({how})");
    }
    Done {
        outcome: outcome(0, String::new(), String::new()),
        decision: "done",
        detail,
    }
}

/// Carries out `request` from box `box_name`.
pub fn execute(box_name: &str, request: &HostRequest) -> Done {
    match request {
        HostRequest::Notify { message } => {
            // The audit keeps the text as sent (escaped where it is shown); the desktop
            // notification gets it as plain text (`text::notification_text`).
            let how = if !super::notices::may_notify(box_name) {
                "not shown, too many notifications from this box; recorded"
            } else if desktop_notify(box_name, message) {
                "desktop notification"
            } else {
                "no desktop notifier; recorded"
            };
            Done {
                outcome: outcome(0, String::new(), String::new()),
                decision: "done",
                detail: format!("{how}: {}", crate::text::capped(message, 1000)),
            }
        }
        HostRequest::Open { url } => {
            if let Err(why) = valid_url(url) {
                return refused(why);
            }
            if !super::notices::may_open(box_name) {
                return refused(format!(
                    "this box opened {} URLs in the last minute already; not opened: {url}",
                    super::notices::OPEN_BURST
                ));
            }
            // The same choice of program as `agentbox url --open` ([`crate::browser`]).
            match crate::browser::open(url) {
                Ok(program) => Done {
                    outcome: outcome(0, format!("opened {url}\n"), String::new()),
                    decision: "done",
                    detail: format!("opened {url} with {program}"),
                },
                Err(crate::browser::OpenError::NoBrowser) => Done {
                    outcome: outcome(0, format!("the host has no browser opener; the URL is in `agentbox audit`: {url}\n"), String::new()),
                    decision: "done",
                    detail: format!("no opener; URL {url}"),
                },
                Err(e) => Done {
                    outcome: outcome(1, String::new(), format!("{e}\n")),
                    decision: "done",
                    detail: e.to_string(),
                },
            }
        }
        other => refused(format!(
            "`{}` is not supported by this host bridge yet",
            other.kind()
        )),
    }
}

/// What the host knows of a box, from its own records (never from the box).
pub struct BoxFacts<'a> {
    /// Box name.
    pub name: &'a str,
    /// The repository the box was seeded from.
    pub project: &'a std::path::Path,
    /// The box's branch, `agentbox/<name>`.
    pub branch: &'a str,
    /// A lock file that serializes this box's pushes across host bridge restarts.
    pub push_lock: &'a std::path::Path,
}

fn git(project: &std::path::Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    std::process::Command::new("git")
        .arg("-C")
        .arg(project)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
}

/// Runs git under `flock LOCK`: the lock belongs to the git process, so a push that
/// outlives a killed host bridge still holds it, and the re-delivered request waits for
/// it to finish instead of racing it on the remote (then finds nothing left to push).
/// Without `flock` on the host, git runs unlocked.
fn locked_git(
    project: &std::path::Path,
    lock: &std::path::Path,
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    if crate::shell::which("flock").is_none() {
        return git(project, args);
    }
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::process::Command::new("flock")
        .arg("-w")
        .arg("900")
        .arg(lock)
        .arg("git")
        .arg("-C")
        .arg(project)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
}

/// The remote a box names (default `origin`), checked: a plain name that this host
/// repository has. Never a URL or a path.
fn host_remote<'a>(
    project: &std::path::Path,
    requested: Option<&'a str>,
) -> Result<&'a str, String> {
    let remote = requested.unwrap_or("origin");
    let plain = !remote.is_empty()
        && !remote.starts_with('-')
        && remote
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !plain {
        return Err(format!("`{}` is not a remote name", clean_text(remote, 80)));
    }
    let remotes = match git(project, &["remote"]) {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return Err(format!("cannot list the remotes of {}", project.display())),
    };
    if remotes.lines().any(|r| r == remote) {
        Ok(remote)
    } else {
        Err(format!(
            "the host repository has no remote named `{remote}`"
        ))
    }
}

/// Whether `b` is a plain branch name (nothing git could read as a flag or a range).
fn plain_branch(b: &str) -> bool {
    !b.is_empty()
        && !b.starts_with('-')
        && !b.contains("..")
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"/-_.".contains(&c))
}

/// The most tags one push takes.
const MAX_TAGS: usize = 1000;

/// The tags a push names, checked: only with `--tags`, plain names, hex object ids.
fn push_tags(
    request: &agentbox_protocol::bridge::GitRequest,
) -> Result<Vec<agentbox_protocol::bridge::TagRef>, String> {
    if request.tags.is_empty() {
        return Ok(Vec::new());
    }
    if !request.flags.contains(&GitFlag::Tags) {
        return Err("tags were sent without --tags".into());
    }
    if request.tags.len() > MAX_TAGS {
        return Err(format!(
            "{} tags in one push; at most {MAX_TAGS}",
            request.tags.len()
        ));
    }
    for tag in &request.tags {
        if !plain_branch(&tag.name) || tag.name.starts_with("refs/") || tag.name.len() > 200 {
            return Err(format!(
                "`{}` is not a plain tag name",
                clean_text(&tag.name, 100)
            ));
        }
        let hex = tag.object.len() == 40 || tag.object.len() == 64;
        if !hex || !tag.object.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "tag `{}`: `{}` is not an object id",
                tag.name,
                clean_text(&tag.object, 80)
            ));
        }
    }
    Ok(request.tags.clone())
}

/// `git push` for a box: the bundle (already downloaded and verified) is fetched into a
/// quarantine ref, then the host pushes that ref to the box's own branch (or, once the
/// policy allowed it, another plain branch) on a remote *name* it has, with allowlisted
/// flags only. The command line is the host's.
pub fn git_push(
    facts: &BoxFacts<'_>,
    request: &agentbox_protocol::bridge::GitRequest,
    bundle: &std::path::Path,
) -> Done {
    let remote = match host_remote(facts.project, request.remote.as_deref()) {
        Ok(r) => r,
        Err(why) => return refused(why),
    };
    // Another branch than the box's own gets here only once the policy allowed it (by
    // default after the user's approval); its name is checked again on this side.
    let target = request.branch.as_deref().unwrap_or(facts.branch);
    if !plain_branch(target) || target.starts_with("refs/") {
        return refused(format!(
            "`{}` is not a plain branch name",
            clean_text(target, 100)
        ));
    }
    let tags = match push_tags(request) {
        Ok(t) => t,
        Err(why) => return refused(why),
    };
    let bundle_arg = bundle.display().to_string();
    match git(facts.project, &["bundle", "verify", "-q", &bundle_arg]) {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return refused(format!(
                "the bundle does not apply here: {}",
                clean_text(&String::from_utf8_lossy(&o.stderr), 300)
            ))
        }
        Err(e) => return refused(format!("cannot run git: {e}")),
    }
    let quarantine = format!("refs/agentbox/{}/head", facts.name);
    // The bundle's tag refs (annotated tags' objects with them) go to a scratch namespace
    // (emptied of earlier pushes' tags: `--prune`); only the tags the request names are
    // pushed, each only if the bundle carries it at the object it names.
    let tag_space = format!("refs/agentbox/{}/tags", facts.name);
    match git(
        facts.project,
        &[
            "fetch",
            "-q",
            "--no-tags",
            "--prune",
            &bundle_arg,
            &format!("+HEAD:{quarantine}"),
            &format!("+refs/tags/*:{tag_space}/*"),
        ],
    ) {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return refused(format!(
                "cannot fetch the bundle: {}",
                clean_text(&String::from_utf8_lossy(&o.stderr), 300)
            ))
        }
        Err(e) => return refused(format!("cannot run git: {e}")),
    }
    for tag in &tags {
        // Never an object the host happens to have (a private commit, someone's tag): the
        // tag must travel in the box's bundle, at the object the request shows.
        let local = format!("{tag_space}/{}", tag.name);
        let carried = match git(facts.project, &["rev-parse", "--verify", "-q", &local]) {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            _ => String::new(),
        };
        if !carried.eq_ignore_ascii_case(&tag.object) {
            return refused(format!(
                "tag `{}` at {}: the box's bundle does not carry it there; only a tag in the bundle is pushed",
                tag.name, tag.object
            ));
        }
    }
    let mut args: Vec<String> = vec!["push".into()];
    // `--tags` would push every tag of the host's repository: the box's tags go by name.
    args.extend(
        request
            .flags
            .iter()
            .filter(|f| **f != GitFlag::Tags)
            .map(|f| f.as_arg().to_string()),
    );
    args.push("--".into());
    args.push(remote.to_string());
    args.push(format!("{quarantine}:refs/heads/{target}"));
    for tag in &tags {
        args.push(format!("{tag_space}/{}:refs/tags/{}", tag.name, tag.name));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    match locked_git(facts.project, facts.push_lock, &refs) {
        Ok(o) => {
            let code = o.status.code().unwrap_or(1);
            let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
            let detail = format!("git {} → exit {code}", args.join(" "));
            Done {
                outcome: outcome(code, stdout, stderr),
                decision: "done",
                detail,
            }
        }
        Err(e) => refused(format!("cannot run git: {e}")),
    }
}

/// The host's `gh`: `AGENTBOX_GH` (host config), else `gh` on PATH.
fn gh_program() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("AGENTBOX_GH").filter(|v| !v.is_empty()) {
        return Some(p.into());
    }
    crate::shell::which("gh")
}

/// `gh pr create|view|list` for a box, run by the host's `gh` in the box's project, with
/// every value passed as `--flag=value` (so text from the box can never be read as
/// another flag) and the head always the box's own branch.
pub fn gh(facts: &BoxFacts<'_>, request: &agentbox_protocol::bridge::GhRequest) -> Done {
    use agentbox_protocol::bridge::GhRequest;
    let Some(program) = gh_program() else {
        return refused("the host has no `gh` (install GitHub CLI, or set AGENTBOX_GH)".into());
    };
    let mut args: Vec<String> = vec!["pr".into()];
    match request {
        GhRequest::PrCreate {
            title,
            body,
            base,
            draft,
        } => {
            let title = clean_text(title, 256);
            if title.trim().is_empty() {
                return refused("a pull request needs a title".into());
            }
            args.push("create".into());
            args.push(format!("--head={}", facts.branch));
            args.push(format!("--title={}", title.replace('\n', " ")));
            args.push(format!("--body={}", clean_text(body, 65_536)));
            if let Some(b) = base {
                if !plain_branch(b) {
                    return refused(format!("`{}` is not a branch name", clean_text(b, 80)));
                }
                args.push(format!("--base={b}"));
            }
            if *draft {
                args.push("--draft".into());
            }
        }
        GhRequest::PrView { number } => {
            args.push("view".into());
            args.push(number.map_or_else(|| facts.branch.to_string(), |n| n.to_string()));
        }
        GhRequest::PrList { state, limit } => {
            let state = state.as_deref().unwrap_or("open");
            if !matches!(state, "open" | "closed" | "merged" | "all") {
                return refused(format!(
                    "`{}` is not a state: open, closed, merged or all",
                    clean_text(state, 40)
                ));
            }
            args.push("list".into());
            args.push(format!("--state={state}"));
            args.push(format!("--limit={}", limit.unwrap_or(30).min(200)));
        }
    }
    let out = std::process::Command::new(&program)
        .args(&args)
        .current_dir(facts.project)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GH_PROMPT_DISABLED", "1")
        .stdin(std::process::Stdio::null())
        .output();
    match out {
        Ok(o) => {
            let code = o.status.code().unwrap_or(1);
            Done {
                outcome: outcome(
                    code,
                    String::from_utf8_lossy(&o.stdout).into_owned(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                ),
                decision: "done",
                detail: format!(
                    "gh pr {} → exit {code}",
                    args.get(1).map_or("", String::as_str)
                ),
            }
        }
        Err(e) => refused(format!("cannot run {}: {e}", program.display())),
    }
}

/// What a fetch for a box produced: the tracking ref it updated and, when the box lacks
/// something, a bundle of it.
pub struct Fetched {
    /// `remote/branch`, or `remote` when every branch was fetched.
    pub tracking: String,
    /// The bundle (in the caller's staging directory), if there is anything new.
    pub bundle: Option<std::path::PathBuf>,
    /// git's messages, for the box.
    pub stderr: String,
}

/// `git fetch` for a box: the host fetches from a remote *name* it has, with its own
/// credentials, into its remote-tracking refs, then bundles those refs minus what the box
/// already has (`known`: commits the host knows the box holds).
pub fn git_fetch(
    facts: &BoxFacts<'_>,
    request: &agentbox_protocol::bridge::GitRequest,
    known: &[String],
    staging: &std::path::Path,
) -> Result<Fetched, Box<Done>> {
    use agentbox_protocol::bridge::GitOp;
    let remote = host_remote(facts.project, request.remote.as_deref()).map_err(refused_box)?;
    let branch = request.branch.as_deref();
    if let Some(b) = branch {
        if !plain_branch(b) {
            return Err(refused_box(format!(
                "`{}` is not a branch name",
                clean_text(b, 80)
            )));
        }
    } else if request.op == GitOp::Pull {
        return Err(refused_box(
            "name the branch to pull: `git pull origin main`".into(),
        ));
    }
    let (spec, tracking, bundle_refs) = match branch {
        Some(b) => (
            format!("+refs/heads/{b}:refs/remotes/{remote}/{b}"),
            format!("{remote}/{b}"),
            vec![format!("refs/remotes/{remote}/{b}")],
        ),
        None => (
            format!("+refs/heads/*:refs/remotes/{remote}/*"),
            remote.to_string(),
            vec![format!("--remotes={remote}/*")],
        ),
    };
    let fetched = git(facts.project, &["fetch", "--no-tags", "--", remote, &spec])
        .map_err(|e| refused_box(format!("cannot run git: {e}")))?;
    let stderr = String::from_utf8_lossy(&fetched.stderr).into_owned();
    if !fetched.status.success() {
        return Err(Box::new(Done {
            outcome: outcome(
                fetched.status.code().unwrap_or(1),
                String::new(),
                stderr.clone(),
            ),
            decision: "done",
            detail: format!("git fetch {remote} failed"),
        }));
    }
    let bundle = staging.join("fetch.bundle");
    let mut args: Vec<String> = vec!["bundle".into(), "create".into(), "-q".into()];
    args.push(bundle.display().to_string());
    args.extend(bundle_refs);
    for k in known {
        let exists = git(
            facts.project,
            &["cat-file", "-e", &format!("{k}^{{commit}}")],
        )
        .is_ok_and(|o| o.status.success());
        if exists {
            args.push(format!("^{k}"));
        }
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let made =
        git(facts.project, &refs).map_err(|e| refused_box(format!("cannot run git: {e}")))?;
    let made_stderr = String::from_utf8_lossy(&made.stderr);
    let bundle = if made.status.success() {
        Some(bundle)
    } else if made_stderr.contains("empty bundle") {
        None // the box has all of it
    } else {
        return Err(refused_box(format!(
            "cannot bundle the fetched refs: {}",
            clean_text(&made_stderr, 300)
        )));
    };
    Ok(Fetched {
        tracking,
        bundle,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_before_anything_runs() {
        assert!(valid_url("https://example.com/a?b=c").is_ok());
        for bad in [
            "file:///etc/passwd",
            "--help",
            "http://",
            "http://a b",
            "javascript:x",
            "https://x\n-rf",
            "https://example.com/\u{202e}gpj.exe",
            "https://exa\u{200b}mple.com/",
        ] {
            assert!(valid_url(bad).is_err(), "{bad}");
        }
        let done = execute(
            "b",
            &HostRequest::Open {
                url: "file:///etc/shadow".into(),
            },
        );
        assert_eq!((done.decision, done.outcome.exit_code), ("refused", 1));
    }
}
